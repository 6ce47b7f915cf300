//! File data: blocks compressed in parallel, written in a deterministic order.
//!
//! ```text
//!  caller thread (reads files, in the order they are added)
//!    │  each data block or fragment block is a Job with a sequence number;
//!    │  control items (file start/end, sparse block, discard, sync) get one too
//!    ├──► N workers: compress ──┐
//!    └──────────────────────────┴──► writer thread: reorders by sequence number,
//!                                     writes, records where everything landed
//! ```
//!
//! Only the caller thread decides what goes where, so the image is the same
//! whatever the number of workers. Memory is bounded by a fixed number of
//! tokens: a job needs one to be dispatched and the writer returns it once the
//! block is written.
//!
//! Duplicates are found by size and a 128-bit hash, then confirmed byte for byte
//! against what was written: files up to [`IN_MEMORY_MAX`] are held while being
//! checked, so a duplicate costs no compression at all; larger files stream
//! through and, when they turn out to be duplicates, the writer rewinds over them.
//! Compressed blocks compare as the data they encode: the compressors are
//! deterministic, and equal compressed bytes always decode to equal data.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use xxhash_rust::xxh3::{Xxh3, xxh3_64, xxh3_128};

use super::Error;
use super::compressor::{Codec, CodecSettings};
use crate::blockcache::{self, BlockCache};
use crate::formats::Progress;

mod coder;
mod dedup;
mod read;
mod write;

use coder::BlockCoder;
use read::{BlockReader, read_error};
use write::Writer;

/// Set in a block's size word when the block is stored uncompressed.
pub(crate) const UNCOMPRESSED_BIT: u32 = 1 << 24;
/// Files up to this size are read whole before anything is dispatched.
pub(crate) const IN_MEMORY_MAX: u64 = 4 << 20;
const WRITE_BUFFER: usize = 1 << 20;
/// A fragment block also ends, once it is this full (in quarters of a
/// block), after a tail whose hash has the [`FRAGMENT_CUT_MASK`] bits clear.
/// Ends chosen by content realign after a file is added or removed, so a
/// rebuild changes only the fragment blocks near the change and finds the
/// others in the block cache (ends chosen by fullness alone would shift every
/// later block). The blocks are on average ~7/8 full instead of ~full.
const FRAGMENT_CUT_QUARTERS: usize = 3;
const FRAGMENT_CUT_MASK: u64 = 3;

/// Where a file's tail lives: which fragment block, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragmentRef {
    pub index: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FragmentEntry {
    pub start: u64,
    pub size_word: u32,
}

/// Everything an inode needs to find a file's data.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileLayout {
    pub size: u64,
    pub blocks_start: u64,
    pub block_sizes: Vec<u32>,
    pub fragment: Option<FragmentRef>,
    /// Bytes in all-zero blocks that take no space.
    pub sparse_bytes: u64,
}

/// A regular file's contents as the data pipeline reads them.
pub enum FileContent<'a> {
    /// An open file: read with positional reads, holes skipped with SEEK_DATA.
    File(&'a File),
    /// A stream (a tar member): read once, in order.
    Reader(&'a mut dyn Read),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct DataOptions {
    pub block_size: usize,
    pub jobs: usize,
    pub fragments: bool,
    pub tail_ends: bool,
    pub dedup: bool,
    /// Absolute offset where the first data block goes.
    pub data_start: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct DataStats {
    pub files: u64,
    pub bytes_in: u64,
    pub duplicate_files: u64,
    pub duplicate_bytes: u64,
    /// Files that share another file's blocks but have a tail of their own.
    pub partial_duplicate_files: u64,
    pub sparse_bytes: u64,
    pub fragment_blocks: u32,
    /// Blocks stored raw without running the compressor: they looked
    /// incompressible ([`crate::formats::incompressible`]).
    pub raw_by_probe_blocks: u64,
}

pub(crate) struct DataResult {
    pub file: File,
    pub end: u64,
    pub layouts: Vec<FileLayout>,
    pub fragments: Vec<FragmentEntry>,
    pub stats: DataStats,
    pub cache_stats: Option<blockcache::Stats>,
}

/// Duplicates are looked up by whole content, and by block list alone (two
/// files of one size whose blocks match but whose tails differ share the
/// blocks, as mksquashfs does).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Dedup {
    Whole,
    Blocks,
}

#[derive(Clone, Copy)]
enum Blocks {
    None,
    Own { end_seq: u64 },
    SameAs(u32),
}

struct FileRecord {
    size: u64,
    fragment: Option<FragmentRef>,
    sparse_bytes: u64,
    blocks: Blocks,
}

#[derive(Debug, Clone, Default)]
struct BlockList {
    start: u64,
    sizes: Vec<u32>,
}

#[derive(Default)]
struct SharedState {
    blocks: Vec<Option<BlockList>>,
    fragments: Vec<Option<FragmentEntry>>,
    /// Every item up to this sequence number is on disk.
    flushed_seq: Option<u64>,
    failed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<SharedState>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Payload {
    Block {
        data: Vec<u8>,
        size_word: u32,
    },
    Fragment {
        index: u32,
        data: Vec<u8>,
        size_word: u32,
    },
    FileStart(u32),
    SparseBlock,
    FileEnd(u32),
    Discard(u32),
    Sync,
    Failed(Error),
}

struct Job {
    seq: u64,
    fragment: Option<u32>,
    data: Vec<u8>,
}

/// An open fragment block. Its index is taken when the first tail goes in.
#[derive(Default)]
struct Packer {
    buf: Vec<u8>,
    index: Option<u32>,
}

/// Tails of files larger than a block (often binaries or already compressed
/// data) fill fragment blocks of their own, apart from whole small files
/// (mostly text and configuration): each kind compresses better among its own.
#[derive(Clone, Copy)]
enum TailKind {
    SmallFile = 0,
    LargeFileTail = 1,
}

pub(crate) struct DataPipeline {
    opts: DataOptions,
    next_seq: u64,
    jobs_tx: Option<Sender<Job>>,
    items_tx: Option<Sender<(u64, Payload)>>,
    tokens: Receiver<()>,
    pool: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<Result<(File, u64), Error>>>,
    shared: Arc<Shared>,
    records: Vec<FileRecord>,
    seen: HashMap<(Dedup, u64, u128), Vec<u32>>,
    packers: [Packer; 2],
    next_fragment: u32,
    /// Sequence number of each dispatched fragment block, by index.
    fragment_seqs: Vec<Option<u64>>,
    last_sync: Option<u64>,
    codec: Codec,
    readback: File,
    fragment_cache: Option<(u32, Vec<u8>)>,
    stats: DataStats,
    block_cache: Option<BlockCache>,
    raw_by_probe: Arc<std::sync::atomic::AtomicU64>,
}

impl DataPipeline {
    pub fn new(
        mut file: File,
        settings: CodecSettings,
        opts: DataOptions,
        block_cache: Option<BlockCache>,
    ) -> Result<DataPipeline, Error> {
        file.seek(SeekFrom::Start(opts.data_start))
            .map_err(Error::Writing)?;
        let readback = file.try_clone().map_err(Error::Writing)?;
        let shared = Arc::new(Shared::default());
        let (jobs_tx, jobs_rx) = unbounded::<Job>();
        let (items_tx, items_rx) = unbounded::<(u64, Payload)>();
        let token_count = opts.jobs * 2 + 2;
        let (tokens_tx, tokens) = bounded(token_count);
        for _ in 0..token_count {
            tokens_tx.send(()).expect("channel sized for all tokens");
        }
        let pool = unbounded::<Vec<u8>>();

        let raw_by_probe = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut workers = Vec::with_capacity(opts.jobs);
        for n in 0..opts.jobs {
            let mut coder = BlockCoder {
                codec: Codec::new(settings)?,
                cache: block_cache.clone(),
                scratch: Vec::new(),
                raw_by_probe: Arc::clone(&raw_by_probe),
            };
            let (jobs_rx, items_tx, pool_tx, pool_rx) = (
                jobs_rx.clone(),
                items_tx.clone(),
                pool.0.clone(),
                pool.1.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("sqfs-compress-{n}"))
                .spawn(move || {
                    for job in jobs_rx {
                        let mut out = pool_rx.try_recv().unwrap_or_default();
                        let payload = match coder.compress(&job.data, &mut out) {
                            Ok(true) => {
                                let _ = pool_tx.send(job.data);
                                block_payload(job.fragment, out, None)
                            }
                            Ok(false) => {
                                let _ = pool_tx.send(out);
                                let raw_len = job.data.len() as u32 | UNCOMPRESSED_BIT;
                                block_payload(job.fragment, job.data, Some(raw_len))
                            }
                            Err(e) => Payload::Failed(e),
                        };
                        if items_tx.send((job.seq, payload)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(Error::Writing)?;
            workers.push(handle);
        }

        let writer_shared = Arc::clone(&shared);
        let pool_tx = pool.0.clone();
        let data_start = opts.data_start;
        let writer = std::thread::Builder::new()
            .name("sqfs-writer".into())
            .spawn(move || {
                let mut w = Writer {
                    file,
                    disk_pos: data_start,
                    buffered: Vec::with_capacity(WRITE_BUFFER),
                    current: None,
                    shared: writer_shared,
                    tokens: tokens_tx,
                    pool: pool_tx,
                };
                let result = w.run(items_rx);
                if result.is_err() {
                    w.shared.lock().failed = true;
                    w.shared.cond.notify_all();
                }
                result.map(|pos| (w.file, pos))
            })
            .map_err(Error::Writing)?;

        Ok(DataPipeline {
            opts,
            next_seq: 0,
            jobs_tx: Some(jobs_tx),
            items_tx: Some(items_tx),
            tokens,
            pool,
            workers,
            writer: Some(writer),
            shared,
            records: Vec::new(),
            seen: HashMap::new(),
            packers: Default::default(),
            next_fragment: 0,
            fragment_seqs: Vec::new(),
            last_sync: None,
            codec: Codec::new(settings)?,
            readback,
            fragment_cache: None,
            stats: DataStats::default(),
            block_cache,
            raw_by_probe,
        })
    }

    /// Reads one regular file of `size` bytes and queues its data. Returns the
    /// id its inode will refer to.
    pub fn add_file(
        &mut self,
        path: &[u8],
        content: FileContent<'_>,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<u32, Error> {
        let id = self.records.len() as u32;
        self.stats.files += 1;
        self.stats.bytes_in += size;
        if size == 0 {
            self.records.push(FileRecord {
                size,
                fragment: None,
                sparse_bytes: 0,
                blocks: Blocks::None,
            });
            return Ok(id);
        }
        let record = if size <= IN_MEMORY_MAX {
            self.add_small(id, content, size)
        } else {
            self.add_large(id, content, size, progress)
        }
        .map_err(|e| match e {
            Error::ReadingSource { source, .. } => Error::ReadingSource {
                path: String::from_utf8_lossy(path).into_owned(),
                source,
            },
            other => other,
        })?;
        if size <= IN_MEMORY_MAX {
            progress.advance(size);
        }
        self.records.push(record);
        Ok(id)
    }

    /// How the file is cut: the number of blocks and the length of the tail that
    /// goes into a fragment (0 when it ends on a block or is stored as a block).
    fn split(&self, size: u64) -> (u64, usize) {
        let bs = self.opts.block_size as u64;
        let tail = size % bs;
        let tail_in_fragment =
            self.opts.fragments && tail != 0 && (self.opts.tail_ends || size < bs);
        if tail_in_fragment {
            (size / bs, tail as usize)
        } else {
            (size.div_ceil(bs), 0)
        }
    }

    fn add_small(
        &mut self,
        id: u32,
        content: FileContent<'_>,
        size: u64,
    ) -> Result<FileRecord, Error> {
        let mut data = vec![0u8; size as usize];
        match content {
            FileContent::File(f) => f.read_exact_at(&mut data, 0),
            FileContent::Reader(r) => r.read_exact(&mut data),
        }
        .map_err(read_error)?;
        let (blocks, tail_len) = self.split(size);
        let split_at = data.len() - tail_len;
        let blocks_hash = xxh3_128(&data[..split_at]);
        let whole_hash = combine_hashes(blocks_hash, &data[split_at..]);
        if self.opts.dedup {
            for candidate in self.candidates(Dedup::Whole, size, whole_hash) {
                if self.matches_in_memory(candidate, &data, true)? {
                    return Ok(self.duplicate_of(candidate));
                }
            }
        }
        let mut shared = None;
        if self.opts.dedup && blocks > 0 {
            for candidate in self.candidates(Dedup::Blocks, size, blocks_hash) {
                if self.matches_in_memory(candidate, &data, false)? {
                    shared = Some(candidate);
                    break;
                }
            }
        }
        let bs = self.opts.block_size;
        let (block_state, sparse_bytes) = match shared {
            Some(owner) => (
                self.share_blocks_of(owner, split_at as u64),
                self.records[owner as usize].sparse_bytes,
            ),
            None if blocks > 0 => {
                let mut sparse_bytes = 0;
                self.control(Payload::FileStart(id))?;
                for chunk in data[..split_at].chunks(bs) {
                    if is_zero(chunk) {
                        sparse_bytes += chunk.len() as u64;
                        self.control(Payload::SparseBlock)?;
                    } else {
                        let mut buf = self.buffer();
                        buf.extend_from_slice(chunk);
                        self.dispatch(buf, None)?;
                    }
                }
                self.stats.sparse_bytes += sparse_bytes;
                (
                    Blocks::Own {
                        end_seq: self.control(Payload::FileEnd(id))?,
                    },
                    sparse_bytes,
                )
            }
            None => (Blocks::None, 0),
        };
        let fragment = if tail_len > 0 {
            Some(self.pack_tail(&data[split_at..], tail_kind(size, self.opts.block_size))?)
        } else {
            None
        };
        self.remember(id, size, whole_hash, blocks_hash, block_state);
        Ok(FileRecord {
            size,
            fragment,
            sparse_bytes,
            blocks: block_state,
        })
    }

    fn add_large(
        &mut self,
        id: u32,
        content: FileContent<'_>,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<FileRecord, Error> {
        let (blocks, tail_len) = self.split(size);
        let bs = self.opts.block_size as u64;
        let mut hasher = Xxh3::new();
        let mut sparse_bytes = 0;
        let mut reader = BlockReader::new(content);
        self.control(Payload::FileStart(id))?;
        for i in 0..blocks {
            let start = i * bs;
            let len = bs.min(size - start) as usize;
            let mut buf = self.buffer();
            let is_hole = reader.read_block(start, len, &mut buf)?;
            if is_hole || is_zero(&buf) {
                // The hash sees a marker, not the zeros: holes need not be read.
                hasher.update(b"\0osforge-sparse-block\0");
                sparse_bytes += len as u64;
                self.pool.0.send(buf).ok();
                self.control(Payload::SparseBlock)?;
            } else {
                hasher.update(&buf);
                self.dispatch(buf, None)?;
            }
            progress.advance(len as u64);
        }
        let end_seq = self.control(Payload::FileEnd(id))?;
        let mut tail = Vec::with_capacity(tail_len);
        if reader.read_block(blocks * bs, tail_len, &mut tail)? {
            // A tail in a hole is zeros in the fragment, not nothing: an empty
            // tail made the reader take the next file's bytes as this one's.
            tail.resize(tail_len, 0);
        }
        progress.advance(tail_len as u64);
        let blocks_hash = hasher.digest128();
        let whole_hash = combine_hashes(blocks_hash, &tail);

        let mut block_state = Blocks::Own { end_seq };
        if self.opts.dedup {
            for candidate in self.candidates(Dedup::Whole, size, whole_hash) {
                if self.matches_streamed(candidate, id, end_seq, Some(&tail))? {
                    self.control(Payload::Discard(id))?;
                    return Ok(self.duplicate_of(candidate));
                }
            }
            for candidate in self.candidates(Dedup::Blocks, size, blocks_hash) {
                if self.matches_streamed(candidate, id, end_seq, None)? {
                    self.control(Payload::Discard(id))?;
                    block_state = self.share_blocks_of(candidate, size - tail_len as u64);
                    sparse_bytes = self.records[candidate as usize].sparse_bytes;
                    break;
                }
            }
        }
        if matches!(block_state, Blocks::Own { .. }) {
            self.stats.sparse_bytes += sparse_bytes;
        }
        let fragment = if tail_len > 0 {
            Some(self.pack_tail(&tail, TailKind::LargeFileTail)?)
        } else {
            None
        };
        self.remember(id, size, whole_hash, blocks_hash, block_state);
        Ok(FileRecord {
            size,
            fragment,
            sparse_bytes,
            blocks: block_state,
        })
    }

    /// Waits until everything up to `seq` is on disk, asking the writer to
    /// flush if it has not yet.
    fn wait_flushed(&mut self, seq: u64) -> Result<(), Error> {
        if self.shared.lock().flushed_seq.is_some_and(|f| f >= seq) {
            return Ok(());
        }
        if self.last_sync.is_none_or(|s| s < seq) {
            self.last_sync = Some(self.control(Payload::Sync)?);
        }
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        loop {
            if state.failed {
                drop(state);
                return Err(self.pipeline_error());
            }
            if state.flushed_seq.is_some_and(|f| f >= seq) {
                return Ok(());
            }
            state = shared.cond.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn wait_for_blocks(&mut self, file: u32, end_seq: u64) -> Result<BlockList, Error> {
        self.wait_flushed(end_seq)?;
        let state = self.shared.lock();
        Ok(state
            .blocks
            .get(file as usize)
            .cloned()
            .flatten()
            .expect("flushed file has its block list"))
    }

    fn wait_for_fragment(&mut self, index: u32) -> Result<FragmentEntry, Error> {
        let seq = self.fragment_seqs[index as usize].expect("fragment was dispatched");
        self.wait_flushed(seq)?;
        let state = self.shared.lock();
        Ok(state.fragments[index as usize].expect("flushed fragment has its entry"))
    }

    fn pack_tail(&mut self, tail: &[u8], kind: TailKind) -> Result<FragmentRef, Error> {
        let slot = kind as usize;
        if self.packers[slot].buf.len() + tail.len() > self.opts.block_size {
            self.flush_fragment(slot)?;
        }
        let packer = &mut self.packers[slot];
        let index = *packer.index.get_or_insert_with(|| {
            self.next_fragment += 1;
            self.next_fragment - 1
        });
        let r = FragmentRef {
            index,
            offset: packer.buf.len() as u32,
        };
        packer.buf.extend_from_slice(tail);
        let cut_fill = self.opts.block_size / 4 * FRAGMENT_CUT_QUARTERS;
        if packer.buf.len() >= cut_fill && xxh3_64(tail) & FRAGMENT_CUT_MASK == 0 {
            self.flush_fragment(slot)?;
        }
        Ok(r)
    }

    fn flush_fragment(&mut self, slot: usize) -> Result<(), Error> {
        let Some(index) = self.packers[slot].index.take() else {
            return Ok(());
        };
        let mut next = self.buffer();
        std::mem::swap(&mut next, &mut self.packers[slot].buf);
        let seq = self.dispatch(next, Some(index))?;
        if self.fragment_seqs.len() <= index as usize {
            self.fragment_seqs.resize(index as usize + 1, None);
        }
        self.fragment_seqs[index as usize] = Some(seq);
        self.stats.fragment_blocks += 1;
        Ok(())
    }

    fn buffer(&self) -> Vec<u8> {
        let mut buf = self
            .pool
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.opts.block_size));
        buf.clear();
        buf
    }

    fn dispatch(&mut self, data: Vec<u8>, fragment: Option<u32>) -> Result<u64, Error> {
        if self.tokens.recv().is_err() {
            return Err(self.pipeline_error());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let sent = self.jobs_tx.as_ref().map(|tx| {
            tx.send(Job {
                seq,
                fragment,
                data,
            })
            .is_ok()
        });
        if sent != Some(true) {
            return Err(self.pipeline_error());
        }
        Ok(seq)
    }

    fn control(&mut self, payload: Payload) -> Result<u64, Error> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let sent = self
            .items_tx
            .as_ref()
            .map(|tx| tx.send((seq, payload)).is_ok());
        if sent != Some(true) {
            return Err(self.pipeline_error());
        }
        Ok(seq)
    }

    /// Stops the pipeline and returns the error that stopped the writer.
    fn pipeline_error(&mut self) -> Error {
        self.jobs_tx = None;
        self.items_tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(|w| w.join()) {
            Some(Ok(Err(e))) => e,
            _ => Error::PipelineStopped,
        }
    }

    pub fn finish(mut self) -> Result<DataResult, Error> {
        self.flush_fragment(TailKind::SmallFile as usize)?;
        self.flush_fragment(TailKind::LargeFileTail as usize)?;
        self.jobs_tx = None;
        self.items_tx = None;
        for w in self.workers.drain(..) {
            w.join().map_err(|_| Error::PipelineStopped)?;
        }
        let (mut file, end) = self
            .writer
            .take()
            .expect("writer runs until finish")
            .join()
            .map_err(|_| Error::PipelineStopped)??;
        // A duplicate discarded at the very end leaves bytes past `end`.
        file.set_len(end).map_err(Error::Writing)?;
        file.seek(SeekFrom::Start(end)).map_err(Error::Writing)?;

        let state = std::mem::take(&mut *self.shared.lock());
        let fragments = state
            .fragments
            .into_iter()
            .map(|f| f.expect("every fragment was written"))
            .collect();
        let lists = state.blocks;
        let layouts = self
            .records
            .iter()
            .enumerate()
            .map(|(id, r)| {
                let owner = match r.blocks {
                    Blocks::None => None,
                    Blocks::Own { .. } => Some(id),
                    Blocks::SameAs(c) => Some(c as usize),
                };
                let list = owner
                    .and_then(|o| lists.get(o).cloned().flatten())
                    .unwrap_or_default();
                FileLayout {
                    size: r.size,
                    blocks_start: if list.sizes.is_empty() { 0 } else { list.start },
                    block_sizes: list.sizes,
                    fragment: r.fragment,
                    sparse_bytes: r.sparse_bytes,
                }
            })
            .collect();
        self.stats.raw_by_probe_blocks =
            self.raw_by_probe.load(std::sync::atomic::Ordering::Relaxed);
        Ok(DataResult {
            file,
            end,
            layouts,
            fragments,
            stats: self.stats,
            cache_stats: self.block_cache.as_ref().map(BlockCache::stats),
        })
    }
}

fn combine_hashes(blocks_hash: u128, tail: &[u8]) -> u128 {
    let mut h = Xxh3::new();
    h.update(&blocks_hash.to_le_bytes());
    h.update(tail);
    h.digest128()
}

fn tail_kind(size: u64, block_size: usize) -> TailKind {
    if size < block_size as u64 {
        TailKind::SmallFile
    } else {
        TailKind::LargeFileTail
    }
}

fn block_payload(fragment: Option<u32>, data: Vec<u8>, raw_word: Option<u32>) -> Payload {
    let size_word = raw_word.unwrap_or(data.len() as u32);
    match fragment {
        Some(index) => Payload::Fragment {
            index,
            data,
            size_word,
        },
        None => Payload::Block { data, size_word },
    }
}

pub(crate) fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &b| a | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}
