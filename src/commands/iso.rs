//! `osforge iso STAGING OUT.iso --volume-id ID [--bios] [--uefi]`: a hybrid
//! ISO from a staged directory, booting through GRUB built on the spot.
//!
//! Without `--bios`/`--uefi` the ISO is a plain data disc (a cloud-init
//! seed or an OpenStack config drive). With them, `STAGING/boot/grub/grub.cfg`
//! must exist: GRUB's embedded config loads it after finding the disc
//! (see [`crate::boot::grub`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::bail_input;
use crate::boot::grub::{self, BiosImages, EfiImages, GrubBoot, GrubOptions};
use crate::cli::GlobalArgs;
use crate::formats::iso::{self, EspImage, IsoImage, IsoOptions};
use crate::util::output::AtomicOutput;
use crate::util::progress::Bar;
use crate::util::size::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory whose contents become the ISO's root.
    pub staging: PathBuf,
    /// The image to write; replaced only once it is complete.
    pub out: PathBuf,
    /// Volume id (label), up to 32 characters, e.g. config-2.
    #[arg(long, short = 'V')]
    pub volume_id: String,
    /// Boot from BIOS (CD and disk) through GRUB i386-pc.
    #[arg(long)]
    pub bios: bool,
    /// Boot from UEFI (CD and disk) through GRUB x86_64-efi.
    #[arg(long)]
    pub uefi: bool,
    /// Volume dates and the latest file time kept, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    pub mtime: Option<i64>,
    /// Use this GRUB i386-pc-eltorito image instead of building one (implies --bios).
    #[arg(long)]
    pub bios_image: Option<PathBuf>,
    /// MBR boot code for the BIOS image (default: GRUB's boot_hybrid.img).
    #[arg(long)]
    pub mbr_code: Option<PathBuf>,
    /// Use this FAT image as the ESP instead of building one (implies --uefi).
    #[arg(long)]
    pub esp_image: Option<PathBuf>,
    /// GRUB's lib dir, holding i386-pc/ and x86_64-efi/.
    #[arg(long, default_value = grub::DEFAULT_LIB_DIR)]
    pub grub_dir: PathBuf,
    /// Another GRUB module to embed (repeatable).
    #[arg(long = "grub-module", value_name = "MODULE")]
    pub grub_modules: Vec<String>,
    /// Name of the marker file /.disk/id/ID GRUB searches for (default: derived from the tree).
    #[arg(long)]
    pub boot_id: Option<String>,
    /// Publisher id.
    #[arg(long)]
    pub publisher: Option<String>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let bios = args.bios || args.bios_image.is_some();
    let uefi = args.uefi || args.esp_image.is_some();
    match std::fs::metadata(&args.staging) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail_input!("staging {}: not a directory", args.staging.display()),
        Err(e) => bail_input!(
            "staging {}: {}",
            args.staging.display(),
            super::io_reason(&e)
        ),
    }
    for (flag, path) in [
        ("--bios-image", &args.bios_image),
        ("--mbr-code", &args.mbr_code),
        ("--esp-image", &args.esp_image),
    ] {
        if let Some(path) = path
            && !path.is_file()
        {
            bail_input!("{flag} {}: no such file", path.display());
        }
    }
    let builds_grub = (bios && args.bios_image.is_none()) || (uefi && args.esp_image.is_none());
    if builds_grub && !args.staging.join(grub::CONFIG_PATH).is_file() {
        bail_input!(
            "{} has no {}; GRUB's embedded config loads it (write one, or leave out --bios/--uefi for a data-only ISO)",
            args.staging.display(),
            grub::CONFIG_PATH
        );
    }

    let mut options = IsoOptions::new(&args.volume_id);
    options.mtime = args.mtime;
    options.publisher = args.publisher.clone();
    let mut iso = match IsoImage::new(options) {
        Ok(iso) => iso,
        Err(e) => bail_input!("{e}"),
    };
    iso.add_tree(&args.staging)
        .with_context(|| format!("staging {}", args.staging.display()))?;

    if bios || uefi {
        let boot = prepare_boot(&args, &iso, bios, uefi)?;
        match boot.install(&mut iso) {
            Err(grub::Error::Iso(iso::Error::DuplicatePath { path })) => bail_input!(
                "{} already has {path}, which osforge adds to boot the ISO; remove it from the staging directory",
                args.staging.display()
            ),
            other => other.context("adding the boot images")?,
        }
    }

    let total = iso.planned_size().context("laying out the image")?;
    let mut output = AtomicOutput::create(&args.out)
        .with_context(|| format!("cannot create {} (in its directory)", args.out.display()))?;
    let bar = Arc::new(Bar::bytes("iso", total, !global.quiet && !global.json));
    let summary = iso
        .write(output.file(), bar.as_ref())
        .with_context(|| format!("writing {}", args.out.display()));
    bar.finish();
    let summary = summary?;
    let report_line = |seconds: f64| {
        let boots: Vec<&str> = [(summary.bios, "BIOS"), (summary.uefi, "UEFI")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        format!(
            "wrote {} ({}, volume id '{}', {} files, {} directories, boots {}) in {:.1} s",
            args.out.display(),
            human_bytes(summary.size_bytes),
            summary.volume_id,
            summary.files,
            summary.directories,
            if boots.is_empty() {
                "nothing (data only)".to_string()
            } else {
                boots.join(" + ")
            },
            seconds,
        )
    };
    super::finish_image(output, &summary, started, global, report_line)?;
    if !global.quiet && !global.json {
        for warning in &summary.warnings {
            eprintln!("osforge: warning: {warning}");
        }
    }
    Ok(())
}

/// GRUB images for the platforms asked for, built unless given.
fn prepare_boot(args: &Args, iso: &IsoImage, bios: bool, uefi: bool) -> anyhow::Result<GrubBoot> {
    let boot_id = args
        .boot_id
        .clone()
        .unwrap_or_else(|| grub::boot_id(iso.fingerprint()));
    let mut options = GrubOptions::new(&boot_id);
    options.bios = bios && args.bios_image.is_none();
    options.uefi = uefi && args.esp_image.is_none();
    options.lib_dir = args.grub_dir.clone();
    options.extra_modules = args.grub_modules.clone();
    options.mtime = args.mtime;
    let mut boot = match grub::build(&options) {
        Ok(boot) => boot,
        Err(e @ (grub::Error::InvalidBootId { .. } | grub::Error::InvalidModule { .. })) => {
            bail_input!("{e}")
        }
        Err(e) => return Err(e).context("building GRUB's boot images"),
    };
    if let Some(path) = &args.bios_image {
        let eltorito =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mbr_path = args.mbr_code.clone().unwrap_or_else(|| {
            args.grub_dir
                .join(grub::BIOS_PLATFORM)
                .join("boot_hybrid.img")
        });
        let mbr_code =
            std::fs::read(&mbr_path).with_context(|| format!("reading {}", mbr_path.display()))?;
        boot.bios = Some(BiosImages { eltorito, mbr_code });
    } else if let (Some(path), Some(bios)) = (&args.mbr_code, boot.bios.as_mut()) {
        bios.mbr_code =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    if let Some(path) = &args.esp_image {
        boot.efi = Some(EfiImages {
            files: Vec::new(),
            esp: EspImage::File(path.clone()),
        });
    }
    Ok(boot)
}
