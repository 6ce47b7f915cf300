//! `osforge squashfs SRC OUT`: the squashfs writer as a standalone mkfs tool.

use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bail_input;
use crate::cli::GlobalArgs;
use crate::formats::Progress;
use crate::formats::squashfs::{self, Compression, SquashfsWriter, source};
use crate::util::output::AtomicOutput;
use crate::util::progress::Bar;
use crate::util::size::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A directory, a tar archive, or - for a tar stream on stdin.
    pub src: PathBuf,
    /// The image to write; replaced only once it is complete.
    pub out: PathBuf,
    /// Compressor: gzip, xz, zstd or lz4.
    #[arg(long, default_value = "zstd", value_parser = clap::value_parser!(Compression))]
    pub comp: Compression,
    /// Compression level (default: mksquashfs's; gzip 1-12, xz 0-9, zstd 1-22).
    #[arg(long)]
    pub level: Option<u32>,
    /// Data block size, a power of two from 4K to 1M.
    #[arg(long, default_value = "128K", value_parser = parse_block_size)]
    pub block_size: u32,
    /// Compression threads (default: one per CPU). The image does not depend on it.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Do not store extended attributes.
    #[arg(long)]
    pub no_xattrs: bool,
    /// Store every file as owned by root.
    #[arg(long)]
    pub all_root: bool,
    /// Image timestamp and upper bound for file mtimes, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub mtime: Option<u32>,
    /// Store small files and tails as blocks of their own.
    #[arg(long)]
    pub no_fragments: bool,
    /// Pack only files smaller than a block into fragments, not the tails of larger ones.
    #[arg(long)]
    pub no_tailends: bool,
    /// Do not look for duplicate files.
    #[arg(long)]
    pub no_dedup: bool,
    /// Leave out the NFS export table.
    #[arg(long)]
    pub no_exports: bool,
    /// Reuse compressed blocks from this store and add new ones to it
    /// (created if missing; may be shared by concurrent builds). The image is
    /// the same with or without it.
    #[arg(long, value_name = "DIR")]
    pub block_cache: Option<PathBuf>,
}

fn parse_block_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    let ok = bytes.is_power_of_two()
        && (squashfs::MIN_BLOCK_SIZE as u64..=squashfs::MAX_BLOCK_SIZE as u64).contains(&bytes);
    if !ok {
        return Err("expected a power of two from 4K to 1M".into());
    }
    Ok(bytes as u32)
}

enum Input {
    Directory(source::DirectorySource),
    TarFile(File, u64),
    Stdin,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let block_cache = super::open_block_cache(args.block_cache.as_deref())?;
    let opts = squashfs::Options {
        compression: args.comp,
        level: args.level,
        block_size: args.block_size,
        jobs: args
            .jobs
            .unwrap_or_else(|| squashfs::Options::default().jobs)
            .max(1),
        xattrs: !args.no_xattrs,
        all_root: args.all_root,
        mtime: args.mtime,
        fragments: !args.no_fragments,
        tail_ends: !args.no_tailends,
        dedup: !args.no_dedup,
        exportable: !args.no_exports,
        block_cache,
    };
    if let Some(level) = args.level
        && let Err(e) = args.comp.check_level(level)
    {
        bail_input!("invalid value '{level}' for '--level': {e}");
    }

    let input = if args.src.as_os_str() == "-" {
        Input::Stdin
    } else {
        let md = match std::fs::metadata(&args.src) {
            Ok(md) => md,
            Err(e) => bail_input!("source {}: {}", args.src.display(), super::io_reason(&e)),
        };
        if md.is_dir() {
            Input::Directory(
                source::DirectorySource::scan(&args.src, opts.xattrs)
                    .context("scanning the source")?,
            )
        } else {
            let f = File::open(&args.src)
                .with_context(|| format!("cannot open {}", args.src.display()))?;
            Input::TarFile(f, md.len())
        }
    };

    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let visible = !global.quiet && !global.json;
    let total = match &input {
        Input::Directory(d) => d.total_bytes,
        Input::TarFile(_, len) => *len,
        Input::Stdin => 0,
    };
    let bar = Arc::new(if total > 0 {
        Bar::bytes("squashfs", total, visible)
    } else {
        Bar::spinner("squashfs", visible)
    });
    let file = output
        .file()
        .try_clone()
        .context("duplicating the output handle")?;
    let writing = || -> anyhow::Result<squashfs::Summary> {
        let mut writer = SquashfsWriter::with_progress(
            file,
            opts.clone(),
            Arc::clone(&bar) as Arc<dyn Progress>,
        )?;
        match input {
            Input::Directory(d) => d.add_to(&mut writer).map_err(input_or_failure)?,
            Input::TarFile(f, _) => {
                source::add_tar(&mut writer, std::io::BufReader::with_capacity(1 << 20, f))
                    .map_err(input_or_failure)?;
            }
            Input::Stdin => {
                if std::io::stdin().is_terminal() {
                    bail_input!("source is '-' but stdin is a terminal; pipe a tar stream in");
                }
                source::add_tar(&mut writer, std::io::stdin().lock()).map_err(input_or_failure)?;
            }
        }
        Ok(writer.finish()?)
    };
    let summary = writing().with_context(|| format!("writing {}", args.out.display()));
    bar.finish();
    let summary = summary?;
    let report_line = |seconds: f64| {
        let cache = summary
            .block_cache
            .as_ref()
            .map_or(String::new(), |s| format!("; {}", s.describe("blocks")));
        format!(
            "wrote {} ({}, {} inodes, {} {} KiB blocks) from {} in {:.1} s; {} duplicate files, {} sparse, {} blocks stored raw untried{cache}",
            args.out.display(),
            human_bytes(summary.image_bytes),
            summary.inodes,
            summary.compression,
            summary.block_size / 1024,
            human_bytes(summary.bytes_in),
            seconds,
            summary.duplicate_files,
            human_bytes(summary.sparse_bytes),
            summary.raw_by_probe_blocks,
        )
    };
    super::finish_image(output, &summary, started, global, report_line)?;
    super::warn_block_cache(summary.block_cache.as_ref(), global);
    // A warning, so on stderr even with --json (stdout stays the report).
    if !global.quiet && summary.skipped_xattrs > 0 {
        eprintln!(
            "osforge: warning: {} extended attributes outside user., trusted. and security. were not stored",
            summary.skipped_xattrs
        );
    }
    Ok(())
}

/// An entry the source may not hold (`..`, a path through a symlink) is bad
/// input, exit 2; anything else is the build failing.
fn input_or_failure(e: squashfs::Error) -> anyhow::Error {
    match e {
        squashfs::Error::InvalidEntry { .. } => {
            anyhow::Error::new(crate::error::InputError(e.to_string()))
        }
        other => other.into(),
    }
}
