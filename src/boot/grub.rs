//! GRUB 2 boot images for hybrid ISOs, made with `grub-mkimage`.
//!
//! Not a format: this runs GRUB's own tool (grub-pc-bin for i386-pc,
//! grub-efi-amd64-bin for x86_64-efi), because GRUB's core images are
//! linked from its modules by its own rules. What osforge decides is what
//! goes in, and how the booted GRUB finds its configuration:
//!
//! - One core image per firmware, with every module it needs embedded, so
//!   nothing but `grub.cfg` has to be on the ISO (no `boot/grub/i386-pc/`
//!   module directory, as grub-mkstandalone images also need none). The
//!   BIOS image is `i386-pc-eltorito` (`cdboot.img` + core), the UEFI one
//!   `BOOTX64.EFI`; the MBR code is GRUB's `boot_hybrid.img`.
//! - The same early config is embedded in both:
//!   ```text
//!   search --no-floppy --set=root --file /.disk/id/<boot id>
//!   set prefix=($root)/boot/grub
//!   configfile /boot/grub/grub.cfg
//!   ```
//!   Searching for a file only this build has (as debian-cd does with
//!   `/.disk/id/<uuid>`) finds the ISO's filesystem whatever the firmware
//!   calls it: `(cd)` or `(cd0)` as a CD, `(hd0)` or a partition as a disk,
//!   and never another disk labelled `config-2` (a real config drive
//!   attached next to Airship's ISO). Searching by label would pick that
//!   one; by the ISO's date-derived UUID (grub-mkrescue) two builds with the
//!   same `SOURCE_DATE_EPOCH` would collide. The id derives from the
//!   staged tree ([`boot_id`]), so reproducible builds keep it.
//!   The early config is run by GRUB's rescue parser, which has no `if`:
//!   it stays three plain commands.
//! - Modules: [`BIOS_MODULES`] and [`EFI_MODULES`], enough to read the ISO
//!   (iso9660 over biosdisk/EFI disks, MBR and GPT partitions, FAT), find
//!   it (search), run a menu (normal, configfile, echo, test), talk over a
//!   serial console (serial, terminal), boot Linux (linux) and power off
//!   (halt); no video modules beyond the EFI framebuffer (efi_gop), which
//!   a kernel's console needs on real UEFI machines.
//!
//! `grub-mkimage` output is deterministic for the same inputs (GRUB ≥ 2.04
//! writes fixed PE timestamps), so reproducible builds stay reproducible.
//!
//! A live ISO, end to end:
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use std::path::Path;
//! use osforge::boot::grub::{self, GrubOptions};
//! use osforge::formats::NoProgress;
//! use osforge::formats::iso::{IsoImage, IsoOptions};
//! use osforge::util::output::AtomicOutput;
//!
//! let mut options = IsoOptions::new("config-2");
//! options.mtime = Some(1_700_000_000); // SOURCE_DATE_EPOCH
//! let mut iso = IsoImage::new(options)?;
//! iso.add_file("live/vmlinuz", Path::new("build/vmlinuz"))?;
//! iso.add_file("live/initrd.img", Path::new("build/initrd.img"))?;
//! iso.add_file("live/filesystem.squashfs", Path::new("build/rootfs.squashfs"))?;
//! iso.add_tree_at("openstack/latest", Path::new("build/seed"))?;
//! iso.add_bytes(grub::CONFIG_PATH, "menuentry live { linux /live/vmlinuz boot=live }\n")?;
//! // Once everything else is staged: GRUB for BIOS and UEFI, the ESP, the
//! // marker file, the El Torito entries and the partition tables.
//! grub::build(&GrubOptions::for_image(&iso))?.install(&mut iso)?;
//! let mut out = AtomicOutput::create(Path::new("live.iso"))?;
//! iso.write(out.file(), &NoProgress)?;
//! out.commit()?;
//! # Ok(())
//! # }
//! ```

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::formats::fat::{self, FatImage, FatOptions};
use crate::formats::iso::{
    self, BiosBoot, BootConfig, EspImage, EspPlacement, IsoImage, PartitionTable, UefiBoot,
};

/// Where Debian and Ubuntu install GRUB's platform directories.
pub const DEFAULT_LIB_DIR: &str = "/usr/lib/grub";
/// The BIOS platform directory under the lib dir.
pub const BIOS_PLATFORM: &str = "i386-pc";
/// The UEFI platform directory under the lib dir.
pub const EFI_PLATFORM: &str = "x86_64-efi";
/// The configuration the early config loads; the live-ISO builder writes it.
pub const CONFIG_PATH: &str = "boot/grub/grub.cfg";
/// GRUB's prefix on the ISO.
pub const PREFIX: &str = "/boot/grub";
/// Where the BIOS El Torito image is stored on the ISO (as grub-mkrescue
/// stores it).
pub const BIOS_IMAGE_PATH: &str = "boot/grub/i386-pc/eltorito.img";
/// Where the UEFI loader is stored, in the ESP and (for firmware that reads
/// ISO 9660 itself) in the ISO tree.
pub const EFI_LOADER_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// The directory of the marker file the early config searches for.
pub const BOOT_ID_DIR: &str = ".disk/id";
/// The FAT label of the ESP image.
pub const ESP_LABEL: &str = "EFIBOOT";
/// GRUB's MBR code for isohybrid images.
const BOOT_HYBRID_IMG: &str = "boot_hybrid.img";

/// Modules embedded in the BIOS core image.
pub const BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "iso9660",
    "part_msdos",
    "part_gpt",
    "fat",
    "search",
    "configfile",
    "normal",
    "echo",
    "test",
    "ls",
    "cat",
    "serial",
    "terminal",
    "linux",
    "halt",
    "reboot",
];

/// Modules embedded in `BOOTX64.EFI`.
pub const EFI_MODULES: &[&str] = &[
    "iso9660",
    "part_msdos",
    "part_gpt",
    "fat",
    "search",
    "configfile",
    "normal",
    "echo",
    "test",
    "ls",
    "cat",
    "serial",
    "terminal",
    "linux",
    "halt",
    "reboot",
    "efi_gop",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("grub-mkimage not found on PATH (install grub-common, or grub2-tools on Fedora)")]
    MkimageMissing,
    #[error("GRUB's {platform} files are not in {dir} (install {package})")]
    PlatformMissing {
        platform: &'static str,
        dir: PathBuf,
        package: &'static str,
    },
    #[error("invalid boot id '{id}': use 1 to 64 letters, digits, '.', '_' or '-'")]
    InvalidBootId { id: String },
    #[error("invalid GRUB module name '{name}'")]
    InvalidModule { name: String },
    #[error("cannot run {tool}")]
    Running {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("{tool} for {platform} failed ({status}): {stderr}")]
    MkimageFailed {
        tool: String,
        platform: &'static str,
        status: String,
        stderr: String,
    },
    #[error("cannot read {path}")]
    Reading {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("building the ESP image failed")]
    Esp(#[from] fat::Error),
    #[error("adding the boot files to the ISO failed")]
    Iso(#[from] iso::Error),
}

/// What to build.
#[derive(Debug, Clone)]
pub struct GrubOptions {
    /// The marker's name under `/.disk/id/`; see [`boot_id`].
    pub boot_id: String,
    pub bios: bool,
    pub uefi: bool,
    /// GRUB's lib dir, holding `i386-pc/` and `x86_64-efi/`.
    pub lib_dir: PathBuf,
    /// `grub-mkimage` to run; found on PATH when `None`.
    pub mkimage: Option<PathBuf>,
    /// Modules to embed besides [`BIOS_MODULES`] / [`EFI_MODULES`].
    pub extra_modules: Vec<String>,
    /// Timestamp of the ESP's FAT entries (Unix seconds).
    pub mtime: Option<i64>,
    /// UEFI boot files to use instead of a GRUB built here (paths in the
    /// ESP and their contents): a signed shim as [`EFI_LOADER_PATH`] and
    /// what it loads. Nothing is embedded in them, so the files include a
    /// config that finds the ISO ([`early_config`]) where their GRUB reads it.
    pub efi_files: Option<Vec<(String, Vec<u8>)>>,
}

impl GrubOptions {
    pub fn new(boot_id: &str) -> Self {
        GrubOptions {
            boot_id: boot_id.to_string(),
            bios: true,
            uefi: true,
            lib_dir: PathBuf::from(DEFAULT_LIB_DIR),
            mkimage: None,
            extra_modules: Vec::new(),
            mtime: None,
            efi_files: None,
        }
    }
}

impl GrubOptions {
    /// Options for booting `iso` on BIOS and UEFI: the boot id derived from
    /// its staged tree ([`boot_id`]) and its `mtime` for the ESP. Call it
    /// once everything but the boot files is staged.
    pub fn for_image(iso: &IsoImage) -> Self {
        GrubOptions {
            mtime: iso.options().mtime,
            ..GrubOptions::new(&boot_id(iso.fingerprint()))
        }
    }
}

/// The BIOS El Torito image and the MBR code that boots it from a disk.
#[derive(Debug, Clone)]
pub struct BiosImages {
    pub eltorito: Vec<u8>,
    pub mbr_code: Vec<u8>,
}

/// The UEFI loader and the FAT image (ESP) that holds it.
#[derive(Debug, Clone)]
pub struct EfiImages {
    /// The ESP's files, also stored in the ISO tree (for firmware that
    /// reads ISO 9660 itself): the loader at [`EFI_LOADER_PATH`] and, for
    /// Secure Boot, what it loads.
    pub files: Vec<(String, Vec<u8>)>,
    pub esp: EspImage,
}

/// Everything a hybrid ISO needs to boot through GRUB, ready for
/// [`GrubBoot::install`]. Fields are public so a caller can swap in its
/// own images (a signed shim, an existing `efiboot.img`).
#[derive(Debug, Clone)]
pub struct GrubBoot {
    pub boot_id: String,
    pub early_config: String,
    pub bios: Option<BiosImages>,
    pub efi: Option<EfiImages>,
}

/// A boot id for an image whose staged tree has `fingerprint`
/// ([`IsoImage::fingerprint`]): UUID-shaped, like debian-cd's.
pub fn boot_id(fingerprint: u64) -> String {
    let hash = xxhash_rust::xxh3::xxh3_128(&fingerprint.to_le_bytes());
    let hex = format!("{hash:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The early config embedded in both core images.
pub fn early_config(boot_id: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "search --no-floppy --set=root --file /{BOOT_ID_DIR}/{boot_id}"
    );
    let _ = writeln!(text, "set prefix=($root){PREFIX}");
    let _ = writeln!(text, "configfile /{CONFIG_PATH}");
    text
}

fn check_boot_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidBootId { id: id.to_string() })
    }
}

/// Builds the images `options` asks for.
pub fn build(options: &GrubOptions) -> Result<GrubBoot, Error> {
    check_boot_id(&options.boot_id)?;
    for name in &options.extra_modules {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
        if !ok {
            return Err(Error::InvalidModule { name: name.clone() });
        }
    }
    let early_config = early_config(&options.boot_id);
    let work = tempfile::Builder::new()
        .prefix("osforge-grub-")
        .tempdir()
        .map_err(|e| Error::Running {
            tool: "a temporary directory".into(),
            source: e,
        })?;
    // Removed on drop, and by the signal handler if osforge is interrupted.
    let _registered = crate::util::cleanup::Registered::new(work.path());
    let config_path = work.path().join("early.cfg");
    std::fs::write(&config_path, &early_config).map_err(|e| Error::Running {
        tool: "a temporary directory".into(),
        source: e,
    })?;
    let mkimage = match &options.mkimage {
        Some(path) => path.clone(),
        None if options.bios || options.uefi => find_mkimage().ok_or(Error::MkimageMissing)?,
        None => PathBuf::from("grub-mkimage"),
    };
    let mkimage = Mkimage {
        tool: &mkimage,
        lib_dir: &options.lib_dir,
        config: &config_path,
        work: work.path(),
        extra: &options.extra_modules,
    };

    let bios = if options.bios {
        let eltorito = mkimage.run(
            BIOS_PLATFORM,
            "i386-pc-eltorito",
            BIOS_MODULES,
            "grub-pc-bin",
        )?;
        let mbr_path = options.lib_dir.join(BIOS_PLATFORM).join(BOOT_HYBRID_IMG);
        let mbr_code = std::fs::read(&mbr_path).map_err(|e| Error::Reading {
            path: mbr_path,
            source: e,
        })?;
        Some(BiosImages { eltorito, mbr_code })
    } else {
        None
    };
    let efi = if let Some(files) = &options.efi_files {
        Some(EfiImages {
            esp: EspImage::Bytes(esp_image(files, options.mtime)?),
            files: files.clone(),
        })
    } else if options.uefi {
        let loader = mkimage.run(
            EFI_PLATFORM,
            "x86_64-efi",
            EFI_MODULES,
            "grub-efi-amd64-bin",
        )?;
        let files = vec![(EFI_LOADER_PATH.to_string(), loader)];
        Some(EfiImages {
            esp: EspImage::Bytes(esp_image(&files, options.mtime)?),
            files,
        })
    } else {
        None
    };
    Ok(GrubBoot {
        boot_id: options.boot_id.clone(),
        early_config,
        bios,
        efi,
    })
}

/// A FAT image holding `files` (the loader as `EFI/BOOT/BOOTX64.EFI`):
/// the El Torito UEFI image and the ESP of a hybrid ISO (`efiboot.img`).
/// FAT12 for a GRUB-sized loader, which every UEFI implementation reads.
pub fn esp_image(files: &[(String, Vec<u8>)], mtime: Option<i64>) -> Result<Vec<u8>, fat::Error> {
    let mut image = FatImage::new(FatOptions {
        label: Some(ESP_LABEL.into()),
        mtime,
        ..FatOptions::default()
    })?;
    for (path, contents) in files {
        image.add_bytes(path, contents.clone())?;
    }
    image.to_vec()
}

impl GrubBoot {
    /// Adds the boot files to `iso` and sets its boot setup:
    /// `/.disk/id/<boot id>`, the BIOS image at [`BIOS_IMAGE_PATH`], the
    /// UEFI loader at [`EFI_LOADER_PATH`], the ESP appended after the files,
    /// and a GPT with a hybrid MBR. The caller stages `/boot/grub/grub.cfg`.
    pub fn install(&self, iso: &mut IsoImage) -> Result<(), Error> {
        iso.add_bytes(
            &format!("{BOOT_ID_DIR}/{}", self.boot_id),
            format!("{}\n", self.boot_id),
        )?;
        let mut boot = BootConfig {
            partition_table: PartitionTable::GptHybridMbr,
            ..BootConfig::default()
        };
        if let Some(bios) = &self.bios {
            iso.add_bytes(BIOS_IMAGE_PATH, bios.eltorito.clone())?;
            boot.bios = Some(BiosBoot::grub2(BIOS_IMAGE_PATH, bios.mbr_code.clone()));
        }
        if let Some(efi) = &self.efi {
            for (path, contents) in &efi.files {
                iso.add_bytes(path, contents.clone())?;
            }
            boot.uefi = Some(UefiBoot {
                esp: efi.esp.clone(),
                placement: EspPlacement::Appended,
            });
        }
        iso.set_boot(boot)?;
        Ok(())
    }
}

/// One `grub-mkimage` setup: tool, platform files, embedded config, scratch dir.
pub(crate) struct Mkimage<'a> {
    pub(crate) tool: &'a Path,
    pub(crate) lib_dir: &'a Path,
    pub(crate) config: &'a Path,
    pub(crate) work: &'a Path,
    pub(crate) extra: &'a [String],
}

impl Mkimage<'_> {
    /// Runs `grub-mkimage -O format` with `modules` and returns the image.
    pub(crate) fn run(
        &self,
        platform: &'static str,
        format: &str,
        modules: &[&str],
        package: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let dir = self.lib_dir.join(platform);
        if !dir.join("moddep.lst").is_file() {
            return Err(Error::PlatformMissing {
                platform,
                dir,
                package,
            });
        }
        let out = self.work.join(format!("{platform}.img"));
        let tool = self.tool.display().to_string();
        // Tracked: an interrupted build stops it before removing its work folder.
        let output = crate::util::process::output(
            Command::new(self.tool)
                .arg("--directory")
                .arg(&dir)
                .arg("--format")
                .arg(format)
                .arg("--prefix")
                .arg(PREFIX)
                .arg("--config")
                .arg(self.config)
                .arg("--output")
                .arg(&out)
                .args(modules)
                .args(self.extra),
        )
        .map_err(|e| Error::Running {
            tool: tool.clone(),
            source: e,
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::MkimageFailed {
                tool,
                platform,
                status: output.status.to_string(),
                stderr: stderr.trim().lines().last().unwrap_or("").to_string(),
            });
        }
        std::fs::read(&out).map_err(|e| Error::Reading {
            path: out,
            source: e,
        })
    }
}

/// `grub-mkimage` (Debian) or `grub2-mkimage` (Fedora) on PATH.
pub(crate) fn find_mkimage() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["grub-mkimage", "grub2-mkimage"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_are_uuid_shaped_and_stable() {
        let id = boot_id(42);
        assert_eq!(id.len(), 36);
        assert_eq!(id, boot_id(42));
        assert_ne!(id, boot_id(43));
        assert!(check_boot_id(&id).is_ok());
    }

    #[test]
    fn the_early_config_searches_for_the_marker_then_loads_grub_cfg() {
        let text = early_config("abc");
        assert_eq!(
            text,
            "search --no-floppy --set=root --file /.disk/id/abc\n\
             set prefix=($root)/boot/grub\n\
             configfile /boot/grub/grub.cfg\n"
        );
    }

    #[test]
    fn boot_ids_that_would_break_the_config_are_refused() {
        for bad in ["", "a b", "a;b", "../x", ".hidden", &"x".repeat(65)] {
            assert!(check_boot_id(bad).is_err(), "{bad}");
        }
    }
}
