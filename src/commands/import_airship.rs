//! `osforge import-airship DIR OUTDIR`: Airship image-builder manifests in,
//! osforge profiles out (the mapping is [`crate::airship`]).
//!
//! Every key that could not be mapped is printed, with its file and key path,
//! even with `--quiet`: an import that drops settings must say so. Exit 0 once
//! the profiles are written, unmapped keys or not; 2 on bad input.

use std::path::PathBuf;
use std::time::Instant;

use crate::airship;
use crate::cli::GlobalArgs;
use crate::error::InputError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Airship manifests directory (with qcow-bundle*/, rootfs/, iso/), or
    /// one qcow-bundle folder of it.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to write the profiles (created if missing; files of the same
    /// names are replaced).
    #[arg(value_name = "OUTDIR")]
    pub out: PathBuf,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let import = airship::import(&args.dir).map_err(into_anyhow)?;
    import.write(&args.out).map_err(into_anyhow)?;
    if global.json {
        let profiles: Vec<serde_json::Value> = import
            .profiles
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).expect("plain data serialises");
                v["path"] = serde_json::json!(args.out.join(format!("{}.yaml", p.name)));
                v
            })
            .collect();
        let value = serde_json::json!({
            "profiles": profiles,
            "unmapped": import.unmapped,
            "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        println!("{value}");
        return Ok(());
    }
    for u in &import.unmapped {
        println!("{u}");
    }
    if !global.quiet {
        for p in &import.profiles {
            let builds = p
                .image
                .as_deref()
                .map(|i| format!(" -> {i}"))
                .unwrap_or_default();
            eprintln!(
                "osforge: wrote {}{builds} (from {})",
                args.out.join(format!("{}.yaml", p.name)).display(),
                p.from
            );
        }
        eprintln!(
            "osforge: {} profiles, {} keys not mapped (listed above)",
            import.profiles.len(),
            import.unmapped.len()
        );
    }
    Ok(())
}

fn into_anyhow(e: airship::ImportError) -> anyhow::Error {
    if e.is_bad_input() {
        anyhow::Error::new(InputError(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}
