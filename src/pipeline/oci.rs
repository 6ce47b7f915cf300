//! `--type oci`: the configured root filesystem as an OCI image (an
//! oci-archive), labelled with what it was built from: one layer, or two
//! with `oci.backup_paths` (those directories on top of the rest). The same cache
//! entry gives the same digest: the layer's times are clamped to
//! SOURCE_DATE_EPOCH, else to the time the configured rootfs was built.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::{
    Artifact, ArtifactType, BuildRequest, Log, StageOutput, StageReport, describe_artifact,
};
use crate::formats::Progress;
use crate::formats::dirtree::DirTree;
use crate::formats::oci::{self, CreateOptions};
use crate::manifest::DebPackage;
use crate::util::output::AtomicOutput;
use crate::util::progress::Bar;

/// Writes `NAME.oci.tar` into `dir` (the build's staging folder).
pub(super) fn make_oci(
    req: &BuildRequest,
    dir: &Path,
    configured: &StageOutput,
    packages: &[DebPackage],
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<Artifact> {
    let started = Instant::now();
    let root = configured.dir.join("root");
    let out_path = dir.join(format!("{}.oci.tar", req.name));
    let tree = DirTree::scan(&root, true, &[]).context("scanning the configured rootfs")?;
    let total_bytes = tree.total_bytes;
    // oci.backup_paths: those directories in a layer of their own, on top.
    let backup: Vec<Vec<u8>> = req
        .profile
        .oci
        .backup_paths
        .iter()
        .map(|p| p.trim_start_matches('/').as_bytes().to_vec())
        .collect();
    let layers: Vec<DirTree> = if backup.is_empty() {
        vec![tree]
    } else {
        let prefixes: Vec<&[u8]> = backup.iter().map(Vec::as_slice).collect();
        let (rest, backup) = tree.split_off(&prefixes);
        vec![rest, backup]
    };
    let profile = crate::manifest::ProfileRecord::of(&req.profile)?;
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.opencontainers.image.title".into(),
        req.profile.name.clone(),
    );
    labels.insert(
        "org.opencontainers.image.description".into(),
        req.profile.description.clone(),
    );
    labels.insert("org.osforge.profile".into(), req.profile.name.clone());
    labels.insert(
        "org.osforge.profile.sha256".into(),
        profile.inputs_sha256.clone(),
    );
    labels.insert("org.osforge.stage.key".into(), configured.key.clone());
    labels.insert(
        "org.osforge.packages".into(),
        packages
            .iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(","),
    );
    let (architecture, variant) =
        crate::formats::oci::platform_of_debian_arch(req.profile.distro.arch.as_str())
            .with_context(|| {
                format!(
                    "{} has no OCI platform name",
                    req.profile.distro.arch.as_str()
                )
            })?;
    let options = CreateOptions {
        architecture: architecture.into(),
        variant: variant.map(str::to_string),
        tag: oci_tag(&req.name),
        labels,
        mtime: Some(match req.source_date_epoch {
            Some(epoch) => epoch as i64,
            None => built_at(&configured.dir)?,
        }),
        jobs: req.jobs,
        ..CreateOptions::default()
    };
    let bar = Arc::new(Bar::bytes("oci", total_bytes, log.progress));
    let mut out = AtomicOutput::create(&out_path)?;
    let summary = oci::create_layers(
        &layers.iter().collect::<Vec<_>>(),
        out.file(),
        &options,
        Arc::clone(&bar).as_ref() as &dyn Progress,
    );
    bar.finish();
    let summary = summary.with_context(|| format!("writing {}", out_path.display()))?;
    out.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    let backup_layer = summary
        .extra_layers
        .first()
        .map_or(String::new(), |(_, bytes)| {
            format!(
                " + {} backup layer ({})",
                crate::util::size::human_bytes(*bytes),
                req.profile.oci.backup_paths.join(", ")
            )
        });
    let detail = format!(
        "{} ({}, {} layer{backup_layer}, {} {})",
        out_path.display(),
        crate::util::size::human_bytes(summary.archive_bytes),
        crate::util::size::human_bytes(summary.layer_bytes),
        options.tag,
        summary.manifest_digest
    );
    log.info(&format!("oci: wrote {detail} in {seconds:.1} s"));
    stages.push(StageReport {
        stage: "oci",
        key: None,
        host: None,
        cached: false,
        seconds,
        detail,
        from: Some(configured.label.clone()),
        label: None,
        block_cache: None,
        remote: None,
    });
    describe_artifact(ArtifactType::Oci, out_path)
}

/// A tag from the artifact's name: Docker's tag alphabet, at most 128 bytes.
fn oci_tag(name: &str) -> String {
    let tag: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    match tag.chars().next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => tag,
        _ => format!("_{}", tag.chars().take(127).collect::<String>()),
    }
}

/// When the configured rootfs's cache entry was made (its manifest's mtime).
fn built_at(entry: &Path) -> anyhow::Result<i64> {
    let manifest = entry.join("manifest.json");
    let modified = std::fs::metadata(&manifest)
        .and_then(|m| m.modified())
        .with_context(|| format!("reading {}", manifest.display()))?;
    Ok(modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_keep_to_docker_s_alphabet() {
        assert_eq!(super::oci_tag("control-plane"), "control-plane");
        assert_eq!(super::oci_tag("a b/c"), "a-b-c");
        assert_eq!(super::oci_tag(".x"), "_.x");
    }
}
