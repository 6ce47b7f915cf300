//! One cached stage: found in the local cache, else in the remote one
//! (`--cache-remote`), else built; with a remote cache, what is built here
//! is uploaded for the other machines.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::cache::{Lookup, StageKey};
use super::{BuildRequest, Log, StageOutput, StageReport, remote};

/// Runs `make` unless the cache has the stage (locally, else in the
/// `--cache-remote` store); logs the outcome and timing.
pub(super) fn cached_stage(
    req: &BuildRequest,
    key: &StageKey,
    label: &str,
    from: Option<&StageOutput>,
    log: &Log,
    stages: &mut Vec<StageReport>,
    make: impl FnOnce(&Path) -> anyhow::Result<String>,
) -> anyhow::Result<StageOutput> {
    let started = Instant::now();
    let _lock = req.cache.lock(key)?;
    if req.rebuild {
        req.cache
            .evict(key)
            .with_context(|| format!("clearing the cached {} stage", key.stage))?;
    }
    // A layer's entry belongs to the profile it is the layer of.
    let owner = label
        .split_once(' ')
        .map_or(req.profile.name.as_str(), |(_, profile)| profile);
    let mut remote_report = None;
    let (dir, cached, detail) = match req.cache.lookup(key) {
        Lookup::Hit(dir) => (dir, true, "reused from the cache".to_string()),
        Lookup::Miss { reason } => {
            let (fetched, corrupt) = match &req.remote_cache {
                Some(remote) if !req.rebuild => {
                    remote::fetch_logged(remote, req, key, label, owner, log)
                }
                _ => (None, None),
            };
            match fetched {
                Some(got) => {
                    let detail = format!(
                        "downloaded from {} ({}, sha256 verified); built as: {}",
                        got.report.url,
                        remote::RemoteCache::describe(&got.report),
                        got.detail
                    );
                    remote_report = Some(got.report);
                    (got.dir, true, detail)
                }
                None => {
                    let why = if req.rebuild {
                        "--rebuild".to_string()
                    } else {
                        reason
                    };
                    let on = from
                        .map(|f| format!(" on {} [{}]", f.label, &f.key[..12]))
                        .unwrap_or_default();
                    log.info(&format!("{label}: building{on} ({why})"));
                    let (dir, detail) = req.cache.build(key, Some(owner), make)?;
                    if let Some(remote) = &req.remote_cache {
                        remote_report = Some(remote::upload_logged(
                            remote, req, key, &dir, &detail, label, corrupt, log,
                        ));
                    }
                    (dir, false, detail)
                }
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    log.info(&format!(
        "{label}: {detail} [{} {}] in {seconds:.1} s",
        key.stage,
        &key.key[..12]
    ));
    stages.push(StageReport {
        stage: key.stage,
        key: Some(key.key.clone()),
        host: None,
        cached,
        seconds,
        detail,
        from: from.map(|f| f.label.clone()),
        label: Some(label.to_string()),
        block_cache: None,
        remote: remote_report,
    });
    Ok(StageOutput {
        dir,
        key: key.key.clone(),
        label: label.to_string(),
    })
}

/// How a stage's tree starts from the one before it.
pub(super) enum TreeCopy {
    /// Its own bytes (reflinked where the filesystem can): the stage changes files.
    Full,
    /// Files hard-linked: the stage only adds files.
    HardLinks,
}

/// `from` copied to `to` with owners, modes, times and xattrs.
pub(super) fn copy_tree(from: &Path, to: &Path, how: TreeCopy) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("cp");
    cmd.args(["-a", "--preserve=xattr", "--no-target-directory"]);
    cmd.arg(match how {
        TreeCopy::Full => "--reflink=auto",
        TreeCopy::HardLinks => "--link",
    });
    cmd.arg(from).arg(to);
    // Tracked, so that an interruption stops the copy before the handler
    // removes the stage's temporary directory it writes into.
    let out = crate::util::process::output(&mut cmd).context("cannot run cp")?;
    if !out.status.success() {
        anyhow::bail!(
            "copying {} to {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
        );
    }
    Ok(())
}
