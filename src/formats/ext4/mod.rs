//! ext4 filesystems made by `mke2fs -d` (e2fsprogs), never mounted.
//!
//! A pure-Rust ext4 writer with a journal, extents, checksums and xattrs
//! does not exist in a usable state (crates are 0.1.x without journal), and
//! mke2fs has populated images from a directory since 1.43: owners, modes,
//! xattrs (security.capability included), hard links, device nodes, sparse
//! files. So osforge runs it, pinned to choices that do not depend on the
//! build host's `/etc/mke2fs.conf`:
//!
//! - The feature set is given whole (`-O none,...`, [`FEATURES`]): what
//!   Debian 12 makes by default, which GRUB 2.06 and Linux ≥ 4.x read.
//!   No `metadata_csum_seed` or `orphan_file` (GRUB 2.06 refuses the first,
//!   older e2fsck the second), whatever the host's defaults say.
//! - Blocks of 4 KiB, 256-byte inodes, one inode per 16 KiB
//!   (`-b 4096 -I 256 -i 16384`), also below 512 MiB where mke2fs would
//!   otherwise switch to its "small" profile; [`usable_bytes`] can then
//!   predict what fits before anything is written.
//! - The UUID and directory hash seed are given (`-U`, `-E hash_seed=`), so
//!   fstab and grub.cfg can name the filesystem before it exists; with
//!   `fake_time` (from `SOURCE_DATE_EPOCH`) the superblock times are fixed
//!   through `E2FSPROGS_FAKE_TIME`.
//!
//! mke2fs 1.47.0 reads a directory only (`-d` with a tarball came later),
//! and copies every inode's times from it (ctime included, which no tool
//! can set on the source). With `fake_time` the inode times are rewritten
//! afterwards ([`inode_times`]), so the same tree and epoch give the same
//! bytes.
//!
//! The image is a file of exactly the filesystem's size (made sparse here;
//! mke2fs discards, i.e. punches, it first and leaves unused blocks as
//! holes), to be placed into a disk as one extent.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::formats::gpt::Guid;

mod inode_times;
pub use inode_times::TimesError;

/// ext4 block size used for every filesystem osforge makes.
pub const BLOCK_BYTES: u64 = 4096;
/// Bytes of filesystem per inode (`-i`).
pub const BYTES_PER_INODE: u64 = 16384;
/// Inode size (`-I`).
pub const INODE_BYTES: u64 = 256;
/// Inodes mke2fs reserves (bad blocks, root, journal, lost+found...).
pub const RESERVED_INODES: u64 = 11;
/// The smallest filesystem made: below this the journal does not fit.
pub const MIN_SIZE_BYTES: u64 = 2048 * BLOCK_BYTES;
/// The longest volume label ext4 stores.
pub const MAX_LABEL_BYTES: usize = 16;
/// Group descriptors, bitmaps, reserved GDT blocks, lost+found, slack:
/// measured at 0.3 to 0.6 % on 100 MiB to 8 GiB images; 2 % is kept.
const METADATA_PERCENT: u64 = 2;
/// The feature set, whole; see the module documentation.
pub const FEATURES: &str = "none,has_journal,ext_attr,resize_inode,dir_index,filetype,extent,64bit,flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mke2fs not found (install e2fsprogs 1.43 or later)")]
    Mke2fsMissing,
    #[error("cannot run {tool}")]
    Running {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the filesystem image {path}")]
    CreatingImage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "an ext4 filesystem of {size_bytes} bytes is not a whole number of 4 KiB blocks, or under {MIN_SIZE_BYTES}"
    )]
    BadSize { size_bytes: u64 },
    #[error("ext4 label '{label}' is longer than {MAX_LABEL_BYTES} bytes")]
    LabelTooLong { label: String },
    #[error(
        "the files in {source_dir} do not fit in {size_bytes} bytes of ext4 (mke2fs: {message})"
    )]
    NoSpace {
        source_dir: PathBuf,
        size_bytes: u64,
        message: String,
    },
    #[error(transparent)]
    Times(#[from] TimesError),
    #[error("mke2fs failed on {source_dir} ({status}): {message}")]
    Mke2fsFailed {
        source_dir: PathBuf,
        status: String,
        message: String,
    },
}

/// How to make one filesystem.
#[derive(Debug, Clone)]
pub struct Ext4Options {
    pub size_bytes: u64,
    pub uuid: Guid,
    /// The seed of the htree directory hashes.
    pub hash_seed: Guid,
    pub label: Option<String>,
    /// Unix seconds for the superblock's times and every inode's (mtimes
    /// clamped to it, atime, ctime and crtime set to it); `None`: now, and
    /// the inode times of the source tree.
    pub fake_time: Option<u64>,
    /// The mke2fs to run; `mke2fs` on PATH when `None`.
    pub mke2fs: Option<PathBuf>,
}

/// What a tree needs from a filesystem: file data in whole blocks, and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Blocks of file, directory and long-symlink data, each rounded up.
    pub data_bytes: u64,
    pub inodes: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.data_bytes += other.data_bytes;
        self.inodes += other.inodes;
    }
}

/// The journal mke2fs gives a filesystem of `blocks` (`ext2fs_default_journal_size`).
pub fn journal_bytes(blocks: u64) -> u64 {
    let journal_blocks = match blocks {
        b if b < 2048 => 0,
        b if b < 32_768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16_384,
        b if b < 8192 * 1024 => 32_768,
        b if b < 16_384 * 1024 => 65_536,
        b if b < 32_768 * 1024 => 131_072,
        _ => 262_144,
    };
    journal_blocks * BLOCK_BYTES
}

/// Inodes in a filesystem of `size_bytes`.
pub fn inodes(size_bytes: u64) -> u64 {
    size_bytes / BYTES_PER_INODE
}

/// Bytes left for file data in a new filesystem of `size_bytes`: the size
/// less the inode tables, the journal and [`METADATA_PERCENT`].
pub fn usable_bytes(size_bytes: u64) -> u64 {
    let inode_tables = inodes(size_bytes) * INODE_BYTES;
    let metadata = size_bytes * METADATA_PERCENT / 100;
    size_bytes.saturating_sub(inode_tables + journal_bytes(size_bytes / BLOCK_BYTES) + metadata)
}

/// Whether `usage` fits in a new filesystem of `size_bytes`.
pub fn fits(usage: Usage, size_bytes: u64) -> bool {
    size_bytes >= MIN_SIZE_BYTES
        && usage.data_bytes <= usable_bytes(size_bytes)
        && usage.inodes + RESERVED_INODES <= inodes(size_bytes)
}

/// The smallest size, in whole `step_bytes`, that `usage` fits in.
pub fn min_size_bytes(usage: Usage, step_bytes: u64) -> u64 {
    // usable_bytes is monotonic (the journal grows in steps far smaller
    // than the size), so a binary search over steps finds the least.
    let (mut lo, mut hi) = (1u64, 2u64);
    while !fits(usage, hi * step_bytes) {
        lo = hi;
        hi *= 2;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fits(usage, mid * step_bytes) {
            hi = mid
        } else {
            lo = mid + 1
        }
    }
    hi * step_bytes
}

/// Makes `image` (created, or truncated) an ext4 filesystem holding the
/// tree at `source_dir`.
pub fn make(source_dir: &Path, image: &Path, opts: &Ext4Options) -> Result<(), Error> {
    if !opts.size_bytes.is_multiple_of(BLOCK_BYTES) || opts.size_bytes < MIN_SIZE_BYTES {
        return Err(Error::BadSize {
            size_bytes: opts.size_bytes,
        });
    }
    if let Some(label) = &opts.label
        && label.len() > MAX_LABEL_BYTES
    {
        return Err(Error::LabelTooLong {
            label: label.clone(),
        });
    }
    let creating = |source| Error::CreatingImage {
        path: image.to_path_buf(),
        source,
    };
    let file = File::create(image).map_err(creating)?;
    file.set_len(opts.size_bytes).map_err(creating)?;
    drop(file);

    let tool = match &opts.mke2fs {
        Some(path) => path.clone(),
        None => find_on_path("mke2fs").ok_or(Error::Mke2fsMissing)?,
    };
    let mut cmd = Command::new(&tool);
    cmd.args(["-F", "-q", "-t", "ext4"])
        .args(["-b", &BLOCK_BYTES.to_string()])
        .args(["-I", &INODE_BYTES.to_string()])
        .args(["-i", &BYTES_PER_INODE.to_string()])
        .args(["-O", FEATURES])
        .args(["-U", &opts.uuid.to_string()])
        .args([
            "-E",
            &format!("hash_seed={},root_owner=0:0", opts.hash_seed),
        ])
        .arg("-d")
        .arg(source_dir);
    if let Some(label) = &opts.label {
        cmd.args(["-L", label]);
    }
    cmd.arg(image).arg(format!("{}k", opts.size_bytes / 1024));
    cmd.env_remove("E2FSPROGS_FAKE_TIME");
    if let Some(t) = opts.fake_time {
        cmd.env("E2FSPROGS_FAKE_TIME", t.to_string());
    }
    // Tracked: an interrupted build stops it before removing the image.
    let output = crate::util::process::output(&mut cmd).map_err(|source| Error::Running {
        tool: tool.display().to_string(),
        source,
    })?;
    if output.status.success() {
        if let Some(t) = opts.fake_time {
            // Signed 32-bit seconds (the epoch bits of the _extra fields are
            // left at 0): a SOURCE_DATE_EPOCH past 2038 is capped there.
            let epoch = t.min(i32::MAX as u64) as u32;
            inode_times::fix_inode_times(image, epoch)?;
        }
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no error message")
        .to_string();
    let source_dir = source_dir.to_path_buf();
    // populate_fs reports a full filesystem as "Could not allocate block"
    // or "No free space in the filesystem".
    if stderr.contains("allocate")
        || stderr.contains("No free space")
        || stderr.contains("No space")
    {
        return Err(Error::NoSpace {
            source_dir,
            size_bytes: opts.size_bytes,
            message,
        });
    }
    Err(Error::Mke2fsFailed {
        source_dir,
        status: output.status.to_string(),
        message,
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    // mke2fs lives in /sbin, which a user's PATH may leave out.
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn usable_space_is_the_size_less_inode_tables_journal_and_metadata() {
        // 100 MiB: 6400 inodes (1.6 MiB of tables), a 4 MiB journal, 2 MiB slack.
        assert_eq!(journal_bytes(25_600), 4 * MIB);
        assert_eq!(
            usable_bytes(100 * MIB),
            100 * MIB - 6400 * 256 - 4 * MIB - 2 * MIB
        );
        // 8 GiB gets a 64 MiB journal, 16 GiB 128 MiB (as mke2fs 1.47 gives them).
        assert_eq!(journal_bytes((8 << 30) / 4096), 64 * MIB);
        assert_eq!(journal_bytes((16 << 30) / 4096), 128 * MIB);
        assert!(usable_bytes(1 << 30) < 1 << 30);
    }

    #[test]
    fn the_minimum_size_is_the_least_whole_step_that_fits() {
        let usage = Usage {
            data_bytes: 700 * MIB,
            inodes: 20_000,
        };
        let min = min_size_bytes(usage, MIB);
        assert!(fits(usage, min));
        assert!(!fits(usage, min - MIB));
        assert!(min > 700 * MIB && min < 800 * MIB, "{min}");
        // Many tiny files: inodes decide.
        let inode_bound = Usage {
            data_bytes: MIB,
            inodes: 100_000,
        };
        assert!(min_size_bytes(inode_bound, MIB) >= 100_011 * BYTES_PER_INODE);
    }
}
