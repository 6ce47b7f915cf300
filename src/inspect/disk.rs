//! A partitioned disk, raw or as a qcow2 guest sees it: the partition table
//! (both GPT headers checked), each partition's filesystem, the ESP's files,
//! the GRUB menu and the kernels in /boot.

use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use super::boot::{self, GrubMenu};
use super::ext4::{self, Superblock};
pub use super::source::Source;
use super::{Error, FileEntry, Kind};
use crate::formats::fat::device::{ReadOnly, WindowDevice};
use crate::formats::gpt::{self, HeaderCheck, SECTOR_BYTES, TableRead};
use crate::formats::qcow2::ReadError;
use crate::formats::swap;
use crate::profile::PartitionType;

/// Where ESPs keep a grub.cfg: grub-install's, removable media's, ours.
const ESP_GRUB_CFGS: [&str; 3] = [
    "EFI/debian/grub.cfg",
    "EFI/BOOT/grub.cfg",
    "boot/grub/grub.cfg",
];
/// FAT boot sector fields, where FAT12/16 and FAT32 keep them: the volume
/// label and the file system type text ("FAT16   ", "FAT32   "), and the
/// boot signature every FAT boot sector ends with.
const FAT16_LABEL_AT: usize = 43;
const FAT32_LABEL_AT: usize = 71;
const FAT_LABEL_BYTES: usize = 11;
const FAT16_TYPE_AT: usize = 54;
const FAT32_TYPE_AT: usize = 82;
const BOOT_SIGNATURE_AT: usize = 510;
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// MBR types that hold no filesystem: GPT's protective record, extended
/// partitions (containers of logical ones).
const MBR_NOT_DATA: [u8; 4] = [0xEE, 0x05, 0x0F, 0x85];
/// Bytes read from the start of a partition to tell its filesystem.
const PROBE_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    pub size_bytes: u64,
    /// The MBR's partition records (one 0xEE record on a GPT disk).
    pub mbr: Vec<MbrPartition>,
    pub gpt: Option<GptReport>,
    pub partitions: Vec<PartitionReport>,
    pub grub: Option<GrubMenu>,
    /// Kernels and initrds in /boot.
    pub kernels: Vec<KernelFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MbrPartition {
    pub index: u8,
    pub bootable: bool,
    pub type_code: u8,
    pub type_name: &'static str,
    pub start_bytes: u64,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GptReport {
    pub disk_guid: String,
    pub primary: HeaderState,
    pub backup: HeaderState,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderState {
    pub lba: u64,
    pub valid: bool,
    /// What is wrong with it, when it is not valid.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    /// GPT entry number, or MBR record 1 to 4 on a disk without a GPT.
    pub number: u32,
    /// GPT's name; empty on an MBR-only disk.
    pub name: String,
    /// GPT's type GUID; None on an MBR-only disk, which has `mbr_type`.
    pub type_guid: Option<String>,
    pub mbr_type: Option<u8>,
    pub type_name: Option<&'static str>,
    /// GPT's unique partition GUID.
    pub guid: Option<String>,
    pub first_lba: u64,
    /// Inclusive, as GPT stores it.
    pub last_lba: u64,
    pub start_bytes: u64,
    /// One past the last byte.
    pub end_bytes: u64,
    pub size_bytes: u64,
    pub attributes: u64,
    pub filesystem: Filesystem,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Filesystem {
    /// Nothing recognisable (a BIOS boot partition, an empty partition).
    None,
    Ext4 {
        label: String,
        uuid: String,
        block_bytes: u64,
        size_bytes: u64,
    },
    Vfat {
        fat: String,
        label: Option<String>,
        serial: Option<String>,
        files: Vec<FileEntry>,
    },
    Swap {
        label: String,
        uuid: String,
        size_bytes: u64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct KernelFile {
    /// `kernel` or `initrd`.
    pub role: &'static str,
    pub path: String,
    /// From the file name (`vmlinuz-6.1.0-18-amd64` → `6.1.0-18-amd64`).
    pub version: String,
    pub size_bytes: u64,
}

/// Reads the table, every partition's filesystem, the menu and the kernels.
pub fn inspect(path: &Path, source: &mut Source, size_bytes: u64) -> Result<DiskReport, Error> {
    let reading = |e: io::Error| read_error(path, e);
    let table = gpt::read_table(source, size_bytes).map_err(reading)?;
    let Some(records) = table.mbr.clone() else {
        return Err(Error::Malformed {
            path: path.to_path_buf(),
            kind: Kind::Raw,
            reason: "no MBR boot signature (55 AA) at byte 510".into(),
        });
    };
    let mut report = DiskReport {
        size_bytes,
        mbr: mbr_partitions(&records),
        gpt: gpt_report(&table),
        partitions: if table.has_gpt() {
            partitions(&table)
        } else {
            mbr_only_partitions(&records)
        },
        grub: None,
        kernels: Vec::new(),
    };
    probe_all(path, source, &mut report.partitions)?;
    // The ESP first: a grub.cfg with a menu there is what firmware runs.
    for p in &report.partitions {
        if let Filesystem::Vfat { .. } = p.filesystem
            && let Some(menu) = esp_menu(path, source, p)?
        {
            report.grub = Some(menu);
            break;
        }
    }
    find_boot(path, source, &mut report)?;
    Ok(report)
}

pub(crate) fn read_error(path: &Path, source: io::Error) -> Error {
    // A qcow2 reader's own errors (truncation, corrupt clusters) come
    // wrapped in io::Error by its Read impl; show them as qcow2 errors.
    if source.get_ref().is_some_and(|e| e.is::<ReadError>()) {
        let inner = source
            .into_inner()
            .and_then(|e| e.downcast::<ReadError>().ok())
            .expect("checked above");
        return Error::Qcow2 {
            path: path.to_path_buf(),
            source: *inner,
        };
    }
    Error::Reading {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn mbr_partitions(records: &[gpt::MbrRecord]) -> Vec<MbrPartition> {
    records
        .iter()
        .map(|r| MbrPartition {
            index: r.index,
            bootable: r.bootable,
            type_code: r.type_code,
            type_name: boot::mbr_type_name(r.type_code),
            start_bytes: u64::from(r.first_lba) * SECTOR_BYTES,
            size_bytes: u64::from(r.sectors) * SECTOR_BYTES,
        })
        .collect()
}

pub(super) fn gpt_report(table: &TableRead) -> Option<GptReport> {
    let state = |c: &HeaderCheck| HeaderState {
        lba: c.lba,
        valid: c.header.is_ok(),
        problem: c.header.as_ref().err().map(|e| e.to_string()),
    };
    let header = table
        .primary
        .header
        .as_ref()
        .or(table.backup.header.as_ref())
        .ok()?;
    Some(GptReport {
        disk_guid: header.disk_guid.to_upper(),
        primary: state(&table.primary),
        backup: state(&table.backup),
        first_usable_lba: header.first_usable_lba,
        last_usable_lba: header.last_usable_lba,
    })
}

pub(crate) fn partitions(table: &TableRead) -> Vec<PartitionReport> {
    table
        .entries
        .iter()
        .map(|(number, e)| PartitionReport {
            number: *number,
            name: e.name.clone(),
            type_guid: Some(e.type_guid.to_upper()),
            mbr_type: None,
            type_name: boot::gpt_type_name(e.type_guid),
            guid: Some(e.unique_guid.to_upper()),
            first_lba: e.first_lba,
            last_lba: e.last_lba,
            start_bytes: e.first_lba * SECTOR_BYTES,
            end_bytes: (e.last_lba + 1) * SECTOR_BYTES,
            size_bytes: e.sectors() * SECTOR_BYTES,
            attributes: e.attributes,
            filesystem: Filesystem::None,
        })
        .collect()
}

/// The partitions of a disk partitioned with an MBR alone: its primary
/// records (logical partitions in an extended one are not followed).
fn mbr_only_partitions(records: &[gpt::MbrRecord]) -> Vec<PartitionReport> {
    records
        .iter()
        .filter(|r| !MBR_NOT_DATA.contains(&r.type_code) && r.sectors > 0)
        .map(|r| {
            let (first, sectors) = (u64::from(r.first_lba), u64::from(r.sectors));
            PartitionReport {
                number: u32::from(r.index),
                name: String::new(),
                type_guid: None,
                mbr_type: Some(r.type_code),
                type_name: Some(boot::mbr_type_name(r.type_code)),
                guid: None,
                first_lba: first,
                last_lba: first + sectors - 1,
                start_bytes: first * SECTOR_BYTES,
                end_bytes: (first + sectors) * SECTOR_BYTES,
                size_bytes: sectors * SECTOR_BYTES,
                attributes: 0,
                filesystem: Filesystem::None,
            }
        })
        .collect()
}

/// Fills in each partition's filesystem.
pub(super) fn probe_all(
    path: &Path,
    source: &mut Source,
    partitions: &mut [PartitionReport],
) -> Result<(), Error> {
    for p in partitions {
        p.filesystem = probe(path, source, p)?;
    }
    Ok(())
}

/// Tells the filesystem of a partition by its magic numbers.
pub(crate) fn probe(
    path: &Path,
    source: &mut Source,
    p: &PartitionReport,
) -> Result<Filesystem, Error> {
    if p.size_bytes < PROBE_BYTES as u64 || p.end_bytes > source_len(source, path)? {
        return Ok(Filesystem::None);
    }
    let head = source
        .read_at(p.start_bytes, PROBE_BYTES)
        .map_err(|e| read_error(path, e))?;
    let sb_at = ext4::SUPERBLOCK_AT as usize;
    if let Some(sb) = Superblock::parse(&head[sb_at..sb_at + ext4::SUPERBLOCK_BYTES]) {
        return Ok(Filesystem::Ext4 {
            label: sb.label.clone(),
            uuid: sb.uuid.to_string(),
            block_bytes: sb.block_bytes,
            size_bytes: sb.size_bytes(),
        });
    }
    if let Some(area) = swap::parse_header(&head) {
        return Ok(Filesystem::Swap {
            label: area.label,
            uuid: area.uuid.to_string(),
            size_bytes: area.size_bytes,
        });
    }
    let fat_type = |at: usize| head[at..at + 3] == *b"FAT";
    if head[BOOT_SIGNATURE_AT..BOOT_SIGNATURE_AT + 2] == BOOT_SIGNATURE
        && (fat_type(FAT16_TYPE_AT) || fat_type(FAT32_TYPE_AT))
    {
        return fat(path, source, p, &head);
    }
    Ok(Filesystem::None)
}

fn source_len(source: &mut Source, path: &Path) -> Result<u64, Error> {
    source
        .seek(SeekFrom::End(0))
        .map_err(|e| read_error(path, e))
}

fn fat(
    path: &Path,
    source: &mut Source,
    p: &PartitionReport,
    head: &[u8],
) -> Result<Filesystem, Error> {
    let label_at = if head[FAT32_TYPE_AT..FAT32_TYPE_AT + 5] == *b"FAT32" {
        FAT32_LABEL_AT
    } else {
        FAT16_LABEL_AT
    };
    let label = String::from_utf8_lossy(&head[label_at..label_at + FAT_LABEL_BYTES])
        .trim_end()
        .to_string();
    let volume = mount_fat(source, p).map_err(|reason| malformed(path, p, &reason))?;
    let mut files = super::fs::list_files(&volume).map_err(|reason| malformed(path, p, &reason))?;
    // What firmware runs from here: every EFI binary, signed or not.
    for f in &mut files {
        if f.path.to_ascii_lowercase().ends_with(".efi")
            && let Some(bytes) =
                super::fs::read_file(&volume, &f.path).map_err(|r| malformed(path, p, &r))?
        {
            f.efi = super::EfiSignature::of(&bytes);
        }
    }
    let geometry = *volume
        .lock()
        .map_err(|e| malformed(path, p, &e.to_string()))?
        .info();
    Ok(Filesystem::Vfat {
        fat: format!("{:?}", geometry.kind()).to_uppercase(),
        label: (!label.is_empty() && label != "NO NAME").then_some(label),
        serial: geometry
            .volume_serial()
            .map(|s| format!("{:04X}-{:04X}", s >> 16, s & 0xffff)),
        files,
    })
}

type FatVolume<'a> =
    hadris_fs::sync::Volume<hadris_fat::sync::FatFs<WindowDevice<ReadOnly<&'a mut Source>>>>;

fn mount_fat<'a>(source: &'a mut Source, p: &PartitionReport) -> Result<FatVolume<'a>, String> {
    let device = WindowDevice::new(ReadOnly(source), p.start_bytes, p.size_bytes);
    let fs = hadris_fat::sync::FatFs::mount(device, hadris_fs::MountOptions::new().read_only())
        .map_err(|e| format!("not a readable FAT volume: {}", hadris_fs::Error::from(e)))?;
    Ok(hadris_fs::sync::Volume::new(fs))
}

fn malformed(path: &Path, p: &PartitionReport, reason: &str) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        kind: Kind::Raw,
        reason: format!("partition {} ({}): {reason}", p.number, p.name),
    }
}

/// The menu of the first grub.cfg on a FAT partition that has entries.
fn esp_menu(
    path: &Path,
    source: &mut Source,
    p: &PartitionReport,
) -> Result<Option<GrubMenu>, Error> {
    let volume = mount_fat(source, p).map_err(|reason| malformed(path, p, &reason))?;
    for cfg in ESP_GRUB_CFGS {
        let Some(bytes) = super::fs::read_file(&volume, cfg).map_err(|r| malformed(path, p, &r))?
        else {
            continue;
        };
        let entries = boot::parse_grub_cfg(&String::from_utf8_lossy(&bytes));
        if !entries.is_empty() {
            return Ok(Some(GrubMenu {
                source: format!("partition {} ({}): {cfg}", p.number, p.name),
                entries,
            }));
        }
    }
    Ok(None)
}

/// Finds /boot on an ext4 partition: partitions that look like a separate
/// /boot (GRUB at `/grub`) are tried before the others (GRUB at
/// `/boot/grub`), so a qcow2's large root is copied out only when there is
/// no separate /boot. Fills in the menu (unless the ESP had one) and the
/// kernels.
fn find_boot(path: &Path, source: &mut Source, report: &mut DiskReport) -> Result<(), Error> {
    let mut candidates: Vec<&PartitionReport> = report
        .partitions
        .iter()
        .filter(|p| matches!(p.filesystem, Filesystem::Ext4 { .. }))
        .collect();
    let looks_like_boot = |p: &PartitionReport| {
        let label = match &p.filesystem {
            Filesystem::Ext4 { label, .. } => label.as_str(),
            _ => "",
        };
        p.type_guid.as_deref() == Some(PartitionType::Xbootldr.gpt_guid())
            || label == "boot"
            || p.name == "boot"
    };
    // Stable: /boot-like first, then the smaller ones (less to copy).
    candidates.sort_by_key(|p| (!looks_like_boot(p), p.size_bytes));
    for p in candidates {
        let (target, _copy) = source
            .ext4_target(p.start_bytes, p.size_bytes)
            .map_err(|e| read_error(path, e))?;
        for (boot_dir, cfg) in [("/", "/grub/grub.cfg"), ("/boot", "/boot/grub/grub.cfg")] {
            let Some(listing) = target.list(boot_dir)? else {
                continue;
            };
            let kernels = kernel_files(boot_dir, &listing);
            let menu = target.read(cfg)?.map(|bytes| GrubMenu {
                source: format!("partition {} ({}): {cfg}", p.number, p.name),
                entries: boot::parse_grub_cfg(&String::from_utf8_lossy(&bytes)),
            });
            if kernels.is_empty() && menu.is_none() {
                continue;
            }
            report.kernels = kernels;
            if report.grub.is_none() {
                report.grub = menu;
            }
            return Ok(());
        }
    }
    Ok(())
}

/// `vmlinuz-VERSION` and `initrd.img-VERSION` in a /boot listing.
fn kernel_files(dir: &str, listing: &[ext4::DirEntry]) -> Vec<KernelFile> {
    let mut found: Vec<KernelFile> = listing
        .iter()
        .filter(|e| e.is_file)
        .filter_map(|e| {
            let (role, version) = if let Some(v) = e.name.strip_prefix("vmlinuz-") {
                ("kernel", v)
            } else if let Some(v) = e.name.strip_prefix("initrd.img-") {
                ("initrd", v)
            } else {
                return None;
            };
            Some(KernelFile {
                role,
                path: format!("{}/{}", dir.trim_end_matches('/'), e.name),
                version: version.to_string(),
                size_bytes: e.size_bytes,
            })
        })
        .collect();
    // Per version, the kernel before its initrd.
    found.sort_by(|a, b| (&a.version, a.role != "kernel").cmp(&(&b.version, b.role != "kernel")));
    found
}
