//! `osforge qcow2 IN OUT`: the qcow2 writer as a standalone converter, like
//! `qemu-img convert -O qcow2` for raw images and pipes.

use std::fs::File;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bail_input;
use crate::cli::GlobalArgs;
use crate::formats::Progress;
use crate::formats::qcow2::{self, Compression, Options, Qcow2Writer, RawFile};
use crate::util::output::AtomicOutput;
use crate::util::progress::Bar;
use crate::util::size::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A raw disk image (file or block device), or - for raw bytes on stdin.
    pub input: PathBuf,
    /// The qcow2 image to write; replaced only once it is complete.
    pub out: PathBuf,
    /// How to store data clusters: none, zlib, or zstd (zstd needs qemu 5.1 or later).
    #[arg(long, default_value = "none", value_parser = clap::value_parser!(Compression))]
    pub compress: Compression,
    /// Compression level: zlib 1-9 (default 9), zstd 1-22 (default 3, as qemu).
    #[arg(long)]
    pub level: Option<u32>,
    /// Cluster size, a power of two from 4K to 2M.
    #[arg(long, default_value = "64K", value_parser = parse_cluster_size)]
    pub cluster_size: u32,
    /// Compression threads (default: one per CPU). The image does not depend on it.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Reuse compressed clusters from this store and add new ones to it
    /// (created if missing; may be shared by concurrent builds). The image is
    /// the same with or without it.
    #[arg(long, value_name = "DIR")]
    pub block_cache: Option<PathBuf>,
}

fn parse_cluster_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    let ok = bytes.is_power_of_two()
        && (qcow2::MIN_CLUSTER_SIZE as u64..=qcow2::MAX_CLUSTER_SIZE as u64).contains(&bytes);
    if !ok {
        return Err("expected a power of two from 4K to 2M".into());
    }
    Ok(bytes as u32)
}

enum Input {
    Disk(RawFile),
    /// stdin, a FIFO or a character device: read once, front to back. Its length
    /// need not be given (no `--size`): the writer puts the L1 table and header,
    /// the only parts that depend on it, at the end and at offset 0 last.
    Stream(Box<dyn std::io::Read + Send>),
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let opts = Options {
        cluster_size_bytes: args.cluster_size,
        compression: args.compress,
        level: args.level,
        jobs: args.jobs.unwrap_or_else(|| Options::default().jobs).max(1),
        block_cache: None,
    };
    // Every argument is checked before the output is created.
    if let Err(e) = opts.validate() {
        bail_input!("{e}");
    }

    let input = if args.input.as_os_str() == "-" {
        if std::io::stdin().is_terminal() {
            bail_input!("input is '-' but stdin is a terminal; pipe a raw disk image in");
        }
        Input::Stream(Box::new(std::io::stdin()))
    } else {
        let md = match std::fs::metadata(&args.input) {
            Ok(md) => md,
            Err(e) => bail_input!("input {}: {}", args.input.display(), super::io_reason(&e)),
        };
        if md.is_dir() {
            bail_input!(
                "input {} is a directory, not a disk image",
                args.input.display()
            );
        }
        let file = File::open(&args.input)
            .with_context(|| format!("cannot open {}", args.input.display()))?;
        use std::os::unix::fs::FileTypeExt;
        if md.is_file() || md.file_type().is_block_device() {
            Input::Disk(
                RawFile::new(file)
                    .with_context(|| format!("cannot get the size of {}", args.input.display()))?,
            )
        } else {
            Input::Stream(Box::new(file))
        }
    };

    let opts = Options {
        block_cache: super::open_block_cache(args.block_cache.as_deref())?,
        ..opts
    };
    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let visible = !global.quiet && !global.json;
    let bar = Arc::new(match &input {
        Input::Disk(disk) => Bar::bytes("qcow2", qcow2::DiskSource::len_bytes(disk), visible),
        Input::Stream(_) => Bar::spinner("qcow2", visible),
    });
    let writer = Qcow2Writer::with_progress(opts, Arc::clone(&bar) as Arc<dyn Progress>)?;
    let file = output.file();
    let summary = match input {
        Input::Disk(disk) => writer.write_disk(&disk, file),
        Input::Stream(mut stream) => writer.write_stream(&mut *stream, file),
    };
    bar.finish();
    let summary = summary.with_context(|| format!("writing {}", args.out.display()))?;
    let report_line = |seconds: f64| {
        let cache = summary
            .block_cache
            .as_ref()
            .map_or(String::new(), |s| format!("; {}", s.describe("clusters")));
        format!(
            "wrote {} ({}, virtual {}, {} KiB clusters: {} stored, {} compressed with {}, {} zero, {} stored untried) in {:.1} s{cache}",
            args.out.display(),
            human_bytes(summary.file_size_bytes),
            human_bytes(summary.virtual_size_bytes),
            summary.cluster_size_bytes / 1024,
            summary.allocated_clusters,
            summary.compressed_clusters,
            summary.compression,
            summary.zero_clusters,
            summary.raw_by_probe_clusters,
            seconds,
        )
    };
    super::finish_image(output, &summary, started, global, report_line)?;
    super::warn_block_cache(summary.block_cache.as_ref(), global);
    Ok(())
}
