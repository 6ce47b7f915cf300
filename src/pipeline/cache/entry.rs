//! What the cache directory holds, as `osforge cache ls` and `prune` see it.
//!
//! Beside its output and `manifest.json`, an entry has `entry.json` (the
//! profile it was built for and when; not part of the key) and `last-used`,
//! an empty file whose mtime each build that uses the entry sets: one
//! utimensat per hit, so lookups stay as cheap as they were. Entries made
//! before these files existed fall back to the manifest's mtime.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::MANIFEST;
use super::error::CacheError;
use super::lock::{self, LockFile};

const RECORD: &str = "entry.json";
const LAST_USED: &str = "last-used";
/// The disk stage's scratch space under the cache root (hard links into the
/// configured rootfs need the same filesystem); it holds no entries.
const SCRATCH: &str = "tmp";

/// `entry.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    /// Seconds since the epoch.
    #[serde(default)]
    created: Option<u64>,
}

/// Writes `entry.json` and `last-used` into an entry being built.
pub(super) fn write_record(dir: &Path, profile: Option<&str>) -> io::Result<()> {
    let record = Record {
        profile: profile.map(str::to_string),
        created: Some(unix_seconds(SystemTime::now())),
    };
    fs::write(dir.join(RECORD), serde_json::to_vec_pretty(&record)?)?;
    fs::write(dir.join(LAST_USED), b"")
}

/// Sets the entry's last use to now. Best effort: a cache on a read-only
/// mount still serves hits.
pub(super) fn mark_used(dir: &Path) {
    let _ = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LAST_USED))
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// One cache entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub stage: String,
    /// The full key (`<cache>/<stage>/<key>/`).
    pub key: String,
    pub path: PathBuf,
    /// The profile it was built for; None for entries older than the record.
    pub profile: Option<String>,
    /// Space on disk (allocated blocks, each hard-linked file once).
    pub bytes: u64,
    /// When it was built, in seconds since the epoch.
    pub created: u64,
    /// When a build last used it (or built it), in seconds since the epoch.
    pub last_used: u64,
    /// Held by a running build (being built, rebuilt or read).
    pub in_use: bool,
}

/// Everything in a stage directory that belongs to one key.
#[derive(Debug, Default)]
pub(super) struct KeyFiles {
    pub stage: String,
    pub key: String,
    pub stage_dir: PathBuf,
    /// `<key>/`, with whether it holds a manifest (a lookup hit).
    pub entry: Option<(PathBuf, bool)>,
    /// `.<key>.tmp-*` (a build's) and `.<key>.del-*` (a removal's): stale
    /// unless the key's build lock is held.
    pub temporaries: Vec<PathBuf>,
}

impl KeyFiles {
    pub fn complete_entry(&self) -> Option<&Path> {
        match &self.entry {
            Some((path, true)) => Some(path),
            _ => None,
        }
    }

    /// The entry's listing row; None unless it is complete.
    pub fn to_entry(&self) -> Option<Entry> {
        let path = self.complete_entry()?;
        let record: Record = fs::read(path.join(RECORD))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let created = record
            .created
            .or_else(|| mtime_seconds(&path.join(MANIFEST)))
            .unwrap_or(0);
        Some(Entry {
            stage: self.stage.clone(),
            key: self.key.clone(),
            path: path.to_path_buf(),
            profile: record.profile,
            bytes: disk_usage(path),
            created,
            last_used: mtime_seconds(&path.join(LAST_USED)).unwrap_or(created),
            in_use: self.is_held(),
        })
    }

    /// Whether a build holds either lock (a probe: nothing is kept or created).
    pub fn is_held(&self) -> bool {
        LockFile::ALL
            .iter()
            .any(|f| lock::is_held(&f.path(&self.stage_dir, &self.key)))
    }
}

/// Groups the cache's files by stage and key. A missing root is an empty cache.
pub(super) fn scan(root: &Path) -> Result<Vec<KeyFiles>, CacheError> {
    let mut keys: BTreeMap<(String, String), KeyFiles> = BTreeMap::new();
    let stages = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CacheError::access(root)(e)),
    };
    for stage in stages {
        let stage = stage.map_err(CacheError::access(root))?;
        let Some(stage_name) = stage.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if stage_name == SCRATCH
            || stage_name == super::BLOCKS
            || stage_name.starts_with('.')
            || !stage.path().is_dir()
        {
            continue;
        }
        let stage_dir = stage.path();
        for item in fs::read_dir(&stage_dir).map_err(CacheError::access(&stage_dir))? {
            let item = item.map_err(CacheError::access(&stage_dir))?;
            let Some(name) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some((key, kind)) = classify(&name) else {
                continue;
            };
            let files = keys
                .entry((stage_name.clone(), key.to_string()))
                .or_insert_with(|| KeyFiles {
                    stage: stage_name.clone(),
                    key: key.to_string(),
                    stage_dir: stage_dir.clone(),
                    ..KeyFiles::default()
                });
            let path = item.path();
            match kind {
                Kind::Entry => {
                    let complete = path.join(MANIFEST).is_file();
                    files.entry = Some((path, complete));
                }
                Kind::Temporary => files.temporaries.push(path),
                // Only lock files left: listed so that prune removes them.
                Kind::Lock => {}
            }
        }
    }
    Ok(keys.into_values().collect())
}

enum Kind {
    Entry,
    Temporary,
    Lock,
}

/// Names osforge writes in a stage directory: `<key>`, `.<key>.lock`,
/// `.<key>.use`, `.<key>.tmp-*`, `.<key>.del-*`. Anything else is not ours.
fn classify(name: &str) -> Option<(&str, Kind)> {
    let is_key = |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_hexdigit());
    let Some(hidden) = name.strip_prefix('.') else {
        return is_key(name).then_some((name, Kind::Entry));
    };
    let (key, rest) = hidden.split_once('.')?;
    if !is_key(key) {
        return None;
    }
    if LockFile::ALL.iter().any(|f| rest == f.suffix()) {
        Some((key, Kind::Lock))
    } else if rest.starts_with(super::TEMP_INFIX) || rest.starts_with(super::DELETE_INFIX) {
        Some((key, Kind::Temporary))
    } else {
        None
    }
}

/// Allocated bytes under `path`, each inode once (the disk stage hard-links
/// rootfs files; a build may too). Best effort: what cannot be read counts 0.
pub(super) fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if !meta.is_dir() && meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    total
}

pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn mtime_seconds(path: &Path) -> Option<u64> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(unix_seconds)
}
