//! A squashfs, standalone or the live root inside an ISO (read in place
//! at its offset): the superblock's fields natively, then squashfs-tools.
//!
//! Why unsquashfs: osforge reads no squashfs metadata itself (see
//! `inspect::squashfs`), and `unsquashfs -l` decompresses every inode and
//! directory block, so a flipped byte in one fails there. Data blocks are
//! only read by an extraction, which is as slow as the image is large; the
//! manifest's sha256 covers them instead.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use super::{Check, Finding, last_line};
use crate::formats::squashfs::superblock::{INVALID_TABLE, SUPERBLOCK_SIZE, Superblock};

/// Offset of `block_log` (log2 of the block size) in the superblock.
const BLOCK_LOG_AT: usize = 22;
/// squashfs 4.0 blocks are 4 KiB to 1 MiB.
const MIN_BLOCK_LOG: u32 = 12;
const MAX_BLOCK_LOG: u32 = 20;

/// Checks the squashfs at byte `offset` of `path`, `len_bytes` long.
/// `label` names it in findings when it is inside another file.
pub(super) fn check(
    path: &Path,
    offset: u64,
    len_bytes: u64,
    label: &str,
    findings: &mut Vec<Finding>,
) {
    let mut head = [0u8; SUPERBLOCK_SIZE];
    let read = File::open(path).and_then(|f| f.read_exact_at(&mut head, offset));
    if let Err(e) = read {
        findings.push(Finding::fail(
            Check::SquashfsSuperblock,
            format!("{label}cannot read the superblock: {e}"),
        ));
        return;
    }
    findings.push(match superblock_problem(&head, len_bytes) {
        None => {
            let sb = Superblock::from_bytes(&head).expect("checked");
            Finding::pass(
                Check::SquashfsSuperblock,
                format!(
                    "{label}version 4.0, block size {}, {} inodes, {} bytes used of {len_bytes}, tables in order",
                    sb.block_size, sb.inode_count, sb.bytes_used
                ),
            )
        }
        Some(problem) => Finding::fail(Check::SquashfsSuperblock, format!("{label}{problem}")),
    });
    findings.push(unsquashfs(path, offset, label));
}

/// What is wrong with a superblock, if anything: the magic, version 4.0,
/// a power-of-two block size that `block_log` agrees with, `bytes_used`
/// within the file, and the tables in the order mksquashfs (and osforge)
/// lay them out: inodes, directories, fragments, export, ids, xattrs, all
/// past the superblock and before `bytes_used`.
pub(crate) fn superblock_problem(head: &[u8], len_bytes: u64) -> Option<String> {
    let Some(sb) = Superblock::from_bytes(head) else {
        return Some("no squashfs magic (hsqs) at its start".into());
    };
    let (major, minor) = Superblock::version(head).unwrap_or_default();
    if (major, minor) != (4, 0) {
        return Some(format!("version {major}.{minor}, not 4.0"));
    }
    let block_log = u16::from_le_bytes([head[BLOCK_LOG_AT], head[BLOCK_LOG_AT + 1]]);
    let log = sb.block_size.trailing_zeros();
    if !sb.block_size.is_power_of_two() || !(MIN_BLOCK_LOG..=MAX_BLOCK_LOG).contains(&log) {
        return Some(format!(
            "block size {} is not a power of two from 4K to 1M",
            sb.block_size
        ));
    }
    if u32::from(block_log) != log {
        return Some(format!(
            "block_log {block_log} disagrees with block size {}",
            sb.block_size
        ));
    }
    if sb.bytes_used > len_bytes {
        return Some(format!(
            "bytes_used {} is past the end ({len_bytes} bytes): truncated",
            sb.bytes_used
        ));
    }
    let tables = [
        ("inode table", sb.inode_table_start),
        ("directory table", sb.directory_table_start),
        ("fragment table", sb.fragment_table_start),
        ("export table", sb.export_table_start),
        ("id table", sb.id_table_start),
        ("xattr id table", sb.xattr_id_table_start),
    ];
    let mut previous = ("superblock", SUPERBLOCK_SIZE as u64 - 1);
    for (name, start) in tables {
        // Only the inode, directory and id tables are always there.
        if start == INVALID_TABLE
            && matches!(name, "fragment table" | "export table" | "xattr id table")
        {
            continue;
        }
        if start <= previous.1 {
            return Some(format!(
                "{name} at {start} is not after the {} at {}",
                previous.0, previous.1
            ));
        }
        if start >= sb.bytes_used {
            return Some(format!(
                "{name} at {start} is past bytes_used ({})",
                sb.bytes_used
            ));
        }
        previous = (name, start);
    }
    None
}

/// `unsquashfs -s` (the superblock as squashfs-tools reads it) and
/// `unsquashfs -l -n` (every inode and directory block decompressed).
fn unsquashfs(path: &Path, offset: u64, label: &str) -> Finding {
    let run = |args: &[&str]| {
        Command::new("unsquashfs")
            .args(["-o", &offset.to_string()])
            .args(args)
            .arg(path)
            .output()
    };
    let (stat, list) = match (run(&["-s"]), run(&["-l", "-n"])) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(e), _) | (_, Err(e)) => {
            return Finding::fail(
                Check::Unsquashfs,
                format!("{label}cannot run unsquashfs: {e} (install squashfs-tools)"),
            );
        }
    };
    if !stat.status.success() {
        return Finding::fail(
            Check::Unsquashfs,
            format!(
                "{label}unsquashfs -s failed ({}): {}",
                stat.status,
                last_line(&stat.stderr)
            ),
        );
    }
    // unsquashfs reports some read errors on stderr and still exits 0
    // when it could carry on; any "error" there is a failure too.
    let stderr = String::from_utf8_lossy(&list.stderr).to_lowercase();
    if !list.status.success() || stderr.contains("error") || stderr.contains("failed") {
        return Finding::fail(
            Check::Unsquashfs,
            format!(
                "{label}unsquashfs -l failed ({}): {}",
                list.status,
                last_line(&list.stderr)
            ),
        );
    }
    let entries = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with("squashfs-root"))
        .count();
    Finding::pass(
        Check::Unsquashfs,
        format!("{label}unsquashfs -s and -l read it: {entries} entries listed"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock() -> Vec<u8> {
        Superblock {
            block_size: 131_072,
            bytes_used: 10_000,
            inode_table_start: 5_000,
            directory_table_start: 6_000,
            fragment_table_start: INVALID_TABLE,
            export_table_start: INVALID_TABLE,
            id_table_start: 7_000,
            xattr_id_table_start: INVALID_TABLE,
            ..Default::default()
        }
        .to_bytes()
        .to_vec()
    }

    #[test]
    fn a_sound_superblock_passes_and_each_broken_field_is_named() {
        let good = superblock();
        assert_eq!(superblock_problem(&good, 16_384), None);
        let problem = superblock_problem(&good, 8_192).unwrap();
        assert!(problem.contains("truncated"), "{problem}");

        let mut b = good.clone();
        b[28] = 3; // version 3.0
        assert!(
            superblock_problem(&b, 16_384)
                .unwrap()
                .contains("version 3.0")
        );

        let mut b = good.clone();
        b[12..16].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(
            superblock_problem(&b, 16_384)
                .unwrap()
                .contains("power of two")
        );

        let mut b = good.clone();
        // directory table before the inode table
        b[72..80].copy_from_slice(&4_000u64.to_le_bytes());
        let problem = superblock_problem(&b, 16_384).unwrap();
        assert!(problem.contains("directory table at 4000"), "{problem}");

        let mut b = good;
        b[48..56].copy_from_slice(&12_000u64.to_le_bytes());
        let problem = superblock_problem(&b, 16_384).unwrap();
        assert!(
            problem.contains("id table at 12000 is past bytes_used"),
            "{problem}"
        );
    }
}
