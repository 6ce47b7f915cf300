//! `osforge fat DIR OUT.img`: a FAT image of a directory, as
//! `mkfs.fat -C` + `mcopy -s` would make it, reproducibly.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::Context;

use crate::bail_input;
use crate::cli::GlobalArgs;
use crate::formats::fat::{self, FatImage, FatKind, FatOptions};
use crate::util::output::AtomicOutput;
use crate::util::size::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory whose contents become the image's root.
    pub src: PathBuf,
    /// The image to write; replaced only once it is complete.
    pub out: PathBuf,
    /// Image size, e.g. 64M (default: the contents plus room for FAT, rounded up to 1 MiB).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// FAT variant: 12, 16 or 32 (default: chosen from the size).
    #[arg(long = "fat", value_parser = clap::value_parser!(FatKind))]
    pub kind: Option<FatKind>,
    /// Volume label, up to 11 characters.
    #[arg(long, short = 'n')]
    pub label: Option<String>,
    /// Volume serial number in hex, e.g. 1234ABCD (default: derived from the contents).
    #[arg(long, short = 'i', value_parser = parse_volume_id)]
    pub volume_id: Option<u32>,
    /// Timestamp of every entry, for reproducible images (default: now).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub mtime: Option<i64>,
}

fn parse_volume_id(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0x"), 16)
        .map_err(|_| "expected up to 8 hex digits".to_string())
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    match std::fs::metadata(&args.src) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail_input!("source {}: not a directory", args.src.display()),
        Err(e) => bail_input!("source {}: {}", args.src.display(), e),
    }
    let mtime = args.mtime.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(fat::FAT_EPOCH, |d| d.as_secs() as i64)
    });
    let options = FatOptions {
        kind: args.kind,
        size_bytes: args.size,
        label: args.label.clone(),
        volume_id: args.volume_id,
        mtime: Some(mtime),
    };
    let mut image = match FatImage::new(options) {
        Ok(image) => image,
        Err(e) => bail_input!("{e}"),
    };
    if let Err(e) = image.add_tree(&args.src) {
        match e {
            fat::Error::InvalidPath { .. } | fat::Error::UnsupportedFileType { .. } => {
                bail_input!("{e}")
            }
            e => return Err(e).with_context(|| format!("reading {}", args.src.display())),
        }
    }
    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let summary = match image.write_file(output.file()) {
        Ok(summary) => summary,
        Err(e @ fat::Error::TooSmall { .. }) => bail_input!("{e}"),
        Err(e) => return Err(e).with_context(|| format!("writing {}", args.out.display())),
    };
    let report_line = |seconds: f64| {
        format!(
            "wrote {} ({} {}, {} B clusters, id {:08X}, {} files in {} directories, {} of data) in {:.1} s",
            args.out.display(),
            human_bytes(summary.size_bytes),
            summary.kind,
            summary.cluster_bytes,
            summary.volume_id,
            summary.files,
            summary.directories,
            human_bytes(summary.content_bytes),
            seconds
        )
    };
    super::finish_image(output, &summary, started, global, report_line)?;
    Ok(())
}
