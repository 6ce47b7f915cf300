//! A squashfs image: the superblock natively, the file list with
//! `unsquashfs -lln`.
//!
//! Why unsquashfs for the listing: osforge's squashfs code is a writer;
//! its only reading is of file data for deduplication, not of the inode and
//! directory tables. A reader of those (metadata blocks in four codecs,
//! every inode type, directory headers) is a module of its own;
//! squashfs-tools is already what the tests check the writer against.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::{Error, Kind};
use crate::formats::squashfs::superblock::{Superblock, flags};

/// The directories kernels install their modules in, one per version.
const MODULE_DIRS: [&str; 2] = ["/lib/modules/", "/usr/lib/modules/"];
/// unsquashfs's default extraction directory, which prefixes every path
/// it lists.
const LIST_ROOT: &str = "squashfs-root";

/// What the superblock says.
#[derive(Debug, Clone, Serialize)]
pub struct SuperblockFacts {
    pub version: String,
    pub compression: String,
    pub block_size_bytes: u32,
    pub inode_count: u32,
    pub bytes_used: u64,
    /// Unix seconds.
    pub mkfs_time: u32,
    pub fragment_count: u32,
    pub id_count: u16,
    pub flags: Vec<&'static str>,
}

impl SuperblockFacts {
    /// The facts of a squashfs 4.0 superblock, or why there are none.
    pub fn parse(head: &[u8]) -> Result<SuperblockFacts, String> {
        let sb = Superblock::from_bytes(head)
            .ok_or_else(|| format!("{} bytes is shorter than its superblock", head.len()))?;
        let (major, minor) = Superblock::version(head).unwrap_or_default();
        if major != 4 {
            return Err(format!(
                "version {major}.{minor}; only squashfs 4.0 is read"
            ));
        }
        if !sb.block_size.is_power_of_two() || sb.block_size.trailing_zeros() > 20 {
            return Err(format!(
                "block size {} is not a power of two up to 1M",
                sb.block_size
            ));
        }
        Ok(SuperblockFacts {
            version: format!("{major}.{minor}"),
            compression: compression_name(sb.compression_id),
            block_size_bytes: sb.block_size,
            inode_count: sb.inode_count,
            bytes_used: sb.bytes_used,
            mkfs_time: sb.modification_time,
            fragment_count: sb.fragment_entry_count,
            id_count: sb.id_count,
            flags: flag_names(sb.flags),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SquashfsReport {
    #[serde(flatten)]
    pub superblock: SuperblockFacts,
    /// Every entry, the root directory included, as unsquashfs lists them.
    pub entry_count: u64,
    pub regular_file_count: u64,
    pub directory_count: u64,
    /// Versions found as directories under /lib/modules or /usr/lib/modules.
    pub kernel_versions: Vec<String>,
}

pub fn inspect(path: &Path, head: &[u8], size_bytes: u64) -> Result<SquashfsReport, Error> {
    let superblock = SuperblockFacts::parse(head).map_err(|reason| Error::Malformed {
        path: path.to_path_buf(),
        kind: Kind::Squashfs,
        reason,
    })?;
    if superblock.bytes_used > size_bytes {
        return Err(Error::Truncated {
            path: path.to_path_buf(),
            kind: Kind::Squashfs,
            what: "superblock (bytes_used)",
            needed_bytes: superblock.bytes_used,
            size_bytes,
        });
    }
    let listing = list(path)?;
    let mut report = SquashfsReport {
        superblock,
        entry_count: listing.len() as u64,
        regular_file_count: listing.iter().filter(|(t, _)| *t == '-').count() as u64,
        directory_count: listing.iter().filter(|(t, _)| *t == 'd').count() as u64,
        kernel_versions: Vec::new(),
    };
    for (kind, entry) in &listing {
        for dir in MODULE_DIRS {
            if let Some(version) = entry.strip_prefix(dir)
                && *kind == 'd'
                && !version.contains('/')
            {
                report.kernel_versions.push(version.to_string());
            }
        }
    }
    report.kernel_versions.sort();
    report.kernel_versions.dedup();
    Ok(report)
}

/// (type character, absolute path) of every entry, from `unsquashfs -lln`.
fn list(path: &Path) -> Result<Vec<(char, String)>, Error> {
    let tool_error = |reason: String| Error::Tool {
        tool: "unsquashfs",
        path: path.to_path_buf(),
        reason,
    };
    let out = Command::new("unsquashfs")
        .args(["-n", "-lln"])
        .arg(path)
        .output()
        .map_err(|e| tool_error(format!("{e} (install squashfs-tools)")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Malformed {
            path: path.to_path_buf(),
            kind: Kind::Squashfs,
            reason: format!(
                "unsquashfs cannot list it: {}",
                stderr.lines().last().unwrap_or("").trim()
            ),
        });
    }
    Ok(parse_listing(&String::from_utf8_lossy(&out.stdout)))
}

/// Lines are `MODE OWNER SIZE DATE TIME squashfs-root/PATH[ -> TARGET]`;
/// device sizes hold a space (`1,  3`), so the path is found by its prefix.
fn parse_listing(text: &str) -> Vec<(char, String)> {
    let marker = format!(" {LIST_ROOT}");
    text.lines()
        .filter_map(|line| {
            let kind = line.chars().next()?;
            if !"-dlcbps".contains(kind) {
                return None;
            }
            let at = line.find(&marker)? + marker.len();
            let rest = &line[at..];
            let rest = if kind == 'l' {
                rest.split(" -> ").next().unwrap_or(rest)
            } else {
                rest
            };
            let path = if rest.is_empty() { "/" } else { rest };
            Some((kind, path.to_string()))
        })
        .collect()
}

fn compression_name(id: u16) -> String {
    match id {
        1 => "gzip".into(),
        2 => "lzma".into(),
        3 => "lzo".into(),
        4 => "xz".into(),
        5 => "lz4".into(),
        6 => "zstd".into(),
        other => format!("unknown ({other})"),
    }
}

fn flag_names(bits: u16) -> Vec<&'static str> {
    [
        (flags::UNCOMPRESSED_INODES, "uncompressed-inodes"),
        (flags::UNCOMPRESSED_DATA, "uncompressed-data"),
        (flags::UNCOMPRESSED_FRAGMENTS, "uncompressed-fragments"),
        (flags::NO_FRAGMENTS, "no-fragments"),
        (flags::ALWAYS_FRAGMENTS, "always-fragments"),
        (flags::DUPLICATES, "duplicates"),
        (flags::EXPORTABLE, "exportable"),
        (flags::UNCOMPRESSED_XATTRS, "uncompressed-xattrs"),
        (flags::NO_XATTRS, "no-xattrs"),
        (flags::COMPRESSOR_OPTIONS, "compressor-options"),
        (flags::UNCOMPRESSED_IDS, "uncompressed-ids"),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_give_types_and_paths_even_for_devices_and_links() {
        let text = "drwxr-xr-x 0/0                 54 2023-11-14 22:13 squashfs-root\n\
                    crw-rw-rw- 0/0             1,  3 2023-11-14 22:13 squashfs-root/dev/null\n\
                    drwxr-xr-x 0/0                 3 2023-11-14 22:13 squashfs-root/lib/modules/6.1.0-9-amd64\n\
                    lrwxrwxrwx 0/0                 9 2023-11-14 22:13 squashfs-root/a b -> c d\n\
                    -rw-r--r-- 0/0                 3 2023-11-14 22:13 squashfs-root/x y\n";
        let l = parse_listing(text);
        assert_eq!(
            l,
            [
                ('d', "/".to_string()),
                ('c', "/dev/null".into()),
                ('d', "/lib/modules/6.1.0-9-amd64".into()),
                ('l', "/a b".into()),
                ('-', "/x y".into()),
            ]
        );
    }
}
