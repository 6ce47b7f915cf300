//! The ansible stages: one per playbook of the profile's `ansible:`, after
//! the native configuration and before the artifacts.
//!
//! Each stage copies the tree of the stage before it (the configured root,
//! or the previous playbook's) into its own cache entry and runs its
//! playbook there ([`crate::ansible`]). Its key chains on the previous
//! stage's and holds what the run depends on: the playbook and the files
//! beside it that it can use, the inventory, the host's groups, the
//! variables and the ansible version. So editing one playbook re-runs its
//! stage and those after it, and nothing before.
//!
//! The log of a run is written to `<cache>/logs/ansible-<key>.log` and moved
//! into the entry when the run succeeds; after a failure it stays there,
//! since the failed entry itself is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::cache::StageKey;
use super::stage::{TreeCopy, copy_tree};
use super::{BuildRequest, Log, StageOutput, StageReport, cached_stage, file_digest};
use crate::ansible::{self, Play};
use crate::container::WorkingContainer;

/// Bumped when the stage's code changes what it produces.
const ANSIBLE_FORMAT: u32 = 1;

/// What beside a playbook it can use: its roles, the files and templates it
/// copies, the task files it includes, its plugins and its configuration.
/// Other files there (sibling playbooks) are not part of its key.
const BESIDE_PLAYBOOK: &[&str] = &[
    "ansible.cfg",
    "roles",
    "tasks",
    "handlers",
    "files",
    "templates",
    "vars",
    "group_vars",
    "host_vars",
    "library",
    "module_utils",
    "filter_plugins",
    "lookup_plugins",
    "collections",
];

/// What beside an inventory file applies with it.
const BESIDE_INVENTORY: &[&str] = &["group_vars", "host_vars"];

/// What the stages need that can be found before the first stage runs:
/// a missing ansible or an unreadable role fails the build before minutes
/// of bootstrapping.
pub(super) struct Prepared {
    version: String,
    playbooks: Vec<PlaybookInputs>,
    inventory: Option<(PathBuf, serde_json::Value)>,
}

struct PlaybookInputs {
    /// Absolute: ansible-playbook runs in the playbook's folder.
    path: PathBuf,
    name: String,
    /// The playbook's digest and those of the files beside it.
    digests: serde_json::Value,
}

pub(super) fn prepare(req: &BuildRequest) -> anyhow::Result<Option<Prepared>> {
    let Some(spec) = &req.profile.ansible else {
        return Ok(None);
    };
    let version = ansible::version()?;
    let mut playbooks = Vec::new();
    for playbook in &spec.playbooks {
        let path = std::fs::canonicalize(&playbook.path)
            .with_context(|| format!("finding the playbook {}", playbook.path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let folder = path.parent().unwrap_or(Path::new("/"));
        let mut digests = serde_json::Map::new();
        digests.insert(name.clone(), file_digest(&path)?.into());
        digests.extend(beside(folder, BESIDE_PLAYBOOK)?);
        playbooks.push(PlaybookInputs {
            path,
            name,
            digests: digests.into(),
        });
    }
    let inventory = match &spec.inventory {
        Some(path) => {
            let path = std::fs::canonicalize(path)
                .with_context(|| format!("finding the inventory {}", path.display()))?;
            let digest = if path.is_dir() {
                serde_json::json!({ "directory": tree_digest(&path)? })
            } else {
                let mut digests = serde_json::Map::new();
                digests.insert("file".into(), file_digest(&path)?.into());
                digests.extend(beside(
                    path.parent().unwrap_or(Path::new("/")),
                    BESIDE_INVENTORY,
                )?);
                digests.into()
            };
            Some((path, digest))
        }
        None => None,
    };
    Ok(Some(Prepared {
        version,
        playbooks,
        inventory,
    }))
}

/// Runs each playbook as its own stage on `configured`; returns the last
/// stage (or `configured` when the profile has no playbooks).
pub(super) fn run_playbooks(
    req: &BuildRequest,
    prepared: Option<&Prepared>,
    configured: StageOutput,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<StageOutput> {
    let (Some(prepared), Some(spec)) = (prepared, &req.profile.ansible) else {
        return Ok(configured);
    };
    let host = req.profile.os.hostname.as_str();
    let mut current = configured;
    for playbook in &prepared.playbooks {
        let key = StageKey::new(
            "ansible",
            &serde_json::json!({
                "format": ANSIBLE_FORMAT,
                "parent": current.key,
                "playbook": playbook.digests,
                "inventory": prepared.inventory.as_ref().map(|(_, digest)| digest),
                "host": host,
                "groups": spec.groups,
                // By digest: values may be secrets, and the manifest beside
                // the entry is plain text; a miss still names the variable.
                "variables": digests_of(&req.profile.variables),
                "extra_vars": digests_of(&spec.extra_vars),
                "ansible": prepared.version,
            }),
        );
        let label = format!("ansible {}", playbook.name);
        let parent_root = current.dir.join("root");
        let log_path = req
            .cache
            .root()
            .join("logs")
            .join(format!("ansible-{}.log", key.key));
        current = cached_stage(req, &key, &label, Some(&current), log, stages, |dir| {
            ansible::check_python(&parent_root)?;
            let root = dir.join("root");
            copy_tree(&parent_root, &root, TreeCopy::Full)?;
            if let Some(logs) = log_path.parent() {
                std::fs::create_dir_all(logs)
                    .with_context(|| format!("creating {}", logs.display()))?;
            }
            // A log of an earlier failure of the same key starts over.
            let _ = std::fs::remove_file(&log_path);
            let scratch = dir.join("ansible");
            let play = Play {
                playbook: &playbook.path,
                inventory: prepared.inventory.as_ref().map(|(path, _)| path.as_path()),
                host,
                groups: &spec.groups,
                verbosity: spec.verbosity,
                variables: &req.profile.variables,
                extra_vars: &spec.extra_vars,
                scratch: &scratch,
            };
            let mut container = WorkingContainer::open(&root, &req.network, &log_path)?;
            container.set_source_date_epoch(req.source_date_epoch);
            let spinner = crate::util::progress::Bar::spinner(&label, log.progress);
            // From -v on, the output is shown as it comes, not only logged.
            let result = ansible::run_playbook(&container, &play, |line| {
                if spec.verbosity > 0 {
                    log.info(&format!("{label}: {line}"));
                }
            });
            spinner.finish();
            let closed = container.close();
            let _ = std::fs::remove_dir_all(&scratch);
            let recap = result?;
            closed?;
            let kept = dir.join("ansible.log");
            std::fs::rename(&log_path, &kept)
                .with_context(|| format!("moving {} into the cache entry", log_path.display()))?;
            Ok(if recap.is_empty() {
                "no tasks ran".to_string()
            } else {
                recap
            })
        })?;
    }
    Ok(current)
}

/// A digest per variable: which one changed shows in the log, not its value.
fn digests_of(vars: &BTreeMap<String, serde_json::Value>) -> BTreeMap<&str, String> {
    vars.iter()
        .map(|(name, value)| {
            let json = serde_json::to_vec(value).expect("variables serialise");
            (
                name.as_str(),
                format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&json)),
            )
        })
        .collect()
}

/// The digests of what of `names` is in `folder`, by name.
fn beside(
    folder: &Path,
    names: &[&str],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut digests = serde_json::Map::new();
    for name in names {
        let path = folder.join(name);
        let digest = if path.is_dir() {
            tree_digest(&path)?
        } else if path.is_file() {
            file_digest(&path)?
        } else {
            continue;
        };
        digests.insert(name.to_string(), digest.into());
    }
    Ok(digests)
}

/// A digest of a tree's names, kinds, contents, link targets and executable
/// bits: what a checkout elsewhere (other times, other umask) has the same.
fn tree_digest(root: &Path) -> anyhow::Result<String> {
    let mut entries: Vec<(PathBuf, String)> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        let listing =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let name = entry.file_name();
            // Python's caches, written when Ansible loads a plugin; VCS data.
            if name == "__pycache__" || name == ".git" {
                continue;
            }
            let path = relative.join(&name);
            let full = root.join(&path);
            let meta = std::fs::symlink_metadata(&full)
                .with_context(|| format!("reading {}", full.display()))?;
            let what = if meta.is_dir() {
                pending.push(path.clone());
                "d".to_string()
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&full)
                    .with_context(|| format!("reading {}", full.display()))?;
                format!("l {}", target.display())
            } else {
                use std::os::unix::fs::PermissionsExt;
                let executable = meta.permissions().mode() & 0o111 != 0;
                format!("f {executable} {}", file_digest(&full)?)
            };
            entries.push((path, what));
        }
    }
    entries.sort();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (path, what) in &entries {
        use std::os::unix::ffi::OsStrExt;
        hasher.update(path.as_os_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(what.as_bytes());
        hasher.update(b"\0");
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

/// Copies a root tree as it is: owners, modes, times, hard links, xattrs
/// (file capabilities); shared blocks where the filesystem can (reflinks).
/// `--preserve=xattr` after `-a` makes a lost xattr an error, not silence.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_digests_follow_content_names_and_executable_bits_but_not_times_or_caches() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let role = dir.path().join("roles/web/tasks");
        std::fs::create_dir_all(&role).unwrap();
        std::fs::write(role.join("main.yml"), "- debug: msg=hi\n").unwrap();
        let first = tree_digest(dir.path()).unwrap();

        std::fs::create_dir_all(dir.path().join("roles/web/__pycache__")).unwrap();
        std::fs::write(dir.path().join("roles/web/__pycache__/x.pyc"), "x").unwrap();
        let mode = |m| std::fs::Permissions::from_mode(m);
        std::fs::set_permissions(role.join("main.yml"), mode(0o664)).unwrap();
        assert_eq!(tree_digest(dir.path()).unwrap(), first);

        std::fs::set_permissions(role.join("main.yml"), mode(0o755)).unwrap();
        let executable = tree_digest(dir.path()).unwrap();
        assert_ne!(executable, first);

        std::fs::write(role.join("main.yml"), "- debug: msg=ho\n").unwrap();
        assert_ne!(tree_digest(dir.path()).unwrap(), executable);
    }

    #[test]
    fn only_what_a_playbook_can_use_is_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("ansible.cfg"), "[defaults]\n").unwrap();
        std::fs::write(dir.path().join("other.yml"), "- hosts: all\n").unwrap();
        let found = beside(dir.path(), BESIDE_PLAYBOOK).unwrap();
        let names: Vec<&String> = found.keys().collect();
        assert_eq!(names, ["ansible.cfg", "templates"]);
    }
}
