//! ext4: the superblock is read natively (label, UUID, size); directories
//! and files through e2fsprogs' `debugfs`.
//!
//! Why debugfs: reading ext4 directories means group descriptors, inode
//! tables, extent trees and htree directories, a reader of its own to keep
//! correct, while the disk builder already depends on e2fsprogs (`mke2fs
//! -d`) and `debugfs` reads a filesystem at a byte offset of a larger file
//! (`IMAGE?offset=N`, e2fsprogs' unix I/O option), read-only, in
//! milliseconds. A raw disk is read in place that way; a qcow2 partition is
//! first copied, sparsely, to a temporary file (see `disk::Source`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::formats::gpt::Guid;

use super::Error;

/// The superblock is 1024 bytes from the start of the filesystem.
pub const SUPERBLOCK_AT: u64 = 1024;
pub const SUPERBLOCK_BYTES: usize = 1024;
const MAGIC: u16 = 0xEF53;
const MAGIC_AT: usize = 0x38;
const BLOCKS_LO_AT: usize = 0x04;
const LOG_BLOCK_SIZE_AT: usize = 0x18;
const INCOMPAT_AT: usize = 0x60;
const UUID_AT: usize = 0x68;
const LABEL_AT: usize = 0x78;
const LABEL_BYTES: usize = 16;
const BLOCKS_HI_AT: usize = 0x150;
/// `s_feature_incompat` bit: block counts have a high 32-bit half.
const INCOMPAT_64BIT: u32 = 0x80;
/// Inode mode bits, as `debugfs ls -p` prints them in octal.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

/// The superblock facts `inspect` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub label: String,
    pub uuid: Guid,
    pub block_bytes: u64,
    pub blocks: u64,
}

impl Superblock {
    /// Parses the 1024 bytes at [`SUPERBLOCK_AT`]; None without the magic.
    pub fn parse(b: &[u8]) -> Option<Superblock> {
        let le16 = |at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
        let le32 = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        if b.len() < SUPERBLOCK_BYTES || le16(MAGIC_AT) != MAGIC {
            return None;
        }
        let log = le32(LOG_BLOCK_SIZE_AT);
        if log > 6 {
            return None; // blocks above 64 KiB do not exist
        }
        let hi = if le32(INCOMPAT_AT) & INCOMPAT_64BIT != 0 {
            u64::from(le32(BLOCKS_HI_AT))
        } else {
            0
        };
        let label = &b[LABEL_AT..LABEL_AT + LABEL_BYTES];
        let end = label.iter().position(|&c| c == 0).unwrap_or(LABEL_BYTES);
        Some(Superblock {
            label: String::from_utf8_lossy(&label[..end]).into_owned(),
            uuid: Guid(b[UUID_AT..UUID_AT + 16].try_into().unwrap()),
            block_bytes: 1024 << log,
            blocks: (hi << 32) | u64::from(le32(BLOCKS_LO_AT)),
        })
    }

    pub fn size_bytes(&self) -> u64 {
        self.blocks * self.block_bytes
    }
}

/// Where debugfs finds a filesystem: a file and the byte it starts at.
#[derive(Debug, Clone)]
pub struct Target {
    pub file: PathBuf,
    pub offset_bytes: u64,
}

/// One entry of `debugfs ls -p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub is_file: bool,
    pub size_bytes: u64,
}

impl Target {
    /// `FILE?offset=N`, which every e2fsprogs tool opens (debugfs, e2fsck).
    pub(crate) fn spec(&self) -> String {
        // e2fsprogs splits the device name at '?' for I/O options.
        format!("{}?offset={}", self.file.display(), self.offset_bytes)
    }

    fn run(&self, request: &str) -> Result<(Vec<u8>, String), Error> {
        let tool_error = |reason: String| Error::Tool {
            tool: "debugfs",
            path: self.file.clone(),
            reason,
        };
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(request)
            .arg(self.spec())
            .output()
            .map_err(|e| tool_error(format!("{e} (install e2fsprogs)")))?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(tool_error(stderr.trim().to_string()));
        }
        Ok((out.stdout, stderr))
    }

    /// The entries of directory `dir`, without `.` and `..`; None when there
    /// is no such directory.
    pub fn list(&self, dir: &str) -> Result<Option<Vec<DirEntry>>, Error> {
        let (stdout, stderr) = self.run(&format!("ls -p {dir}"))?;
        if stderr.contains("not found") || stderr.contains("Ext2 inode is not a directory") {
            return Ok(None);
        }
        Ok(Some(parse_ls_p(&String::from_utf8_lossy(&stdout))))
    }

    /// The bytes of the file at `path`; None when there is no such file.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let (stdout, stderr) = self.run(&format!("cat {path}"))?;
        if stderr.contains("not found") {
            return Ok(None);
        }
        Ok(Some(stdout))
    }
}

/// Parses `ls -p` lines: `/inode/mode/uid/gid/name/size/` (directories
/// have an empty size); names cannot hold '/'.
fn parse_ls_p(text: &str) -> Vec<DirEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('/').collect();
            if f.len() < 8 {
                return None;
            }
            let mode = u32::from_str_radix(f[2], 8).ok()?;
            let name = f[5];
            if name == "." || name == ".." || name.is_empty() {
                return None;
            }
            Some(DirEntry {
                name: name.to_string(),
                is_dir: mode & S_IFMT == S_IFDIR,
                is_file: mode & S_IFMT == S_IFREG,
                size_bytes: f[6].parse().unwrap_or(0),
            })
        })
        .collect()
}

/// Whether `path` can be given to debugfs as is.
pub fn spec_safe(path: &Path) -> bool {
    !path.to_string_lossy().contains('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_p_lines_give_names_kinds_and_sizes() {
        let text = "/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/040755/0/0/grub//\n\
                    /13/100644/0/0/vmlinuz-6.1.0-9-amd64/3145728/\n/14/120777/0/0/link/7/\n";
        let e = parse_ls_p(text);
        assert_eq!(e.len(), 3);
        assert!(e[0].is_dir && e[0].name == "grub");
        assert!(e[1].is_file && e[1].size_bytes == 3_145_728);
        assert!(!e[2].is_file && !e[2].is_dir);
    }

    #[test]
    fn the_superblock_gives_label_uuid_and_size() {
        let mut b = vec![0u8; SUPERBLOCK_BYTES];
        b[MAGIC_AT..MAGIC_AT + 2].copy_from_slice(&MAGIC.to_le_bytes());
        b[LOG_BLOCK_SIZE_AT] = 2;
        b[BLOCKS_LO_AT..BLOCKS_LO_AT + 4].copy_from_slice(&65536u32.to_le_bytes());
        b[LABEL_AT..LABEL_AT + 4].copy_from_slice(b"boot");
        b[UUID_AT] = 0xab;
        let sb = Superblock::parse(&b).unwrap();
        assert_eq!((sb.label.as_str(), sb.block_bytes), ("boot", 4096));
        assert_eq!(sb.size_bytes(), 256 << 20);
        assert_eq!(sb.uuid.0[0], 0xab);
        b[MAGIC_AT] = 0;
        assert_eq!(Superblock::parse(&b), None);
    }
}
