//! Per-cluster compressors, one per worker thread, reused from cluster to cluster.
//!
//! zlib: qemu decompresses with `inflateInit2(-12)`, raw deflate with a 4 KiB
//! window, so a back-reference further than 4096 bytes would make the cluster
//! unreadable. The encoder is zlib-rs (pure Rust), set to window bits 12 and no
//! zlib header. libdeflate is faster but cannot restrict its window.
//!
//! A zlib cluster is written as 4 KiB segments so that the block cache can
//! reuse it a segment at a time after ext4's files shift by whole blocks
//! ([`crate::blockcache::segments`]). Segment i is deflated on its own, with
//! block i-1 of the cluster as preset dictionary (none for the first: the
//! decompressor of a lone cluster has no history), and ended with a sync
//! flush, which leaves it non-final and byte-aligned; the cluster is the
//! segments back to back and then an empty final block. That is one valid
//! raw deflate stream, and since the dictionary is exactly the 4 KiB of output
//! before the segment, its back-references stay within qemu's window.
//! Measured on an 834 MB Debian ext4 image: 1.3 % larger than deflating each
//! cluster whole (without the dictionary, 5.6 %).
//!
//! zstd: one plain frame per cluster, which qemu decodes with
//! `ZSTD_decompressStream` until the cluster is full. qemu would accept
//! several frames per cluster, but a frame cannot use the one before as a
//! dictionary there, and independent 4 KiB frames came out 9.3 % larger than
//! whole clusters on the image above: zstd clusters are reused only whole.
//!
//! Like qemu, a cluster is stored compressed only when that makes it shorter
//! than a cluster; otherwise it is written as a standard cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method, Status, Strategy};

use super::{Compression, Error};
use crate::blockcache::{BlockCache, SegmentCodec, SegmentScratch, encode_segmented};
use crate::formats::incompressible::{self, looks_incompressible};

/// Bumped when an encoder changes its output (a zlib-rs upgrade, a changed
/// option), so block caches do not serve the old bytes. 2: zlib segments.
const ENCODER_REVISION: u32 = 2;

/// zlib clusters are made of segments of this size: ext4's block.
pub(crate) const SEGMENT_BYTES: usize = 4096;
/// An empty final fixed-Huffman block (BFINAL 1, BTYPE 01, end-of-block):
/// ends a cluster's deflate stream after its sync-flushed segments.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];
/// Room past `compress_bound` for what a sync flush adds (the end of the
/// last block and an empty stored block, 00 00 ff ff).
const SYNC_FLUSH_ROOM: usize = 16;

/// Names everything besides a cluster that shapes its compressed bytes, for
/// the block cache.
pub(crate) fn cache_namespace(
    compression: Compression,
    level: Option<u32>,
    cluster_bytes: u32,
) -> String {
    format!(
        "qcow2 {} level {} cluster {} segment {} zstd {} incompressible {} rev {}",
        compression.name(),
        level.or(compression.default_level()).unwrap_or(0),
        cluster_bytes,
        SEGMENT_BYTES,
        zstd::zstd_safe::version_number(),
        incompressible::REVISION,
        ENCODER_REVISION,
    )
}

/// 4 KiB deflate window: what qemu's `inflateInit2(-12)` accepts.
pub(crate) const DEFLATE_WINDOW_BITS: i32 = 12;
/// zlib's largest hash table, as qemu's `deflateInit2(.., -12, 9, ..)` asks.
const DEFLATE_MEM_LEVEL: i32 = 9;

enum State {
    None,
    Zlib(ZlibSegments),
    Zstd(zstd::bulk::Compressor<'static>),
}

pub(crate) struct Codec {
    state: State,
    cache: Option<BlockCache>,
    /// Counts the clusters stored uncompressed on the incompressible test.
    raw_by_probe: Arc<AtomicU64>,
    scratch: Vec<u8>,
    segments: SegmentScratch,
}

impl Codec {
    /// `level` must be in the method's range (checked by `Options::validate`).
    pub fn new(compression: Compression, level: Option<u32>) -> Result<Codec, Error> {
        let level = level.or(compression.default_level()).unwrap_or(0) as i32;
        let state = match compression {
            Compression::None => State::None,
            Compression::Zlib => State::Zlib(ZlibSegments {
                deflate: Box::new(Deflate::new_with_config(DeflateConfig {
                    level,
                    method: Method::Deflated,
                    // Negative window bits: raw deflate, no zlib header or checksum.
                    window_bits: -DEFLATE_WINDOW_BITS,
                    mem_level: DEFLATE_MEM_LEVEL,
                    strategy: Strategy::Default,
                })),
                raw_by_probe: Arc::default(),
                scratch: Vec::new(),
            }),
            Compression::Zstd => State::Zstd(zstd::bulk::Compressor::new(level).map_err(|e| {
                Error::CreatingCompressor {
                    compression,
                    reason: e.to_string(),
                }
            })?),
        };
        Ok(Codec {
            state,
            cache: None,
            raw_by_probe: Arc::default(),
            scratch: Vec::new(),
            segments: SegmentScratch::default(),
        })
    }

    /// Looks clusters up in `cache` before compressing them, and counts the
    /// ones the incompressible test sends straight to storage.
    pub fn with_cache(mut self, cache: Option<BlockCache>, raw_by_probe: Arc<AtomicU64>) -> Codec {
        if let State::Zlib(z) = &mut self.state {
            z.raw_by_probe = Arc::clone(&raw_by_probe);
        }
        Codec {
            cache,
            raw_by_probe,
            ..self
        }
    }

    /// Compresses one whole cluster into `out` (resized as needed). Returns the
    /// compressed length, or `None` when the cluster should be stored as is:
    /// it would not shrink, or it looks incompressible
    /// ([`crate::formats::incompressible`]).
    pub fn compress(&mut self, cluster: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let Codec {
            state,
            cache,
            raw_by_probe,
            scratch,
            segments,
        } = self;
        let compressed = match state {
            State::None => false,
            State::Zlib(z) => match cache {
                Some(cache) => cache.compress_segmented(z, cluster, SEGMENT_BYTES, out, segments),
                None => encode_segmented(z, cluster, SEGMENT_BYTES, out),
            },
            State::Zstd(c) => compress_zstd(c, cache.as_ref(), raw_by_probe, scratch, cluster, out),
        };
        compressed.then_some(out.len())
    }
}

/// A whole zstd cluster, from the cache or compressed; false: store it.
fn compress_zstd(
    compressor: &mut zstd::bulk::Compressor<'static>,
    cache: Option<&BlockCache>,
    raw_by_probe: &AtomicU64,
    scratch: &mut Vec<u8>,
    cluster: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let mut run = |cluster: &[u8], out: &mut Vec<u8>| -> Result<bool, std::convert::Infallible> {
        if looks_incompressible(cluster, scratch) {
            raw_by_probe.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(match encode_zstd(compressor, cluster, out) {
            Some(n) => {
                out.truncate(n);
                true
            }
            None => false,
        })
    };
    let compressed = match cache {
        Some(cache) => cache.compress_with(cluster, out, run),
        None => run(cluster, out),
    };
    match compressed {
        Ok(compressed) => compressed,
        Err(never) => match never {},
    }
}

/// Runs zstd on one cluster; `out` may end up longer than the length
/// returned. None: it would not shrink.
fn encode_zstd(
    compressor: &mut zstd::bulk::Compressor<'static>,
    cluster: &[u8],
    out: &mut Vec<u8>,
) -> Option<usize> {
    // Anything not shorter than a cluster is useless (qemu's rule too).
    let limit = cluster.len() - 1;
    // Room for `limit` bytes only: incompressible data fails early.
    if out.len() < limit {
        out.resize(limit, 0);
    }
    // zstd's only failure here is "destination too small".
    compressor
        .compress_to_buffer(cluster, &mut out[..limit])
        .ok()
}

/// The zlib encoder, as segments.
struct ZlibSegments {
    deflate: Box<Deflate>,
    raw_by_probe: Arc<AtomicU64>,
    scratch: Vec<u8>,
}

impl SegmentCodec for ZlibSegments {
    fn store_untried(&mut self, cluster: &[u8]) -> bool {
        let skip = looks_incompressible(cluster, &mut self.scratch);
        if skip {
            self.raw_by_probe.fetch_add(1, Ordering::Relaxed);
        }
        skip
    }

    fn encode_segment(&mut self, prev: Option<&[u8]>, segment: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        // zlib-rs 0.6.8 panics in its stored-block path when the output
        // buffer runs out mid-stream, so it gets room for the worst case.
        let room = zlib_rs::compress_bound(segment.len()) + SYNC_FLUSH_ROOM;
        out.resize(start + room, 0);
        let deflate = &mut self.deflate;
        deflate.reset();
        let done = prev.is_none_or(|p| deflate.set_dictionary(p).is_ok())
            && matches!(
                deflate.compress(segment, &mut out[start..], DeflateFlush::SyncFlush),
                Ok(Status::Ok)
            )
            && deflate.total_in() == segment.len() as u64
            && (deflate.total_out() as usize) < room;
        if done {
            out.truncate(start + deflate.total_out() as usize);
        } else {
            // Not reached with a worst-case buffer; a stored block is
            // always a correct segment.
            out.truncate(start);
            stored_block(segment, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&DEFLATE_END);
    }
}

/// Appends `data` (at most 65535 bytes) as a non-final stored deflate block,
/// starting at a byte boundary.
fn stored_block(data: &[u8], out: &mut Vec<u8>) {
    let len = data.len() as u16;
    // BFINAL 0, BTYPE 00, padding to the byte; then LEN and its complement.
    out.push(0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::incompressible::noise;

    /// Text whose repeats are 6000 bytes apart: a 32 KiB window would use them.
    fn far_repeats(len: usize) -> Vec<u8> {
        repeats(6000, len)
    }

    /// Random letters repeated every `period` bytes.
    fn repeats(period: usize, len: usize) -> Vec<u8> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let block: Vec<u8> = (0..period)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        block.iter().copied().cycle().take(len).collect()
    }

    fn inflate_4k_window(compressed: &[u8], len: usize) -> Vec<u8> {
        let mut inflate = zlib_rs::Inflate::new(false, DEFLATE_WINDOW_BITS as u8);
        let mut out = vec![0u8; len];
        let status = inflate
            .decompress(compressed, &mut out, zlib_rs::InflateFlush::Finish)
            .expect("a 4 KiB-window raw inflate accepts the stream");
        assert_eq!(status, Status::StreamEnd);
        assert_eq!(inflate.total_out() as usize, len);
        out
    }

    #[test]
    fn zlib_clusters_inflate_with_a_4k_window() {
        let cluster = far_repeats(65536);
        let mut codec = Codec::new(Compression::Zlib, None).unwrap();
        let mut out = Vec::new();
        let n = codec.compress(&cluster, &mut out).expect("text shrinks");
        assert_eq!(inflate_4k_window(&out[..n], cluster.len()), cluster);
        // Reusing the encoder gives the same bytes: output is reproducible.
        let first = out[..n].to_vec();
        assert_eq!(codec.compress(&cluster, &mut out), Some(n));
        assert_eq!(&out[..n], &first[..]);
    }

    #[test]
    fn zstd_clusters_are_single_frames() {
        let cluster = far_repeats(65536);
        let mut codec = Codec::new(Compression::Zstd, None).unwrap();
        let mut out = Vec::new();
        let n = codec.compress(&cluster, &mut out).expect("text shrinks");
        assert!(n < cluster.len() / 4);
        let back = zstd::bulk::decompress(&out[..n], cluster.len()).unwrap();
        assert_eq!(back, cluster);
    }

    #[test]
    fn incompressible_segments_do_not_trip_the_deflate_stored_block_path() {
        // Regression: with an output buffer of cluster size - 1, zlib-rs 0.6.8
        // panicked ("buf.len() must fit in remaining()") on noise like this.
        for level in [1, 9] {
            let State::Zlib(mut z) = Codec::new(Compression::Zlib, Some(level)).unwrap().state
            else {
                unreachable!()
            };
            for seed in 0..8 {
                // The encoder itself: `compress` would not run it on noise.
                let cluster = noise(65536, seed);
                let mut out = Vec::new();
                let mut prev = None;
                for segment in cluster.chunks(SEGMENT_BYTES) {
                    z.encode_segment(prev, segment, &mut out);
                    prev = Some(segment);
                }
                z.finish(&mut out);
                assert_eq!(inflate_4k_window(&out, cluster.len()), cluster);
            }
        }
    }

    /// Text, a run of zeros, text repeated from the block before, and noise:
    /// segments that use their dictionary and ones that cannot.
    fn mixed_cluster() -> Vec<u8> {
        let text = far_repeats(20_000);
        let mut cluster = [&text[..], &[0; 9000], &text[..8000], &noise(28_536, 3)].concat();
        cluster.truncate(65536);
        cluster
    }

    #[test]
    fn zlib_segments_use_the_block_before_and_stay_in_the_4k_window() {
        let cluster = mixed_cluster();
        let mut codec = Codec::new(Compression::Zlib, None).unwrap();
        let mut out = Vec::new();
        let n = codec.compress(&cluster, &mut out).expect("shrinks");
        assert_eq!(inflate_4k_window(&out[..n], cluster.len()), cluster);
        assert_eq!(&out[n - 2..n], &DEFLATE_END);
        // Repeats 3000 bytes apart reach into the block before: through the
        // dictionary, or else every segment pays for its text again.
        let text = repeats(3000, 65536);
        let with_dictionary = codec.compress(&text, &mut out).unwrap();
        let State::Zlib(z) = &mut codec.state else {
            unreachable!()
        };
        let mut alone = Vec::new();
        for segment in text.chunks(SEGMENT_BYTES) {
            z.encode_segment(None, segment, &mut alone);
        }
        assert!(
            with_dictionary * 2 < alone.len(),
            "{with_dictionary} vs {}",
            alone.len()
        );
    }

    #[test]
    fn a_stored_block_is_a_valid_segment() {
        let cluster = mixed_cluster();
        let mut out = Vec::new();
        for segment in cluster.chunks(SEGMENT_BYTES) {
            stored_block(segment, &mut out);
        }
        out.extend_from_slice(&DEFLATE_END);
        assert_eq!(inflate_4k_window(&out, cluster.len()), cluster);
    }

    /// 48 text clusters' worth of 4 KiB blocks, all different.
    fn disk_blocks() -> Vec<u8> {
        (0..48 * 16u32)
            .flat_map(|b| {
                (0..)
                    .flat_map(move |i: u32| {
                        format!("block {b} line {i}: value {}\n", i * b % 977).into_bytes()
                    })
                    .take(SEGMENT_BYTES)
            })
            .collect()
    }

    fn compress_all(codec: &mut Codec, disk: &[u8]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        disk.chunks(65536)
            .map(|c| codec.compress(c, &mut out).map(|n| out[..n].to_vec()))
            .collect()
    }

    #[test]
    fn a_disk_shifted_by_whole_blocks_reuses_most_segments_and_equals_its_cold_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::blockcache::BlockStore::open(dir.path()).unwrap());
        let namespace = cache_namespace(Compression::Zlib, None, 65536);
        let warm_codec = |cache: &BlockCache| {
            Codec::new(Compression::Zlib, None)
                .unwrap()
                .with_cache(Some(cache.clone()), Arc::default())
        };
        let disk = disk_blocks();
        let first = BlockCache::new(Arc::clone(&store), &namespace);
        compress_all(&mut warm_codec(&first), &disk);
        first.write_segment_index();
        // Three new blocks early on: everything after moves by 12 KiB.
        // The qcow2 pipeline pads the last cluster with zeros.
        let mut shifted = [
            &disk[..5 * SEGMENT_BYTES],
            &far_repeats(3 * SEGMENT_BYTES),
            &disk[5 * SEGMENT_BYTES..],
        ]
        .concat();
        shifted.resize(49 * 65536, 0);
        let cold = compress_all(&mut Codec::new(Compression::Zlib, None).unwrap(), &shifted);
        let second = BlockCache::new(Arc::clone(&store), &namespace);
        let warm = compress_all(&mut warm_codec(&second), &shifted);
        assert!(warm == cold, "the warm encoding differs from the cold one");
        for c in cold.iter().flatten() {
            assert_eq!(&c[c.len() - 2..], &DEFLATE_END);
        }
        let s = second.stats();
        let segments = s.reused_segments + s.compressed_segments;
        assert_eq!(segments, 49 * 16, "{s:?}");
        // Per cluster: the first segment, and the one where an old cluster
        // began; plus the new blocks and the blocks after them.
        assert!(s.reused_segments >= segments * 13 / 16, "{s:?}");
    }
    #[test]
    fn incompressible_clusters_are_stored_as_they_are() {
        let noise = noise(65536, 7);
        for compression in Compression::ALL {
            let mut codec = Codec::new(compression, None).unwrap();
            assert_eq!(
                codec.compress(&noise, &mut Vec::new()),
                None,
                "{compression}"
            );
        }
    }
}
