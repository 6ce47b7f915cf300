//! Blocks compressed as independent segments, reusable one segment at a time.
//!
//! `mke2fs -d` lays files out one after another, so a package added to a
//! root filesystem shifts everything after it by some multiple of 4 KiB: the
//! qcow2 clusters (64 KiB) there all change, but their 4 KiB blocks are the
//! old ones, regrouped. So a qcow2 zlib cluster is encoded as segments, one
//! per 4 KiB block, each depending only on its block and the block before
//! it in the cluster ([`SegmentCodec`]), and the store can hand back any
//! segment it has seen in that context:
//!
//! ```text
//!  block digests   d0  d1  d2 ... d15        (SHA-256 of each 4 KiB block)
//!  entry key       H(namespace, d0..d15)     a hit: the whole cluster
//!  segment keys    H(namespace, none, d0), H(namespace, d0, d1), ...
//!                  a hit: one segment, sliced out of the entry that holds
//!                  it, found through the segment index ([`super::index`])
//! ```
//!
//! After a shift, all segments but the first of each new cluster and the one
//! where an old cluster began keep their keys: about 2 in 16 are compressed
//! again, plus the new data. The cold path ([`encode_segmented`]) runs the
//! same segment encoder on every segment, so warm and cold images are the
//! same bytes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use super::entry::{self, SEGMENT_KEY_PREFIX_BYTES, Segment, Value};
use super::index::{Index, Key, Pending};
use super::{BlockCache, Lookup};

/// Entries kept read by one worker: a shifted cluster takes its segments
/// from two old ones, and the next cluster from the second of them again.
const RECENT_ENTRIES: usize = 4;

/// How a block is encoded as segments.
pub trait SegmentCodec {
    /// True when the block is to be stored as it is without trying (the
    /// incompressible test): no segment is encoded.
    fn store_untried(&mut self, block: &[u8]) -> bool;
    /// Appends the encoding of `segment` to `out`. It may depend on `prev`
    /// (the segment before it in the block, None for the first) and on
    /// nothing else but the codec's settings.
    fn encode_segment(&mut self, prev: Option<&[u8]>, segment: &[u8], out: &mut Vec<u8>);
    /// Appends what ends a block after its last segment.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// Encodes `block` without a store: `out` gets the segments and the end.
/// Returns false when the block is to be stored as it is (it would not
/// shrink, or it looked incompressible); `out` is then unspecified.
pub fn encode_segmented(
    codec: &mut dyn SegmentCodec,
    block: &[u8],
    segment_bytes: usize,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if codec.store_untried(block) {
        return false;
    }
    let mut prev = None;
    for segment in block.chunks(segment_bytes) {
        codec.encode_segment(prev, segment, out);
        prev = Some(segment);
    }
    codec.finish(out);
    out.len() < block.len()
}

/// What the workers of one image share: the index they read, and the
/// records of the index file they will write.
#[derive(Default)]
pub(super) struct Shared {
    index: OnceLock<Index>,
    pending: Mutex<Pending>,
}

/// One worker's buffers, kept from block to block.
#[derive(Default)]
pub struct SegmentScratch {
    digests: Vec<Key>,
    keys: Vec<Key>,
    table: Vec<Segment>,
    /// Entries read for their segments, most recent last: (key, value).
    recent: VecDeque<(Key, Vec<u8>)>,
}

impl BlockCache {
    /// [`encode_segmented`], with the block and its segments looked up in
    /// the store first; what is compressed goes into the store. The same
    /// answer and bytes as [`encode_segmented`].
    pub fn compress_segmented(
        &self,
        codec: &mut dyn SegmentCodec,
        block: &[u8],
        segment_bytes: usize,
        out: &mut Vec<u8>,
        scratch: &mut SegmentScratch,
    ) -> bool {
        let SegmentScratch {
            digests,
            keys,
            table,
            recent,
        } = scratch;
        digests.clear();
        digests.extend(
            block
                .chunks(segment_bytes)
                .map(|s| Key::from(Sha256::digest(s))),
        );
        let key = self.segmented_key(block.len(), segment_bytes, digests);
        keys.clear();
        keys.extend((0..digests.len()).map(|i| {
            let prev = i.checked_sub(1).map(|p| &digests[p]);
            self.segment_key(prev, &digests[i])
        }));
        let c = &self.counters;
        match self.store.get(&key, out) {
            Lookup::Segmented => {
                if let Some(bytes) = entry::segmented_bytes(out)
                    && bytes.len() < block.len()
                {
                    let table_bytes = out.len() - bytes.len();
                    out.drain(..table_bytes);
                    c.reused_blocks.fetch_add(1, Ordering::Relaxed);
                    c.reused_bytes
                        .fetch_add(block.len() as u64, Ordering::Relaxed);
                    // This image's index names every segment it holds, so
                    // the older index files are not needed to rebuild it.
                    self.pending().add(&key, keys);
                    return true;
                }
                self.note_corrupt(self.store.path_of(&key));
            }
            Lookup::Stored => {
                c.reused_blocks.fetch_add(1, Ordering::Relaxed);
                c.reused_bytes
                    .fetch_add(block.len() as u64, Ordering::Relaxed);
                return false;
            }
            Lookup::Compressed => self.note_corrupt(self.store.path_of(&key)),
            Lookup::Corrupt(path) => self.note_corrupt(path),
            Lookup::Miss => {}
        }
        c.compressed_blocks.fetch_add(1, Ordering::Relaxed);
        out.clear();
        if codec.store_untried(block) {
            self.put(&key, Value::Stored);
            return false;
        }
        table.clear();
        let mut prev = None;
        for (segment, segment_key) in block.chunks(segment_bytes).zip(keys.iter()) {
            let start = out.len();
            if self.reuse_segment(segment_key, out, recent) {
                c.reused_segments.fetch_add(1, Ordering::Relaxed);
            } else {
                codec.encode_segment(prev, segment, out);
                c.compressed_segments.fetch_add(1, Ordering::Relaxed);
            }
            table.push(Segment {
                len_bytes: (out.len() - start) as u32,
                key_prefix: prefix_of(segment_key),
            });
            prev = Some(segment);
        }
        codec.finish(out);
        if out.len() >= block.len() {
            self.put(&key, Value::Stored);
            return false;
        }
        self.put(
            &key,
            Value::Segmented {
                segments: table,
                bytes: out,
            },
        );
        self.pending().add(&key, keys);
        true
    }

    /// Writes the segment index file for what this image's blocks hold, so
    /// that later builds find their segments. Call once, after the last
    /// block; a failure is counted as a write error (the image is right).
    /// Written even when every block was reused whole: only the newest index
    /// files are read, and the newest image must stay findable after others
    /// were built from the same store.
    pub fn write_segment_index(&self) {
        let pending = std::mem::take(&mut *self.pending());
        if pending.is_empty() {
            return;
        }
        if let Err(e) = self.store.put_index(&pending.encode()) {
            self.note_write_error(e);
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.segments
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, key: &Key, value: Value<'_>) {
        if let Err(e) = self.store.put(key, value) {
            self.note_write_error(e);
        }
    }

    /// Appends segment `key` to `out` from an entry the index names; false
    /// when no index record leads to a sound entry holding it.
    fn reuse_segment(
        &self,
        key: &Key,
        out: &mut Vec<u8>,
        recent: &mut VecDeque<(Key, Vec<u8>)>,
    ) -> bool {
        let index = self.segments.index.get_or_init(|| {
            let (index, corrupt) = Index::open(self.store.root());
            for path in corrupt {
                self.note_removed(path);
            }
            index
        });
        for (entry_key, n) in index.find(key) {
            let at = match recent.iter().position(|(k, _)| *k == entry_key) {
                Some(at) => at,
                None => {
                    // The oldest entry's buffer is reused once all are taken.
                    let mut value = if recent.len() >= RECENT_ENTRIES {
                        recent.pop_front().map(|(_, v)| v).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    match self.store.get(&entry_key, &mut value) {
                        Lookup::Segmented => {}
                        Lookup::Corrupt(path) => {
                            // Not ours to recompute (we lack its block): gone,
                            // so that no later build trips on it.
                            let _ = std::fs::remove_file(&path);
                            self.note_removed(path);
                            continue;
                        }
                        // Pruned since the index was written, or not a
                        // segmented entry: the record is stale.
                        _ => continue,
                    }
                    recent.push_back((entry_key, value));
                    recent.len() - 1
                }
            };
            let value = &recent[at].1;
            if let Some((bytes, range, prefix)) = entry::segment_of(value, n as usize)
                && prefix == prefix_of(key)
            {
                out.extend_from_slice(&bytes[range]);
                return true;
            }
        }
        false
    }

    fn segmented_key(&self, block_bytes: usize, segment_bytes: usize, digests: &[Key]) -> Key {
        let mut h = self.prefix.clone();
        h.update(b"segmented block");
        h.update((block_bytes as u64).to_le_bytes());
        h.update((segment_bytes as u64).to_le_bytes());
        for d in digests {
            h.update(d);
        }
        h.finalize().into()
    }

    fn segment_key(&self, prev: Option<&Key>, this: &Key) -> Key {
        let mut h = self.prefix.clone();
        h.update(b"segment");
        match prev {
            Some(p) => {
                h.update([1]);
                h.update(p);
            }
            None => h.update([0]),
        }
        h.update(this);
        h.finalize().into()
    }
}

fn prefix_of(key: &Key) -> [u8; SEGMENT_KEY_PREFIX_BYTES] {
    key[..SEGMENT_KEY_PREFIX_BYTES]
        .try_into()
        .expect("keys are longer than their prefix")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::blockcache::BlockStore;
    use crate::blockcache::index::INDEX_DIR;

    /// Encodes a 16-byte segment as 3 bytes that show what it was made from.
    struct Tagging;

    impl SegmentCodec for Tagging {
        fn store_untried(&mut self, _: &[u8]) -> bool {
            false
        }
        fn encode_segment(&mut self, prev: Option<&[u8]>, segment: &[u8], out: &mut Vec<u8>) {
            out.extend_from_slice(&[b'S', segment[0], prev.map_or(0, |p| p[0])]);
        }
        fn finish(&mut self, out: &mut Vec<u8>) {
            out.push(b'E');
        }
    }

    fn block(first: u8) -> Vec<u8> {
        [first, b'b', b'c', b'd']
            .iter()
            .flat_map(|&b| [b; 16])
            .collect()
    }

    fn cold(block: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(encode_segmented(&mut Tagging, block, 16, &mut out));
        out
    }

    fn warm(store: &Arc<BlockStore>, block: &[u8]) -> (Vec<u8>, crate::blockcache::Stats) {
        let cache = BlockCache::new(Arc::clone(store), "ns");
        let mut out = Vec::new();
        let mut scratch = SegmentScratch::default();
        assert!(cache.compress_segmented(&mut Tagging, block, 16, &mut out, &mut scratch));
        cache.write_segment_index();
        (out, cache.stats())
    }

    #[test]
    fn segments_come_back_after_the_same_block_only_and_an_index_record_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::open(dir.path()).unwrap());
        let first = block(b'a');
        warm(&store, &first);
        // The first segment differs: (b after x) is new, (c after b) and
        // (d after c) come from the first block's entry.
        let (out, s) = warm(&store, &block(b'x'));
        assert_eq!(out, cold(&block(b'x')));
        assert_eq!((s.reused_segments, s.compressed_segments), (2, 2));

        // An index whose records name the wrong segment of a sound entry:
        // (c after b) said to be segment 1 (b after a). The entry's table
        // refutes it, and the segment is compressed again.
        let cache = BlockCache::new(Arc::clone(&store), "ns");
        let digests: Vec<Key> = first.chunks(16).map(|s| Sha256::digest(s).into()).collect();
        let keys: Vec<Key> = (0..4usize)
            .map(|i| cache.segment_key(i.checked_sub(1).map(|p| &digests[p]), &digests[i]))
            .collect();
        let entry = cache.segmented_key(first.len(), 16, &digests);
        let mut wrong = Pending::default();
        wrong.add(&entry, &[keys[0], keys[2], keys[1], keys[3]]);
        let index_dir = dir.path().join(INDEX_DIR);
        for f in std::fs::read_dir(&index_dir).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        std::fs::write(index_dir.join("wrong.idx"), wrong.encode()).unwrap();
        let (out, s) = warm(&store, &block(b'y'));
        assert_eq!(out, cold(&block(b'y')));
        assert_eq!((s.reused_segments, s.compressed_segments), (1, 3));
        assert_eq!(s.corrupt_entries, 0, "a stale record is no corruption");
    }
}
