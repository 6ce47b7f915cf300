//! Host space: where each data cluster and L2 table goes, and the refcounts that
//! result. Pure bookkeeping with no I/O, so packing rules are unit-testable.
//!
//! The file grows strictly forward. Standard clusters and L2 tables take whole,
//! cluster-aligned clusters; compressed clusters are packed back to back at byte
//! granularity and may straddle a cluster boundary (qemu does the same). A host
//! cluster's refcount is the number of compressed clusters touching it, so it is
//! capped: once a cluster reaches [`MAX_REFCOUNT`] (possible with 2 MiB clusters
//! of highly compressible data), packing moves on to the next cluster.

use super::Error;
use super::refcount::{MAX_REFCOUNT, Refcounts};
use super::table::max_compressed_offset;

/// Host offsets of standard clusters and tables have 56 bits (L1/L2 masks).
const MAX_STANDARD_OFFSET: u64 = 1 << 56;

/// Where to put something, and how many zero bytes to write before it to get
/// there from the current end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub offset: u64,
    pub padding_bytes: u64,
}

#[derive(Debug)]
pub(crate) struct HostAllocator {
    cluster_bits: u32,
    /// First byte not yet used.
    end_bytes: u64,
    refcounts: Refcounts,
}

impl HostAllocator {
    /// Starts after cluster 0, which holds the header.
    pub fn new(cluster_bits: u32) -> Self {
        let mut refcounts = Refcounts::default();
        refcounts.set_used(0, 1);
        HostAllocator {
            cluster_bits,
            end_bytes: 1 << cluster_bits,
            refcounts,
        }
    }

    fn cluster_bytes(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn too_large(&self, file_size_bytes: u64, max_bytes: u64) -> Error {
        Error::ImageTooLarge {
            file_size_bytes,
            cluster_size_bytes: 1 << self.cluster_bits,
            max_bytes,
        }
    }

    /// A whole cluster (a standard data cluster or an L2 table).
    pub fn whole_cluster(&mut self) -> Result<Placement, Error> {
        let offset = self.end_bytes.next_multiple_of(self.cluster_bytes());
        let end = offset + self.cluster_bytes();
        if end > MAX_STANDARD_OFFSET {
            return Err(self.too_large(end, MAX_STANDARD_OFFSET));
        }
        self.refcounts.set_used(offset >> self.cluster_bits, 1);
        Ok(self.advance(offset, end))
    }

    /// `len_bytes` of compressed data (`0 < len_bytes < cluster size`).
    pub fn compressed(&mut self, len_bytes: u64) -> Result<Placement, Error> {
        debug_assert!(len_bytes > 0 && len_bytes < self.cluster_bytes());
        let mut offset = self.end_bytes;
        let partly_used = !offset.is_multiple_of(self.cluster_bytes());
        if partly_used && self.refcounts.get(offset >> self.cluster_bits) == MAX_REFCOUNT {
            offset = offset.next_multiple_of(self.cluster_bytes());
        }
        let max = max_compressed_offset(self.cluster_bits);
        if offset >= max {
            return Err(self.too_large(offset + len_bytes, max));
        }
        let end = offset + len_bytes;
        let first = offset >> self.cluster_bits;
        let last = (end - 1) >> self.cluster_bits;
        for cluster in first..=last {
            self.refcounts.increment(cluster);
        }
        Ok(self.advance(offset, end))
    }

    fn advance(&mut self, offset: u64, end: u64) -> Placement {
        let padding_bytes = offset - self.end_bytes;
        self.end_bytes = end;
        Placement {
            offset,
            padding_bytes,
        }
    }

    /// Ends the data area on a cluster boundary. Returns the zero bytes to write
    /// to get there, the clusters used so far, and their refcounts.
    pub fn finish(mut self) -> (u64, u64, Refcounts) {
        let aligned = self.end_bytes.next_multiple_of(self.cluster_bytes());
        let padding_bytes = aligned - self.end_bytes;
        self.end_bytes = aligned;
        (padding_bytes, aligned >> self.cluster_bits, self.refcounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_clusters_pack_and_straddle_cluster_boundaries() {
        let mut a = HostAllocator::new(12);
        let p = a.compressed(3000).unwrap();
        assert_eq!(
            p,
            Placement {
                offset: 4096,
                padding_bytes: 0
            }
        );
        let p = a.compressed(2000).unwrap();
        assert_eq!(p.offset, 7096, "packed right after the first");
        let (padding, clusters, refcounts) = a.finish();
        assert_eq!(padding, 3 * 4096 - 9096);
        assert_eq!(clusters, 3);
        assert_eq!(refcounts.get(0), 1, "header");
        assert_eq!(
            refcounts.get(1),
            2,
            "both compressed clusters touch cluster 1"
        );
        assert_eq!(refcounts.get(2), 1, "only the second reaches cluster 2");
    }

    #[test]
    fn whole_clusters_start_on_the_next_boundary_after_compressed_data() {
        let mut a = HostAllocator::new(12);
        a.compressed(100).unwrap();
        let p = a.whole_cluster().unwrap();
        assert_eq!(
            p,
            Placement {
                offset: 8192,
                padding_bytes: 8192 - 4196
            }
        );
        let p = a.compressed(10).unwrap();
        assert_eq!(
            p,
            Placement {
                offset: 12288,
                padding_bytes: 0
            }
        );
    }

    #[test]
    fn a_host_cluster_never_exceeds_the_largest_refcount() {
        let mut a = HostAllocator::new(21);
        let cluster = 2u64 << 20;
        let mut offsets = Vec::new();
        for _ in 0..(MAX_REFCOUNT as u64 + 10) {
            offsets.push(a.compressed(1).unwrap().offset);
        }
        assert_eq!(
            offsets[MAX_REFCOUNT as usize - 1],
            cluster + MAX_REFCOUNT as u64 - 1
        );
        assert_eq!(
            offsets[MAX_REFCOUNT as usize],
            2 * cluster,
            "the 65536th tiny cluster moves to a fresh host cluster"
        );
        let (_, clusters, refcounts) = a.finish();
        assert_eq!(clusters, 3);
        assert_eq!(refcounts.get(1), MAX_REFCOUNT);
        assert_eq!(refcounts.get(2), 10);
    }

    #[test]
    fn compressed_data_past_the_descriptor_range_is_refused() {
        let mut a = HostAllocator::new(21);
        a.end_bytes = 1 << 49;
        assert!(matches!(a.compressed(10), Err(Error::ImageTooLarge { .. })));
    }
}
