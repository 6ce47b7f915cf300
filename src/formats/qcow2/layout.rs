//! Where the tables go once the data area is written: pure arithmetic, no I/O.
//!
//! ```text
//!  0 ............ data_clusters | L1 table | refcount blocks | refcount table
//! ```
//!
//! The L1 and refcount tables must each be contiguous in the file, and they are
//! placed at the end because only then are their sizes known: a stream's virtual
//! size is known at EOF, and the refcount blocks must count every cluster,
//! including themselves and the refcount table that lists them.

use super::Error;
use super::refcount::{MAX_REFCOUNT_TABLE_BYTES, entries_per_block, table_entries_per_cluster};
use super::table::{ENTRY_BYTES, MAX_L1_TABLE_BYTES, l2_entries};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetadataLayout {
    pub l1_entries: u64,
    pub l1_table_offset: u64,
    pub l1_table_clusters: u64,
    pub refcount_blocks_offset: u64,
    pub refcount_blocks: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u64,
    /// Every cluster of the file, metadata included.
    pub total_clusters: u64,
    pub file_size_bytes: u64,
}

/// L1 entries needed to map `virtual_size_bytes`. At least one, so the table
/// has a place even for an empty disk.
pub(crate) fn l1_entries(virtual_size_bytes: u64, cluster_bits: u32) -> u64 {
    let guest_clusters = virtual_size_bytes.div_ceil(1 << cluster_bits);
    guest_clusters.div_ceil(l2_entries(cluster_bits)).max(1)
}

/// Fails early (before any data is written) when qemu could not open the image.
pub(crate) fn check_virtual_size(virtual_size_bytes: u64, cluster_bits: u32) -> Result<(), Error> {
    let l1_table_bytes = l1_entries(virtual_size_bytes, cluster_bits) * ENTRY_BYTES;
    if l1_table_bytes > MAX_L1_TABLE_BYTES {
        return Err(Error::VirtualSizeTooLarge {
            virtual_size_bytes,
            cluster_size_bytes: 1 << cluster_bits,
            l1_table_bytes,
            max_bytes: MAX_L1_TABLE_BYTES,
        });
    }
    Ok(())
}

/// Lays out the L1 table and the refcount structures after `data_clusters`
/// clusters (header, data and L2 tables).
pub(crate) fn plan(
    virtual_size_bytes: u64,
    cluster_bits: u32,
    data_clusters: u64,
) -> Result<MetadataLayout, Error> {
    check_virtual_size(virtual_size_bytes, cluster_bits)?;
    let cluster_bytes = 1u64 << cluster_bits;
    let l1_entries = l1_entries(virtual_size_bytes, cluster_bits);
    let l1_table_clusters = (l1_entries * ENTRY_BYTES).div_ceil(cluster_bytes);
    let before_refcounts = data_clusters + l1_table_clusters;

    // The refcount blocks count themselves and the refcount table, so their
    // number is a fixed point: start from none and grow until it holds. Each
    // round only adds clusters, and one block covers thousands, so it settles
    // in two or three rounds.
    let (mut blocks, mut table_clusters) = (0u64, 0u64);
    loop {
        let total = before_refcounts + blocks + table_clusters;
        let need_blocks = total.div_ceil(entries_per_block(cluster_bits));
        let need_table = need_blocks.div_ceil(table_entries_per_cluster(cluster_bits));
        if (need_blocks, need_table) == (blocks, table_clusters) {
            break;
        }
        (blocks, table_clusters) = (need_blocks, need_table);
    }
    let total_clusters = before_refcounts + blocks + table_clusters;
    let refcount_table_bytes = table_clusters * cluster_bytes;
    if refcount_table_bytes > MAX_REFCOUNT_TABLE_BYTES {
        return Err(Error::ImageTooLarge {
            file_size_bytes: total_clusters * cluster_bytes,
            cluster_size_bytes: cluster_bytes as u32,
            max_bytes: MAX_REFCOUNT_TABLE_BYTES / 8
                * entries_per_block(cluster_bits)
                * cluster_bytes,
        });
    }
    Ok(MetadataLayout {
        l1_entries,
        l1_table_offset: data_clusters * cluster_bytes,
        l1_table_clusters,
        refcount_blocks_offset: before_refcounts * cluster_bytes,
        refcount_blocks: blocks,
        refcount_table_offset: (before_refcounts + blocks) * cluster_bytes,
        refcount_table_clusters: table_clusters,
        total_clusters,
        file_size_bytes: total_clusters * cluster_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_image_gets_one_cluster_of_each_table() {
        // 1 GiB at 64 KiB: 16384 guest clusters, 8192 per L2 table: 2 L1 entries.
        let l = plan(1 << 30, 16, 10).unwrap();
        assert_eq!(l.l1_entries, 2);
        assert_eq!(l.l1_table_offset, 10 << 16);
        assert_eq!(l.l1_table_clusters, 1);
        assert_eq!(l.refcount_blocks_offset, 11 << 16);
        assert_eq!(l.refcount_blocks, 1);
        assert_eq!(l.refcount_table_offset, 12 << 16);
        assert_eq!(l.refcount_table_clusters, 1);
        assert_eq!(l.total_clusters, 13);
        assert_eq!(l.file_size_bytes, 13 << 16);
    }

    #[test]
    fn refcount_blocks_count_themselves_at_the_block_boundary() {
        // 4 KiB clusters: a block covers 2048 clusters. 2046 data + 1 L1 cluster
        // fit one block only without the block itself and the table: two needed.
        let l = plan(1 << 20, 12, 2046).unwrap();
        assert_eq!(l.refcount_blocks, 2);
        assert_eq!(l.total_clusters, 2046 + 1 + 2 + 1);
        let l = plan(1 << 20, 12, 2045).unwrap();
        assert_eq!(
            l.refcount_blocks, 1,
            "2045 + 1 + 1 + 1 = 2048 fits one block"
        );
    }

    #[test]
    fn the_refcount_table_grows_past_one_cluster_for_large_files() {
        // 4 KiB clusters: one table cluster lists 512 blocks of 2048 clusters.
        let data = 512 * 2048;
        let l = plan(1 << 30, 12, data).unwrap();
        assert_eq!(l.refcount_table_clusters, 2);
        assert!(l.refcount_blocks * 2048 >= l.total_clusters);
        assert!(l.refcount_table_clusters * 512 >= l.refcount_blocks);
    }

    #[test]
    fn an_empty_disk_still_has_an_l1_table() {
        let l = plan(0, 16, 1).unwrap();
        assert_eq!(l.l1_entries, 1);
    }

    #[test]
    fn virtual_sizes_beyond_qemus_l1_limit_are_refused() {
        // 4 KiB clusters: one L1 entry maps 2 MiB; 32 MiB of L1 maps 8 TiB.
        assert!(check_virtual_size(8 << 40, 12).is_ok());
        let err = check_virtual_size((8 << 40) + 1, 12).unwrap_err();
        assert!(matches!(err, Error::VirtualSizeTooLarge { .. }), "{err}");
    }
}
