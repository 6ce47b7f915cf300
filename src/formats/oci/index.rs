//! One multi-platform image from several single-platform oci-archives: what
//! `docker buildx` and `podman manifest` make, for images built one
//! architecture at a time (on different machines or caches, or under
//! qemu-user).
//!
//! The output is an oci-archive whose `index.json` names one image index
//! (tagged), which lists each input's manifest with its platform; every
//! blob is copied once, verified against its digest on the way. So
//! `skopeo copy --all oci-archive:OUT docker://REF` pushes a manifest list,
//! and a client pulls its own architecture. Blobs stream through: an input
//! of any size needs memory only for its JSON documents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::Error;
use super::digest::{Digest, HashingReader};
use super::spec::{
    self, ANNOTATION_REF_NAME, DOCKER_MANIFEST_LIST, Descriptor, ImageConfig, ImageLayout, Index,
    Manifest, Platform,
};

/// JSON documents (index, manifest, config) are kept to be read; larger
/// blobs are layers and only pass through.
const KEEP_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexSummary {
    /// The image index's digest: what a registry shows for the tag.
    pub digest: String,
    pub tag: String,
    /// `linux/arm64`, `linux/arm/v7`, ... in input order.
    pub platforms: Vec<String>,
    pub blobs: usize,
    pub archive_bytes: u64,
}

fn platform_name(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Writes the multi-platform archive of `inputs` (oci-archives) to `out`.
pub fn merge_archives<W: Write>(
    inputs: &[PathBuf],
    tag: &str,
    out: W,
) -> Result<IndexSummary, Error> {
    if !super::archive::valid_tag(tag) {
        return Err(Error::BadTag { tag: tag.into() });
    }
    let mut tar = tar::Builder::new(CountingWriter {
        inner: out,
        bytes: 0,
    });
    let mut written: HashSet<Digest> = HashSet::new();
    let mut entries: Vec<(Descriptor, PathBuf)> = Vec::new();
    for input in inputs {
        let mut kept: HashMap<Digest, Vec<u8>> = HashMap::new();
        let mut index_json = None;
        let bad = |reason: String| Error::NotALayout {
            dir: input.clone(),
            reason,
        };
        let file = File::open(input).map_err(|source| Error::ReadingSource {
            path: input.clone(),
            source,
        })?;
        let mut archive = tar::Archive::new(io::BufReader::new(file));
        let reading = |source| Error::ReadingSource {
            path: input.clone(),
            source,
        };
        for entry in archive.entries().map_err(reading)? {
            let mut entry = entry.map_err(reading)?;
            let name = entry.path().map_err(reading)?.into_owned();
            let name = name.strip_prefix(".").unwrap_or(&name).to_path_buf();
            if name == Path::new("index.json") {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(KEEP_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(reading)?;
                index_json = Some(bytes);
                continue;
            }
            let Ok(hex) = name.strip_prefix("blobs/sha256") else {
                continue;
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let named = Digest::parse(&format!("sha256:{}", hex.display())).ok_or_else(|| {
                bad(format!(
                    "{} is not named by a sha256 digest",
                    name.display()
                ))
            })?;
            let size = entry.size();
            if size <= KEEP_BYTES {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(reading)?;
                check(input, &name, named, Digest::of(&bytes))?;
                if written.insert(named) {
                    append_bytes(&mut tar, &name, &bytes)?;
                }
                kept.insert(named, bytes);
            } else if written.insert(named) {
                let mut hashing = HashingReader::new(entry);
                append(&mut tar, &name, &mut hashing, size)?;
                let (_, actual, _) = hashing.finish().map_err(reading)?;
                check(input, &name, named, actual)?;
            }
        }
        let index_json = index_json.ok_or_else(|| bad("no index.json".into()))?;
        let index: Index =
            serde_json::from_slice(&index_json).map_err(|e| bad(format!("index.json: {e}")))?;
        for desc in platform_manifests(&index, &kept, &bad)? {
            entries.push((desc, input.clone()));
        }
    }
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    let mut platforms = Vec::new();
    for (desc, input) in &entries {
        let name = platform_name(desc.platform.as_ref().expect("resolved"));
        if let Some(first) = seen.insert(name.clone(), input) {
            return Err(Error::NotALayout {
                dir: input.clone(),
                reason: format!(
                    "a second image for {name} (the first is in {}): one per platform",
                    first.display()
                ),
            });
        }
        platforms.push(name);
    }
    let image_index = Index {
        schema_version: 2,
        media_type: Some(spec::MEDIA_TYPE_INDEX.into()),
        manifests: entries.into_iter().map(|(d, _)| d).collect(),
    };
    let index_bytes = serde_json::to_vec(&image_index).expect("an index serialises");
    let index_digest = Digest::of(&index_bytes);
    if written.insert(index_digest) {
        let name = PathBuf::from(format!("blobs/sha256/{}", index_digest.hex()));
        append_bytes(&mut tar, &name, &index_bytes)?;
    }
    let top = Index {
        schema_version: 2,
        media_type: Some(spec::MEDIA_TYPE_INDEX.into()),
        manifests: vec![Descriptor {
            media_type: spec::MEDIA_TYPE_INDEX.into(),
            digest: index_digest.to_string(),
            size: index_bytes.len() as u64,
            annotations: BTreeMap::from([(ANNOTATION_REF_NAME.into(), tag.into())]),
            platform: None,
        }],
    };
    let top = serde_json::to_vec(&top).expect("an index serialises");
    append_bytes(&mut tar, Path::new("index.json"), &top)?;
    let layout = serde_json::to_vec(&ImageLayout {
        version: spec::LAYOUT_VERSION.into(),
    })
    .expect("serialises");
    append_bytes(&mut tar, Path::new("oci-layout"), &layout)?;
    let counting = tar.into_inner().map_err(Error::Writing)?;
    Ok(IndexSummary {
        digest: index_digest.to_string(),
        tag: tag.into(),
        platforms,
        blobs: written.len(),
        archive_bytes: counting.bytes,
    })
}

/// The manifests of one input, each with its platform: from the index's
/// descriptor, or read from the image config when it has none; a nested
/// index (a multi-platform input) gives all of its manifests.
fn platform_manifests(
    index: &Index,
    kept: &HashMap<Digest, Vec<u8>>,
    bad: &dyn Fn(String) -> Error,
) -> Result<Vec<Descriptor>, Error> {
    let json = |desc: &Descriptor| -> Result<&Vec<u8>, Error> {
        let digest = Digest::parse(&desc.digest)
            .ok_or_else(|| bad(format!("'{}' is not a sha256 digest", desc.digest)))?;
        kept.get(&digest)
            .ok_or_else(|| bad(format!("blob {} is missing", desc.digest)))
    };
    let mut out = Vec::new();
    for desc in &index.manifests {
        if desc.media_type == spec::MEDIA_TYPE_INDEX || desc.media_type == DOCKER_MANIFEST_LIST {
            let nested: Index = serde_json::from_slice(json(desc)?)
                .map_err(|e| bad(format!("index {}: {e}", desc.digest)))?;
            out.extend(platform_manifests(&nested, kept, bad)?);
            continue;
        }
        let mut desc = desc.clone();
        desc.annotations.clear();
        if desc.platform.is_none() {
            let manifest: Manifest = serde_json::from_slice(json(&desc)?)
                .map_err(|e| bad(format!("manifest {}: {e}", desc.digest)))?;
            let config: ImageConfig = serde_json::from_slice(json(&manifest.config)?)
                .map_err(|e| bad(format!("config {}: {e}", manifest.config.digest)))?;
            desc.platform = Some(Platform {
                architecture: config.architecture,
                os: config.os,
                variant: config.variant,
            });
        }
        out.push(desc);
    }
    if out.is_empty() {
        return Err(bad("index.json lists no image".into()));
    }
    Ok(out)
}

fn check(input: &Path, name: &Path, named: Digest, actual: Digest) -> Result<(), Error> {
    if named == actual {
        Ok(())
    } else {
        Err(Error::DigestMismatch {
            path: input.join(name),
            actual,
        })
    }
}

/// One member with fixed owner, mode and time: the same inputs give the
/// same archive.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &Path,
    data: impl Read,
    size: u64,
) -> Result<(), Error> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .map_err(Error::Writing)
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &Path,
    bytes: &[u8],
) -> Result<(), Error> {
    append(tar, name, bytes, bytes.len() as u64)
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::dirtree::DirTree;
    use crate::formats::oci::{CreateOptions, create};

    fn archive(dir: &Path, arch: &str, variant: Option<&str>) -> PathBuf {
        let tree = dir.join(format!("tree-{arch}"));
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("arch"), arch).unwrap();
        std::fs::write(tree.join("shared"), "the same in every image\n").unwrap();
        let out = dir.join(format!("{arch}.oci.tar"));
        let opts = CreateOptions {
            architecture: arch.into(),
            variant: variant.map(str::to_string),
            mtime: Some(1_700_000_000),
            jobs: 1,
            ..CreateOptions::default()
        };
        let tree = DirTree::scan(&tree, false, &[]).unwrap();
        let file = std::fs::File::create(&out).unwrap();
        create(&tree, file, &opts, &crate::formats::NoProgress).unwrap();
        out
    }

    #[test]
    fn archives_merge_into_one_index_with_each_platform_and_shared_blobs_once() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = vec![
            archive(dir.path(), "amd64", None),
            archive(dir.path(), "arm", Some("v7")),
        ];
        let mut out = Vec::new();
        let summary = merge_archives(&inputs, "1.0", &mut out).unwrap();
        assert_eq!(summary.platforms, ["linux/amd64", "linux/arm/v7"]);
        let mut again = Vec::new();
        merge_archives(&inputs, "1.0", &mut again).unwrap();
        assert_eq!(out, again, "the same inputs give the same bytes");

        let unpacked = dir.path().join("multi");
        tar::Archive::new(&out[..]).unpack(&unpacked).unwrap();
        let layout = super::super::layout::Layout::open(&unpacked).unwrap();
        let arm = layout.resolve(Some("1.0"), "arm").unwrap();
        let amd = layout.resolve(Some("1.0"), "amd64").unwrap();
        assert_ne!(arm.manifest_digest, amd.manifest_digest);

        let twice = merge_archives(&[inputs[0].clone(), inputs[0].clone()], "x", io::sink());
        let err = twice.unwrap_err().to_string();
        assert!(err.contains("a second image for linux/amd64"), "{err}");
    }
}
