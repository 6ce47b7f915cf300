//! What a build reports: its stages, its artifacts (also for `--json`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ArtifactType;
use super::hosts::HostReport;
use crate::blockcache;

#[derive(Debug, Serialize)]
pub struct StageReport {
    pub stage: &'static str,
    /// The cache key (`<cache>/<stage>/<key>/`); None for per-host artifacts.
    pub key: Option<String>,
    /// The host (artifact name) of a per-host stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub cached: bool,
    pub seconds: f64,
    pub detail: String,
    /// What the stage starts from: "layer qcow2-host", "bootstrap base".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The profile whose part of the image the stage builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// What the squashfs or qcow2 writer found in the block cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_cache: Option<blockcache::Stats>,
    /// With `--cache-remote`: downloaded from the store, or uploaded to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<super::remote::RemoteReport>,
}

impl StageReport {
    /// An artifact written (never cached), for `host` or for every host.
    pub(super) fn artifact(
        stage: &'static str,
        host: Option<&str>,
        seconds: f64,
        detail: String,
    ) -> StageReport {
        StageReport {
            stage,
            key: None,
            host: host.map(str::to_string),
            cached: false,
            seconds,
            detail,
            from: None,
            label: None,
            block_cache: None,
            remote: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    #[serde(rename = "type")]
    pub kind: ArtifactType,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
    pub md5: String,
    /// `<artifact>.manifest.json` and `<artifact>.spdx.json` (see [`crate::manifest`]).
    pub manifest: PathBuf,
    pub sbom: PathBuf,
}

impl Artifact {
    /// The same files, moved to `dir`.
    pub(super) fn move_to(&mut self, dir: &Path) {
        for path in [&mut self.path, &mut self.manifest, &mut self.sbom] {
            if let Some(name) = path.file_name() {
                *path = dir.join(name);
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub profile: String,
    pub cache_dir: PathBuf,
    /// The host of a one-host build; with `--hosts`, see `hosts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_cmdline: Option<String>,
    pub stages: Vec<StageReport>,
    /// Every host's artifacts, host by host.
    pub artifacts: Vec<Artifact>,
    pub hosts: Vec<HostReport>,
    /// The OCI image's pushes: reference and the registry's manifest digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pushed: Vec<crate::publish::registry::Pushed>,
    /// With `--publish s3://`: every object uploaded, checksums last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<crate::s3::publish::Published>,
    /// `images:`: the container images baked in, with their digests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<crate::rootfs::preload::BakedImage>,
    pub seconds: f64,
}
