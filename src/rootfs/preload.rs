//! Container images baked into a root filesystem for containerd, so that an
//! air-gapped node has them at first boot with no registry in reach.
//!
//! The mechanism: the images are pulled at build time (skopeo, through the
//! build's proxy) into one OCI layout, whose `index.json` names every image
//! as containerd names them (`io.containerd.image.name`: the qualified name
//! and each `retagAs`), and the layout goes into the image as one OCI
//! archive. A oneshot unit ordered after containerd and before the kubelet
//! runs `ctr -n k8s.io images import` on it at boot: containerd's own
//! importer fills its content store, records the names in the namespace the
//! kubelet reads and unpacks them for its snapshotter.
//!
//! Why an import unit and not a content store filled at build time:
//! containerd's store is a bolt database plus snapshots that belong to one
//! snapshotter and one containerd version; writing them without containerd
//! means reimplementing its metadata format, and running containerd inside
//! the build would tie the snapshots to the build host's snapshotter and
//! filesystem (overlayfs snapshots cannot live on a live system's overlay
//! root). The archive keeps the registry's bytes and manifest digests, so
//! `ctr images ls` shows the digests the registry has.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::Network;
use crate::profile::PreloadImage;
use crate::util::redact;

/// Where the archive and its listing go in the image.
pub const IMAGES_DIR: &str = "var/lib/osforge/images";
const ARCHIVE: &str = "images.oci.tar";
const LISTING: &str = "images.json";
const UNIT: &str = "osforge-import-images.service";
const SCRIPT: &str = "usr/libexec/osforge/import-images";
/// What the image needs for the unit to work.
const CTR: &[&str] = &["usr/bin/ctr", "usr/local/bin/ctr"];
/// containerd's annotation for an image's full name in an archive.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One image as baked: what the build report lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BakedImage {
    /// The name it was pulled by.
    pub name: String,
    /// The names containerd gets for it.
    pub tags: Vec<String>,
    /// The manifest digest `ctr images ls` shows.
    pub digest: String,
    /// The digest the registry gave for `name` (an index for a multi-arch
    /// image, whose `arch` manifest is `digest`).
    pub registry_digest: String,
    pub arch: String,
}

/// Whether the root has containerd's client, which the import unit runs.
pub fn check_containerd(root: &Path) -> anyhow::Result<()> {
    if CTR.iter().any(|p| root.join(p).exists()) {
        return Ok(());
    }
    bail!(
        "images: the image has no containerd (no /usr/bin/ctr), so the baked images could not be imported at boot: add containerd to the profile's packages"
    )
}

/// Writes a containers `auth.json` for `image`'s `auth` into `dir` (the
/// builder's private folder; the file never goes into the image).
pub fn write_authfile(
    image_name: &str,
    auth: &str,
    index: usize,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    let registry = crate::util::image_ref::domain(image_name);
    let json = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    let path = dir.join(format!("auth-{index}.json"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(json.to_string().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The registry's digest of `image` (asked before any stage runs: a wrong
/// password or a missing tag fails the build at once).
pub fn registry_digest(
    image: &PreloadImage,
    authfile: Option<&Path>,
    network: &Network,
) -> anyhow::Result<String> {
    super::image::content_digest(
        &format!("docker://{}", image.name),
        image.tls_verify,
        authfile,
        network,
    )
}

/// Pulls `image` for the OCI platform `(architecture, variant)` into the
/// OCI layout at `layout` (shared by all the images, so that common layers
/// are stored once), under a scratch name; returns that name.
pub fn pull(
    image: &PreloadImage,
    index: usize,
    authfile: Option<&Path>,
    platform: (&str, Option<&str>),
    network: &Network,
    layout: &Path,
) -> anyhow::Result<String> {
    let scratch_name = format!("osforge-{index}");
    let mut cmd = super::image::skopeo(network);
    cmd.args(["copy", "--quiet", "--override-os", "linux"]);
    cmd.args(["--override-arch", platform.0]);
    if let Some(variant) = platform.1 {
        cmd.args(["--override-variant", variant]);
    }
    if !image.tls_verify {
        cmd.arg("--src-tls-verify=false");
    }
    if let Some(auth) = authfile {
        cmd.arg("--src-authfile").arg(auth);
    }
    cmd.arg(format!("docker://{}", image.name))
        .arg(format!("oci:{}:{scratch_name}", layout.display()));
    super::image::run(cmd, &format!("pulling {}", redact::url(&image.name)))?;
    Ok(scratch_name)
}

/// Renames the layout's entries from their scratch names to the names
/// containerd is to give them (one entry per name, so `retagAs` is a
/// second entry for the same manifest), and returns each image's manifest
/// digest, in `images`' order.
pub fn name_for_containerd(
    layout: &Path,
    images: &[(&PreloadImage, String)],
) -> anyhow::Result<Vec<String>> {
    let path = layout.join("index.json");
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut index: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    let scratch: Vec<serde_json::Value> =
        index["manifests"].as_array().cloned().unwrap_or_default();
    let mut manifests = Vec::new();
    let mut digests = Vec::new();
    for (image, scratch_name) in images {
        let entry = scratch
            .iter()
            .find(|m| m["annotations"][REF_NAME].as_str() == Some(scratch_name))
            .with_context(|| format!("skopeo wrote no {scratch_name} into {}", path.display()))?;
        digests.push(
            entry["digest"]
                .as_str()
                .context("a manifest without a digest in the layout")?
                .to_string(),
        );
        for tag in &image.tags {
            let mut named = entry.clone();
            let mut annotations = serde_json::Map::new();
            annotations.insert(CONTAINERD_NAME.into(), tag.clone().into());
            if let Some(short) = crate::util::image_ref::tag(tag) {
                annotations.insert(REF_NAME.into(), short.into());
            }
            named["annotations"] = annotations.into();
            manifests.push(named);
        }
    }
    index["manifests"] = manifests.into();
    fs::write(&path, serde_json::to_vec(&index)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(digests)
}

/// Writes the layout as one archive, the listing, the import script and
/// unit (enabled) into `root`.
pub fn bake(root: &Path, layout: &Path, baked: &[BakedImage]) -> anyhow::Result<()> {
    let dir = root.join(IMAGES_DIR);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_archive(layout, &dir.join(ARCHIVE))?;
    let mut listing = serde_json::to_vec_pretty(baked)?;
    listing.push(b'\n');
    fs::write(dir.join(LISTING), listing)?;

    let script = root.join(SCRIPT);
    fs::create_dir_all(script.parent().expect("a folder"))?;
    fs::write(&script, import_script())?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    let units = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&units)?;
    fs::write(units.join(UNIT), unit())?;
    for wants in ["multi-user.target.wants", "kubelet.service.wants"] {
        let folder = root.join("etc/systemd/system").join(wants);
        fs::create_dir_all(&folder)?;
        let link = folder.join(UNIT);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/usr/lib/systemd/system/{UNIT}"), &link)
            .with_context(|| format!("enabling {UNIT} ({})", link.display()))?;
    }
    Ok(())
}

/// The baked images an image's root lists (after a cache hit too).
pub fn listed(root: &Path) -> anyhow::Result<Vec<BakedImage>> {
    let path = root.join(IMAGES_DIR).join(LISTING);
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The layout as a tar with fixed owners, modes and times, in name order:
/// the same images give the same bytes.
fn write_archive(layout: &Path, out: &Path) -> anyhow::Result<()> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut names: Vec<_> = fs::read_dir(layout.join(&relative))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names.into_iter().rev() {
            let path = relative.join(&name);
            let full = layout.join(&path);
            if full.is_dir() {
                tar.append_dir(&path, &full)?;
                pending.push(path);
            } else {
                tar.append_path_with_name(&full, &path)?;
            }
        }
    }
    tar.into_inner()?
        .flush()
        .with_context(|| format!("writing {}", out.display()))
}

fn import_script() -> String {
    format!(
        r#"#!/bin/sh
# Written by osforge: imports the container images baked into this image
# into containerd's k8s.io namespace, where the kubelet finds them, so that
# they are there with no network. Runs before the kubelet. ctr honours
# CONTAINERD_ADDRESS (set it in a drop-in for another containerd socket).
set -eu
dir=/{IMAGES_DIR}
stamp=/var/lib/containerd/osforge-images.imported
want=$(sha256sum "$dir/{LISTING}" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "osforge-import-images: already imported"
    exit 0
fi
tries=0
until ctr version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 120 ]; then
        echo "osforge-import-images: containerd does not answer" >&2
        exit 1
    fi
    sleep 1
done
if ! ctr -n k8s.io images import "$dir/{ARCHIVE}"; then
    # A live system's overlay root cannot hold overlayfs snapshots: the
    # images are then imported as they are, and unpacked when first run.
    echo "osforge-import-images: unpacking failed; importing without unpacking" >&2
    ctr -n k8s.io images import --no-unpack "$dir/{ARCHIVE}"
fi
echo "$want" > "$stamp"
"#
    )
}

fn unit() -> String {
    format!(
        "# Written by osforge (images: in the profile).
[Unit]
Description=Import the container images baked into this image into containerd
After=containerd.service
Requires=containerd.service
Before=kubelet.service
ConditionPathExists=/{IMAGES_DIR}/{ARCHIVE}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/{SCRIPT}
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target kubelet.service
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_names_each_image_and_retag_for_containerd() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = |d: &str, n: &str| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d, "size": 1, "annotations": {REF_NAME: n}})
        };
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            manifest("sha256:aa", "osforge-0"), manifest("sha256:bb", "osforge-1")]});
        fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
        let image = |tags: &[&str]| PreloadImage {
            name: tags[0].to_string(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            auth: None,
            authfile: None,
            tls_verify: true,
        };
        let a = image(&["r.io/a:1"]);
        let b = image(&["r.io/b:2", "registry.k8s.io/b:v3"]);
        let digests = name_for_containerd(
            dir.path(),
            &[(&a, "osforge-0".into()), (&b, "osforge-1".into())],
        )
        .unwrap();
        assert_eq!(digests, ["sha256:aa", "sha256:bb"]);
        let got: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
        let names: Vec<(&str, &str)> = got["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["digest"].as_str().unwrap(),
                    m["annotations"][CONTAINERD_NAME].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("sha256:aa", "r.io/a:1"),
                ("sha256:bb", "r.io/b:2"),
                ("sha256:bb", "registry.k8s.io/b:v3")
            ]
        );
    }
}
