//! A partitioned disk (raw, a qcow2's guest disk, or a hybrid ISO read as
//! one): the partition table with `inspect`'s reader (both GPT headers,
//! their CRCs), where the partitions lie, and each partition's filesystem
//! with its own fsck, reached the way `inspect` reaches it.

use std::path::Path;
use std::process::Command;

use super::{Check, Finding, last_line};
use crate::formats::gpt::{self, HeaderCheck, SECTOR_BYTES, TableRead};
use crate::inspect::disk::{self, Filesystem, PartitionReport, Source};

/// GPT's protective MBR record type.
const PROTECTIVE_TYPE: u8 = 0xEE;
/// A protective record's size is capped at what 32 bits can say.
const MAX_MBR_SECTORS: u64 = 0xFFFF_FFFF;
/// e2fsck's exit code when it found nothing wrong (read-only: `-n`).
const E2FSCK_CLEAN: i32 = 0;

/// How strictly the MBR is read: a disk's must be protective; a hybrid
/// ISO's describes the ISO and its ESP for BIOSes that boot from USB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Disk,
    HybridIso,
}

/// Checks the table and returns the partitions it holds (from the first
/// valid GPT copy), for the filesystem checks.
pub(super) fn check_table(
    path: &Path,
    source: &mut Source,
    size_bytes: u64,
    table_kind: Table,
    findings: &mut Vec<Finding>,
) -> Vec<PartitionReport> {
    let named = |check: Check| match table_kind {
        Table::Disk => check,
        Table::HybridIso => Check::HybridTable,
    };
    let table = match gpt::read_table(source, size_bytes) {
        Ok(t) => t,
        Err(e) => {
            findings.push(Finding::fail(
                named(Check::GptPrimary),
                format!(
                    "cannot read the partition table: {}",
                    disk::read_error(path, e)
                ),
            ));
            return Vec::new();
        }
    };
    let sectors = size_bytes / SECTOR_BYTES;
    findings.push(mbr_finding(&table, sectors, table_kind).into_check(named(Check::ProtectiveMbr)));
    if table_kind == Table::HybridIso && !table.has_gpt() {
        // An ISO without a GPT boots by CD or BIOS-USB alone; nothing more to check.
        return Vec::new();
    }
    let label = |what: &str| match table_kind {
        // The check's name (gpt-primary, gpt-backup) already says which.
        Table::Disk => String::new(),
        Table::HybridIso => format!("GPT {what}: "),
    };
    findings.push(header_finding(
        &table.primary,
        &label("primary header"),
        named(Check::GptPrimary),
    ));
    findings.push(header_finding(
        &table.backup,
        &label("backup header"),
        named(Check::GptBackup),
    ));
    if let (Ok(p), Ok(b)) = (&table.primary.header, &table.backup.header)
        && (p.alternate_lba != b.my_lba
            || b.alternate_lba != p.my_lba
            || p.disk_guid != b.disk_guid)
    {
        findings.push(Finding::fail(
            named(Check::GptBackup),
            format!(
                "the headers disagree: primary points at LBA {}, backup at LBA {} points at {}",
                p.alternate_lba, b.my_lba, b.alternate_lba
            ),
        ));
    }
    if !table.has_gpt() {
        return Vec::new();
    }
    let partitions = disk::partitions(&table);
    findings.push(bounds_finding(&table, &partitions).into_check(named(Check::Partitions)));
    partitions
}

/// A finding waiting for its check name.
struct Verdict(bool, String);

impl Verdict {
    fn into_check(self, check: Check) -> Finding {
        if self.0 {
            Finding::pass(check, self.1)
        } else {
            Finding::fail(check, self.1)
        }
    }
}

fn mbr_finding(table: &TableRead, sectors: u64, kind: Table) -> Verdict {
    let Some(records) = &table.mbr else {
        return Verdict(false, "no MBR boot signature (55 AA) at byte 510".into());
    };
    for r in records {
        let end = u64::from(r.first_lba) + u64::from(r.sectors);
        let capped = r.type_code == PROTECTIVE_TYPE && u64::from(r.sectors) == MAX_MBR_SECTORS;
        if end > sectors && !capped {
            return Verdict(
                false,
                format!(
                    "MBR record {} (type {:#04x}) ends at LBA {end}, past the end of the disk ({sectors} sectors)",
                    r.index, r.type_code
                ),
            );
        }
    }
    if kind == Table::HybridIso {
        return Verdict(
            true,
            format!("MBR: {} records inside the image", records.len()),
        );
    }
    let protective: Vec<_> = records
        .iter()
        .filter(|r| r.type_code == PROTECTIVE_TYPE)
        .collect();
    let want = (sectors - 1).min(MAX_MBR_SECTORS);
    match protective.as_slice() {
        [r] if r.first_lba == 1 && u64::from(r.sectors) == want => Verdict(
            true,
            format!(
                "one 0xEE record from LBA 1 covering the disk ({} sectors)",
                r.sectors
            ),
        ),
        [r] => Verdict(
            false,
            format!(
                "the 0xEE record starts at LBA {} with {} sectors; UEFI wants LBA 1 and {want}",
                r.first_lba, r.sectors
            ),
        ),
        [] => Verdict(
            false,
            "no 0xEE protective record: not a GPT disk's MBR".into(),
        ),
        _ => Verdict(
            false,
            format!("{} 0xEE records; there must be one", protective.len()),
        ),
    }
}

fn header_finding(h: &HeaderCheck, label: &str, check: Check) -> Finding {
    match &h.header {
        Ok(header) => Finding::pass(
            check,
            format!(
                "{label}LBA {}: signature, header CRC32 and entry array CRC32 ({} entries) match",
                h.lba, header.entry_count
            ),
        ),
        Err(e) => Finding::fail(check, format!("{label}LBA {}: {e}", h.lba)),
    }
}

/// Every partition within the usable LBAs, none overlapping another.
fn bounds_finding(table: &TableRead, partitions: &[PartitionReport]) -> Verdict {
    let header = table
        .primary
        .header
        .as_ref()
        .or(table.backup.header.as_ref())
        .expect("has_gpt was checked");
    let (first, last) = (header.first_usable_lba, header.last_usable_lba);
    for p in partitions {
        if p.first_lba > p.last_lba || p.first_lba < first || p.last_lba > last {
            return Verdict(
                false,
                format!(
                    "partition {} ({}) spans LBA {}..={}, outside the usable LBA {first}..={last}",
                    p.number, p.name, p.first_lba, p.last_lba
                ),
            );
        }
    }
    let mut sorted: Vec<&PartitionReport> = partitions.iter().collect();
    sorted.sort_by_key(|p| p.first_lba);
    for pair in sorted.windows(2) {
        if pair[1].first_lba <= pair[0].last_lba {
            return Verdict(
                false,
                format!(
                    "partitions {} and {} overlap at LBA {}",
                    pair[0].number, pair[1].number, pair[1].first_lba
                ),
            );
        }
    }
    Verdict(
        true,
        format!(
            "{} partitions inside the usable LBA {first}..={last}, none overlapping",
            partitions.len()
        ),
    )
}

/// `e2fsck -fn` on each ext4 partition, `fsck.fat -n` on each FAT one.
pub(super) fn check_filesystems(
    path: &Path,
    source: &mut Source,
    partitions: &mut [PartitionReport],
    findings: &mut Vec<Finding>,
) {
    for p in partitions {
        let name = format!("partition {} ({})", p.number, p.name);
        match disk::probe(path, source, p) {
            Ok(Filesystem::Ext4 { .. }) => findings.push(e2fsck(path, source, p, &name)),
            Ok(Filesystem::Vfat { .. }) => findings.push(fsck_fat(path, source, p, &name)),
            Ok(_) => {}
            // A FAT that does not mount: its partition is what fails.
            Err(e) => findings.push(Finding::fail(Check::Fat, format!("{name}: {e}"))),
        }
    }
}

fn e2fsck(path: &Path, source: &mut Source, p: &PartitionReport, name: &str) -> Finding {
    let (target, _copy) = match source.ext4_target(p.start_bytes, p.size_bytes) {
        Ok(t) => t,
        Err(e) => {
            return Finding::fail(
                Check::Ext4,
                format!("{name}: {}", disk::read_error(path, e)),
            );
        }
    };
    let out = match Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(target.spec())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            return Finding::fail(
                Check::Ext4,
                format!("{name}: cannot run e2fsck: {e} (install e2fsprogs)"),
            );
        }
    };
    let code = out.status.code().unwrap_or(-1);
    let summary = last_line(&out.stdout);
    if code == E2FSCK_CLEAN {
        Finding::pass(Check::Ext4, format!("{name}: e2fsck -fn clean: {summary}"))
    } else {
        Finding::fail(
            Check::Ext4,
            format!(
                "{name}: e2fsck -fn exited {code}: {}; {summary}",
                first_problem(&out.stdout, &out.stderr)
            ),
        )
    }
}

/// The first line of e2fsck's output that reports a problem: not its
/// version banner, not a `Pass N:` heading.
fn first_problem(stdout: &[u8], stderr: &[u8]) -> String {
    let (out, err) = (
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr),
    );
    err.lines()
        .chain(out.lines())
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("e2fsck 1.") && !l.starts_with("Pass "))
        .unwrap_or("")
        .to_string()
}

fn fsck_fat(path: &Path, source: &mut Source, p: &PartitionReport, name: &str) -> Finding {
    // fsck.fat reads from the start of a file: give it the partition alone.
    let copy = match source.sparse_copy(p.start_bytes, p.size_bytes) {
        Ok(c) => c,
        Err(e) => {
            return Finding::fail(Check::Fat, format!("{name}: {}", disk::read_error(path, e)));
        }
    };
    let out = match Command::new("fsck.fat").arg("-n").arg(copy.path()).output() {
        Ok(out) => out,
        Err(e) => {
            return Finding::fail(
                Check::Fat,
                format!("{name}: cannot run fsck.fat: {e} (install dosfstools)"),
            );
        }
    };
    // The summary names the temporary copy; show the counts alone.
    let summary = last_line(&out.stdout);
    let summary = summary
        .rsplit_once(": ")
        .map_or(summary.as_str(), |(_, s)| s)
        .to_string();
    if out.status.success() {
        Finding::pass(Check::Fat, format!("{name}: fsck.fat -n clean: {summary}"))
    } else {
        let why = String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .find(|l| !l.trim().is_empty() && !l.starts_with("fsck.fat "))
            .unwrap_or("")
            .trim()
            .to_string();
        Finding::fail(
            Check::Fat,
            format!(
                "{name}: fsck.fat -n exited {}: {why}",
                out.status.code().unwrap_or(-1)
            ),
        )
    }
}
