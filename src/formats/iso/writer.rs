//! [`IsoImage`]: stage entries, set the boot, plan, write.
//!
//! `write` truncates the output, lets hadris-iso write every structure and
//! file once in ascending block order, extends the file over trailing
//! holes, then applies the one patch hadris-iso cannot express (GRUB's MBR
//! boot address, see [`super::boot::MbrBootCode`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::SystemTime;

use hadris_fs::{Content, DateTime};
use hadris_iso::{
    AppendedPartition, BootEntry, BootInfo, ElTorito, Hybrid, IsoId, IsoLevel, Relocation,
};

use super::boot::{
    BootConfig, BootInfoTable, EspImage, EspPlacement, MBR_BOOT_ADDRESS_OFFSET, MBR_CODE_BYTES,
    PartitionTable, UefiBoot,
};
use super::device::{BLOCK_BYTES, SparseFile};
use super::tree::{Staging, iso_path};
use super::{Error, IsoOptions, LONG_ID_MAX_BYTES, VOLUME_ID_MAX_BYTES};
use crate::formats::Progress;

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IsoSummary {
    pub size_bytes: u64,
    pub volume_id: String,
    pub files: u64,
    pub directories: u64,
    pub content_bytes: u64,
    pub bios: bool,
    pub uefi: bool,
    pub partition_table: PartitionTable,
    /// Bytes of the El Torito UEFI image (the ESP), 0 without UEFI boot.
    pub esp_bytes: u64,
    /// What hadris-iso could not store as given (shortened Joliet names,
    /// dropped metadata), one line each.
    pub warnings: Vec<String>,
}

/// An ISO image being put together. Nothing but metadata is read until
/// [`IsoImage::write`].
pub struct IsoImage {
    options: IsoOptions,
    time: DateTime,
    staging: Staging,
    boot: Option<BootConfig>,
}

impl IsoImage {
    pub fn new(options: IsoOptions) -> Result<Self, Error> {
        check_identifier("volume id", &options.volume_id, VOLUME_ID_MAX_BYTES, false)?;
        check_identifier(
            "application id",
            &options.application_id,
            LONG_ID_MAX_BYTES,
            true,
        )?;
        if let Some(publisher) = &options.publisher {
            check_identifier("publisher", publisher, LONG_ID_MAX_BYTES, true)?;
        }
        let seconds = match options.mtime {
            Some(seconds) => seconds,
            None => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        };
        let time = DateTime::from_unix_seconds(seconds).map_err(|_| Error::InvalidIdentifier {
            field: "mtime",
            value: seconds.to_string(),
            reason: "out of range".into(),
        })?;
        let clamp = options.mtime.map(|_| time);
        let staging = Staging::new(clamp, options.rational_rock);
        Ok(IsoImage {
            options,
            time,
            staging,
            boot: None,
        })
    }

    /// The options the image was made with.
    pub fn options(&self) -> &IsoOptions {
        &self.options
    }

    /// Adds everything below the host directory `host` at the root.
    pub fn add_tree(&mut self, host: &Path) -> Result<(), Error> {
        self.staging.add_tree(&[], host)
    }

    /// Adds everything below the host directory `host` under `dir`.
    pub fn add_tree_at(&mut self, dir: &str, host: &Path) -> Result<(), Error> {
        let path = iso_path(dir)?;
        self.staging.add_tree(&path, host)
    }

    /// Adds the host file `host` at `path`; parents are created.
    pub fn add_file(&mut self, path: &str, host: &Path) -> Result<(), Error> {
        self.staging.add_file(&file_path(path)?, host)
    }

    /// Adds `bytes` as the file `path`; parents are created.
    pub fn add_bytes(&mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Result<(), Error> {
        self.staging.add_bytes(&file_path(path)?, bytes.into())
    }

    /// Adds an empty directory.
    pub fn add_dir(&mut self, path: &str) -> Result<(), Error> {
        self.staging.add_dir(&file_path(path)?)
    }

    /// Whether `path` is in the tree.
    pub fn contains(&self, path: &str) -> bool {
        iso_path(path).is_ok_and(|p| self.staging.tree.get(&p).is_some())
    }

    /// A hash of the volume id, the time and every staged path, type, size
    /// and time (no file data is read): the same inputs give the same value
    /// and different trees almost surely different ones. Used to name the
    /// file GRUB's early config searches for.
    pub fn fingerprint(&self) -> u64 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&self.staging.tree.fingerprint().to_le_bytes());
        bytes.extend_from_slice(&self.time.unix_seconds().to_le_bytes());
        bytes.extend_from_slice(self.options.volume_id.as_bytes());
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    /// Bytes of file data staged so far.
    pub fn content_bytes(&self) -> u64 {
        self.staging.content_bytes
    }

    /// Sets how the image boots, once. Images named in `boot` must be in
    /// the tree when the image is planned or written; an ESP stored as a
    /// file ([`EspPlacement::File`]) is added to the tree now.
    pub fn set_boot(&mut self, boot: BootConfig) -> Result<(), Error> {
        if self.boot.is_some() {
            return Err(Error::InvalidBoot {
                reason: "the boot setup is already set".into(),
            });
        }
        check_boot(&boot)?;
        if let Some(UefiBoot {
            esp,
            placement: EspPlacement::File(path),
        }) = &boot.uefi
        {
            let path = file_path(path)?;
            match esp {
                EspImage::Bytes(bytes) => self.staging.add_bytes(&path, bytes.clone())?,
                EspImage::File(host) => self.staging.add_file(&path, host)?,
            }
        }
        self.boot = Some(boot);
        Ok(())
    }

    /// The size the image will have, without writing anything.
    pub fn planned_size(&self) -> Result<u64, Error> {
        let options = self.hadris()?;
        hadris_iso::plan(&self.staging.tree, &options)
            .map(|report| report.size())
            .map_err(|e| Error::Planning(Box::new(e)))
    }

    /// Writes the image to `out`, which is truncated first. Zero blocks are
    /// left as holes. `progress` advances by the bytes of each write.
    pub fn write(&self, out: &File, progress: &dyn Progress) -> Result<IsoSummary, Error> {
        let options = self.hadris()?;
        let mut device = SparseFile::new(out, progress).map_err(Error::Output)?;
        let report = hadris_iso::sync::write(&mut device, &self.staging.tree, &options)
            .map_err(|e| Error::Writing(Box::new(e)))?;
        device.finish(report.size()).map_err(Error::Output)?;
        self.patch_mbr_boot_address(out, &report)?;

        let boot = self.boot.as_ref();
        Ok(IsoSummary {
            size_bytes: report.size(),
            volume_id: self.options.volume_id.clone(),
            files: self.staging.files,
            directories: self.staging.directories,
            content_bytes: self.staging.content_bytes,
            bios: boot.is_some_and(|b| b.bios.is_some()),
            uefi: boot.is_some_and(|b| b.uefi.is_some()),
            partition_table: boot.map_or(PartitionTable::None, |b| b.partition_table),
            esp_bytes: self.esp_content()?.map_or(0, |c| c.len()),
            warnings: report.warnings().iter().map(|w| w.to_string()).collect(),
        })
    }

    /// hadris-iso writes `image block × 4` at MBR byte 432 when there is boot
    /// code (syslinux's convention); GRUB's `boot_hybrid.img` reads the
    /// sector to load from there and needs the sector after `cdboot.img`,
    /// `× 4 + 4`, which is what `xorriso --grub2-mbr` writes. Patched here
    /// rather than forking hadris-iso; the GPT's checksums do not cover the
    /// MBR, so nothing else changes.
    fn patch_mbr_boot_address(&self, out: &File, report: &hadris_fs::Report) -> Result<(), Error> {
        let Some(bios) = self.boot.as_ref().and_then(|b| b.bios.as_ref()) else {
            return Ok(());
        };
        let Some(mbr) = &bios.mbr else {
            return Ok(());
        };
        let path = iso_path(&bios.image)?;
        let extent = report
            .extents(&path)
            .and_then(|extents| extents.first())
            .ok_or_else(|| Error::BootImageMissing {
                path: bios.image.clone(),
            })?;
        let block = extent.offset() / u64::from(BLOCK_BYTES);
        out.write_all_at(
            &mbr.boot_address(block).to_le_bytes(),
            MBR_BOOT_ADDRESS_OFFSET,
        )
        .map_err(Error::Output)
    }

    fn esp_content(&self) -> Result<Option<Content>, Error> {
        let Some(uefi) = self.boot.as_ref().and_then(|b| b.uefi.as_ref()) else {
            return Ok(None);
        };
        Ok(Some(match &uefi.esp {
            EspImage::Bytes(bytes) => Content::bytes(bytes.clone()),
            EspImage::File(path) => {
                hadris_fs::host::file(path).map_err(|e| Error::ReadingSource {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?
            }
        }))
    }

    /// The options hadris-iso gets with the staged tree.
    fn hadris(&self) -> Result<hadris_iso::IsoOptions, Error> {
        let mut options = hadris_iso::IsoOptions::new()
            .with_id(IsoId::Volume, &self.options.volume_id)
            .with_id(IsoId::Application, &self.options.application_id)
            .with_level(IsoLevel::L3)
            .with_rock_ridge()
            // Directories deeper than ISO 9660's 8 levels move to
            // `.rr_moved` (Rock Ridge readers put them back): the dot name
            // of `genisoimage -hide-rr-moved`, so `ls` does not show it.
            .with_relocation(Relocation::DotRrMoved)
            .with_time(self.time);
        if self.options.joliet {
            options = options.with_joliet();
        }
        if let Some(publisher) = &self.options.publisher {
            options = options.with_id(IsoId::Publisher, publisher);
        }
        let Some(boot) = &self.boot else {
            return Ok(options);
        };
        let tree = &self.staging.tree;
        let mut el_torito = ElTorito::new();
        if let Some(bios) = &boot.bios {
            let path = iso_path(&bios.image)?;
            if !tree.get(&path).is_some_and(|n| n.file_type().is_file()) {
                return Err(Error::BootImageMissing {
                    path: bios.image.clone(),
                });
            }
            el_torito = el_torito.with_entry(
                BootEntry::bios(&String::from_utf8_lossy(&path))
                    .with_load_size(bios.load_sectors)
                    .with_boot_info(match bios.boot_info {
                        BootInfoTable::None => BootInfo::None,
                        BootInfoTable::Table => BootInfo::Table,
                        BootInfoTable::Grub2 => BootInfo::Grub2,
                    }),
            );
        }
        let mut appended = None;
        if let (Some(uefi), Some(esp)) = (&boot.uefi, self.esp_content()?) {
            match &uefi.placement {
                EspPlacement::Appended => {
                    let mut entry = BootEntry::uefi_appended(0);
                    // Past 32 MiB (a UKI's ESP) the 16-bit sector count
                    // cannot say the size; with 1 OVMF reads the medium from
                    // the image's start, and FAT stops at its own end.
                    if esp.len() > u64::from(u16::MAX) * 512 {
                        entry = entry.with_load_size(1);
                    }
                    appended = Some(AppendedPartition::esp(esp));
                    el_torito = el_torito.with_entry(entry);
                }
                EspPlacement::File(path) => {
                    // Staged by `set_boot`.
                    let path = file_path(path)?;
                    el_torito =
                        el_torito.with_entry(BootEntry::uefi(&String::from_utf8_lossy(&path)));
                }
            }
        }
        if let Some(catalog) = &boot.catalog_path {
            el_torito = el_torito.with_catalog_path(&String::from_utf8_lossy(&file_path(catalog)?));
        }
        if boot.bios.is_some() || boot.uefi.is_some() {
            options = options.with_el_torito(el_torito);
        }
        let hybrid = match boot.partition_table {
            PartitionTable::None => None,
            PartitionTable::Mbr => Some(Hybrid::mbr()),
            PartitionTable::Gpt => Some(Hybrid::gpt()),
            PartitionTable::GptHybridMbr => Some(Hybrid::gpt_hybrid_mbr()),
        };
        if let Some(mut hybrid) = hybrid {
            if let Some(code) = boot.bios.as_ref().and_then(|b| b.mbr.as_ref()) {
                let code = code.code();
                hybrid = hybrid.with_bootstrap(&code[..code.len().min(MBR_CODE_BYTES)]);
            }
            if let Some(esp) = appended {
                hybrid = hybrid.with_appended(esp);
            }
            options = options.with_hybrid(hybrid);
        }
        Ok(options)
    }
}

/// Combinations hadris-iso would refuse, refused first with a reason.
fn check_boot(boot: &BootConfig) -> Result<(), Error> {
    let invalid = |reason: &str| {
        Err(Error::InvalidBoot {
            reason: reason.to_string(),
        })
    };
    let mbr_code = boot.bios.as_ref().is_some_and(|b| b.mbr.is_some());
    let appended = boot
        .uefi
        .as_ref()
        .is_some_and(|u| u.placement == EspPlacement::Appended);
    match boot.partition_table {
        PartitionTable::Gpt if mbr_code => invalid(
            "MBR boot code needs an MBR or a hybrid MBR; a plain GPT boots from disk under UEFI only",
        ),
        PartitionTable::None | PartitionTable::Mbr if appended => {
            invalid("an appended ESP needs a GPT; store it as a file (EspPlacement::File) instead")
        }
        _ if boot.bios.as_ref().is_some_and(|b| b.load_sectors == 0) => {
            invalid("the BIOS load size must be at least one sector")
        }
        _ => Ok(()),
    }
}

/// A path naming a file (not the root).
fn file_path(path: &str) -> Result<Vec<u8>, Error> {
    let p = iso_path(path)?;
    if p.is_empty() {
        return Err(Error::InvalidPath {
            path: path.to_string(),
            reason: "names the root directory",
        });
    }
    Ok(p)
}

/// Descriptor identifiers are stored as given, like xorriso does; control
/// characters and non-ASCII are refused since readers show them as garbage.
fn check_identifier(
    field: &'static str,
    value: &str,
    max: usize,
    empty_ok: bool,
) -> Result<(), Error> {
    let reason = if value.is_empty() && !empty_ok {
        Some("must not be empty".to_string())
    } else if value.len() > max {
        Some(format!("longer than {max} bytes"))
    } else if value.chars().any(|c| !c.is_ascii() || c.is_ascii_control()) {
        Some("only printable ASCII characters are allowed".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidIdentifier {
            field,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::iso::BiosBoot;

    #[test]
    fn volume_ids_are_checked_before_anything_is_staged() {
        assert!(IsoImage::new(IsoOptions::new("config-2")).is_ok());
        assert!(IsoImage::new(IsoOptions::new("")).is_err());
        assert!(IsoImage::new(IsoOptions::new(&"x".repeat(33))).is_err());
        assert!(IsoImage::new(IsoOptions::new("tab\there")).is_err());
    }

    #[test]
    fn grub_mbr_code_points_one_cd_sector_past_the_image() {
        let grub = crate::formats::iso::MbrBootCode::Grub2(Vec::new());
        let isohybrid = crate::formats::iso::MbrBootCode::Isohybrid(Vec::new());
        assert_eq!(grub.boot_address(100), 404);
        assert_eq!(isohybrid.boot_address(100), 400);
    }

    #[test]
    fn impossible_boot_setups_are_refused_with_a_reason() {
        let bios = BiosBoot::grub2("boot/eltorito.img", vec![0; 440]);
        let uefi = UefiBoot {
            esp: EspImage::Bytes(vec![0; 4096]),
            placement: EspPlacement::Appended,
        };
        let gpt_with_mbr_code = BootConfig {
            bios: Some(bios.clone()),
            partition_table: PartitionTable::Gpt,
            ..BootConfig::default()
        };
        assert!(check_boot(&gpt_with_mbr_code).is_err());
        let appended_without_gpt = BootConfig {
            uefi: Some(uefi.clone()),
            partition_table: PartitionTable::Mbr,
            ..BootConfig::default()
        };
        assert!(check_boot(&appended_without_gpt).is_err());
        let hybrid = BootConfig {
            bios: Some(bios),
            uefi: Some(uefi),
            ..BootConfig::default()
        };
        assert!(check_boot(&hybrid).is_ok());
    }

    #[test]
    fn a_missing_bios_image_is_named() {
        let mut image = IsoImage::new(IsoOptions::new("TEST")).unwrap();
        image.add_bytes("README", "hello").unwrap();
        image
            .set_boot(BootConfig {
                bios: Some(BiosBoot::grub2("boot/eltorito.img", vec![0; 440])),
                ..BootConfig::default()
            })
            .unwrap();
        let err = image.planned_size().unwrap_err();
        assert!(matches!(err, Error::BootImageMissing { .. }), "{err}");
    }
}
