//! The lock file written beside every build's images (`<name>.lock.json`),
//! and the check that a `--lock` build installed exactly what it locks.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BuildRequest, Log, StageOutput};
use crate::manifest::DebPackage;
use crate::manifest::lock::{LockFile, LockedSource, parse_print_uris};

/// How many differences the error lists before it counts the rest.
const SHOWN: usize = 5;

/// Fails when the image's packages are not the lock's: a locked version the
/// mirror no longer has, or a profile changed since the lock was written.
pub(super) fn check(req: &BuildRequest, packages: &[DebPackage]) -> anyhow::Result<()> {
    let Some(lock) = &req.lock else {
        return Ok(());
    };
    let diff = lock.differences(packages);
    if diff.is_empty() {
        return Ok(());
    }
    let more = match diff.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!("; and {n} more"),
    };
    anyhow::bail!(
        "the image does not match the lock file ({} differences): {}{more}. A locked version the mirror no longer carries needs a snapshot mirror (distro: {{mirror: ..., snapshot: true}}); a changed profile needs a new lock (build without --lock)",
        diff.len(),
        diff[..diff.len().min(SHOWN)].join("; ")
    )
}

/// Writes `<dir>/<name>.lock.json` from the image's packages and the
/// origins the last package-installing stage recorded.
pub(super) fn write(
    req: &BuildRequest,
    rootfs: &StageOutput,
    source: Option<LockedSource>,
    packages: &[DebPackage],
    dir: &Path,
    log: &Log,
) -> anyhow::Result<PathBuf> {
    let origins_path = rootfs.dir.join(crate::rootfs::PACKAGE_ORIGINS);
    let origins = std::fs::read_to_string(&origins_path)
        .map(|text| parse_print_uris(&text))
        .unwrap_or_default();
    let distro = &req.profile.distro;
    let mirror = req
        .mirror
        .clone()
        .or_else(|| distro.mirror.as_ref().map(|m| m.to_string()));
    let mut lock = LockFile::new(
        &req.profile.name,
        &distro.suite.to_string(),
        &distro.arch.to_string(),
        mirror.as_deref(),
        packages,
        &origins,
    );
    lock.source = source;
    let path = dir.join(format!("{}.lock.json", req.name));
    let text = serde_json::to_string_pretty(&lock)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let placed = lock.packages.iter().filter(|p| p.url.is_some()).count();
    log.info(&format!(
        "lock: {} packages, {placed} with the archive they came from",
        lock.packages.len()
    ));
    Ok(path)
}
