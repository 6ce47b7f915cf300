//! `osforge oci create SRC OUT`, `osforge oci flatten IMAGE OUT` and
//! `osforge oci index OUT IN...`: the OCI writer, flattener and multi-platform
//! joiner as standalone tools, like `tar` for images.

use std::collections::BTreeMap;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bail_input;
use crate::cli::GlobalArgs;
use crate::error::InputError;
use crate::formats::dirtree::DirTree;
use crate::formats::oci::{self, CreateOptions, ImageRef};
use crate::util::output::AtomicOutput;
use crate::util::progress::Bar;
use crate::util::size::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: OciCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum OciCommand {
    /// Write a directory tree as a single-layer OCI image in an oci-archive
    /// (for skopeo copy oci-archive:OUT and podman load).
    Create(CreateArgs),
    /// Write the root filesystem of an image in an OCI layout directory
    /// (skopeo copy ... oci:DIR:TAG) as one tar, layers and whiteouts applied.
    Flatten(FlattenArgs),
    /// Join single-platform oci-archives (one per architecture) into one
    /// multi-platform image: an image index (skopeo copy --all pushes it).
    Index(IndexArgs),
}

#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    /// The oci-archive to write; replaced only once it is complete.
    pub out: PathBuf,
    /// The oci-archives to join, one per platform (osforge build --type oci of each arch).
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// The multi-platform image's name in the archive's index.json.
    #[arg(long, default_value = "latest")]
    pub tag: String,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The root filesystem: a directory.
    pub src: PathBuf,
    /// The oci-archive to write; replaced only once it is complete.
    pub out: PathBuf,
    /// A label for the image config's Labels and the manifest's annotations; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// The image's name in the archive's index.json.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// The image's architecture (GOARCH name: amd64, arm64, ...).
    #[arg(long, default_value = "amd64")]
    pub arch: String,
    /// The image's creation time and upper bound for file mtimes, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "EPOCH", value_parser = clap::value_parser!(i64).range(0..))]
    pub mtime: Option<i64>,
    /// Compression threads (default: one per CPU). The archive does not depend on it.
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct FlattenArgs {
    /// An OCI image layout directory, with :TAG to choose one of its images.
    #[arg(value_name = "LAYOUT_DIR[:TAG]")]
    pub image: String,
    /// The tar to write, or - for stdout.
    pub out: PathBuf,
    /// The platform to take from a multi-platform image (default: this machine's).
    #[arg(long)]
    pub arch: Option<String>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.into(), value.into())),
        _ => Err("expected KEY=VALUE with a non-empty KEY".into()),
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        OciCommand::Create(args) => create(args, global),
        OciCommand::Flatten(args) => flatten(args, global),
        OciCommand::Index(args) => index(args, global),
    }
}

fn index(args: IndexArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, output.file());
    let summary = oci::merge_archives(&args.inputs, &args.tag, &mut out)
        .map_err(|e| input_or_failure(e, &args.out))?;
    out.flush()
        .with_context(|| format!("writing {}", args.out.display()))?;
    drop(out);
    super::finish_image(output, &summary, started, global, |seconds| {
        format!(
            "wrote {} ({}): {} as {} ({}) in {seconds:.1} s",
            args.out.display(),
            human_bytes(summary.archive_bytes),
            summary.platforms.join(", "),
            summary.tag,
            summary.digest,
        )
    })
}

/// Bad input (an option, the image layout, a hostile layer) exits 2, with the
/// whole cause on its one line (it names the file); anything else is the
/// command failing while writing `out`.
fn input_or_failure(e: oci::Error, out: &Path) -> anyhow::Error {
    if e.is_bad_input() {
        anyhow::Error::new(InputError(format!("{:#}", anyhow::Error::new(e))))
    } else {
        anyhow::Error::new(e).context(format!("writing {}", out.display()))
    }
}

fn create(args: CreateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let opts = CreateOptions {
        architecture: args.arch,
        tag: args.tag,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        mtime: args.mtime,
        jobs: args
            .jobs
            .unwrap_or_else(|| CreateOptions::default().jobs)
            .max(1),
        ..CreateOptions::default()
    };
    // Every argument is checked before the output is created.
    opts.validate()
        .map_err(|e| input_or_failure(e, &args.out))?;
    match std::fs::metadata(&args.src) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail_input!("source {}: not a directory", args.src.display()),
        Err(e) => bail_input!("source {}: {}", args.src.display(), super::io_reason(&e)),
    }
    let tree = DirTree::scan(&args.src, true, &[]).context("scanning the source")?;

    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let bar = Arc::new(Bar::bytes(
        "oci",
        tree.total_bytes,
        !global.quiet && !global.json,
    ));
    let summary =
        oci::create(&tree, output.file(), &opts, &*bar).map_err(|e| input_or_failure(e, &args.out));
    bar.finish();
    let summary = summary?;
    let report_line = |seconds: f64| {
        format!(
            "wrote {} ({}; layer {} from {} in {} entries) in {:.1} s; manifest {}",
            args.out.display(),
            human_bytes(summary.archive_bytes),
            human_bytes(summary.layer_bytes),
            human_bytes(summary.layer_tar_bytes),
            summary.entries,
            seconds,
            summary.manifest_digest,
        )
    };
    super::finish_image(output, &summary, started, global, report_line)?;
    // A warning, so on stderr even with --json (stdout stays the report).
    if !global.quiet && summary.skipped_sockets > 0 {
        eprintln!(
            "osforge: warning: {} sockets were left out (tar cannot store them)",
            summary.skipped_sockets
        );
    }
    Ok(())
}

fn flatten(args: FlattenArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let image = ImageRef::parse(&args.image);
    let architecture = args
        .arch
        .unwrap_or_else(|| oci::host_architecture().to_string());
    let visible = !global.quiet && !global.json;
    let flattening = |out: &mut dyn Write| {
        let bar = Bar::spinner("flattening", visible);
        let result =
            oci::flatten(&image, &architecture, out).map_err(|e| input_or_failure(e, &args.out));
        bar.finish();
        result
    };
    let report_line = |summary: &oci::FlattenSummary, seconds: f64| {
        let to = if args.out.as_os_str() == "-" {
            "the tar to stdout".to_string()
        } else {
            args.out.display().to_string()
        };
        format!(
            "wrote {to} ({}, {} members from {} layer{}) in {:.1} s",
            human_bytes(summary.tar_bytes),
            summary.members,
            summary.layers,
            if summary.layers == 1 { "" } else { "s" },
            seconds,
        )
    };

    if args.out.as_os_str() == "-" {
        if global.json {
            bail_input!("--json prints to stdout, where the tar goes with OUT '-'; name a file");
        }
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            bail_input!("OUT is '-' but stdout is a terminal; redirect it or name a file");
        }
        let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
        let summary = flattening(&mut out)?;
        if !global.quiet {
            let seconds = started.elapsed().as_secs_f64();
            eprintln!("osforge: {}", report_line(&summary, seconds));
        }
        return Ok(());
    }
    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, output.file());
    let summary = flattening(&mut out)?;
    drop(out);
    super::finish_image(output, &summary, started, global, |seconds| {
        report_line(&summary, seconds)
    })
}
