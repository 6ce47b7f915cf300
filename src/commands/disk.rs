//! `osforge disk --profile P --root DIR OUT`: a bootable GPT disk image
//! (qcow2 or raw) from a root tree and a profile's disk layout, without the
//! rest of the pipeline. `osforge build --type qcow2` does the same from the
//! configured rootfs it builds; this command takes a tree you have (and is
//! what the format-level tests drive).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::artifacts::disk::{self, DiskImage, Ids, ImageFormat, Output};
use crate::bail_input;
use crate::cli::GlobalArgs;
use crate::formats::Progress;
use crate::formats::qcow2::Compression;
use crate::profile::{self, ByteSize, ProfileError, SearchPath};
use crate::util::progress::Bar;
use crate::util::size::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The profile whose disk layout, kernel command line and GRUB menu to use.
    #[arg(long, short, value_name = "NAME|PATH")]
    pub profile: String,
    /// The root tree to put on the disk (owners, modes and xattrs are kept);
    /// it is only read.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// The images to write, each replaced only once all are complete: raw for
    /// `.raw` and `.img`, qcow2 otherwise. Several outputs share one build, so
    /// a qcow2 and a raw image hold the same disk.
    #[arg(required = true, value_name = "OUT")]
    pub outs: Vec<PathBuf>,
    /// qcow2 cluster compression (default: the profile's disk.compression).
    #[arg(long, value_parser = clap::value_parser!(Compression))]
    pub compression: Option<Compression>,
    /// Compression level: zlib 1-9, zstd 1-22.
    #[arg(long)]
    pub level: Option<u32>,
    /// The disk's size instead of the profile's disk.size (the rest-sized partition follows).
    #[arg(long, value_parser = parse_byte_size)]
    pub size: Option<ByteSize>,
    /// Set a template variable the profile declares: --var hostname=node-1.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = profile::parse_var_arg)]
    pub vars: Vec<(String, String)>,
    /// Kernel parameters to add to the profile's command line.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub cmdline_append: Option<String>,
    /// GRUB's lib dir (default: the tree's /usr/lib/grub when complete, else the host's).
    #[arg(long, value_name = "DIR")]
    pub grub_dir: Option<PathBuf>,
    /// Compression threads (default: one per CPU).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Reuse compressed qcow2 clusters from this store and add new ones to it
    /// (created if missing). The image is the same with or without it.
    #[arg(long, value_name = "DIR")]
    pub block_cache: Option<PathBuf>,
    /// Reproducible build: identifiers derived from the profile, fixed filesystem times.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "EPOCH")]
    pub source_date_epoch: Option<u64>,
}

fn parse_byte_size(text: &str) -> Result<ByteSize, String> {
    ByteSize::try_from(text.to_string())
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let search = SearchPath::from_env();
    let profile = profile::load(&args.profile, &search, &args.vars)
        .map_err(ProfileError::into_input_error)?;
    let host = profile
        .render_host_appending(args.cmdline_append.as_deref())
        .map_err(ProfileError::into_input_error)?;
    let Some(mut layout) = profile.disk.clone() else {
        bail_input!(
            "profile {} has no disk: section (inherit qcow2-host, or add one)",
            profile.name
        );
    };
    if let Some(size) = args.size {
        layout.size = size;
        if let Err(e) = layout.check() {
            bail_input!("--size {size}: {}", e.message);
        }
    }
    match std::fs::metadata(&args.root) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail_input!("--root {}: not a directory", args.root.display()),
        Err(e) => bail_input!("--root {}: {e}", args.root.display()),
    }
    let qcow2 = ImageFormat::Qcow2 {
        compression: args
            .compression
            .unwrap_or_else(|| disk::profile_compression(layout.compression)),
        level: args.level,
    };
    let outputs: Vec<Output> = args
        .outs
        .iter()
        .map(|path| Output {
            format: format_from_extension(path).unwrap_or(qcow2),
            path: path.clone(),
        })
        .collect();
    let template = disk::boot::find_grub_template(&search.template_dirs)
        .map_err(|e| anyhow::Error::new(crate::error::InputError(e.to_string())))?;
    let scratch_parent = match args.outs[0].parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let title = format!("{} ({})", profile.description, host.hostname);
    let cmdline = host.kernel_cmdline.to_string();
    let image = DiskImage {
        rootfs: &args.root,
        disk: &layout,
        profile: &profile.name,
        hostname: &host.hostname,
        title: &title,
        kernel_cmdline: &cmdline,
        grub_template: &template,
        ids: match args.source_date_epoch {
            Some(epoch) => Ids::Derived(format!("{}:{epoch}", profile.name)),
            None => Ids::Random,
        },
        fake_time: args.source_date_epoch,
        scratch_parent: &scratch_parent,
        grub_lib_dir: args.grub_dir.as_deref(),
        jobs: crate::pipeline::jobs_or_default(args.jobs),
        block_cache: super::open_block_cache(args.block_cache.as_deref())?,
    };
    let show = !global.quiet && !global.json;
    let bar = Arc::new(Bar::bytes(
        "disk",
        layout.size.0 * outputs.len() as u64,
        show,
    ));
    let result = disk::write(&image, &outputs, Arc::clone(&bar) as Arc<dyn Progress>);
    bar.finish();
    let summary = result?;
    for out in &summary.outputs {
        super::warn_block_cache(out.block_cache.as_ref(), global);
    }
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "profile": profile.name, "disk": summary })
        );
    } else if !global.quiet {
        for p in &summary.partitions {
            eprintln!(
                "osforge: partition {} {:<8} {:>6} {:<5} {}",
                p.number,
                p.name,
                ByteSize(p.size_bytes).to_string(),
                format!("{:?}", p.filesystem).to_lowercase(),
                p.mount.as_deref().unwrap_or("")
            );
        }
        for out in &summary.outputs {
            let cache = out
                .block_cache
                .as_ref()
                .map_or(String::new(), |s| format!("; {}", s.describe("clusters")));
            eprintln!(
                "osforge: wrote {} ({}, {} virtual){cache}",
                out.path.display(),
                human_bytes(out.file_size_bytes),
                human_bytes(summary.virtual_size_bytes)
            );
        }
        eprintln!("osforge: done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Raw for `.raw` and `.img`; `None` (qcow2) otherwise.
fn format_from_extension(out: &std::path::Path) -> Option<ImageFormat> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("raw" | "img") => Some(ImageFormat::Raw),
        _ => None,
    }
}
