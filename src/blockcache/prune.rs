//! Keeping the store bounded: least recently used entries go first.
//!
//! "Used" is the entry's mtime, set when it is written and refreshed by hits.
//! Removing an entry a build is reading is harmless (its open file stays
//! readable) and one it is about to look up is a miss. Temporaries older than
//! an hour are what a killed build left; younger ones may be in flight.
//!
//! Segment index files go with the entries they describe: each names every
//! segment of one image as built, so one older than the oldest entry left
//! describes entries that are gone or that a later build (which touched
//! them, and wrote its own index) describes too. Past the newest
//! [`MAX_INDEX_FILES`] no build reads them. A build mapping a removed one
//! keeps reading it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::index::{self, INDEX_DIR, MAX_INDEX_FILES};
use super::{BlockStore, Error, TMP_DIR};

const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    pub removed_entries: u64,
    pub freed_bytes: u64,
    pub remaining_entries: u64,
    pub remaining_bytes: u64,
    /// Segment index files removed (not counted in the bytes above).
    pub removed_index_files: u64,
}

struct Found {
    path: PathBuf,
    used: SystemTime,
    bytes: u64,
}

impl BlockStore {
    /// Removes least recently used entries until the store holds at most
    /// `max_bytes`, and entries not used for `older_than`. Nothing is
    /// removed on a dry run; the report says what would be.
    pub fn prune(
        &self,
        max_bytes: Option<u64>,
        older_than: Option<Duration>,
        dry_run: bool,
    ) -> Result<PruneReport, Error> {
        let now = SystemTime::now();
        let mut found = Vec::new();
        for dir in read_dir(&self.root)? {
            let name = dir.file_name().unwrap_or_default();
            let fan_out = name.len() == 2 && name.to_str().is_some_and(is_hex);
            if fan_out {
                collect(&dir, &mut found)?;
            } else if name == TMP_DIR {
                let mut temps = Vec::new();
                collect(&dir, &mut temps)?;
                for t in temps {
                    let age = now.duration_since(t.used).unwrap_or_default();
                    if age > STALE_TEMP_AGE && !dry_run {
                        remove(&t.path)?;
                    }
                }
            }
        }
        found.sort_by(|a, b| (a.used, &a.path).cmp(&(b.used, &b.path)));
        let mut report = PruneReport {
            remaining_entries: found.len() as u64,
            remaining_bytes: found.iter().map(|f| f.bytes).sum(),
            ..PruneReport::default()
        };
        let mut oldest_kept: Option<SystemTime> = None;
        for f in found {
            let idle = now.duration_since(f.used).unwrap_or_default();
            let too_old = older_than.is_some_and(|limit| idle >= limit);
            let too_big = max_bytes.is_some_and(|max| report.remaining_bytes > max);
            if !too_old && !too_big {
                oldest_kept = Some(oldest_kept.map_or(f.used, |t| t.min(f.used)));
                // Sorted by last use: what follows is newer, and the store fits.
                if older_than.is_none() {
                    break;
                }
                continue;
            }
            if !dry_run {
                remove(&f.path)?;
            }
            report.removed_entries += 1;
            report.freed_bytes += f.bytes;
            report.remaining_entries -= 1;
            report.remaining_bytes -= f.bytes;
        }
        for (n, path) in index::newest_first(&self.root.join(INDEX_DIR))
            .into_iter()
            .enumerate()
        {
            let written = fs::symlink_metadata(&path).and_then(|m| m.modified());
            let outlived = match (written, oldest_kept) {
                (Ok(written), Some(oldest)) => written < oldest,
                // Gone since the listing: nothing to do.
                (Err(_), _) => continue,
                (Ok(_), None) => true,
            };
            if n >= MAX_INDEX_FILES || outlived {
                if !dry_run {
                    remove(&path)?;
                }
                report.removed_index_files += 1;
            }
        }
        Ok(report)
    }

    /// Removes every entry (`osforge cache clear`).
    pub fn clear(&self, dry_run: bool) -> Result<PruneReport, Error> {
        self.prune(Some(0), None, dry_run)
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let scanning = |source| Error::Scanning {
        path: dir.to_path_buf(),
        source,
    };
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.map(|e| e.path()).map_err(scanning)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(scanning(e)),
    }
}

fn collect(dir: &Path, found: &mut Vec<Found>) -> Result<(), Error> {
    for path in read_dir(dir)? {
        // Gone since the listing (another prune): skip it.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() {
            found.push(Found {
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                bytes: meta.blocks() * 512,
                path,
            });
        }
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Removing {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}
