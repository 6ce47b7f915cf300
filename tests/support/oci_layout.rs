//! Hand-made OCI image layouts for the flattening tests: layers from raw tar
//! members (names that the tar crate, rightly, refuses to write included),
//! compressed as asked, with the config, manifest and index around them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

#[derive(Clone, Copy, Debug)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One member, `name` and `link` put into the header unchecked.
pub fn member(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(data.len() as u64);
    h.set_device_major(0).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The members as one tar stream, with its end marker.
pub fn tar_of(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Writes `bytes` as a blob; returns its descriptor (and its path).
fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> (serde_json::Value, PathBuf) {
    let digest = digest(bytes);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let desc = serde_json::json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
    (desc, path)
}

/// An image layout at `dir` holding one image tagged `tag` made of
/// `layers` (uncompressed tars, bottom first). Returns the layer blobs.
pub fn write_layout(dir: &Path, tag: &str, layers: &[(Vec<u8>, Compression)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (mut descs, mut paths, mut diff_ids) = (Vec::new(), Vec::new(), Vec::new());
    for (tar, compression) in layers {
        diff_ids.push(digest(tar));
        let (media_type, blob) = match compression {
            Compression::None => ("application/vnd.oci.image.layer.v1.tar", tar.clone()),
            Compression::Gzip => {
                let mut gz = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
                let mut out = vec![0u8; gz.gzip_compress_bound(tar.len())];
                let n = gz.gzip_compress(tar, &mut out).unwrap();
                out.truncate(n);
                ("application/vnd.docker.image.rootfs.diff.tar.gzip", out)
            }
            Compression::Zstd => (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                zstd::encode_all(&tar[..], 3).unwrap(),
            ),
        };
        let (desc, path) = put_blob(dir, media_type, &blob);
        descs.push(desc);
        paths.push(path);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config, _) = put_blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": descs,
    });
    let (mut manifest, _) = put_blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    manifest["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    paths
}
