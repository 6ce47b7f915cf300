//! Per-cluster compressors, one per worker thread, reused from cluster to cluster.
//!
//! zlib: qemu decompresses with `inflateInit2(-12)`, raw deflate with a 4 KiB
//! window, so a back-reference further than 4096 bytes would make the cluster
//! unreadable. The encoder is zlib-rs (pure Rust), set to window bits 12 and no
//! zlib header. libdeflate is faster but cannot restrict its window.
//!
//! zstd: one plain frame per cluster, which qemu decodes with
//! `ZSTD_decompressStream` until the cluster is full.
//!
//! Like qemu, a cluster is stored compressed only when that makes it shorter
//! than a cluster; otherwise it is written as a standard cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Method, Status, Strategy};

use super::{Compression, Error};
use crate::blockcache::BlockCache;
use crate::formats::incompressible::{self, looks_incompressible};

/// Bumped when an encoder changes its output (a zlib-rs upgrade, a changed
/// option), so block caches do not serve the old bytes.
const ENCODER_REVISION: u32 = 1;

/// Names everything besides a cluster that shapes its compressed bytes, for
/// the block cache.
pub(crate) fn cache_namespace(
    compression: Compression,
    level: Option<u32>,
    cluster_bytes: u32,
) -> String {
    format!(
        "qcow2 {} level {} cluster {} zstd {} incompressible {} rev {}",
        compression.name(),
        level.or(compression.default_level()).unwrap_or(0),
        cluster_bytes,
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
    Zlib(Box<Deflate>),
    Zstd(zstd::bulk::Compressor<'static>),
}

pub(crate) struct Codec {
    state: State,
    cache: Option<BlockCache>,
    /// Counts the clusters stored uncompressed on the incompressible test.
    raw_by_probe: Arc<AtomicU64>,
    scratch: Vec<u8>,
}

impl Codec {
    /// `level` must be in the method's range (checked by `Options::validate`).
    pub fn new(compression: Compression, level: Option<u32>) -> Result<Codec, Error> {
        let level = level.or(compression.default_level()).unwrap_or(0) as i32;
        let state = match compression {
            Compression::None => State::None,
            Compression::Zlib => State::Zlib(Box::new(Deflate::new_with_config(DeflateConfig {
                level,
                method: Method::Deflated,
                // Negative window bits: raw deflate, no zlib header or checksum.
                window_bits: -DEFLATE_WINDOW_BITS,
                mem_level: DEFLATE_MEM_LEVEL,
                strategy: Strategy::Default,
            }))),
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
        })
    }

    /// Looks clusters up in `cache` before compressing them, and counts the
    /// ones the incompressible test sends straight to storage.
    pub fn with_cache(self, cache: Option<BlockCache>, raw_by_probe: Arc<AtomicU64>) -> Codec {
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
        if matches!(self.state, State::None) {
            return None;
        }
        let Codec {
            state,
            cache,
            raw_by_probe,
            scratch,
        } = self;
        let mut run =
            |cluster: &[u8], out: &mut Vec<u8>| -> Result<bool, std::convert::Infallible> {
                if looks_incompressible(cluster, scratch) {
                    raw_by_probe.fetch_add(1, Ordering::Relaxed);
                    return Ok(false);
                }
                Ok(match encode(state, cluster, out) {
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
            Ok(true) => Some(out.len()),
            Ok(false) => None,
            Err(never) => match never {},
        }
    }
}

/// Runs the encoder on one cluster; as [`Codec::compress`], `out` may end up
/// longer than the length returned.
fn encode(state: &mut State, cluster: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    // Anything not shorter than a cluster is useless (qemu's rule too).
    let limit = cluster.len() - 1;
    match state {
        State::None => None,
        State::Zlib(deflate) => {
            // zlib-rs 0.6.8 panics in its stored-block path when the output
            // buffer runs out mid-stream, so it gets room for the worst case
            // and the length is checked afterwards.
            let bound = zlib_rs::compress_bound(cluster.len());
            if out.len() < bound {
                out.resize(bound, 0);
            }
            deflate.reset();
            match deflate.compress(cluster, out, DeflateFlush::Finish) {
                Ok(Status::StreamEnd) => Some(deflate.total_out() as usize).filter(|&n| n <= limit),
                // Not reached with a worst-case buffer; storing the cluster
                // uncompressed is always correct.
                Ok(_) | Err(_) => None,
            }
        }
        State::Zstd(c) => {
            // Room for `limit` bytes only: incompressible data fails early.
            if out.len() < limit {
                out.resize(limit, 0);
            }
            // zstd's only failure here is "destination too small".
            c.compress_to_buffer(cluster, &mut out[..limit]).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::incompressible::noise;

    /// Text whose repeats are 6000 bytes apart: a 32 KiB window would use them.
    fn far_repeats(len: usize) -> Vec<u8> {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let block: Vec<u8> = (0..6000)
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
    fn incompressible_clusters_do_not_trip_the_deflate_stored_block_path() {
        // Regression: with an output buffer of cluster size - 1, zlib-rs 0.6.8
        // panicked ("buf.len() must fit in remaining()") on noise like this.
        for level in [1, 9] {
            let mut codec = Codec::new(Compression::Zlib, Some(level)).unwrap();
            for cluster_bytes in [4096, 65536] {
                for seed in 0..8 {
                    let cluster = noise(cluster_bytes, seed);
                    // The encoder itself: `compress` would not run it on noise.
                    assert_eq!(encode(&mut codec.state, &cluster, &mut Vec::new()), None);
                }
            }
        }
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
