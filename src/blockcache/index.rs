//! The segment index: which entry holds a given segment.
//!
//! Segmented entries ([`super::segments`]) are stored whole, under the key of
//! their whole block; a segment is found again through this index, which maps
//! a segment's key to (entry key, segment number). Each image written with
//! segments writes one index file for all its blocks (reused ones included),
//! `<store>/index/<unique>.idx`, through `tmp/` and a rename: concurrent
//! builds each write their own file and never need a lock. Readers map the
//! newest [`MAX_INDEX_FILES`] files and binary-search them, so opening the
//! index costs a checksum pass over a few MiB, and memory is the page cache's.
//!
//! ```text
//!  0   magic "OSFIDX01"
//!  8   entry count e, u32 little-endian
//! 12   record count r, u32 little-endian
//! 16   xxh3-64 of bytes 0..16 and 24.., little-endian
//! 24   e × 32-byte entry keys
//!      r × { segment key (32 bytes), entry number u32 LE, segment number
//!      u32 LE }, sorted by segment key, each key once
//! ```
//!
//! A record is a hint, never trusted: the entry it names is read with its
//! checksum, and its segment table must carry the segment key's prefix.
//! So a record whose entry was pruned or replaced is only a miss. A file
//! that fails its checksum is reported, removed and not read.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use xxhash_rust::xxh3::Xxh3;

/// The index files' folder in the store.
pub(super) const INDEX_DIR: &str = "index";
/// Index files' name suffix.
pub(super) const INDEX_SUFFIX: &str = ".idx";
/// Index files read, newest first: an image rebuilt within its last few
/// builds finds its segments, and a lookup probes at most this many files.
pub(super) const MAX_INDEX_FILES: usize = 4;

const MAGIC: [u8; 8] = *b"OSFIDX01";
const HEADER_BYTES: usize = 24;
const CHECKSUM_AT: usize = 16;
const KEY_BYTES: usize = 32;
const RECORD_BYTES: usize = KEY_BYTES + 8;

/// A key in the store: an entry's or a segment's.
pub(super) type Key = [u8; 32];

/// The records one image's writer collects, written out once at its end.
#[derive(Default)]
pub(super) struct Pending {
    entries: Vec<Key>,
    /// (segment key, entry number, segment number)
    records: Vec<(Key, u32, u32)>,
}

impl Pending {
    /// Records that segment `n` of entry `entry` has key `segment_keys[n]`.
    pub fn add(&mut self, entry: &Key, segment_keys: &[Key]) {
        let number = self.entries.len() as u32;
        self.entries.push(*entry);
        self.records.extend(
            segment_keys
                .iter()
                .enumerate()
                .map(|(n, k)| (*k, number, n as u32)),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The index file's bytes. Where one segment key is in several entries,
    /// the first entry written keeps it.
    pub fn encode(mut self) -> Vec<u8> {
        self.records
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        self.records.dedup_by(|later, first| later.0 == first.0);
        let mut out = Vec::with_capacity(
            HEADER_BYTES + self.entries.len() * KEY_BYTES + self.records.len() * RECORD_BYTES,
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        for e in &self.entries {
            out.extend_from_slice(e);
        }
        for (key, entry, n) in &self.records {
            out.extend_from_slice(key);
            out.extend_from_slice(&entry.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        let sum = checksum(&out);
        out[CHECKSUM_AT..HEADER_BYTES].copy_from_slice(&sum.to_le_bytes());
        out
    }
}

fn checksum(file: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&file[..CHECKSUM_AT]);
    h.update(&file[HEADER_BYTES..]);
    h.digest()
}

/// The index files a build reads, newest first.
pub(super) struct Index {
    files: Vec<IndexFile>,
}

struct IndexFile {
    map: Mapped,
    entries: usize,
    records: usize,
}

impl Index {
    /// Maps the newest valid index files under `root`. Returns the index and
    /// the files that failed their check (already removed).
    pub fn open(root: &Path) -> (Index, Vec<PathBuf>) {
        let mut corrupt = Vec::new();
        let mut files = Vec::new();
        for path in newest_first(&root.join(INDEX_DIR)) {
            if files.len() == MAX_INDEX_FILES {
                break;
            }
            match IndexFile::open(&path) {
                Ok(Some(f)) => files.push(f),
                // Removed since the listing (a prune): nothing to report.
                Ok(None) => {}
                Err(()) => {
                    // Another build would trip on it too; this build writes
                    // its own complete index anyway.
                    let _ = fs::remove_file(&path);
                    corrupt.push(path);
                }
            }
        }
        (Index { files }, corrupt)
    }

    /// Where segment `key` was stored, per index file, newest first.
    pub fn find<'a>(&'a self, key: &'a Key) -> impl Iterator<Item = (Key, u32)> + 'a {
        self.files.iter().filter_map(move |f| f.find(key))
    }
}

impl IndexFile {
    /// Ok(None): the file is gone. Err: it is corrupt.
    fn open(path: &Path) -> Result<Option<IndexFile>, ()> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return Err(()),
        };
        let len = file.metadata().map_err(|_| ())?.len() as usize;
        if len < HEADER_BYTES {
            return Err(());
        }
        let map = Mapped::of(&file, len).map_err(|_| ())?;
        let bytes = map.bytes();
        let count = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let (entries, records) = (count(8), count(12));
        let sum = u64::from_le_bytes(bytes[CHECKSUM_AT..HEADER_BYTES].try_into().unwrap());
        let valid = bytes[..8] == MAGIC
            && len == HEADER_BYTES + entries * KEY_BYTES + records * RECORD_BYTES
            && checksum(bytes) == sum;
        if !valid {
            return Err(());
        }
        Ok(Some(IndexFile {
            map,
            entries,
            records,
        }))
    }

    fn record(&self, i: usize) -> &[u8] {
        let at = HEADER_BYTES + self.entries * KEY_BYTES + i * RECORD_BYTES;
        &self.map.bytes()[at..at + RECORD_BYTES]
    }

    fn find(&self, key: &Key) -> Option<(Key, u32)> {
        let (mut lo, mut hi) = (0, self.records);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let record = self.record(mid);
            match record[..KEY_BYTES].cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let word =
                        |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().unwrap());
                    let (entry, n) = (word(KEY_BYTES) as usize, word(KEY_BYTES + 4));
                    // The checksum passed, so only a writer bug could get
                    // here; still, never index out of the file.
                    if entry >= self.entries {
                        return None;
                    }
                    let at = HEADER_BYTES + entry * KEY_BYTES;
                    let entry_key = self.map.bytes()[at..at + KEY_BYTES].try_into().unwrap();
                    return Some((entry_key, n));
                }
            }
        }
        None
    }
}

/// The index files in `dir`, newest first (by mtime, then name).
pub(super) fn newest_first(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(SystemTime, PathBuf)> = listing
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(INDEX_SUFFIX))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A read-only private mapping of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; the pointer is only read.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// `len` must be the file's length, and not 0. Index files are written
    /// under another name and renamed into place, then never written again
    /// (only removed, which leaves a mapping readable), so the mapped bytes
    /// do not change under the reader.
    fn of(file: &File, len: usize) -> io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only mapping of an open file descriptor; the
        // result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `of`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        fs::create_dir_all(dir.join(INDEX_DIR)).unwrap();
        let path = dir.join(INDEX_DIR).join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn an_index_file_finds_every_segment_it_was_given_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut pending = Pending::default();
        let keys: Vec<Key> = (0..40u8).map(|i| [i.wrapping_mul(97); 32]).collect();
        pending.add(&[0xa0; 32], &keys[..16]);
        pending.add(&[0xb0; 32], &keys[16..]);
        // A key already given (a repeated segment) keeps its first place.
        pending.add(&[0xc0; 32], &keys[3..4]);
        write(dir.path(), "a.idx", &pending.encode());
        let (index, corrupt) = Index::open(dir.path());
        assert!(corrupt.is_empty());
        for (i, k) in keys.iter().enumerate() {
            let want = if i < 16 {
                ([0xa0; 32], i as u32)
            } else {
                ([0xb0; 32], i as u32 - 16)
            };
            assert_eq!(index.find(k).collect::<Vec<_>>(), vec![want], "key {i}");
        }
        assert_eq!(index.find(&[1; 32]).count(), 0);
    }

    #[test]
    fn a_corrupt_or_truncated_index_file_is_reported_removed_and_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut pending = Pending::default();
        pending.add(&[0xa0; 32], &[[5; 32], [6; 32]]);
        let good = pending.encode();
        let mut flipped = good.clone();
        flipped[HEADER_BYTES + 40] ^= 1;
        let flipped = write(dir.path(), "flipped.idx", &flipped);
        let truncated = write(dir.path(), "truncated.idx", &good[..good.len() - 1]);
        let short = write(dir.path(), "short.idx", &good[..10]);
        write(dir.path(), "good.idx", &good);
        let (index, mut corrupt) = Index::open(dir.path());
        corrupt.sort();
        let mut want = vec![flipped, truncated, short];
        want.sort();
        assert_eq!(corrupt, want);
        assert!(want.iter().all(|p| !p.exists()));
        assert_eq!(index.find(&[6; 32]).collect::<Vec<_>>(), [([0xa0; 32], 1)]);
    }
}
