//! Fixed inode times for reproducible filesystems.
//!
//! `mke2fs -d` copies each inode's atime, ctime and mtime from the source
//! tree (E2FSPROGS_FAKE_TIME only reaches the superblock and the inodes mke2fs
//! makes itself). ctime cannot be set on a source file, and hard-linking the
//! tree into per-partition copies bumps it, so two builds of one tree differ
//! in every inode. This rewrites the times in place once mke2fs is done, as
//! the squashfs writer clamps them: mtime to at most the epoch, atime, ctime
//! and crtime to the epoch; then each inode's crc32c is recomputed.
//!
//! Only the fields below are read (`Documentation/filesystems/ext4/`): the
//! superblock, the group descriptors, the inode bitmaps and inode tables.
//! Every checksum is checked before an inode is touched, so a layout this
//! code does not understand fails loudly instead of being corrupted.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SUPERBLOCK_AT: u64 = 1024;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const BG_INODE_UNINIT: u16 = 0x1;

// Inode fields (offsets in the on-disk inode).
const I_ATIME: usize = 0x08;
const I_CTIME: usize = 0x0C;
const I_MTIME: usize = 0x10;
const I_GENERATION: usize = 0x64;
const I_CHECKSUM_LO: usize = 0x7C;
const I_EXTRA_ISIZE: usize = 0x80;
const I_CHECKSUM_HI: usize = 0x82;
const I_CTIME_EXTRA: usize = 0x84;
const I_MTIME_EXTRA: usize = 0x88;
const I_ATIME_EXTRA: usize = 0x8C;
const I_CRTIME: usize = 0x90;
const I_CRTIME_EXTRA: usize = 0x94;

#[derive(Debug, thiserror::Error)]
pub enum TimesError {
    #[error("cannot rewrite inode times in {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {what}")]
    Unexpected { path: String, what: String },
}

struct Layout {
    block_bytes: u64,
    inodes_per_group: u32,
    inode_bytes: usize,
    groups: u32,
    descriptors_at: u64,
    descriptor_bytes: usize,
    /// The crc32c seed of metadata checksums; None without metadata_csum.
    csum_seed: Option<u32>,
}

/// Sets every in-use inode's atime, ctime and crtime to `epoch` and clamps
/// its mtime to it; returns how many inodes were rewritten.
pub fn fix_inode_times(image: &Path, epoch: u32) -> Result<u64, TimesError> {
    let path = image.display().to_string();
    let io_error = |source| TimesError::Io {
        path: path.clone(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(io_error)?;
    let layout = read_layout(&file, &path)?;
    let mut descriptors = vec![0u8; layout.groups as usize * layout.descriptor_bytes];
    file.read_exact_at(&mut descriptors, layout.descriptors_at)
        .map_err(io_error)?;
    let mut bitmap = vec![0u8; layout.block_bytes as usize];
    let mut table = Vec::new();
    let mut rewritten = 0;
    for group in 0..layout.groups {
        let d = &descriptors[group as usize * layout.descriptor_bytes..][..layout.descriptor_bytes];
        let wide = layout.descriptor_bytes >= 64;
        let split = |lo_at: usize, hi_at: usize| {
            u64::from(le32(d, lo_at))
                | if wide {
                    u64::from(le32(d, hi_at)) << 32
                } else {
                    0
                }
        };
        if le16(d, 0x12) & BG_INODE_UNINIT != 0 {
            continue;
        }
        let unused = u32::from(le16(d, 0x1C))
            | if wide {
                u32::from(le16(d, 0x32)) << 16
            } else {
                0
            };
        let used = layout.inodes_per_group.saturating_sub(unused) as usize;
        if used == 0 {
            continue;
        }
        file.read_exact_at(&mut bitmap, split(0x04, 0x24) * layout.block_bytes)
            .map_err(io_error)?;
        let table_at = split(0x08, 0x28) * layout.block_bytes;
        table.resize(used * layout.inode_bytes, 0);
        file.read_exact_at(&mut table, table_at).map_err(io_error)?;
        let mut changed = false;
        for index in 0..used {
            if bitmap[index / 8] & (1 << (index % 8)) == 0 {
                continue;
            }
            let number = group * layout.inodes_per_group + index as u32 + 1;
            let inode = &mut table[index * layout.inode_bytes..][..layout.inode_bytes];
            if let Some(seed) = layout.csum_seed
                && inode_csum(seed, number, inode) != stored_csum(inode)
            {
                return Err(TimesError::Unexpected {
                    path,
                    what: format!("inode {number} fails its checksum before any change"),
                });
            }
            if set_times(inode, epoch) {
                if let Some(seed) = layout.csum_seed {
                    let csum = inode_csum(seed, number, inode);
                    put16(inode, I_CHECKSUM_LO, csum as u16);
                    if has_checksum_hi(inode) {
                        put16(inode, I_CHECKSUM_HI, (csum >> 16) as u16);
                    }
                }
                changed = true;
                rewritten += 1;
            }
        }
        if changed {
            file.write_all_at(&table, table_at).map_err(io_error)?;
        }
    }
    file.sync_data().map_err(io_error)?;
    Ok(rewritten)
}

fn read_layout(file: &File, path: &str) -> Result<Layout, TimesError> {
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, SUPERBLOCK_AT)
        .map_err(|source| TimesError::Io {
            path: path.to_string(),
            source,
        })?;
    let unexpected = |what: String| TimesError::Unexpected {
        path: path.to_string(),
        what,
    };
    if le16(&sb, 0x38) != 0xEF53 {
        return Err(unexpected("not an ext2/3/4 filesystem".into()));
    }
    let inodes = le32(&sb, 0x00);
    let first_data_block = u64::from(le32(&sb, 0x14));
    let block_bytes = 1024u64 << le32(&sb, 0x18);
    let inodes_per_group = le32(&sb, 0x28);
    let inode_bytes = usize::from(le16(&sb, 0x58));
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    if inodes_per_group == 0 || inode_bytes < 128 || block_bytes > 65536 {
        return Err(unexpected(format!(
            "unexpected geometry ({inodes_per_group} inodes per group, {inode_bytes}-byte inodes)"
        )));
    }
    let descriptor_bytes = if incompat & INCOMPAT_64BIT != 0 {
        usize::from(le16(&sb, 0xFE))
    } else {
        32
    };
    let csum_seed = (ro_compat & RO_COMPAT_METADATA_CSUM != 0).then(|| {
        if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(&sb, 0x270)
        } else {
            crc32c_raw(!0, &sb[0x68..0x78])
        }
    });
    Ok(Layout {
        block_bytes,
        inodes_per_group,
        inode_bytes,
        groups: inodes.div_ceil(inodes_per_group),
        descriptors_at: (first_data_block + 1) * block_bytes,
        descriptor_bytes,
        csum_seed,
    })
}

/// Returns whether anything changed.
fn set_times(inode: &mut [u8], epoch: u32) -> bool {
    let before = inode.to_vec();
    let extra_end = if inode.len() > 128 {
        (128 + usize::from(le16(inode, I_EXTRA_ISIZE))).min(inode.len())
    } else {
        128
    };
    let has = |field: usize| field + 4 <= extra_end;
    // mtime: clamped (a time past the epoch becomes the epoch).
    let mtime_extra = has(I_MTIME_EXTRA).then(|| le32(inode, I_MTIME_EXTRA));
    if time_of(le32(inode, I_MTIME), mtime_extra) > i64::from(epoch) {
        put32(inode, I_MTIME, epoch);
        if has(I_MTIME_EXTRA) {
            put32(inode, I_MTIME_EXTRA, 0);
        }
    }
    // atime, ctime, crtime: what the source machine did to its files, so
    // the epoch for all.
    put32(inode, I_ATIME, epoch);
    put32(inode, I_CTIME, epoch);
    for field in [I_ATIME_EXTRA, I_CTIME_EXTRA, I_CRTIME_EXTRA] {
        if has(field) {
            put32(inode, field, 0);
        }
    }
    if has(I_CRTIME) {
        put32(inode, I_CRTIME, epoch);
    }
    before != inode
}

/// Seconds since 1970 from a 32-bit time and its `_extra` word (whose low
/// two bits extend the seconds past 2038).
fn time_of(seconds: u32, extra: Option<u32>) -> i64 {
    i64::from(seconds as i32) + (i64::from(extra.unwrap_or(0) & 3) << 32)
}

fn has_checksum_hi(inode: &[u8]) -> bool {
    inode.len() > 128 && usize::from(le16(inode, I_EXTRA_ISIZE)) >= I_CHECKSUM_HI + 2 - 128
}

fn stored_csum(inode: &[u8]) -> u32 {
    let lo = u32::from(le16(inode, I_CHECKSUM_LO));
    if has_checksum_hi(inode) {
        lo | u32::from(le16(inode, I_CHECKSUM_HI)) << 16
    } else {
        lo
    }
}

/// e2fsprogs' `ext2fs_inode_csum`: crc32c over the inode number, its
/// generation and the whole inode with its checksum fields zeroed.
fn inode_csum(seed: u32, number: u32, inode: &[u8]) -> u32 {
    let mut copy = inode.to_vec();
    put16(&mut copy, I_CHECKSUM_LO, 0);
    let hi = has_checksum_hi(inode);
    if hi {
        put16(&mut copy, I_CHECKSUM_HI, 0);
    }
    let mut crc = crc32c_raw(seed, &number.to_le_bytes());
    crc = crc32c_raw(crc, &inode[I_GENERATION..I_GENERATION + 4]);
    crc = crc32c_raw(crc, &copy);
    if hi { crc } else { crc & 0xFFFF }
}

/// CRC-32C (Castagnoli) without the initial and final inversion, as ext4's
/// `ext2fs_crc32c_le` computes it.
fn crc32c_raw(mut crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 with the usual inversions.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn times_past_2038_are_read_with_their_epoch_bits() {
        assert_eq!(time_of(0, Some(1)), 1 << 32);
        assert_eq!(time_of(u32::MAX, None), -1);
    }
}
