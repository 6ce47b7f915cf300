//! Container images as root filesystems: pulled with skopeo, flattened by
//! osforge's own OCI reader ([`crate::formats::oci`]).
//!
//! skopeo rather than a Rust registry client: it is the containers
//! project's own implementation of every transport a user may name
//! (`docker://`, `oci-archive:`, `docker-archive:`, `oci:`), of
//! `auth.json`, mirrors and registries.conf, and of the proxy variables; a
//! pull through it behaves as `podman pull` does on the same machine. It
//! only copies: the layers are applied (whiteouts, opaque directories) by
//! osforge, tar to tar, so no root and no container storage are needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::Network;
use crate::util::redact;

/// The tag osforge gives the image in its scratch layout.
const LAYOUT_TAG: &str = "osforge";

pub(super) fn skopeo(network: &Network) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.envs(network.environment());
    cmd
}

pub(super) fn run(mut cmd: Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = crate::util::process::output(&mut cmd)
        .context("cannot run skopeo (install it: apt-get install skopeo)")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = crate::util::process::last_line(&stderr).unwrap_or("no message");
        bail!("{what}: {}", redact::url(line));
    }
    Ok(out.stdout)
}

fn transport_path(reference: &str) -> Option<(&str, PathBuf, Option<&str>)> {
    for transport in ["oci-archive", "docker-archive", "oci"] {
        if let Some(rest) = reference.strip_prefix(&format!("{transport}:")) {
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            return Some((transport, PathBuf::from(path), tag));
        }
    }
    None
}

/// What identifies the image's content, asked of the registry for
/// `docker://` (its manifest digest), read from the files otherwise.
pub fn content_digest(
    reference: &str,
    tls_verify: bool,
    authfile: Option<&Path>,
    network: &Network,
) -> anyhow::Result<String> {
    match transport_path(reference) {
        Some(("oci", dir, tag)) => {
            let index = dir.join("index.json");
            let bytes =
                std::fs::read(&index).with_context(|| format!("reading {}", index.display()))?;
            Ok(format!(
                "oci:{}:{}",
                xxhash_rust::xxh3::xxh3_128(&bytes),
                tag.unwrap_or("")
            ))
        }
        Some((transport, file, tag)) => Ok(format!(
            "{transport}:{}:{}",
            crate::pipeline::file_digest(&file)?,
            tag.unwrap_or("")
        )),
        None => {
            let mut cmd = skopeo(network);
            cmd.args(["inspect", "--format", "{{.Digest}}"]);
            if !tls_verify {
                cmd.arg("--tls-verify=false");
            }
            if let Some(auth) = authfile {
                cmd.arg("--authfile").arg(auth);
            }
            cmd.arg(reference);
            let out = run(cmd, &format!("inspecting {}", redact::url(reference)))?;
            Ok(String::from_utf8_lossy(&out).trim().to_string())
        }
    }
}

/// Pulls `reference` and writes its root filesystem, layers applied, to
/// `out`; `scratch` holds the image meanwhile. Returns the manifest digest.
pub fn pull_flat(
    reference: &str,
    tls_verify: bool,
    authfile: Option<&Path>,
    network: &Network,
    scratch: &Path,
    out: &Path,
    arch: &str,
) -> anyhow::Result<String> {
    let (layout, tag) = match transport_path(reference) {
        // A layout is read where it is.
        Some(("oci", dir, tag)) => (dir, tag.map(str::to_string)),
        _ => {
            let layout = scratch.join("layout");
            let mut cmd = skopeo(network);
            cmd.args(["copy", "--quiet", "--override-arch", arch]);
            if !tls_verify {
                cmd.arg("--src-tls-verify=false");
            }
            if let Some(auth) = authfile {
                cmd.arg("--authfile").arg(auth);
            }
            cmd.arg(reference)
                .arg(format!("oci:{}:{LAYOUT_TAG}", layout.display()));
            run(cmd, &format!("pulling {}", redact::url(reference)))?;
            (layout, Some(LAYOUT_TAG.to_string()))
        }
    };
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let summary = crate::formats::oci::flatten(
        &crate::formats::oci::ImageRef {
            dir: layout.clone(),
            tag: tag.clone(),
        },
        arch,
        &mut writer,
    )
    .with_context(|| format!("unpacking the layers of {}", redact::url(reference)))?;
    writer
        .flush()
        .with_context(|| format!("writing {}", out.display()))?;
    if layout.starts_with(scratch) {
        let _ = std::fs::remove_dir_all(&layout);
    }
    Ok(summary.manifest_digest.to_string())
}
