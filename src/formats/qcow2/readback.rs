//! A strict qcow2 check for unit tests: reads an image back into raw bytes
//! and recomputes every refcount from the tables, as `qemu-img check` does, so
//! writer tests can run without qemu. Cluster decoding is the library
//! reader's ([`super::reader`]), which follows qemu: raw inflate with a 4 KiB
//! window, and zstd, each from whole 512-byte sectors; what this file adds is
//! the bookkeeping a reader does not need (COPIED flags, refcounts).

use super::Compression;
use super::reader::{compressed_extent, decompress_cluster};
use super::table::{COPIED_FLAG, L1_TABLE_OFFSET_MASK, L2_COMPRESSED_BIT, L2_STANDARD_OFFSET_MASK};

fn be32(b: &[u8], at: u64) -> u32 {
    u32::from_be_bytes(b[at as usize..at as usize + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: u64) -> u64 {
    u64::from_be_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

/// The image's virtual disk; panics on anything malformed or miscounted.
pub(crate) fn read_image(image: &[u8]) -> Vec<u8> {
    assert_eq!(&image[..4], b"QFI\xfb");
    assert_eq!(be32(image, 4), 3);
    let cluster_bits = be32(image, 20);
    let cluster = 1u64 << cluster_bits;
    assert_eq!(image.len() as u64 % cluster, 0, "file is whole clusters");
    let size = be64(image, 24);
    let l1_entries = be32(image, 36) as u64;
    let l1_offset = be64(image, 40);
    let zstd = image[104] == 1;
    assert_eq!(be64(image, 72) != 0, zstd, "bit 3 goes with zstd");

    let file_clusters = (image.len() as u64 / cluster) as usize;
    let mut expected = vec![0u16; file_clusters];
    let mut count = |from: u64, to: u64| {
        for c in from / cluster..to.div_ceil(cluster) {
            expected[c as usize] += 1;
        }
    };
    count(0, cluster);
    count(l1_offset, l1_offset + l1_entries * 8);

    let mut disk = vec![0u8; size.next_multiple_of(cluster) as usize];
    let per_table = cluster / 8;
    for i in 0..l1_entries {
        let l1 = be64(image, l1_offset + i * 8);
        if l1 == 0 {
            continue;
        }
        assert_ne!(l1 & COPIED_FLAG, 0, "L1 entry {i} has COPIED");
        let l2_offset = l1 & L1_TABLE_OFFSET_MASK;
        count(l2_offset, l2_offset + cluster);
        for j in 0..per_table {
            let entry = be64(image, l2_offset + j * 8);
            if entry == 0 {
                continue;
            }
            let guest = ((i * per_table + j) * cluster) as usize;
            let dst = &mut disk[guest..guest + cluster as usize];
            if entry & L2_COMPRESSED_BIT != 0 {
                assert_eq!(
                    entry & COPIED_FLAG,
                    0,
                    "compressed clusters are never COPIED"
                );
                let (offset, len) = compressed_extent(cluster_bits, entry);
                count(offset, offset + len);
                let src = &image[offset as usize..(offset + len) as usize];
                let compression = if zstd {
                    Compression::Zstd
                } else {
                    Compression::Zlib
                };
                decompress_cluster(compression, src, dst)
                    .unwrap_or_else(|e| panic!("guest cluster at {guest}: {e}"));
            } else {
                assert_ne!(entry & COPIED_FLAG, 0, "standard clusters are COPIED");
                let offset = entry & L2_STANDARD_OFFSET_MASK;
                count(offset, offset + cluster);
                dst.copy_from_slice(&image[offset as usize..(offset + cluster) as usize]);
            }
        }
    }

    let table_offset = be64(image, 48);
    let table_clusters = be32(image, 56) as u64;
    count(table_offset, table_offset + table_clusters * cluster);
    let per_block = cluster / 2;
    let mut stored = vec![0u16; file_clusters];
    for t in 0..table_clusters * cluster / 8 {
        let block = be64(image, table_offset + t * 8);
        if block == 0 {
            continue;
        }
        count(block, block + cluster);
        for k in 0..per_block {
            let c = t * per_block + k;
            let value = u16::from_be_bytes(
                image[(block + k * 2) as usize..(block + k * 2 + 2) as usize]
                    .try_into()
                    .unwrap(),
            );
            if (c as usize) < stored.len() {
                stored[c as usize] = value;
            } else {
                assert_eq!(
                    value, 0,
                    "refcount for cluster {c} past the end of the file"
                );
            }
        }
    }
    assert_eq!(stored, expected, "stored refcounts match the tables");
    disk.truncate(size as usize);
    disk
}
