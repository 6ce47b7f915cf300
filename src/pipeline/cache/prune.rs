//! `osforge cache prune` and `clear`: which entries go, least recently used
//! first, and removing them beside running builds.
//!
//! An entry goes only under both its locks, taken without waiting (`lock.rs`):
//! one a build holds is kept and reported. It is renamed out of sight before
//! it is deleted, so a build never finds half of it. Removing a bootstrap
//! entry while configure entries made from it stay is fine: a configure
//! entry holds its own rootfs, and its key names the bootstrap key by value.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::entry::{self, Entry, KeyFiles, unix_seconds};
use super::error::CacheError;
use super::lock::{self, LockFile, Mode};
use super::{Cache, DELETE_INFIX, MANIFEST, remove_tree};
use crate::util::duration::short_duration;
use crate::util::size::human_bytes;

/// What `prune` removes. Each rule chooses entries on its own; an entry goes
/// when any rule chooses it.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// All but the N most recently used entries of each stage.
    pub keep_last: Option<usize>,
    /// Entries not used for this long.
    pub older_than: Option<Duration>,
    /// Least recently used entries, until the total is at most this many bytes.
    pub max_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    KeepLast,
    OlderThan,
    MaxSize,
    Clear,
}

/// An entry a rule chose.
#[derive(Debug, Serialize)]
pub struct Removal {
    #[serde(flatten)]
    pub entry: Entry,
    pub rule: Rule,
    /// Why, for people: `not used for 9d`.
    pub reason: String,
}

/// A leftover of an interrupted build or removal: a temporary directory, or
/// an entry without its manifest.
#[derive(Debug, Serialize)]
pub struct Stale {
    pub stage: String,
    pub key: String,
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PruneReport {
    /// Nothing was removed; the report says what would have been.
    pub dry_run: bool,
    /// Least recently used first.
    pub removed: Vec<Removal>,
    /// Chosen, but held by a running build, so kept.
    pub in_use: Vec<Removal>,
    pub stale: Vec<Stale>,
    /// Of the entries and the stale leftovers.
    pub freed_bytes: u64,
    pub remaining_entries: usize,
    pub remaining_bytes: u64,
}

enum Selection<'a> {
    Policy(&'a PrunePolicy),
    All,
}

/// What became of one key.
enum Swept {
    Done,
    /// A build holds one of its locks.
    Held,
    /// Its entry went away since the scan (another prune).
    Gone,
}

impl Cache {
    /// Removes what `policy` chooses and the stale leftovers.
    pub fn prune(&self, policy: &PrunePolicy, dry_run: bool) -> Result<PruneReport, CacheError> {
        self.sweep(Selection::Policy(policy), dry_run)
    }

    /// Removes every entry no build holds, and the stale leftovers.
    pub fn clear(&self, dry_run: bool) -> Result<PruneReport, CacheError> {
        self.sweep(Selection::All, dry_run)
    }

    fn sweep(&self, selection: Selection, dry_run: bool) -> Result<PruneReport, CacheError> {
        let keys = entry::scan(&self.root)?;
        let mut entries: Vec<(&KeyFiles, Entry)> = keys
            .iter()
            .filter_map(|files| Some((files, files.to_entry()?)))
            .collect();
        entries.sort_by(|(_, a), (_, b)| lru_order(a, b));
        let now = unix_seconds(SystemTime::now());
        let chosen = {
            let listed: Vec<&Entry> = entries.iter().map(|(_, e)| e).collect();
            choose(&listed, &selection, now)
        };
        let max_size = match selection {
            Selection::Policy(p) => p.max_size,
            Selection::All => None,
        };

        let mut report = PruneReport {
            dry_run,
            removed: Vec::new(),
            in_use: Vec::new(),
            stale: Vec::new(),
            freed_bytes: 0,
            remaining_entries: entries.len(),
            remaining_bytes: entries.iter().map(|(_, e)| e.bytes).sum(),
        };
        let mut swept = HashSet::new();
        for ((files, entry), choice) in entries.into_iter().zip(chosen) {
            let total = report.remaining_bytes;
            let Some((rule, reason)) = choice.or_else(|| {
                let max = max_size.filter(|max| total > *max)?;
                Some((
                    Rule::MaxSize,
                    format!(
                        "the cache held {}, over --max-size {}",
                        human_bytes(total),
                        human_bytes(max)
                    ),
                ))
            }) else {
                continue;
            };
            swept.insert((&files.stage, &files.key));
            let removal = Removal {
                entry,
                rule,
                reason,
            };
            match sweep_key(files, true, dry_run, &mut report.stale)? {
                Swept::Done => {
                    report.remaining_entries -= 1;
                    report.remaining_bytes -= removal.entry.bytes;
                    report.freed_bytes += removal.entry.bytes;
                    report.removed.push(removal);
                }
                Swept::Held => report.in_use.push(removal),
                Swept::Gone => {
                    report.remaining_entries -= 1;
                    report.remaining_bytes -= removal.entry.bytes;
                }
            }
        }
        for files in &keys {
            if !swept.contains(&(&files.stage, &files.key)) {
                sweep_key(files, false, dry_run, &mut report.stale)?;
            }
        }
        report.freed_bytes += report.stale.iter().map(|s| s.bytes).sum::<u64>();
        Ok(report)
    }
}

/// Least recently used first; ties by age, then key, so runs agree.
fn lru_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    (a.last_used, a.created, &a.stage, &a.key).cmp(&(b.last_used, b.created, &b.stage, &b.key))
}

/// The rule (and why) that chose each entry, for `entries` in LRU order;
/// `--max-size` is decided while removing, as it depends on what went.
fn choose(entries: &[&Entry], selection: &Selection, now: u64) -> Vec<Option<(Rule, String)>> {
    let policy = match selection {
        Selection::All => {
            return entries
                .iter()
                .map(|_| Some((Rule::Clear, "osforge cache clear".to_string())))
                .collect();
        }
        Selection::Policy(policy) => policy,
    };
    let mut chosen: Vec<Option<(Rule, String)>> = vec![None; entries.len()];
    if let Some(n) = policy.keep_last {
        // Most recently used first, counting per stage.
        let mut seen: std::collections::HashMap<&str, usize> = Default::default();
        for (i, e) in entries.iter().enumerate().rev() {
            let rank = seen.entry(e.stage.as_str()).or_default();
            *rank += 1;
            if *rank > n {
                chosen[i] = Some((
                    Rule::KeepLast,
                    format!("{} entry {rank} by last use (--keep-last {n})", e.stage),
                ));
            }
        }
    }
    if let Some(limit) = policy.older_than {
        for (i, e) in entries.iter().enumerate() {
            let idle = Duration::from_secs(now.saturating_sub(e.last_used));
            if chosen[i].is_none() && idle >= limit {
                chosen[i] = Some((
                    Rule::OlderThan,
                    format!(
                        "not used for {} (--older-than {})",
                        short_duration(idle),
                        short_duration(limit)
                    ),
                ));
            }
        }
    }
    chosen
}

/// Under the key's locks, taken without waiting: removes its stale
/// leftovers and, with `remove_entry`, its entry; with no entry left, its
/// lock files too (unlinked while held, see `lock.rs`). A dry run only
/// looks whether a build holds the key.
fn sweep_key(
    files: &KeyFiles,
    remove_entry: bool,
    dry_run: bool,
    stale: &mut Vec<Stale>,
) -> Result<Swept, CacheError> {
    let stale_paths = || {
        let incomplete = match &files.entry {
            Some((path, false)) => Some(path),
            _ => None,
        };
        files.temporaries.iter().chain(incomplete)
    };
    let mut note = |path: &Path, bytes| {
        stale.push(Stale {
            stage: files.stage.clone(),
            key: files.key.clone(),
            path: path.to_path_buf(),
            bytes,
        })
    };
    if !remove_entry && files.complete_entry().is_some() && files.temporaries.is_empty() {
        return Ok(Swept::Done);
    }
    if dry_run {
        if files.is_held() {
            return Ok(Swept::Held);
        }
        for path in stale_paths() {
            note(path, entry::disk_usage(path));
        }
        return Ok(Swept::Done);
    }

    // The build lock first, as builds take it; the use lock only when the
    // entry goes (temporaries are no build's input).
    let build_path = LockFile::Build.path(&files.stage_dir, &files.key);
    let use_path = LockFile::Use.path(&files.stage_dir, &files.key);
    let Some(building) = lock::try_acquire(&build_path, Mode::Exclusive)? else {
        return Ok(Swept::Held);
    };
    let mut users = None;
    if remove_entry {
        users = lock::try_acquire(&use_path, Mode::Exclusive)?;
        if users.is_none() {
            return Ok(Swept::Held);
        }
    }

    let entry_dir = files.stage_dir.join(&files.key);
    let mut outcome = Swept::Done;
    if remove_entry {
        if entry_dir.exists() {
            remove_out_of_sight(&entry_dir, &files.key)?;
        } else {
            outcome = Swept::Gone;
        }
    }
    for path in stale_paths() {
        // Seen before the lock was ours: a build may have completed an
        // incomplete entry since (temporaries have names used only once).
        if !path.exists() || (path == &entry_dir && entry_dir.join(MANIFEST).is_file()) {
            continue;
        }
        let bytes = entry::disk_usage(path);
        remove_out_of_sight(path, &files.key)?;
        note(path, bytes);
    }

    if !entry_dir.exists() {
        if users.is_none() {
            users = lock::try_acquire(&use_path, Mode::Exclusive)?;
        }
        if let Some(users) = users {
            users.unlink();
            building.unlink();
        }
    }
    Ok(outcome)
}

/// Renames `dir` to `.<key>.del-*` beside it, then deletes it: a build sees
/// the entry whole or not at all, and a removal cut short leaves a name
/// that the next prune recognises as stale.
pub(super) fn remove_out_of_sight(dir: &Path, key: &str) -> Result<(), CacheError> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let target = if name.starts_with('.') {
        // Already a temporary name.
        dir.to_path_buf()
    } else {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let aside = dir.with_file_name(format!(
            ".{key}.{DELETE_INFIX}{}-{nanos}",
            std::process::id()
        ));
        fs::rename(dir, &aside).map_err(CacheError::remove(dir))?;
        aside
    };
    remove_tree(&target).map_err(CacheError::remove(&target))
}
