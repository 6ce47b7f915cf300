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
use crate::profile::{Profile, RootfsSource};

const SOURCE_FORMAT: u32 = 1;

pub(super) fn import(
    req: &BuildRequest,
    profile: &Profile,
    source: &RootfsSource,
    log: &Log,
    stages: &mut Vec<StageReport>,
) -> anyhow::Result<StageOutput> {
    let identity = identify(source, &req.network)?;
    let key = StageKey::new(
        "source",
        &serde_json::json!({ "format": SOURCE_FORMAT, "source": identity }),
    );
    let label = format!("source {}", profile.name);
    let network = req.network.clone();
    cached_stage(req, &key, &label, None, log, stages, |dir| {
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
    })
}

/// What identifies the source's content, for the cache key.
fn identify(
    source: &RootfsSource,
    network: &crate::rootfs::Network,
) -> anyhow::Result<serde_json::Value> {
    Ok(match source {
        RootfsSource::Bootstrap => serde_json::json!("bootstrap"),
        RootfsSource::Tarball { path } => {
            serde_json::json!({ "tarball": file_digest(path)? })
        }
        RootfsSource::Directory { path } => {
            serde_json::json!({ "directory": tree_listing_digest(path)? })
        }
        RootfsSource::Image {
            reference,
            tls_verify,
            authfile,
        } => serde_json::json!({
            "image": crate::rootfs::image::content_digest(reference, *tls_verify, authfile.as_deref(), network)?,
        }),
    })
}

/// xxh3-128 of a file's bytes, hex.
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
