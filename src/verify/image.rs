//! The checks of each kind of artifact: qcow2 (qemu-img and the header),
//! raw disks, and ISOs (volume, El Torito, hybrid tables, live squashfs).

use std::fs::File;
use std::path::Path;
use std::process::Command;

use super::disk::{self, Table};
use super::{Check, Finding, last_line, squashfs};
use crate::formats::qcow2::Qcow2Reader;
use crate::formats::qcow2::table::L1_TABLE_OFFSET_MASK;
use crate::inspect::disk::Source;
use crate::inspect::iso;

/// The live root of an osforge ISO (see `artifacts::live_iso`).
const LIVE_SQUASHFS: &str = "live/filesystem.squashfs";

pub(super) fn qcow2(path: &Path, findings: &mut Vec<Finding>) {
    findings.push(qemu_img_check(path));
    let reader = File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|f| Qcow2Reader::open(f).map_err(|e| e.to_string()));
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            findings.push(Finding::fail(Check::Qcow2Header, e));
            return;
        }
    };
    let info = reader.info().clone();
    findings.push(match l2_tables_problem(&reader) {
        None => Finding::pass(
            Check::Qcow2Header,
            format!(
                "version {}, {} virtual bytes, {}-byte clusters, {} L1 entries at {}, every L2 table inside the file",
                info.version,
                info.virtual_size_bytes,
                info.cluster_size_bytes,
                info.l1_entries,
                info.l1_table_offset
            ),
        ),
        Some(problem) => Finding::fail(Check::Qcow2Header, problem),
    });
    let mut source = Source::Qcow2(Box::new(reader));
    guest_disk(path, &mut source, info.virtual_size_bytes, findings);
}

/// Each L2 table an L1 entry points at is cluster-aligned and inside the
/// file: a truncated image loses tables that the header check cannot see.
fn l2_tables_problem(reader: &Qcow2Reader<File>) -> Option<String> {
    let info = reader.info();
    for (i, entry) in reader.l1_table().iter().enumerate() {
        let offset = entry & L1_TABLE_OFFSET_MASK;
        if offset == 0 {
            continue;
        }
        if !offset.is_multiple_of(info.cluster_size_bytes) {
            return Some(format!(
                "L1 entry {i}: L2 table at {offset} is not cluster-aligned"
            ));
        }
        if offset + info.cluster_size_bytes > info.file_size_bytes {
            return Some(format!(
                "L1 entry {i}: L2 table at {offset} is past the end of the file ({} bytes): truncated",
                info.file_size_bytes
            ));
        }
    }
    None
}

/// `qemu-img check`: its exit code (0 clean, 1 not checked, 2 corrupt,
/// 3 leaked clusters) and its summary line.
fn qemu_img_check(path: &Path) -> Finding {
    let out = match Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            return Finding::fail(
                Check::QemuImgCheck,
                format!("cannot run qemu-img: {e} (install qemu-utils)"),
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.contains("found on the image") || l.contains("were found"))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let err = last_line(&out.stderr);
            if err.is_empty() {
                last_line(&out.stdout)
            } else {
                err
            }
        });
    let code = out.status.code().unwrap_or(-1);
    if code == 0 {
        Finding::pass(Check::QemuImgCheck, summary)
    } else {
        Finding::fail(Check::QemuImgCheck, format!("exit {code}: {summary}"))
    }
}

pub(super) fn raw(path: &Path, file: File, size_bytes: u64, findings: &mut Vec<Finding>) {
    let mut source = Source::Raw {
        file,
        path: path.to_path_buf(),
    };
    guest_disk(path, &mut source, size_bytes, findings);
}

fn guest_disk(path: &Path, source: &mut Source, size_bytes: u64, findings: &mut Vec<Finding>) {
    let mut partitions = disk::check_table(path, source, size_bytes, Table::Disk, findings);
    disk::check_filesystems(path, source, &mut partitions, findings);
}

pub(super) fn iso(path: &Path, size_bytes: u64, findings: &mut Vec<Finding>) {
    let report = File::open(path)
        .map_err(|source| crate::inspect::Error::Reading {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|file| iso::inspect(path, file, size_bytes));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            findings.push(Finding::fail(Check::IsoVolume, e.to_string()));
            return;
        }
    };
    findings.push(Finding::pass(
        Check::IsoVolume,
        format!(
            "volume {:?}: {} bytes in {}-byte blocks, inside the file; {} files",
            report.volume_id, report.volume_bytes, report.block_bytes, report.file_count
        ),
    ));
    let live = !report.live_files.is_empty();
    let has = |platform: &str| {
        report
            .boot_entries
            .iter()
            .any(|e| e.platform == platform && e.bootable)
    };
    findings.push(match (live, has("BIOS"), has("UEFI")) {
        (_, true, true) => Finding::pass(
            Check::ElTorito,
            format!(
                "{} bootable entries: BIOS and UEFI",
                report.boot_entries.len()
            ),
        ),
        (false, false, false) if report.boot_entries.is_empty() => Finding::pass(
            Check::ElTorito,
            "no boot catalog: a data ISO (no live/ files)",
        ),
        (_, bios, uefi) => Finding::fail(
            Check::ElTorito,
            format!(
                "a live ISO needs bootable BIOS and UEFI entries; found BIOS {bios}, UEFI {uefi}"
            ),
        ),
    });
    for e in &report.boot_entries {
        let end = e.image_offset_bytes + e.image_bytes;
        findings.push(if e.image_offset_bytes > 0 && end <= size_bytes {
            Finding::pass(
                Check::BootImage,
                format!(
                    "{} image at byte {} ({} bytes) inside the file",
                    e.platform, e.image_offset_bytes, e.image_bytes
                ),
            )
        } else {
            Finding::fail(
                Check::BootImage,
                format!(
                    "{} image at byte {} ({} bytes) is not inside the file ({size_bytes} bytes)",
                    e.platform, e.image_offset_bytes, e.image_bytes
                ),
            )
        });
    }
    match File::open(path) {
        Ok(file) => {
            let mut source = Source::Raw {
                file,
                path: path.to_path_buf(),
            };
            let mut partitions =
                disk::check_table(path, &mut source, size_bytes, Table::HybridIso, findings);
            if let Some(uefi) = report.boot_entries.iter().find(|e| e.platform == "UEFI")
                && !partitions.is_empty()
                && !partitions
                    .iter()
                    .any(|p| p.start_bytes == uefi.image_offset_bytes)
            {
                findings.push(Finding::fail(
                    Check::HybridTable,
                    format!("no GPT partition starts at the UEFI boot image (byte {}): USB boot under UEFI would not find it", uefi.image_offset_bytes),
                ));
            }
            disk::check_filesystems(path, &mut source, &mut partitions, findings);
        }
        Err(e) => findings.push(Finding::fail(Check::HybridTable, e.to_string())),
    }
    if live {
        match iso::file_extent(path, LIVE_SQUASHFS) {
            Ok(Some((offset, len))) => {
                squashfs::check(path, offset, len, &format!("/{LIVE_SQUASHFS}: "), findings)
            }
            Ok(None) => findings.push(Finding::fail(
                Check::SquashfsSuperblock,
                format!("a live ISO without /{LIVE_SQUASHFS}"),
            )),
            Err(e) => findings.push(Finding::fail(Check::SquashfsSuperblock, e.to_string())),
        }
    }
}
