//! A worker's compressor: the block cache, the incompressible test, the codec.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::Error;
use super::super::compressor::Codec;
use crate::blockcache::BlockCache;
use crate::formats::incompressible::looks_incompressible;

/// A worker's compressor: the block cache first, then the incompressible
/// test, then the codec.
pub(super) struct BlockCoder {
    pub(super) codec: Codec,
    pub(super) cache: Option<BlockCache>,
    pub(super) scratch: Vec<u8>,
    pub(super) raw_by_probe: Arc<AtomicU64>,
}

impl BlockCoder {
    /// As [`Codec::compress`]: false means "store it raw".
    pub(super) fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        let BlockCoder {
            codec,
            cache,
            scratch,
            raw_by_probe,
        } = self;
        let mut run = |block: &[u8], out: &mut Vec<u8>| {
            if looks_incompressible(block, scratch) {
                raw_by_probe.fetch_add(1, Ordering::Relaxed);
                return Ok(false);
            }
            codec.compress(block, out)
        };
        match cache {
            Some(cache) => cache.compress_with(block, out, run),
            None => run(block, out),
        }
    }
}
