//! The public writer: a virtual disk in, a qcow2 image out.
//!
//! Data clusters stream to the output in guest order as the pipeline delivers
//! them; each L2 table is written as soon as the guest moves past the 512 MiB
//! (at 64 KiB clusters) it maps, so only one L2 table, the L1 entries and the
//! refcounts stay in memory. Then the L1 table and refcount structures go at the
//! end ([`super::layout::plan`]) and finally the header at offset 0.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::allocator::{HostAllocator, Placement};
use super::codec::{self, Codec};
use super::header::Header;
use super::layout::{check_virtual_size, plan};
use super::pipeline::{self, Feed, Stored};
use super::source::DiskSource;
use super::table::{
    SECTOR_BYTES, l1_entry, l2_compressed_entry, l2_entries, l2_standard_entry, table_bytes,
};
use super::{Compression, DEFAULT_CLUSTER_SIZE, Error, MAX_CLUSTER_SIZE, MIN_CLUSTER_SIZE};
use crate::blockcache::{self, BlockCache, BlockStore};
use crate::formats::{NoProgress, Progress};

/// Output buffering: large enough that compressed clusters (often a few KiB)
/// go out in big writes.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Source of the zero bytes written as padding.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

#[derive(Debug, Clone)]
pub struct Options {
    /// A power of two from [`MIN_CLUSTER_SIZE`] to [`MAX_CLUSTER_SIZE`].
    pub cluster_size_bytes: u32,
    pub compression: Compression,
    /// None: [`Compression::default_level`].
    pub level: Option<u32>,
    /// Compression threads. The image does not depend on it.
    pub jobs: usize,
    /// Look clusters up here before compressing them.
    pub block_cache: Option<Arc<BlockStore>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cluster_size_bytes: DEFAULT_CLUSTER_SIZE,
            compression: Compression::None,
            level: None,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            block_cache: None,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<(), Error> {
        let size = self.cluster_size_bytes;
        if !size.is_power_of_two() || !(MIN_CLUSTER_SIZE..=MAX_CLUSTER_SIZE).contains(&size) {
            return Err(Error::BadClusterSize {
                cluster_size_bytes: size.into(),
            });
        }
        if let Some(level) = self.level {
            let compression = self.compression;
            let Some((min, max)) = compression.level_range() else {
                return Err(Error::LevelWithoutCompression { compression, level });
            };
            if !(min..=max).contains(&level) {
                return Err(Error::BadLevel {
                    compression,
                    level,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

/// What was written, for logs and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// The source's length rounded up to whole 512-byte sectors.
    pub virtual_size_bytes: u64,
    pub file_size_bytes: u64,
    pub cluster_size_bytes: u32,
    pub compression: String,
    /// Bytes the source had (before rounding to sectors).
    pub input_bytes: u64,
    /// Guest clusters with data stored in the image.
    pub allocated_clusters: u64,
    /// Of those, the ones stored compressed.
    pub compressed_clusters: u64,
    /// Guest clusters not stored because they read as zeros.
    pub zero_clusters: u64,
    pub l2_tables: u64,
    /// Clusters stored uncompressed without running the compressor: they
    /// looked incompressible.
    pub raw_by_probe_clusters: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_cache: Option<blockcache::Stats>,
}

pub struct Qcow2Writer {
    opts: Options,
    cluster_bits: u32,
    progress: Arc<dyn Progress>,
}

impl Qcow2Writer {
    pub fn new(opts: Options) -> Result<Qcow2Writer, Error> {
        Self::with_progress(opts, Arc::new(NoProgress))
    }

    /// `progress` is told about every byte of the virtual disk as it is read
    /// (holes included), so it ends at the disk's length.
    pub fn with_progress(opts: Options, progress: Arc<dyn Progress>) -> Result<Qcow2Writer, Error> {
        opts.validate()?;
        Ok(Qcow2Writer {
            cluster_bits: opts.cluster_size_bytes.trailing_zeros(),
            opts,
            progress,
        })
    }

    /// Writes `disk` as a qcow2 image to `out`, which should be empty: the
    /// image is written from offset 0 and its end is not truncated.
    pub fn write_disk<W: Write + Seek>(
        &self,
        disk: &dyn DiskSource,
        out: W,
    ) -> Result<Summary, Error> {
        check_virtual_size(virtual_size(disk.len_bytes()), self.cluster_bits)?;
        self.write(Feed::Disk(disk), out)
    }

    /// Writes the bytes of `input`, read to its end, as a qcow2 image. The
    /// stream is read once, one cluster at a time; its length need not be known
    /// beforehand since the tables that depend on it are written last.
    pub fn write_stream<W: Write + Seek>(
        &self,
        input: &mut (dyn Read + Send),
        out: W,
    ) -> Result<Summary, Error> {
        self.write(Feed::Stream(input), out)
    }

    fn write<W: Write + Seek>(&self, feed: Feed<'_>, out: W) -> Result<Summary, Error> {
        let cache = match &self.opts.block_cache {
            Some(store) if self.opts.compression != Compression::None => Some(BlockCache::new(
                Arc::clone(store),
                &codec::cache_namespace(
                    self.opts.compression,
                    self.opts.level,
                    self.opts.cluster_size_bytes,
                ),
            )),
            _ => None,
        };
        let raw_by_probe = Arc::new(AtomicU64::new(0));
        let codecs = (0..self.opts.jobs.max(1))
            .map(|_| {
                Codec::new(self.opts.compression, self.opts.level)
                    .map(|c| c.with_cache(cache.clone(), Arc::clone(&raw_by_probe)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut image = ImageWriter::start(out, self.cluster_bits)?;
        let input_bytes = pipeline::run(
            feed,
            self.cluster_bits,
            codecs,
            &*self.progress,
            &mut |guest_cluster, stored| image.add_cluster(guest_cluster, stored),
        )?;
        let mut summary = image.finish(input_bytes, self.opts.compression)?;
        if let Some(cache) = &cache {
            // Only once the image is whole: its index names entries that exist.
            cache.write_segment_index();
        }
        summary.raw_by_probe_clusters = raw_by_probe.load(Ordering::Relaxed);
        summary.block_cache = cache.as_ref().map(BlockCache::stats);
        Ok(summary)
    }
}

/// qemu keeps the virtual size in whole 512-byte sectors and truncates the rest
/// when it opens an image, so the size is rounded up (the tail reads as zeros,
/// as qemu also shows a raw file of that length).
fn virtual_size(input_bytes: u64) -> u64 {
    input_bytes.next_multiple_of(SECTOR_BYTES)
}

/// The image as it is being written.
struct ImageWriter<W: Write + Seek> {
    out: BufWriter<W>,
    cluster_bits: u32,
    allocator: HostAllocator,
    /// L1 entries so far (0: no L2 table), grown as the guest advances.
    l1: Vec<u64>,
    /// The L2 table being filled: its L1 index and entries.
    l2: Option<(u64, Vec<u64>)>,
    scratch: Vec<u8>,
    allocated_clusters: u64,
    compressed_clusters: u64,
    l2_tables: u64,
}

impl<W: Write + Seek> ImageWriter<W> {
    fn start(out: W, cluster_bits: u32) -> Result<Self, Error> {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, out);
        out.seek(SeekFrom::Start(0)).map_err(Error::Writing)?;
        // Cluster 0 is the header's; it is filled in last.
        write_zeros(&mut out, 1 << cluster_bits)?;
        Ok(ImageWriter {
            out,
            cluster_bits,
            allocator: HostAllocator::new(cluster_bits),
            l1: Vec::new(),
            l2: None,
            scratch: Vec::new(),
            allocated_clusters: 0,
            compressed_clusters: 0,
            l2_tables: 0,
        })
    }

    fn place(&mut self, placement: Placement, bytes: &[u8]) -> Result<(), Error> {
        write_zeros(&mut self.out, placement.padding_bytes)?;
        self.out.write_all(bytes).map_err(Error::Writing)
    }

    /// Stores one guest cluster; clusters arrive in increasing guest order.
    fn add_cluster(&mut self, guest_cluster: u64, stored: Stored<'_>) -> Result<(), Error> {
        let per_table = l2_entries(self.cluster_bits);
        let l1_index = guest_cluster / per_table;
        if self.l2.as_ref().is_some_and(|(i, _)| *i != l1_index) {
            self.flush_l2()?;
        }
        let entry = match stored {
            Stored::Standard(bytes) => {
                let placement = self.allocator.whole_cluster()?;
                self.place(placement, bytes)?;
                l2_standard_entry(placement.offset)
            }
            Stored::Compressed(bytes) => {
                let placement = self.allocator.compressed(bytes.len() as u64)?;
                self.place(placement, bytes)?;
                self.compressed_clusters += 1;
                l2_compressed_entry(self.cluster_bits, placement.offset, bytes.len() as u64)
            }
        };
        let (_, table) = self
            .l2
            .get_or_insert_with(|| (l1_index, vec![0; per_table as usize]));
        table[(guest_cluster % per_table) as usize] = entry;
        self.allocated_clusters += 1;
        Ok(())
    }

    /// Writes the current L2 table right after the data it maps.
    fn flush_l2(&mut self) -> Result<(), Error> {
        let Some((l1_index, entries)) = self.l2.take() else {
            return Ok(());
        };
        let placement = self.allocator.whole_cluster()?;
        let mut bytes = std::mem::take(&mut self.scratch);
        table_bytes(&entries, 1 << self.cluster_bits, &mut bytes);
        self.place(placement, &bytes)?;
        self.scratch = bytes;
        let i = l1_index as usize;
        if self.l1.len() <= i {
            self.l1.resize(i + 1, 0);
        }
        self.l1[i] = l1_entry(placement.offset);
        self.l2_tables += 1;
        Ok(())
    }

    fn finish(mut self, input_bytes: u64, compression: Compression) -> Result<Summary, Error> {
        self.flush_l2()?;
        let cluster_bytes = 1u64 << self.cluster_bits;
        let (padding, data_clusters, mut refcounts) = self.allocator.finish();
        write_zeros(&mut self.out, padding)?;
        let virtual_size_bytes = virtual_size(input_bytes);
        let layout = plan(virtual_size_bytes, self.cluster_bits, data_clusters)?;

        debug_assert!(self.l1.len() as u64 <= layout.l1_entries);
        self.l1.resize(layout.l1_entries as usize, 0);
        let mut bytes = std::mem::take(&mut self.scratch);
        table_bytes(
            &self.l1,
            (layout.l1_table_clusters * cluster_bytes) as usize,
            &mut bytes,
        );
        self.out.write_all(&bytes).map_err(Error::Writing)?;

        let metadata_clusters =
            layout.l1_table_clusters + layout.refcount_blocks + layout.refcount_table_clusters;
        refcounts.set_used(data_clusters, metadata_clusters);
        debug_assert_eq!(refcounts.len(), layout.total_clusters);
        for block in 0..layout.refcount_blocks {
            refcounts.block_bytes(self.cluster_bits, block, &mut bytes);
            self.out.write_all(&bytes).map_err(Error::Writing)?;
        }
        let block_offsets: Vec<u64> = (0..layout.refcount_blocks)
            .map(|i| layout.refcount_blocks_offset + i * cluster_bytes)
            .collect();
        table_bytes(
            &block_offsets,
            (layout.refcount_table_clusters * cluster_bytes) as usize,
            &mut bytes,
        );
        self.out.write_all(&bytes).map_err(Error::Writing)?;

        let header = Header {
            cluster_bits: self.cluster_bits,
            size_bytes: virtual_size_bytes,
            l1_entries: layout.l1_entries as u32,
            l1_table_offset: layout.l1_table_offset,
            refcount_table_offset: layout.refcount_table_offset,
            refcount_table_clusters: layout.refcount_table_clusters as u32,
            compression,
        };
        self.out.seek(SeekFrom::Start(0)).map_err(Error::Writing)?;
        self.out
            .write_all(&header.to_bytes())
            .map_err(Error::Writing)?;
        self.out.flush().map_err(Error::Writing)?;

        let guest_clusters = virtual_size_bytes.div_ceil(cluster_bytes);
        Ok(Summary {
            virtual_size_bytes,
            file_size_bytes: layout.file_size_bytes,
            cluster_size_bytes: cluster_bytes as u32,
            compression: compression.name().to_string(),
            input_bytes,
            allocated_clusters: self.allocated_clusters,
            compressed_clusters: self.compressed_clusters,
            zero_clusters: guest_clusters - self.allocated_clusters,
            l2_tables: self.l2_tables,
            raw_by_probe_clusters: 0,
            block_cache: None,
        })
    }
}

fn write_zeros(out: &mut impl Write, mut len: u64) -> Result<(), Error> {
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..n]).map_err(Error::Writing)?;
        len -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
