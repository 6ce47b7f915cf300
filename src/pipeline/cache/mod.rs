//! The content-addressed stage cache.
//!
//! Each stage's output is stored under `<cache>/<stage>/<key>/`, where the key
//! is a digest of a manifest: a JSON document of exactly the inputs that shape
//! that output (for the configure stage, the bootstrap key is one of them, so
//! keys chain). The manifest is kept beside the output, so when a key is not
//! found the log can say what changed compared with the newest entry.
//!
//! An entry is built in a temporary directory next to its final place and
//! renamed into place only when complete, so a failed or interrupted build
//! never leaves an entry that a later build would trust. Removal works the
//! other way round: the entry is renamed out of sight, then deleted, so a
//! build sees it whole or not at all (`prune.rs`; `lock.rs` says who may
//! remove what while builds run).

mod entry;
mod error;
mod lock;
mod prune;
mod space;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::util::cleanup;

pub use entry::Entry;
pub use error::CacheError;
pub use prune::{PrunePolicy, PruneReport, Removal, Rule, Stale};
pub(crate) use space::output_full;

use lock::{Flock, LockFile, Mode};

const MANIFEST: &str = "manifest.json";
/// The block cache under the cache root ([`crate::blockcache`]); not a stage.
const BLOCKS: &str = "blocks";
/// Name parts of an entry's temporary directories: `.<key>.tmp-*` while it
/// is built, `.<key>.del-*` while it is removed.
const TEMP_INFIX: &str = "tmp-";
const DELETE_INFIX: &str = "del-";

pub struct Cache {
    root: PathBuf,
    /// Shared locks on the entries this handle handed out (hits and builds),
    /// held until it is dropped: the build reads them until it ends.
    in_use: Mutex<Vec<(PathBuf, Flock)>>,
}

/// A stage's identity: its name, its key and the manifest the key hashes.
pub struct StageKey {
    pub stage: &'static str,
    pub key: String,
    manifest: serde_json::Value,
}

impl StageKey {
    pub fn new(stage: &'static str, inputs: &impl Serialize) -> StageKey {
        let manifest = serde_json::to_value(inputs).expect("cache inputs serialise");
        // serde_json's Value keeps object keys sorted, so the text is canonical.
        let text = serde_json::to_vec(&manifest).expect("values serialise");
        let key = hex(&Sha256::digest(&text))[..32].to_string();
        // The key depends on secret values; the manifest kept beside the entry
        // shows them as ***.
        let mut manifest = manifest;
        hide_secrets(&mut manifest);
        StageKey {
            stage,
            key,
            manifest,
        }
    }
}

fn hide_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = crate::util::redact::hide(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(hide_secrets),
        serde_json::Value::Object(map) => map.values_mut().for_each(hide_secrets),
        _ => {}
    }
}

/// The exclusive build lock on one key ([`Cache::lock`]).
pub struct KeyLock {
    _lock: Flock,
}

pub enum Lookup {
    Hit(PathBuf),
    /// Not cached; the reason says why, for the log.
    Miss {
        reason: String,
    },
}

impl Cache {
    pub fn new(root: PathBuf) -> Cache {
        Cache {
            root,
            in_use: Mutex::new(Vec::new()),
        }
    }

    /// `$OSFORGE_CACHE_DIR`, else `$XDG_CACHE_HOME/osforge`, else `~/.cache/osforge`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("OSFORGE_CACHE_DIR") {
            return PathBuf::from(dir);
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/var/cache"));
        base.join("osforge")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store of compressed blocks builds with this cache share.
    pub fn block_store(&self) -> Result<crate::blockcache::BlockStore, crate::blockcache::Error> {
        crate::blockcache::BlockStore::open(&self.block_store_dir())
    }

    pub fn block_store_dir(&self) -> PathBuf {
        self.root.join(BLOCKS)
    }

    fn entry_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join(key.stage).join(&key.key)
    }

    /// Holds an exclusive lock on one key until dropped: a second osforge
    /// building the same stage waits, then finds the entry made by the first.
    pub fn lock(&self, key: &StageKey) -> Result<KeyLock, CacheError> {
        let stage_dir = self.root.join(key.stage);
        fs::create_dir_all(&stage_dir).map_err(CacheError::access(&stage_dir))?;
        let path = LockFile::Build.path(&stage_dir, &key.key);
        Ok(KeyLock {
            _lock: lock::acquire(&path, Mode::Exclusive)?,
        })
    }

    /// A hit marks the entry used (for `osforge cache prune`) and keeps it
    /// from removal while this Cache lives. Call it under [`Cache::lock`].
    pub fn lookup(&self, key: &StageKey) -> Lookup {
        let dir = self.entry_dir(key);
        // An entry without its manifest is half-built or half-removed: a miss.
        if dir.join(MANIFEST).is_file() {
            self.hold(key);
            entry::mark_used(&dir);
            return Lookup::Hit(dir);
        }
        Lookup::Miss {
            reason: self.explain_miss(key),
        }
    }

    /// Takes the key's shared use lock for the life of this Cache. Best
    /// effort: the key lock the caller holds already keeps removals away
    /// while the stage runs, and a hit must not fail for want of a lock file.
    fn hold(&self, key: &StageKey) {
        let path = LockFile::Use.path(&self.root.join(key.stage), &key.key);
        if let Ok(lock) = lock::acquire(&path, Mode::Shared) {
            let mut held = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
            held.push((self.entry_dir(key), lock));
        }
    }

    /// Lists the complete entries, by stage, most recently used first.
    pub fn list(&self) -> Result<Vec<Entry>, CacheError> {
        let mut entries: Vec<Entry> = entry::scan(&self.root)?
            .iter()
            .filter_map(|k| k.to_entry())
            .collect();
        entries.sort_by(|a, b| {
            (&a.stage, std::cmp::Reverse(a.last_used), &a.key).cmp(&(
                &b.stage,
                std::cmp::Reverse(b.last_used),
                &b.key,
            ))
        });
        Ok(entries)
    }

    /// The newest complete entry of `stage`.
    fn newest_entry(&self, stage: &str) -> Option<PathBuf> {
        fs::read_dir(self.root.join(stage)).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok())
                // Hidden names are temporaries: being built or removed.
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.path().join(MANIFEST).is_file())
                .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
                .map(|e| e.path())
        })
    }

    /// Compares the wanted manifest with the newest entry of the same stage.
    fn explain_miss(&self, key: &StageKey) -> String {
        let Some(newest) = self.newest_entry(key.stage) else {
            return "nothing cached yet".to_string();
        };
        let old: serde_json::Value = match fs::read(newest.join(MANIFEST)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            Err(_) => serde_json::Value::Null,
        };
        let mut changed = Vec::new();
        diff_values("", &old, &key.manifest, &mut changed);
        if changed.is_empty() {
            "inputs differ from the cached entry".to_string()
        } else {
            let shown: Vec<_> = changed.iter().take(4).cloned().collect();
            let more = if changed.len() > 4 {
                format!(" and {} more", changed.len() - 4)
            } else {
                String::new()
            };
            format!("changed since the last build: {}{more}", shown.join(", "))
        }
    }

    /// Builds an entry with `make` (which fills the directory it is given) and
    /// moves it into place, recording `profile` beside it (for `osforge cache
    /// ls`; it is not part of the key). On error nothing is left behind. Like
    /// a hit, the new entry is kept from removal while this Cache lives.
    pub fn build<T>(
        &self,
        key: &StageKey,
        profile: Option<&str>,
        make: impl FnOnce(&Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<(PathBuf, T)> {
        let stage_dir = self.root.join(key.stage);
        fs::create_dir_all(&stage_dir).map_err(CacheError::access(&stage_dir))?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.{TEMP_INFIX}", key.key))
            .tempdir_in(&stage_dir)
            .map_err(CacheError::access(&stage_dir))?;
        let temp_path = temp.path().to_path_buf();
        cleanup::register(&temp_path);
        let result = make(&temp_path);
        let outcome = result.and_then(|value| {
            let manifest = serde_json::to_vec_pretty(&key.manifest)?;
            fs::write(temp_path.join(MANIFEST), manifest)?;
            entry::write_record(&temp_path, profile)?;
            let final_dir = self.entry_dir(key);
            if final_dir.exists() {
                remove_tree(&final_dir)?;
            }
            fs::rename(&temp_path, &final_dir).map_err(CacheError::access(&final_dir))?;
            self.hold(key);
            Ok((final_dir, value))
        });
        let outcome = outcome.map_err(|err| {
            if !space::is_disk_full(&err) {
                return err;
            }
            let written = entry::disk_usage(&temp_path);
            let last = self.newest_entry(key.stage).map(|e| entry::disk_usage(&e));
            err.context(space::disk_full_message(
                key.stage, &stage_dir, written, last,
            ))
        });
        // Removed before it is unregistered: a signal arriving meanwhile
        // still finds it registered, and the handler finishes the removal
        // before it exits (it would otherwise exit in the middle of this one).
        if outcome.is_err() {
            let _ = remove_tree(&temp_path);
        }
        cleanup::unregister(&temp_path);
        // A successful rename leaves the TempDir guard pointing at nothing.
        std::mem::forget(temp);
        outcome
    }

    /// Removes an entry (for `--rebuild`), once no other build uses it; call
    /// it under [`Cache::lock`].
    pub fn evict(&self, key: &StageKey) -> Result<(), CacheError> {
        let dir = self.entry_dir(key);
        // Our own shared lock would make the wait below endless.
        self.in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(held, _)| *held != dir);
        let stage_dir = self.root.join(key.stage);
        let _users_gone =
            lock::acquire(&LockFile::Use.path(&stage_dir, &key.key), Mode::Exclusive)?;
        if dir.exists() {
            prune::remove_out_of_sight(&dir, &key.key)?;
        }
        Ok(())
    }
}

/// Removes a tree even where the build made directories read-only.
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(_) => {
            let _ = std::process::Command::new("chmod")
                .args(["-R", "u+rwX"])
                .arg(path)
                .status();
            fs::remove_dir_all(path)
        }
    }
}

fn diff_values(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match a.get(k) {
                    Some(old_v) => diff_values(&path, old_v, v, out),
                    None => out.push(path),
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                out.push(if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                });
            }
        }
        (a, b) if a != b => out.push(if prefix.is_empty() {
            "(all)".into()
        } else {
            prefix.to_string()
        }),
        _ => {}
    }
}

pub use crate::util::hex;
