//! An ISO 9660 image, read with hadris-iso (the library osforge writes ISOs
//! with, which also reads them: volume descriptor, Rock Ridge tree, El
//! Torito catalog): the volume id, boot entries, the hybrid partition
//! table, the live system's files, the GRUB menu and the cloud-init seed.

use std::fs::File;
use std::path::Path;

use hadris_iso::{Emulation, IsoId, Platform};
use serde::Serialize;

use super::boot::{self, GrubMenu};
use super::disk::{self, GptReport, MbrPartition, PartitionReport};
use super::squashfs::SuperblockFacts;
use super::{Error, FileEntry, Kind};
use crate::formats::gpt;

/// What live-boot loads, as `artifacts::live_iso` lays it out.
const LIVE_FILES: [&str; 3] = [
    "live/vmlinuz",
    "live/initrd.img",
    "live/filesystem.squashfs",
];
const GRUB_CFG: &str = "boot/grub/grub.cfg";
/// NoCloud seed files at the root of a `cidata` volume.
const NOCLOUD_FILES: [&str; 4] = ["user-data", "meta-data", "network-config", "vendor-data"];
/// An OpenStack config drive (`config-2`) keeps its files here.
const CONFIG_DRIVE_DIR: &str = "openstack/latest";
/// A squashfs superblock's bytes.
const SQUASHFS_HEAD_BYTES: usize = 96;
/// Room for the El Torito catalog: one block holds 63 entries.
const CATALOG_BUF_BYTES: usize = 2048 * 4;

#[derive(Debug, Clone, Serialize)]
pub struct IsoReport {
    pub volume_id: String,
    pub application_id: String,
    pub block_bytes: u32,
    pub volume_bytes: u64,
    pub file_count: usize,
    pub boot_entries: Vec<BootEntry>,
    pub mbr: Vec<MbrPartition>,
    pub gpt: Option<GptReport>,
    pub partitions: Vec<PartitionReport>,
    /// The live system's files that are present.
    pub live_files: Vec<FileEntry>,
    /// From the bzImage header of `live/vmlinuz`.
    pub kernel_version: Option<String>,
    /// The superblock of `live/filesystem.squashfs`.
    pub squashfs: Option<SuperblockFacts>,
    pub grub: Option<GrubMenu>,
    pub seed: Option<SeedReport>,
}

/// One El Torito boot entry.
#[derive(Debug, Clone, Serialize)]
pub struct BootEntry {
    /// `BIOS`, `UEFI`, or the platform id.
    pub platform: String,
    pub bootable: bool,
    /// `none`, `floppy-1.2M`, `floppy-1.44M`, `floppy-2.88M`, `hard-disk`.
    pub emulation: String,
    /// 512-byte sectors the firmware loads (0 for some UEFI entries: all).
    pub load_sectors: u16,
    /// The image's ISO block, and its bytes as the catalog describes them.
    pub image_block: u32,
    pub image_offset_bytes: u64,
    pub image_bytes: u64,
}

/// The cloud-init seed on the ISO.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// `nocloud` (files at the root) or `configdrive` (`openstack/latest`).
    pub datasource: &'static str,
    pub files: Vec<FileEntry>,
}

pub fn inspect(path: &Path, file: File, size_bytes: u64) -> Result<IsoReport, Error> {
    let malformed = |reason: String| Error::Malformed {
        path: path.to_path_buf(),
        kind: Kind::Iso,
        reason,
    };
    let reading = |source| Error::Reading {
        path: path.to_path_buf(),
        source,
    };
    let mut table_file = file.try_clone().map_err(reading)?;
    let kind_error = |e: Error| match e {
        // Partitions inside an ISO are reported as the ISO's.
        Error::Malformed { path, reason, .. } => Error::Malformed {
            path,
            kind: Kind::Iso,
            reason,
        },
        e => e,
    };
    let device = hadris_storage::host::FileDevice::new(file).map_err(reading)?;
    let iso = hadris_iso::sync::IsoFs::mount(device, hadris_fs::MountOptions::new().read_only())
        .map_err(|e| malformed(e.to_string()))?;
    let info = *iso.info();
    let volume_bytes = u64::from(info.volume_space_size()) * u64::from(info.block_size());
    if volume_bytes > size_bytes {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            kind: Kind::Iso,
            what: "primary volume descriptor",
            needed_bytes: volume_bytes,
            size_bytes,
        });
    }
    let vol = hadris_fs::sync::Volume::new(iso);
    let boot_entries = {
        let mut guard = vol.lock().map_err(|e| malformed(e.to_string()))?;
        let mut buf = vec![0u8; CATALOG_BUF_BYTES];
        let catalog = guard
            .boot_catalog(&mut buf)
            .map_err(|e| malformed(format!("El Torito catalog: {e}")))?;
        catalog.map_or_else(Vec::new, |c| {
            c.entries()
                .map(|e| {
                    let extent = guard.boot_image(&e);
                    BootEntry {
                        platform: platform_name(e.platform()),
                        bootable: e.is_bootable(),
                        emulation: emulation_name(e.emulation()),
                        load_sectors: e.sector_count(),
                        image_block: e.load_block(),
                        image_offset_bytes: extent.offset(),
                        image_bytes: extent.len(),
                    }
                })
                .collect()
        })
    };

    let table = gpt::read_table(&mut table_file, size_bytes).map_err(reading)?;
    let mut partitions = disk::partitions(&table);
    // The hybrid table's EFI System Partition is the El Torito UEFI image,
    // a FAT whose files show what UEFI firmware boots.
    let mut source = disk::Source::Raw {
        file: table_file,
        path: path.to_path_buf(),
    };
    disk::probe_all(path, &mut source, &mut partitions).map_err(kind_error)?;
    let files = super::fs::list_files(&vol).map_err(&malformed)?;
    let find = |p: &str| files.iter().find(|f| f.path == p).cloned();
    let live_files = LIVE_FILES.iter().filter_map(|p| find(p)).collect();
    let kernel_version = super::fs::read_head(&vol, LIVE_FILES[0], boot::KERNEL_HEAD_BYTES)
        .map_err(&malformed)?
        .and_then(|head| boot::bzimage_version(&head));
    let squashfs = super::fs::read_head(&vol, LIVE_FILES[2], SQUASHFS_HEAD_BYTES)
        .map_err(&malformed)?
        .map(|head| SuperblockFacts::parse(&head))
        .transpose()
        .map_err(|reason| malformed(format!("/{}: {reason}", LIVE_FILES[2])))?;
    let grub = super::fs::read_file(&vol, GRUB_CFG)
        .map_err(&malformed)?
        .map(|bytes| GrubMenu {
            source: format!("/{GRUB_CFG}"),
            entries: boot::parse_grub_cfg(&String::from_utf8_lossy(&bytes)),
        });
    let nocloud: Vec<FileEntry> = NOCLOUD_FILES.iter().filter_map(|p| find(p)).collect();
    let config_drive: Vec<FileEntry> = files
        .iter()
        .filter(|f| f.path.starts_with(&format!("{CONFIG_DRIVE_DIR}/")))
        .cloned()
        .collect();
    let seed = if !nocloud.is_empty() {
        Some(SeedReport {
            datasource: "nocloud",
            files: nocloud,
        })
    } else if !config_drive.is_empty() {
        Some(SeedReport {
            datasource: "configdrive",
            files: config_drive,
        })
    } else {
        None
    };
    Ok(IsoReport {
        volume_id: id_text(info.id(IsoId::Volume)),
        application_id: id_text(info.id(IsoId::Application)),
        block_bytes: info.block_size(),
        volume_bytes,
        file_count: files.len(),
        boot_entries,
        mbr: table
            .mbr
            .as_deref()
            .map(disk::mbr_partitions)
            .unwrap_or_default(),
        gpt: disk::gpt_report(&table),
        partitions,
        live_files,
        kernel_version,
        squashfs,
        grub,
        seed,
    })
}

fn id_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn platform_name(p: Platform) -> String {
    match p {
        Platform::X86 => "BIOS".into(),
        Platform::Efi => "UEFI".into(),
        Platform::PowerPc => "PowerPC".into(),
        Platform::Mac => "Mac".into(),
        other => format!("{:#04x}", other.id()),
    }
}

fn emulation_name(e: Option<Emulation>) -> String {
    match e {
        Some(Emulation::NoEmulation) => "none",
        Some(Emulation::Floppy12) => "floppy-1.2M",
        Some(Emulation::Floppy144) => "floppy-1.44M",
        Some(Emulation::Floppy288) => "floppy-2.88M",
        Some(Emulation::HardDisk) => "hard-disk",
        _ => "unknown",
    }
    .to_string()
}

/// Where the file at `inner` (a path inside the ISO) lies in the ISO
/// file: its byte offset and length, when it is one extent, as osforge and
/// xorriso write files under 4 GiB. None when there is no such file.
/// `osforge verify` reads the live squashfs in place with it.
pub(crate) fn file_extent(path: &Path, inner: &str) -> Result<Option<(u64, u64)>, Error> {
    use hadris_fs::sync::FileSystem;
    let malformed = |reason: String| Error::Malformed {
        path: path.to_path_buf(),
        kind: Kind::Iso,
        reason,
    };
    let reading = |source| Error::Reading {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(reading)?;
    let device = hadris_storage::host::FileDevice::new(file).map_err(reading)?;
    let mut iso =
        hadris_iso::sync::IsoFs::mount(device, hadris_fs::MountOptions::new().read_only())
            .map_err(|e| malformed(e.to_string()))?;
    let node = match iso.resolve(inner.as_bytes(), hadris_fs::Resolve::Follow) {
        Ok(node) => node,
        Err(e) if e.kind() == hadris_fs::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(malformed(format!("/{inner}: {e}"))),
    };
    let mut extents = [hadris_fs::Extent::new(0, 0); 2];
    let found = iso.extents(node, 0, &mut extents);
    iso.forget(node, 1);
    match found.map_err(|e| malformed(format!("/{inner}: {e}")))? {
        1 => Ok(Some((extents[0].offset(), extents[0].len()))),
        n => Err(malformed(format!(
            "/{inner} is stored in {n} extents, not one"
        ))),
    }
}
