//! Root filesystems that are not bootstrapped: a container image, a tarball
//! or a directory, brought into the cache as a `rootfs.tar` like a
//! bootstrap's, so the layers and the configuration step on top of them do
//! not care where it came from.
//!
//! The cache key holds what identifies the content without reading it all
//! twice: a registry image's manifest digest (asked of the registry with
//! `skopeo inspect`), the digest of a local archive's or layout's bytes, a
//! directory's listing with sizes and times.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::cache::StageKey;
use super::{BuildRequest, Log, StageOutput, StageReport, cached_stage};
use crate::manifest::lock::LockedSource;
use crate::profile::{Profile, RootfsSource};

const SOURCE_FORMAT: u32 = 1;

pub(super) fn import(
    req: &BuildRequest,
    profile: &Profile,
    source: &RootfsSource,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<(StageOutput, LockedSource)> {
    let source = pinned(req, source)?;
    let source = &source;
    let (kind, digest) = identify(source, &req.network)?;
    let found = LockedSource {
        reference: reference_of(source),
        digest: digest.clone(),
    };
    if let Some(locked) = req.lock.as_ref().and_then(|l| l.source.as_ref())
        && locked.digest != found.digest
    {
        bail!(
            "the source {} is not the one the lock file was written from: its content is now {}, the lock has {}; build without --lock to take the new one",
            crate::util::redact::url(&found.reference),
            found.digest,
            locked.digest
        );
    }
    let key = StageKey::new(
        "source",
        &serde_json::json!({ "format": SOURCE_FORMAT, "source": { kind: digest } }),
    );
    let label = format!("source {}", profile.name);
    let network = req.network.clone();
    let output = cached_stage(req, &key, &label, None, log, stages, |dir| {
        let tar = dir.join("rootfs.tar");
        let what = match source {
            RootfsSource::Bootstrap => unreachable!("bootstraps are not imported"),
            RootfsSource::Tarball { path } => {
                // tar reads any compression it knows from the content.
                std::fs::copy(path, &tar).with_context(|| format!("copying {}", path.display()))?;
                format!("tarball {}", path.display())
            }
            RootfsSource::Directory { path } => {
                crate::rootfs::layer::pack(path, &tar, req.source_date_epoch)?;
                format!("directory {}", path.display())
            }
            RootfsSource::Image {
                reference,
                tls_verify,
                authfile,
            } => {
                let spinner = crate::util::progress::Bar::spinner(
                    &format!("pulling {}", crate::util::redact::url(reference)),
                    log.progress,
                );
                let result = crate::rootfs::image::pull_flat(
                    reference,
                    *tls_verify,
                    authfile.as_deref(),
                    &network,
                    dir,
                    &tar,
                    profile.distro.arch.as_str(),
                );
                spinner.finish();
                let digest = result?;
                format!("image {} ({digest})", crate::util::redact::url(reference))
            }
        };
        let bytes = std::fs::metadata(&tar)?.len();
        Ok(format!("{what}: {}", crate::util::size::human_bytes(bytes)))
    })?;
    Ok((output, found))
}

/// With `--lock`, a registry image is pulled by the digest the lock holds
/// rather than by its tag, which may have moved since; the lock must have
/// been written from the same reference.
fn pinned(req: &BuildRequest, source: &RootfsSource) -> anyhow::Result<RootfsSource> {
    let Some(locked) = req.lock.as_ref().and_then(|l| l.source.as_ref()) else {
        return Ok(source.clone());
    };
    let reference = reference_of(source);
    if locked.reference != reference {
        bail!(
            "the lock file was written from the source {}, the profile names {}; build without --lock to write a new lock",
            crate::util::redact::url(&locked.reference),
            crate::util::redact::url(&reference)
        );
    }
    Ok(match source {
        RootfsSource::Image {
            reference,
            tls_verify,
            authfile,
        } if reference.starts_with("docker://") && locked.digest.starts_with("sha256:") => {
            RootfsSource::Image {
                reference: by_digest(reference, &locked.digest),
                tls_verify: *tls_verify,
                authfile: authfile.clone(),
            }
        }
        other => other.clone(),
    })
}

/// `docker://host:5000/repo:tag` (or `@sha256:...`) → `docker://host:5000/repo@DIGEST`.
fn by_digest(reference: &str, digest: &str) -> String {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    let last_part = name.rfind('/').map_or(0, |i| i + 1);
    // A tag is a colon in the last component (a port's is before a '/').
    let name = match name[last_part..].rfind(':') {
        Some(colon) => &name[..last_part + colon],
        None => name,
    };
    format!("{name}@{digest}")
}

/// The source as the profile names it, for the lock file.
fn reference_of(source: &RootfsSource) -> String {
    match source {
        RootfsSource::Bootstrap => "bootstrap".into(),
        RootfsSource::Tarball { path } => format!("tarball:{}", path.display()),
        RootfsSource::Directory { path } => format!("dir:{}", path.display()),
        RootfsSource::Image { reference, .. } => reference.clone(),
    }
}

/// What identifies the source's content, for the cache key and the lock:
/// the kind of source and its digest.
fn identify(
    source: &RootfsSource,
    network: &crate::rootfs::Network,
) -> anyhow::Result<(&'static str, String)> {
    Ok(match source {
        RootfsSource::Bootstrap => ("bootstrap", String::new()),
        RootfsSource::Tarball { path } => ("tarball", file_digest(path)?),
        RootfsSource::Directory { path } => ("directory", tree_listing_digest(path)?),
        RootfsSource::Image {
            reference,
            tls_verify,
            authfile,
        } => (
            "image",
            crate::rootfs::image::content_digest(
                reference,
                *tls_verify,
                authfile.as_deref(),
                network,
            )?,
        ),
    })
}

pub(crate) fn file_digest(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

/// A digest of a tree's listing (names, types, modes, owners, sizes, times):
/// what changes when any file does, without reading every byte.
fn tree_listing_digest(root: &Path) -> anyhow::Result<String> {
    let out = Command::new("find")
        .arg(root)
        .args(["-printf", "%P\\0%y%m %U:%G %s %T@ %l\\0"])
        .output()
        .context("cannot run find")?;
    if !out.status.success() {
        bail!(
            "listing {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    // find's order follows the directory's, which varies between copies.
    let records: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
    let mut pairs: Vec<(&[u8], &[u8])> = records
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect();
    pairs.sort();
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (name, meta) in pairs {
        hasher.update(name);
        hasher.update(b"\0");
        hasher.update(meta);
        hasher.update(b"\0");
    }
    Ok(format!("{:032x}", hasher.digest128()))
}

#[cfg(test)]
mod tests {
    use super::by_digest;

    #[test]
    fn a_locked_image_is_pulled_by_digest_instead_of_its_tag() {
        let d = "sha256:0123";
        for (reference, want) in [
            (
                "docker://localhost:5000/osforge/base:1",
                "docker://localhost:5000/osforge/base@sha256:0123",
            ),
            (
                "docker://localhost:5000/base",
                "docker://localhost:5000/base@sha256:0123",
            ),
            ("docker://debian:12", "docker://debian@sha256:0123"),
            (
                "docker://r.example/a/b@sha256:ffff",
                "docker://r.example/a/b@sha256:0123",
            ),
        ] {
            assert_eq!(by_digest(reference, d), want, "{reference}");
        }
    }
}
