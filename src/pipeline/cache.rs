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
//! never leaves an entry that a later build would trust.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::util::cleanup;

const MANIFEST: &str = "manifest.json";

pub struct Cache {
    root: PathBuf,
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
        StageKey {
            stage,
            key,
            manifest,
        }
    }
}

pub struct KeyLock {
    _file: fs::File,
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
        Cache { root }
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

    fn entry_dir(&self, key: &StageKey) -> PathBuf {
        self.root.join(key.stage).join(&key.key)
    }

    /// Holds an exclusive lock on one key until dropped: a second osforge
    /// building the same stage waits, then finds the entry made by the first.
    pub fn lock(&self, key: &StageKey) -> anyhow::Result<KeyLock> {
        use std::os::fd::AsRawFd;
        let stage_dir = self.root.join(key.stage);
        fs::create_dir_all(&stage_dir).map_err(|e| io_context(e, &stage_dir))?;
        let path = stage_dir.join(format!(".{}.lock", key.key));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_context(e, &path))?;
        // SAFETY: flock on a descriptor we own; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_context(io::Error::last_os_error(), &path));
        }
        Ok(KeyLock { _file: file })
    }

    pub fn lookup(&self, key: &StageKey) -> Lookup {
        let dir = self.entry_dir(key);
        if dir.join(MANIFEST).is_file() {
            return Lookup::Hit(dir);
        }
        Lookup::Miss {
            reason: self.explain_miss(key),
        }
    }

    /// Compares the wanted manifest with the newest entry of the same stage.
    fn explain_miss(&self, key: &StageKey) -> String {
        let stage_dir = self.root.join(key.stage);
        let newest = fs::read_dir(&stage_dir).ok().and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join(MANIFEST).is_file())
                .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        });
        let Some(newest) = newest else {
            return "nothing cached yet".to_string();
        };
        let old: serde_json::Value = match fs::read(newest.path().join(MANIFEST)) {
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
    /// moves it into place. On error nothing is left behind.
    pub fn build<T>(
        &self,
        key: &StageKey,
        make: impl FnOnce(&Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<(PathBuf, T)> {
        let stage_dir = self.root.join(key.stage);
        fs::create_dir_all(&stage_dir).map_err(|e| io_context(e, &stage_dir))?;
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.tmp-", key.key))
            .tempdir_in(&stage_dir)?;
        let temp_path = temp.path().to_path_buf();
        cleanup::register(&temp_path);
        let result = make(&temp_path);
        let outcome = result.and_then(|value| {
            let manifest = serde_json::to_vec_pretty(&key.manifest)?;
            fs::write(temp_path.join(MANIFEST), manifest)?;
            let final_dir = self.entry_dir(key);
            if final_dir.exists() {
                remove_tree(&final_dir)?;
            }
            fs::rename(&temp_path, &final_dir).map_err(|e| io_context(e, &final_dir))?;
            Ok((final_dir, value))
        });
        cleanup::unregister(&temp_path);
        if outcome.is_err() {
            let _ = remove_tree(&temp_path);
        }
        // A successful rename leaves the TempDir guard pointing at nothing.
        std::mem::forget(temp);
        outcome
    }

    /// Removes an entry (for `--rebuild`).
    pub fn evict(&self, key: &StageKey) -> io::Result<()> {
        let dir = self.entry_dir(key);
        if dir.exists() {
            remove_tree(&dir)
        } else {
            Ok(())
        }
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

fn io_context(e: io::Error, path: &Path) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("cache directory {}", path.display()))
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_inputs_not_on_key_order() {
        let a = StageKey::new("s", &serde_json::json!({"x": 1, "y": [1, 2]}));
        let b = StageKey::new("s", &serde_json::json!({"y": [1, 2], "x": 1}));
        let c = StageKey::new("s", &serde_json::json!({"x": 2, "y": [1, 2]}));
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
    }

    #[test]
    fn a_failed_build_leaves_no_entry_and_a_miss_names_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let first = StageKey::new(
            "rootfs",
            &serde_json::json!({"packages": ["a"], "suite": "bookworm"}),
        );
        assert!(
            cache
                .build(&first, |_| -> anyhow::Result<()> {
                    anyhow::bail!("mmdebstrap failed")
                })
                .is_err()
        );
        assert!(matches!(cache.lookup(&first), Lookup::Miss { .. }));
        assert_eq!(
            std::fs::read_dir(dir.path().join("rootfs"))
                .unwrap()
                .count(),
            0,
            "no temporary left"
        );

        let (path, ()) = cache
            .build(&first, |d| Ok(std::fs::write(d.join("out"), b"x")?))
            .unwrap();
        assert!(path.join("out").is_file());
        assert!(matches!(cache.lookup(&first), Lookup::Hit(_)));

        let second = StageKey::new(
            "rootfs",
            &serde_json::json!({"packages": ["a", "b"], "suite": "bookworm"}),
        );
        match cache.lookup(&second) {
            Lookup::Miss { reason } => assert!(reason.contains("packages"), "{reason}"),
            Lookup::Hit(_) => panic!("different inputs must miss"),
        }
    }
}
