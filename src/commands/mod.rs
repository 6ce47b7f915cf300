//! The edge between the command line and the library: each module turns parsed
//! arguments into a library call, with `anyhow` context for the user.

pub mod airship_builder;
pub mod boot;
pub mod build;
pub mod cache;
pub mod disk;
pub mod doctor;
pub mod fat;
pub mod import_airship;
pub mod inspect;
pub mod iso;
pub mod oci;
pub mod profiles;
pub mod qcow2;
pub mod render;
pub mod squashfs;
pub mod verify;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => build::run(*args, &cli.global),
        Command::Boot(args) => boot::run(args, &cli.global),
        Command::Qcow2(args) => qcow2::run(args, &cli.global),
        Command::Disk(args) => disk::run(args, &cli.global),
        Command::Squashfs(args) => squashfs::run(args, &cli.global),
        Command::Iso(args) => iso::run(args, &cli.global),
        Command::Fat(args) => fat::run(args, &cli.global),
        Command::Oci(args) => oci::run(args, &cli.global),
        Command::Inspect(args) => inspect::run(args, &cli.global),
        Command::Verify(args) => verify::run(args, &cli.global),
        Command::Profiles(args) => profiles::run(args, &cli.global),
        Command::Render(args) => render::run(args, &cli.global),
        Command::Doctor(args) => doctor::run(args, &cli.global),
        Command::Cache(args) => cache::run(args, &cli.global),
        Command::ImportAirship(args) => import_airship::run(args, &cli.global),
        Command::AirshipBuilder(args) => airship_builder::run(args, &cli.global),
    }
}

/// Moves a finished image into place, then reports it: its summary as JSON
/// with `--json`, else one line (unless `--quiet`). `line` gets the seconds.
pub(crate) fn finish_image<S: serde::Serialize>(
    output: crate::util::output::AtomicOutput,
    summary: &S,
    started: std::time::Instant,
    global: &crate::cli::GlobalArgs,
    line: impl FnOnce(f64) -> String,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = output.final_path().to_path_buf();
    output
        .commit()
        .with_context(|| format!("moving the image into place at {}", path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if global.json {
        let mut value = serde_json::to_value(summary)?;
        value["path"] = serde_json::Value::String(path.display().to_string());
        value["seconds"] = serde_json::json!((seconds * 1000.0).round() / 1000.0);
        println!("{value}");
    } else if !global.quiet {
        eprintln!("osforge: {}", line(seconds));
    }
    Ok(())
}

/// Why a path the user gave cannot be used, in the words of `ls`.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The store `--block-cache DIR` names, created if missing.
pub(crate) fn open_block_cache(
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<crate::blockcache::BlockStore>>> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    match crate::blockcache::BlockStore::open(dir) {
        Ok(store) => Ok(Some(std::sync::Arc::new(store))),
        Err(e) => crate::bail_input!(
            "--block-cache {}: {}",
            dir.display(),
            std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map_or_else(|| e.to_string(), io_reason)
        ),
    }
}

/// Names the corrupt entries a writer found in its block cache, on stderr
/// (also with --json, whose report is stdout).
pub(crate) fn warn_block_cache(
    stats: Option<&crate::blockcache::Stats>,
    global: &crate::cli::GlobalArgs,
) {
    if global.quiet {
        return;
    }
    for line in stats.map(|s| s.warnings()).unwrap_or_default() {
        eprintln!("osforge: warning: {line}");
    }
}
