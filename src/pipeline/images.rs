//! The images stage: the profile's `images:` baked into the configured
//! rootfs for containerd ([`crate::rootfs::preload`]), after the native
//! configuration and the playbooks (a playbook may be what installs
//! containerd) and before the artifacts.
//!
//! The registries are asked for each image's digest before the first stage
//! runs, so a wrong password or a missing tag fails at once, and the stage
//! key holds those digests: a tag moved to a new image rebakes, an unchanged
//! set is reused from the cache. The stage's tree is the one before it with
//! its files hard-linked (the stage only adds files), so it costs the
//! images' size, not another copy of the rootfs.

use std::path::PathBuf;

use anyhow::Context;

use super::cache::StageKey;
use super::stage::{TreeCopy, copy_tree};
use super::{BuildRequest, Log, StageOutput, StageReport, cached_stage};
use crate::profile::PreloadImage;
use crate::rootfs::preload::{self, BakedImage};
use crate::util::redact;

/// Bumped when the stage's code changes what it produces.
const IMAGES_FORMAT: u32 = 1;

/// What is known before the first stage: where each image's credentials
/// are, and the registries' digests.
pub(super) struct Prepared {
    /// Holds the auth.json files made from `auth:`; removed on drop.
    _private: Option<tempfile::TempDir>,
    images: Vec<Resolved>,
}

struct Resolved {
    image: PreloadImage,
    authfile: Option<PathBuf>,
    registry_digest: String,
}

pub(super) fn prepare(req: &BuildRequest, log: &Log) -> anyhow::Result<Option<Prepared>> {
    if req.profile.images.is_empty() {
        return Ok(None);
    }
    // Made with the first `auth:`; holds the auth files written from them.
    let mut private: Option<tempfile::TempDir> = None;
    let mut images = Vec::new();
    for (i, image) in req.profile.images.iter().enumerate() {
        let authfile = match &image.auth {
            Some(auth) => {
                let dir = match &private {
                    Some(dir) => dir,
                    None => private.insert(private_folder(req)?),
                };
                Some(preload::write_authfile(&image.name, auth, i, dir.path())?)
            }
            // The profile's authfile, else --authfile.
            None => image.authfile.clone().or(req.push_authfile.clone()),
        };
        let registry_digest = preload::registry_digest(image, authfile.as_deref(), &req.network)
            .map_err(|e| {
                crate::error::InputError(format!(
                    "{}: images[{i}] {}: {e:#}",
                    req.profile.path.display(),
                    redact::url(&image.name)
                ))
            })?;
        log.info(&format!(
            "images: {} is {registry_digest}",
            redact::url(&image.name)
        ));
        images.push(Resolved {
            image: image.clone(),
            authfile,
            registry_digest,
        });
    }
    Ok(Some(Prepared {
        _private: private,
        images,
    }))
}

/// A folder of the builder's own, under the cache, for credentials.
fn private_folder(req: &BuildRequest) -> anyhow::Result<tempfile::TempDir> {
    let parent = req.cache.root().join("tmp");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix("images-auth-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a folder in {}", parent.display()))
}

/// Bakes the images into a stage on `current`; returns it (or `current`
/// when the profile has none) and what it holds.
pub(super) fn bake(
    req: &BuildRequest,
    prepared: Option<&Prepared>,
    current: StageOutput,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<(StageOutput, Vec<BakedImage>)> {
    let Some(prepared) = prepared else {
        return Ok((current, Vec::new()));
    };
    let arch = req.profile.distro.arch.to_string();
    let platform = crate::formats::oci::platform_of_debian_arch(&arch)
        .with_context(|| format!("{arch} has no OCI platform name"))?;
    let key = StageKey::new(
        "images",
        &serde_json::json!({
            "format": IMAGES_FORMAT,
            "parent": current.key,
            "arch": arch,
            "images": prepared.images.iter().map(|r| serde_json::json!({
                "name": r.image.name,
                "tags": r.image.tags,
                "digest": r.registry_digest,
            })).collect::<Vec<_>>(),
        }),
    );
    let parent_root = current.dir.join("root");
    preload::check_containerd(&parent_root)
        .map_err(|e| crate::error::InputError(format!("{}: {e:#}", req.profile.path.display())))?;
    let output = cached_stage(req, &key, "images", Some(&current), log, stages, |dir| {
        let root = dir.join("root");
        // Hard links: the stage adds files and never changes one, and cache
        // entries are never changed once made, so sharing the bytes is safe.
        copy_tree(&parent_root, &root, TreeCopy::HardLinks)?;
        let layout = dir.join("layout");
        let mut pulled = Vec::new();
        for (i, r) in prepared.images.iter().enumerate() {
            let scratch = preload::pull(
                &r.image,
                i,
                r.authfile.as_deref(),
                platform,
                &req.network,
                &layout,
            )?;
            pulled.push((&r.image, scratch));
        }
        let digests = preload::name_for_containerd(&layout, &pulled)?;
        let baked: Vec<BakedImage> = prepared
            .images
            .iter()
            .zip(digests)
            .map(|(r, digest)| BakedImage {
                name: r.image.name.clone(),
                tags: r.image.tags.clone(),
                digest,
                registry_digest: r.registry_digest.clone(),
                arch: arch.clone(),
            })
            .collect();
        preload::bake(&root, &layout, &baked)?;
        std::fs::remove_dir_all(&layout)
            .with_context(|| format!("removing {}", layout.display()))?;
        Ok(describe(&baked))
    })?;
    let baked = preload::listed(&output.dir.join("root"))?;
    Ok((output, baked))
}

fn describe(baked: &[BakedImage]) -> String {
    let names: Vec<String> = baked
        .iter()
        .map(|b| format!("{} {}", b.tags.join(" = "), &b.digest))
        .collect();
    format!(
        "baked {} image(s) for containerd: {}",
        baked.len(),
        names.join(", ")
    )
}
