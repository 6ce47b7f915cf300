//! `--push REF` / `--publish registry=REF`: once the artifacts are in the
//! output directory, the `--type oci` image is pushed to each registry
//! ([`crate::publish::registry`]). A push that fails fails the build (exit
//! 1, one line naming the reference); the artifacts stay where they are.

use std::path::Path;

use anyhow::Context;

use super::{Artifact, ArtifactType, BuildRequest, Log};
use crate::publish::registry::{self, Pushed};
use crate::publish::{PublishTarget, RegistryTarget};

fn registries(req: &BuildRequest) -> impl Iterator<Item = &RegistryTarget> {
    req.publish.iter().filter_map(|t| match t {
        PublishTarget::Registry(r) => Some(r),
        PublishTarget::S3(_) => None,
    })
}

/// Checked before the first stage: something to push, and readable auth files.
pub(super) fn check_inputs(req: &BuildRequest) -> anyhow::Result<()> {
    for target in registries(req) {
        if !req.types.contains(&ArtifactType::Oci) {
            crate::bail_input!(
                "--push {} pushes the --type oci image: add oci to --type",
                target.reference
            );
        }
        if let Some(auth) = target.authfile.as_ref().or(req.push_authfile.as_ref())
            && let Err(e) = std::fs::File::open(auth)
        {
            crate::bail_input!("--authfile {}: {e}", auth.display());
        }
    }
    Ok(())
}

/// Pushes the build's oci-archive to every registry target, in order.
pub(super) fn push_all(
    req: &BuildRequest,
    by_host: &[Vec<Artifact>],
    log: &Log,
) -> anyhow::Result<Vec<Pushed>> {
    let mut pushed = Vec::new();
    let targets: Vec<&RegistryTarget> = registries(req).collect();
    if targets.is_empty() {
        return Ok(pushed);
    }
    let archive = by_host
        .iter()
        .flatten()
        .find(|a| a.kind == ArtifactType::Oci)
        .map(|a| a.path.as_path())
        .context("the build wrote no OCI image to push")?;
    let scratch = tempfile::Builder::new()
        .prefix("osforge-push-")
        .tempdir()
        .context("creating a scratch directory for skopeo")?;
    for target in targets {
        let started = std::time::Instant::now();
        let result = push_one(req, archive, target, scratch.path())?;
        log.info(&format!(
            "push: {} to docker://{}: {}{} in {:.1} s",
            file_name(archive),
            result.reference,
            result.digest,
            if result.digest == result.local_digest {
                " (the archive's manifest)".to_string()
            } else {
                format!(" (converted from the archive's {})", result.local_digest)
            },
            started.elapsed().as_secs_f64()
        ));
        pushed.push(result);
    }
    Ok(pushed)
}

fn push_one(
    req: &BuildRequest,
    archive: &Path,
    target: &RegistryTarget,
    scratch: &Path,
) -> anyhow::Result<Pushed> {
    let authfile = target.authfile.as_ref().or(req.push_authfile.as_ref());
    Ok(registry::push(
        archive,
        &target.reference,
        target.tls_verify.unwrap_or(req.push_tls_verify),
        authfile.map(|p| p.as_path()),
        &req.network,
        scratch,
    )?)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
