//! Writing a single-layer image of a directory tree as an oci-archive: a tar
//! holding an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`),
//! what `skopeo copy oci-archive:FILE ...` and `podman load` take.
//!
//! The layer is the one large blob. It streams into the archive right after
//! a placeholder header; its digest and length are known only at its end, so
//! the header is written then, by seeking back (the squashfs writer does the
//! same with its superblock). Config, manifest and index are small JSON
//! documents written after it.

use std::collections::BTreeMap;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tar::EntryType;

use super::digest::{Digest, HashingWriter};
use super::gzip::GzipWriter;
use super::layer::{self, LayerStats};
use super::spec::{
    self, ANNOTATION_CREATED, ANNOTATION_REF_NAME, ContainerConfig, Descriptor, History,
    ImageConfig, ImageLayout, Index, Manifest, Platform, RootFs,
};
use super::tar_out::{BLOCK_BYTES, Member, TarWriter, header_for};
use super::{ARCHITECTURES, Error};
use crate::formats::Progress;
use crate::formats::dirtree::DirTree;
use crate::util::time::rfc3339_utc;

const BLOBS_DIR: &[u8] = b"blobs";
const BLOBS_SHA256_DIR: &[u8] = b"blobs/sha256";
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// gzip's and Go's default level: what `docker push` and buildah write.
pub const DEFAULT_LEVEL: u32 = 6;
const CREATED_BY: &str = "osforge oci create";

#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// GOARCH name: amd64, arm64, ...
    pub architecture: String,
    /// The architecture's variant (`v7` for 32-bit arm), as platforms name it.
    pub variant: Option<String>,
    /// The image's name in index.json (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `config.Labels`, and the manifest's annotations.
    pub labels: BTreeMap<String, String>,
    /// SOURCE_DATE_EPOCH: the image's `created` time and the upper bound of
    /// every mtime in the layer. None: created now, mtimes as they are.
    pub mtime: Option<i64>,
    /// gzip level, 1..=9.
    pub level: u32,
    /// Compression threads; the archive's bytes do not depend on it.
    pub jobs: usize,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            architecture: "amd64".into(),
            variant: None,
            tag: "latest".into(),
            labels: BTreeMap::new(),
            mtime: None,
            level: DEFAULT_LEVEL,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A tag as Docker and the distribution spec allow it.
pub(super) fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    (1..=128).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl CreateOptions {
    /// Checks what the user gave, before any work.
    pub fn validate(&self) -> Result<(), Error> {
        if !ARCHITECTURES.contains(&self.architecture.as_str()) {
            return Err(Error::UnknownArchitecture {
                architecture: self.architecture.clone(),
            });
        }
        if !valid_tag(&self.tag) {
            return Err(Error::BadTag {
                tag: self.tag.clone(),
            });
        }
        if let Some(key) = self.labels.keys().find(|k| k.trim().is_empty()) {
            return Err(Error::BadLabel { key: key.clone() });
        }
        if !(1..=9).contains(&self.level) {
            return Err(Error::BadLevel { level: self.level });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layer_digest: Digest,
    /// sha256 of the uncompressed layer (the config's `rootfs.diff_ids`).
    pub layer_diff_id: Digest,
    /// The compressed layer.
    pub layer_bytes: u64,
    pub layer_tar_bytes: u64,
    /// Layers after the first (`create_layers`): digest and compressed size.
    pub extra_layers: Vec<(Digest, u64)>,
    pub archive_bytes: u64,
    /// Members of the layer.
    pub entries: u64,
    /// File data read from the tree.
    pub bytes_in: u64,
    pub skipped_sockets: u64,
    pub tag: String,
    pub architecture: String,
    pub created: String,
}

/// A small member of the archive: a directory or a file held in memory.
fn append_small<W: Write>(
    tar: &mut TarWriter<W>,
    path: &[u8],
    data: Option<&[u8]>,
    mtime: i64,
) -> Result<(), Error> {
    let (kind, mode, size) = match data {
        Some(d) => (EntryType::Regular, 0o644, d.len() as u64),
        None => (EntryType::Directory, 0o755, 0),
    };
    let member = archive_member(path, kind, mode, size, mtime);
    tar.append(&member, &mut data.unwrap_or_default())
        .map_err(Error::Writing)
}

fn archive_member(path: &[u8], kind: EntryType, mode: u32, size: u64, mtime: i64) -> Member<'_> {
    Member {
        path,
        kind,
        link: b"",
        size,
        mode,
        uid: 0,
        gid: 0,
        mtime,
        device: (0, 0),
        uname: b"",
        gname: b"",
        pax: &[],
    }
}

fn blob_path(digest: &Digest) -> Vec<u8> {
    [BLOBS_SHA256_DIR, b"/", digest.hex().as_bytes()].concat()
}

/// Writes the JSON of `value` as a blob; returns its descriptor and digest.
fn append_json_blob<W: Write, T: serde::Serialize>(
    tar: &mut TarWriter<W>,
    media_type: &str,
    value: &T,
    mtime: i64,
) -> Result<(Descriptor, Digest), Error> {
    let bytes = serde_json::to_vec(value).expect("the spec's types serialise");
    let digest = Digest::of(&bytes);
    append_small(tar, &blob_path(&digest), Some(&bytes), mtime)?;
    let descriptor = Descriptor {
        media_type: media_type.into(),
        digest: digest.to_string(),
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    };
    Ok((descriptor, digest))
}

struct LayerBlob {
    digest: Digest,
    diff_id: Digest,
    bytes: u64,
    tar_bytes: u64,
    stats: LayerStats,
}

/// Streams the layer: tree → tar → sha256 (diff_id) → gzip → sha256 → `out`.
fn stream_layer<W: Write>(
    tree: &DirTree,
    out: W,
    opts: &CreateOptions,
    progress: &dyn Progress,
) -> Result<LayerBlob, Error> {
    let compressed = HashingWriter::new(out);
    let gzip = GzipWriter::new(compressed, opts.level, opts.jobs.max(1)).map_err(Error::Writing)?;
    let mut layer_tar = TarWriter::new(HashingWriter::new(gzip));
    let stats = layer::write_tree(tree, &mut layer_tar, opts.mtime, progress)?;
    let uncompressed = layer_tar.finish().map_err(Error::Writing)?;
    let (gzip, diff_id, tar_bytes) = uncompressed.finish();
    let compressed = gzip.finish().map_err(Error::Writing)?;
    let (_, digest, bytes) = compressed.finish();
    Ok(LayerBlob {
        digest,
        diff_id,
        bytes,
        tar_bytes,
        stats,
    })
}

/// Writes the oci-archive of `tree` to `out` from its current position.
/// On an error `out` holds a partial archive: write to a temporary file.
pub fn create<W: Write + Seek>(
    tree: &DirTree,
    out: W,
    opts: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Summary, Error> {
    create_layers(&[tree], out, opts, progress)
}

/// [`create`] with one layer per tree, bottom first; the summary's layer
/// fields describe the first, `extra_layers` the others.
pub fn create_layers<W: Write + Seek>(
    trees: &[&DirTree],
    mut out: W,
    opts: &CreateOptions,
    progress: &dyn Progress,
) -> Result<Summary, Error> {
    assert!(!trees.is_empty(), "an image has at least one layer");
    opts.validate()?;
    let created_unix = opts.mtime.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let created = rfc3339_utc(created_unix.max(0) as u64);
    let start = out.stream_position().map_err(Error::Writing)?;
    let mut tar = TarWriter::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, &mut out));

    let layout = serde_json::to_vec(&ImageLayout {
        version: spec::LAYOUT_VERSION.into(),
    })
    .expect("serialises");
    append_small(&mut tar, b"oci-layout", Some(&layout), created_unix)?;
    append_small(&mut tar, BLOBS_DIR, None, created_unix)?;
    append_small(&mut tar, BLOBS_SHA256_DIR, None, created_unix)?;

    // Each layer's tar header is written once its size is known, over a
    // placeholder: the blob streams straight into the archive.
    let mut layers = Vec::new();
    for tree in trees {
        let header_at = tar.position();
        tar.write_raw(&[0u8; BLOCK_BYTES as usize])
            .map_err(Error::Writing)?;
        let layer = stream_layer(tree, tar.get_mut(), opts, progress)?;
        tar.advance(layer.bytes);
        tar.pad().map_err(Error::Writing)?;
        layers.push((header_at, layer));
    }

    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: opts.architecture.clone(),
        os: "linux".into(),
        variant: opts.variant.clone(),
        config: Some(ContainerConfig {
            labels: opts.labels.clone(),
        }),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|(_, l)| l.diff_id.to_string()).collect(),
        },
        history: layers
            .iter()
            .map(|_| History {
                created: Some(created.clone()),
                created_by: Some(CREATED_BY.into()),
            })
            .collect(),
    };
    let (config_desc, config_digest) =
        append_json_blob(&mut tar, spec::MEDIA_TYPE_CONFIG, &config, created_unix)?;
    let mut annotations = opts.labels.clone();
    annotations.insert(ANNOTATION_CREATED.into(), created.clone());
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(spec::MEDIA_TYPE_MANIFEST.into()),
        config: config_desc,
        layers: layers
            .iter()
            .map(|(_, layer)| Descriptor {
                media_type: spec::MEDIA_TYPE_LAYER_GZIP.into(),
                digest: layer.digest.to_string(),
                size: layer.bytes,
                annotations: BTreeMap::new(),
                platform: None,
            })
            .collect(),
        annotations,
    };
    let (mut manifest_desc, manifest_digest) =
        append_json_blob(&mut tar, spec::MEDIA_TYPE_MANIFEST, &manifest, created_unix)?;
    manifest_desc.annotations = BTreeMap::from([(ANNOTATION_REF_NAME.into(), opts.tag.clone())]);
    manifest_desc.platform = Some(Platform {
        architecture: opts.architecture.clone(),
        os: "linux".into(),
        variant: opts.variant.clone(),
    });
    let index = Index {
        schema_version: 2,
        media_type: Some(spec::MEDIA_TYPE_INDEX.into()),
        manifests: vec![manifest_desc],
    };
    let index = serde_json::to_vec(&index).expect("serialises");
    append_small(&mut tar, b"index.json", Some(&index), created_unix)?;
    let archive_bytes = tar.position() + 2 * BLOCK_BYTES;
    let buffered = tar.finish().map_err(Error::Writing)?;
    buffered
        .into_inner()
        .map_err(|e| Error::Writing(e.into_error()))?;

    // Now the layers' headers, over their placeholders.
    for (header_at, layer) in &layers {
        let layer_path = blob_path(&layer.digest);
        let member = archive_member(&layer_path, EntryType::Regular, 0o644, 0, created_unix);
        let (mut header, pax) = header_for(&member);
        debug_assert!(pax.is_empty(), "a blob's name fits a ustar header");
        // Past 8 GiB this is GNU's base-256 size, which Go and GNU tar read; a
        // pax size would not fit the one block reserved.
        header.set_size(layer.bytes);
        header.set_cksum();
        out.seek(SeekFrom::Start(start + header_at))
            .and_then(|_| out.write_all(header.as_bytes()))
            .map_err(Error::Writing)?;
    }
    out.seek(SeekFrom::Start(start + archive_bytes))
        .and_then(|_| out.flush())
        .map_err(Error::Writing)?;
    let mut layers = layers.into_iter().map(|(_, l)| l);
    let layer = layers.next().expect("at least one layer");
    let extra_layers = layers.map(|l| (l.digest, l.bytes)).collect();

    Ok(Summary {
        manifest_digest,
        config_digest,
        layer_digest: layer.digest,
        layer_diff_id: layer.diff_id,
        layer_bytes: layer.bytes,
        layer_tar_bytes: layer.tar_bytes,
        extra_layers,
        archive_bytes,
        entries: layer.stats.entries,
        bytes_in: layer.stats.bytes_in,
        skipped_sockets: layer.stats.skipped_sockets,
        tag: opts.tag.clone(),
        architecture: opts.architecture.clone(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::NoProgress;
    use std::io::{Cursor, Read};

    fn tree() -> (tempfile::TempDir, DirTree) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/hostname"), b"box\n").unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 3 << 20]).unwrap();
        let tree = DirTree::scan(dir.path(), true, &[]).unwrap();
        (dir, tree)
    }

    fn archive(tree: &DirTree, jobs: usize) -> (Vec<u8>, Summary) {
        let opts = CreateOptions {
            mtime: Some(1_700_000_000),
            jobs,
            labels: BTreeMap::from([("org.example.k".into(), "v".into())]),
            ..CreateOptions::default()
        };
        let mut out = Cursor::new(Vec::new());
        let summary = create(tree, &mut out, &opts, &NoProgress).unwrap();
        (out.into_inner(), summary)
    }

    #[test]
    fn the_archive_is_a_layout_whose_blobs_match_their_names() {
        let (_dir, tree) = tree();
        let (bytes, summary) = archive(&tree, 2);
        assert_eq!(bytes.len() as u64, summary.archive_bytes);
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(&bytes[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            if let Some(hex) = name.strip_prefix("blobs/sha256/")
                && !hex.is_empty()
            {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                assert_eq!(Digest::of(&data).hex(), hex);
            }
            names.push(name);
        }
        let layer = format!("blobs/sha256/{}", summary.layer_digest.hex());
        assert_eq!(
            names[..4],
            ["oci-layout", "blobs/", "blobs/sha256/", layer.as_str()]
        );
        assert_eq!(names.last().unwrap(), "index.json");
        assert_eq!(names.len(), 7);
        assert_eq!(summary.entries, 3);
    }

    #[test]
    fn the_archive_is_the_same_whatever_the_number_of_threads() {
        let (_dir, tree) = tree();
        let (one, s1) = archive(&tree, 1);
        let (four, s4) = archive(&tree, 4);
        assert_eq!(s1.manifest_digest, s4.manifest_digest);
        assert!(one == four, "the archives differ");
    }

    #[test]
    fn bad_options_are_refused_before_any_work() {
        let bad = |opts: CreateOptions| opts.validate().unwrap_err().to_string();
        let arch = bad(CreateOptions {
            architecture: "x86_64".into(),
            ..CreateOptions::default()
        });
        assert!(arch.contains("unknown architecture 'x86_64'"), "{arch}");
        let tag = bad(CreateOptions {
            tag: "-bad".into(),
            ..CreateOptions::default()
        });
        assert!(tag.contains("tag '-bad'"), "{tag}");
    }
}
