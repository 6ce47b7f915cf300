//! Reference counts: how many times each host cluster is used.
//!
//! ```text
//!  refcount table (contiguous)     refcount block (one cluster each)
//!  ┌────────────────────┐          ┌─────────────────────────────────┐
//!  │ block offset       │─────────►│ u16 per host cluster: 0 free,   │
//!  │ ...                │          │ 1 used, n shared (compressed)   │
//!  └────────────────────┘          └─────────────────────────────────┘
//! ```
//!
//! qemu checks these against the L1/L2 tables (`qemu-img check`), so every
//! cluster the image uses, metadata included, must be counted exactly: 1 for
//! the header, tables and standard clusters, and for a cluster holding
//! compressed data, the number of compressed guest clusters that touch it.
//! The writer keeps one `u16` per host cluster (32 KiB of memory per GiB of
//! image with 64 KiB clusters) and serialises the blocks once the file is laid
//! out.

use super::header::REFCOUNT_ORDER;

/// Width of one refcount: `1 << refcount_order` bits.
pub(crate) const REFCOUNT_BITS: u32 = 1 << REFCOUNT_ORDER;
const REFCOUNT_BYTES: u64 = REFCOUNT_BITS as u64 / 8;
/// The largest refcount a 16-bit entry holds.
pub(crate) const MAX_REFCOUNT: u16 = u16::MAX;
/// A refcount table entry is one `u64`: the block's offset.
pub(crate) const TABLE_ENTRY_BYTES: u64 = 8;
/// qemu refuses refcount tables larger than this (`QCOW_MAX_REFTABLE_SIZE`).
pub(crate) const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;

/// Host clusters covered by one refcount block.
pub(crate) fn entries_per_block(cluster_bits: u32) -> u64 {
    (1u64 << cluster_bits) / REFCOUNT_BYTES
}

/// Refcount blocks listed by one cluster of the refcount table.
pub(crate) fn table_entries_per_cluster(cluster_bits: u32) -> u64 {
    (1u64 << cluster_bits) / TABLE_ENTRY_BYTES
}

/// Refcounts of host clusters `0..len()`, in file order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Refcounts(Vec<u16>);

impl Refcounts {
    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }

    pub fn get(&self, cluster: u64) -> u16 {
        self.0.get(cluster as usize).copied().unwrap_or(0)
    }

    /// Counts one more use of `cluster`, growing the list as needed. The caller
    /// makes sure the count stays below [`MAX_REFCOUNT`].
    pub fn increment(&mut self, cluster: u64) {
        let i = cluster as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, 0);
        }
        debug_assert!(self.0[i] < MAX_REFCOUNT);
        self.0[i] += 1;
    }

    /// Marks `count` clusters from `first` as used once (metadata, standard data).
    pub fn set_used(&mut self, first: u64, count: u64) {
        let end = (first + count) as usize;
        if end > self.0.len() {
            self.0.resize(end, 0);
        }
        self.0[first as usize..end].fill(1);
    }

    /// Serialises refcount block `index` (one cluster) into `out`.
    pub fn block_bytes(&self, cluster_bits: u32, index: u64, out: &mut Vec<u8>) {
        let per_block = entries_per_block(cluster_bits);
        let start = (index * per_block).min(self.len()) as usize;
        let end = ((index + 1) * per_block).min(self.len()) as usize;
        out.clear();
        out.reserve(1 << cluster_bits);
        for count in &self.0[start..end] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.resize(1 << cluster_bits, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64k_refcount_block_covers_32768_clusters() {
        assert_eq!(entries_per_block(16), 32768);
        assert_eq!(table_entries_per_cluster(16), 8192);
        assert_eq!(entries_per_block(12), 2048);
    }

    #[test]
    fn refcount_blocks_are_big_endian_u16_and_zero_past_the_end() {
        let mut r = Refcounts::default();
        r.set_used(0, 2);
        r.increment(2);
        r.increment(2);
        r.increment(2050);
        let mut out = Vec::new();
        r.block_bytes(12, 0, &mut out);
        assert_eq!(out.len(), 4096);
        assert_eq!(&out[..8], &[0, 1, 0, 1, 0, 2, 0, 0]);
        assert!(out[8..].iter().all(|&b| b == 0));
        r.block_bytes(12, 1, &mut out);
        assert_eq!(
            &out[..6],
            &[0, 0, 0, 0, 0, 1],
            "cluster 2050 is entry 2 of block 1"
        );
    }
}
