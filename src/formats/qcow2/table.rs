//! L1 and L2 tables: the two-level map from guest clusters to host offsets.
//!
//! ```text
//!  guest offset ──► l1_index = guest_cluster / l2_entries
//!                   l2_index = guest_cluster % l2_entries
//!
//!  L1 table (contiguous)          L2 table (one cluster each)
//!  ┌──────────────────────┐       ┌──────────────────────────────────┐
//!  │ COPIED | L2 offset   │──────►│ COPIED | host cluster offset     │ standard
//!  │ 0 (no L2: all zeros) │       │ COMPRESSED | sectors | host byte │ compressed
//!  └──────────────────────┘       │ 0 (unallocated: reads as zeros)  │
//!                                 └──────────────────────────────────┘
//! ```
//!
//! Entries are 64-bit big-endian. osforge writes no snapshots, so every table and
//! every standard cluster has refcount 1 and carries the COPIED flag, which qemu
//! uses to know it may write in place.

/// Bit 63 of L1 and L2 entries: the refcount of what the entry points to is
/// exactly one. Never set on compressed clusters.
pub(crate) const COPIED_FLAG: u64 = 1 << 63;
/// Bits 9-55 of an L1 entry: the L2 table's offset (cluster-aligned).
pub(crate) const L1_TABLE_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bit 62 of an L2 entry: the cluster is compressed.
pub(crate) const L2_COMPRESSED_BIT: u64 = 1 << 62;
/// Bits 9-55 of a standard L2 entry: the host cluster offset.
pub(crate) const L2_STANDARD_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Compressed data is addressed in 512-byte sectors.
pub(crate) const SECTOR_BYTES: u64 = 512;
const SECTOR_BITS: u32 = 9;
/// An L1 or L2 entry is one `u64`.
pub(crate) const ENTRY_BYTES: u64 = 8;
/// qemu refuses L1 tables larger than this (`QCOW_MAX_L1_SIZE`).
pub(crate) const MAX_L1_TABLE_BYTES: u64 = 32 << 20;

/// Entries in one L2 table (which fills exactly one cluster).
pub(crate) fn l2_entries(cluster_bits: u32) -> u64 {
    (1u64 << cluster_bits) / ENTRY_BYTES
}

pub(crate) fn l1_entry(l2_table_offset: u64) -> u64 {
    debug_assert_eq!(l2_table_offset & !L1_TABLE_OFFSET_MASK, 0);
    (l2_table_offset & L1_TABLE_OFFSET_MASK) | COPIED_FLAG
}

pub(crate) fn l2_standard_entry(host_offset: u64) -> u64 {
    debug_assert_eq!(host_offset & !L2_STANDARD_OFFSET_MASK, 0);
    (host_offset & L2_STANDARD_OFFSET_MASK) | COPIED_FLAG
}

/// Where the compressed cluster descriptor's sector count starts:
/// `x = 62 - (cluster_bits - 8)`. Bits `0..x` hold the host byte offset.
pub(crate) fn compressed_offset_bits(cluster_bits: u32) -> u32 {
    62 - (cluster_bits - 8)
}

/// Exclusive upper bound for the host byte offset of compressed data.
pub(crate) fn max_compressed_offset(cluster_bits: u32) -> u64 {
    1u64 << compressed_offset_bits(cluster_bits).min(56)
}

/// An L2 entry for `len_bytes` of compressed data at host byte `host_offset`.
/// The descriptor stores the number of 512-byte sectors the data touches beyond
/// the one holding its first byte; readers read whole sectors and stop once the
/// cluster is decompressed, so the data needs no padding.
pub(crate) fn l2_compressed_entry(cluster_bits: u32, host_offset: u64, len_bytes: u64) -> u64 {
    debug_assert!(len_bytes > 0 && host_offset < max_compressed_offset(cluster_bits));
    let x = compressed_offset_bits(cluster_bits);
    let additional_sectors =
        ((host_offset + len_bytes - 1) >> SECTOR_BITS) - (host_offset >> SECTOR_BITS);
    // The field is cluster_bits - 8 wide; data shorter than a cluster always fits.
    debug_assert!(additional_sectors < 1 << (cluster_bits - 8));
    L2_COMPRESSED_BIT | (additional_sectors << x) | host_offset
}

/// Serialises a table of entries, zero-padded to `len_bytes`.
pub(crate) fn table_bytes(entries: &[u64], len_bytes: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(len_bytes);
    for e in entries {
        out.extend_from_slice(&e.to_be_bytes());
    }
    out.resize(len_bytes, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_entries_keep_the_offset_and_set_copied() {
        assert_eq!(l2_standard_entry(0x3_0000), 0x8000_0000_0003_0000);
        assert_eq!(l1_entry(0x7_0000), 0x8000_0000_0007_0000);
    }

    #[test]
    fn compressed_descriptor_counts_additional_sectors_after_the_first() {
        // 64 KiB clusters: x = 54.
        assert_eq!(compressed_offset_bits(16), 54);
        // 100 bytes inside one sector: no additional sector.
        assert_eq!(
            l2_compressed_entry(16, 0x10010, 100),
            L2_COMPRESSED_BIT | 0x10010
        );
        // 0x101f0 + 0x20 crosses into the next sector: one more.
        assert_eq!(
            l2_compressed_entry(16, 0x101f0, 0x20),
            L2_COMPRESSED_BIT | (1 << 54) | 0x101f0
        );
        // From the last byte of a sector, 1025 bytes touch 3 sectors in all.
        assert_eq!(
            l2_compressed_entry(16, 0x101ff, 1025),
            L2_COMPRESSED_BIT | (2 << 54) | 0x101ff
        );
    }

    #[test]
    fn compressed_offsets_are_limited_by_cluster_size() {
        assert_eq!(compressed_offset_bits(21), 49, "2 MiB clusters: 512 TiB");
        assert_eq!(max_compressed_offset(21), 1 << 49);
        assert_eq!(max_compressed_offset(12), 1 << 56, "capped at 64 PiB");
    }

    #[test]
    fn the_largest_compressed_cluster_fits_its_sector_field() {
        for bits in 12..=21 {
            let len = (1u64 << bits) - 1;
            let e = l2_compressed_entry(bits, (1 << 30) + 511, len);
            let sectors = (e & !L2_COMPRESSED_BIT) >> compressed_offset_bits(bits);
            assert_eq!(sectors, (1 << bits) / 512, "cluster_bits {bits}");
        }
    }
}
