//! A content-addressed store of compressed blocks, shared by builds.
//!
//! Rebuilding an image after a small change recompresses mostly what the last
//! build already compressed. The writers (squashfs data and fragment blocks,
//! qcow2 clusters) look each block up here first: the key is the SHA-256 of a
//! namespace naming everything that shapes the compressed bytes (format,
//! compressor, level, block size, encoder revision) followed by the block;
//! the value is the compressed bytes or "stored uncompressed". Compression is
//! deterministic, so an image made with the store is byte-identical to one
//! made without it.
//!
//! Layout: one file per entry, `<dir>/<2 hex>/<62 hex>`, written to
//! `<dir>/tmp/` and renamed into place. Why files and not packed segments: a
//! lookup is one `open` + `read` with no index to load or keep in memory,
//! concurrent builds need no locking (rename is atomic; two builds writing one
//! key write the same bytes), and least-recently-used pruning is a walk over
//! mtimes. A 128 KiB-block image is ~7000 entries; 256 fan-out directories
//! keep each small. Entries are not fsynced: each carries a checksum
//! ([`entry`]), and a torn one is reported and recomputed, never used.
//!
//! qcow2 clusters are also reusable a 4 KiB segment at a time
//! ([`segments`]): their entries carry a segment table, and per-image index
//! files under `<dir>/index/` ([`index`]) find a segment's entry.

mod entry;
mod index;
mod prune;
mod segments;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

pub use entry::{Segment, Value};
pub use prune::PruneReport;
pub use segments::{SegmentCodec, SegmentScratch, encode_segmented};

/// Where unfinished entries are written before they are renamed into place.
const TMP_DIR: &str = "tmp";
/// A hit refreshes the entry's mtime (its "last used") at most this often.
const TOUCH_AFTER: Duration = Duration::from_secs(600);
/// At most this many corrupt entries are named in a report.
const MAX_NAMED_CORRUPT: usize = 20;
/// The default bound of a build cache's store.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the block cache directory {path}")]
    CreatingDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the block cache directory {path}")]
    Scanning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {path} from the block cache")]
    Removing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The store: a directory.
/// Numbers temporaries: unique in the process (with the pid, on the machine)
/// even when two handles open one store.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
pub struct BlockStore {
    root: PathBuf,
}

impl BlockStore {
    /// The store at `root`. Its folders are made with the first entry, so
    /// that a build refused before its first stage leaves nothing behind.
    pub fn open(root: &Path) -> Result<BlockStore, Error> {
        if root.exists() && !root.is_dir() {
            return Err(Error::CreatingDir {
                path: root.to_path_buf(),
                source: io::Error::other("not a directory"),
            });
        }
        Ok(BlockStore {
            root: root.to_path_buf(),
        })
    }

    /// The store at `root`, which need not exist, for pruning: nothing is
    /// created.
    pub fn at(root: &Path) -> BlockStore {
        BlockStore {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &[u8; 32]) -> PathBuf {
        let hex = crate::util::hex(key);
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    /// Reads an entry into `out` (replacing its contents). A corrupt entry is
    /// reported as such, with its path.
    fn get(&self, key: &[u8; 32], out: &mut Vec<u8>) -> Lookup {
        let path = self.path_of(key);
        let Ok(mut file) = File::open(&path) else {
            return Lookup::Miss;
        };
        out.clear();
        if file.read_to_end(out).is_err() {
            return Lookup::Corrupt(path);
        }
        let Some(kind) = entry::decode(key, out) else {
            return Lookup::Corrupt(path);
        };
        out.drain(..entry::HEADER_BYTES);
        touch(&file);
        match kind {
            entry::Kind::Compressed => Lookup::Compressed,
            entry::Kind::Stored => Lookup::Stored,
            entry::Kind::Segmented => Lookup::Segmented,
        }
    }

    /// Writes an entry: to a temporary name, then renamed over the final one,
    /// so readers see a whole entry or none.
    fn put(&self, key: &[u8; 32], value: Value<'_>) -> io::Result<()> {
        self.write_atomically(&self.path_of(key), &entry::encode(key, value))
    }

    /// Writes one image's segment index file (under a name no other writer
    /// uses).
    fn put_index(&self, bytes: &[u8]) -> io::Result<()> {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!("{nanos}-{}-{n}{}", std::process::id(), index::INDEX_SUFFIX);
        self.write_atomically(&self.root.join(index::INDEX_DIR).join(name), bytes)
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let temp = self
            .root
            .join(TMP_DIR)
            .join(format!("{}.{n}", std::process::id()));
        let result = (|| {
            let mut file = match File::create(&temp) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(self.root.join(TMP_DIR))?;
                    File::create(&temp)?
                }
                other => other?,
            };
            file.write_all(bytes)?;
            match fs::rename(&temp, path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(path.parent().expect("store files are in a folder"))?;
                    fs::rename(&temp, path)
                }
                other => other,
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// Marks an entry as used now, for pruning, unless that was recent.
fn touch(file: &File) {
    let stale = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > TOUCH_AFTER);
    if stale {
        let _ = file.set_modified(SystemTime::now());
    }
}

enum Lookup {
    Compressed,
    Stored,
    /// The value (in `out`) is a segment table and the compressed bytes.
    Segmented,
    Miss,
    Corrupt(PathBuf),
}

/// What one image's writer did with the store, for its summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Blocks found in the store: not compressed again.
    pub reused_blocks: u64,
    /// Uncompressed bytes of those blocks.
    pub reused_bytes: u64,
    /// Blocks compressed and added to the store. A segmented block counts
    /// here even when some of its segments were reused.
    pub compressed_blocks: u64,
    /// Of those blocks' segments (qcow2 zlib clusters: 4 KiB each), the ones
    /// found in the store through its segment index.
    #[serde(skip_serializing_if = "is_zero")]
    pub reused_segments: u64,
    /// And the ones compressed.
    #[serde(skip_serializing_if = "is_zero")]
    pub compressed_segments: u64,
    /// Entries (and segment index files) that failed their checksum:
    /// recomputed and replaced, or removed (see `removed_paths`).
    pub corrupt_entries: u64,
    /// The first of them, by path.
    pub corrupt_paths: Vec<PathBuf>,
    /// Of `corrupt_paths`, those removed and not written again: segment
    /// index files, and entries found through the index (their block is not
    /// this image's, so a later build that has it stores it again).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_paths: Vec<PathBuf>,
    /// Entries that could not be written (the image is still correct).
    pub write_errors: u64,
    pub first_write_error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Default)]
struct Counters {
    reused_blocks: AtomicU64,
    reused_bytes: AtomicU64,
    compressed_blocks: AtomicU64,
    reused_segments: AtomicU64,
    compressed_segments: AtomicU64,
    write_errors: AtomicU64,
    notes: Mutex<Notes>,
}

/// Corrupt entries (all of them counted, the first ones named, and which of
/// those were removed rather than replaced) and the first write error.
#[derive(Default)]
struct Notes {
    corrupt: u64,
    named: Vec<PathBuf>,
    removed: Vec<PathBuf>,
    first_write_error: Option<String>,
}

/// One image's view of the store: the namespace its keys are made in, and
/// its counters. Cheap to clone, one per worker thread.
#[derive(Clone)]
pub struct BlockCache {
    store: Arc<BlockStore>,
    /// SHA-256 already fed with the namespace.
    prefix: Sha256,
    counters: Arc<Counters>,
    segments: Arc<segments::Shared>,
}

impl BlockCache {
    /// `namespace` must name everything that changes the compressed bytes of
    /// a block besides the block itself.
    pub fn new(store: Arc<BlockStore>, namespace: &str) -> BlockCache {
        let mut prefix = Sha256::new();
        prefix.update((namespace.len() as u64).to_le_bytes());
        prefix.update(namespace.as_bytes());
        BlockCache {
            store,
            prefix,
            counters: Arc::default(),
            segments: Arc::default(),
        }
    }

    /// The compressed form of `block` in `out`, from the store or from
    /// `compress` (which then goes into the store). Returns what `compress`
    /// returns: true when `out` holds the compressed bytes, false when the
    /// block is to be stored as it is (`out` is then unspecified).
    pub fn compress_with<E>(
        &self,
        block: &[u8],
        out: &mut Vec<u8>,
        compress: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let key: [u8; 32] = self.prefix.clone().chain_update(block).finalize().into();
        let c = &self.counters;
        match self.store.get(&key, out) {
            Lookup::Compressed if out.len() < block.len() => {
                c.reused_blocks.fetch_add(1, Ordering::Relaxed);
                c.reused_bytes
                    .fetch_add(block.len() as u64, Ordering::Relaxed);
                return Ok(true);
            }
            Lookup::Stored => {
                c.reused_blocks.fetch_add(1, Ordering::Relaxed);
                c.reused_bytes
                    .fetch_add(block.len() as u64, Ordering::Relaxed);
                return Ok(false);
            }
            // Longer than the block: no compressor gave that; and segmented
            // entries are in other namespaces. Treat both as corrupt.
            Lookup::Compressed | Lookup::Segmented => self.note_corrupt(self.store.path_of(&key)),
            Lookup::Corrupt(path) => self.note_corrupt(path),
            Lookup::Miss => {}
        }
        let compressed = compress(block, out)?;
        let value = if compressed {
            Value::Compressed(out)
        } else {
            Value::Stored
        };
        c.compressed_blocks.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.store.put(&key, value) {
            self.note_write_error(e);
        }
        Ok(compressed)
    }

    fn note_write_error(&self, e: io::Error) {
        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        let mut notes = self
            .counters
            .notes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        notes.first_write_error.get_or_insert_with(|| e.to_string());
    }

    /// A corrupt entry this image recomputes and writes again.
    fn note_corrupt(&self, path: PathBuf) {
        self.note_corrupt_as(path, false);
    }

    /// A corrupt entry or index file that was removed, not replaced: found
    /// through the segment index, without the block it holds.
    fn note_removed(&self, path: PathBuf) {
        self.note_corrupt_as(path, true);
    }

    fn note_corrupt_as(&self, path: PathBuf, removed: bool) {
        let mut notes = self
            .counters
            .notes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Two workers may both read one corrupt entry before it is replaced.
        if notes.named.contains(&path) {
            return;
        }
        notes.corrupt += 1;
        if notes.named.len() < MAX_NAMED_CORRUPT {
            if removed {
                notes.removed.push(path.clone());
            }
            notes.named.push(path);
        }
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let notes = c.notes.lock().unwrap_or_else(|e| e.into_inner());
        let mut corrupt_paths = notes.named.clone();
        let mut removed_paths = notes.removed.clone();
        // Workers race; the report should not depend on which came first.
        corrupt_paths.sort();
        removed_paths.sort();
        Stats {
            reused_blocks: c.reused_blocks.load(Ordering::Relaxed),
            reused_bytes: c.reused_bytes.load(Ordering::Relaxed),
            compressed_blocks: c.compressed_blocks.load(Ordering::Relaxed),
            reused_segments: c.reused_segments.load(Ordering::Relaxed),
            compressed_segments: c.compressed_segments.load(Ordering::Relaxed),
            corrupt_entries: notes.corrupt,
            corrupt_paths,
            removed_paths,
            write_errors: c.write_errors.load(Ordering::Relaxed),
            first_write_error: notes.first_write_error.clone(),
        }
    }
}

impl Stats {
    /// "reused 6890 of 7012 blocks (812 MiB)", for logs; `unit` names the
    /// blocks ("clusters" for qcow2). qcow2 zlib adds the 4 KiB segments
    /// reused in the clusters that were not reused whole.
    pub fn describe(&self, unit: &str) -> String {
        let mut s = format!(
            "block cache: reused {} of {} {unit} ({})",
            self.reused_blocks,
            self.reused_blocks + self.compressed_blocks,
            crate::util::size::human_bytes(self.reused_bytes)
        );
        let segments = self.reused_segments + self.compressed_segments;
        if segments > 0 {
            s.push_str(&format!(
                ", and {} of {} 4 KiB segments of the others",
                self.reused_segments, segments
            ));
        }
        if self.corrupt_entries > 0 {
            s.push_str(&format!(
                ", {} corrupt entries recomputed or removed",
                self.corrupt_entries
            ));
        }
        if self.write_errors > 0 {
            s.push_str(&format!(
                ", {} entries not written ({})",
                self.write_errors,
                self.first_write_error.as_deref().unwrap_or("?")
            ));
        }
        s
    }

    /// One warning line per named corrupt entry.
    pub fn warnings(&self) -> Vec<String> {
        self.corrupt_paths
            .iter()
            .map(|p| {
                if p.parent().and_then(Path::file_name) == Some(index::INDEX_DIR.as_ref()) {
                    format!(
                        "block cache segment index {} was corrupt (checksum); removed",
                        p.display()
                    )
                } else if self.removed_paths.contains(p) {
                    format!(
                        "block cache entry {} was corrupt (checksum); removed (its segments were compressed anew)",
                        p.display()
                    )
                } else {
                    format!(
                        "block cache entry {} was corrupt (checksum); recomputed and replaced",
                        p.display()
                    )
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
