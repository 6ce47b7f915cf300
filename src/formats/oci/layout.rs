//! Reading an OCI image layout directory (as `skopeo copy ... oci:DIR:TAG`
//! writes it): choosing the image by tag and platform, and reading blobs
//! checked against their digests and sizes.
//!
//! Everything in a layout is input to distrust: JSON blobs are read only up
//! to a size limit, a digest must be sha256 hex (so it cannot name a path
//! outside `blobs/`), and image indexes nest only a few levels deep.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::Error;
use super::digest::{Digest, HashingReader};
use super::gzip::GzipReader;
use super::spec::{
    self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, ImageConfig, ImageLayout, Index,
    LayerCompression, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, Manifest,
};

/// Manifests, configs and indexes are small; a larger one is not one.
const JSON_LIMIT_BYTES: u64 = 4 << 20;
/// An index may point at an index (one per platform); deeper is hostile.
const MAX_INDEX_DEPTH: usize = 4;
const READ_BUFFER_BYTES: usize = 1 << 20;

/// An image in a layout directory: `DIR`, `DIR:TAG`, or either after `oci:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub dir: PathBuf,
    pub tag: Option<String>,
}

impl ImageRef {
    /// A `:` splits off the tag unless the whole text names a directory (a
    /// directory name may hold a colon).
    pub fn parse(text: &str) -> ImageRef {
        let text = text.strip_prefix("oci:").unwrap_or(text);
        if !Path::new(text).is_dir()
            && let Some((dir, tag)) = text.rsplit_once(':')
            && !dir.is_empty()
            && !tag.contains('/')
        {
            return ImageRef {
                dir: dir.into(),
                tag: Some(tag.into()),
            };
        }
        ImageRef {
            dir: text.into(),
            tag: None,
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{}:{tag}", self.dir.display()),
            None => write!(f, "{}", self.dir.display()),
        }
    }
}

/// One layer of the chosen image.
#[derive(Debug, Clone)]
pub(crate) struct LayerBlob {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    pub compression: LayerCompression,
    /// From the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// The image chosen in a layout.
pub(crate) struct Image {
    pub manifest_digest: Digest,
    pub layers: Vec<LayerBlob>,
}

pub(crate) struct Layout {
    dir: PathBuf,
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn platform_name(d: &Descriptor) -> String {
    match &d.platform {
        Some(p) => match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        },
        None => "unspecified".into(),
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_INDEX || media_type == DOCKER_MANIFEST_LIST
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Layout, Error> {
        let not_layout = |reason: String| Error::NotALayout {
            dir: dir.to_path_buf(),
            reason,
        };
        let marker = dir.join("oci-layout");
        let text = match std::fs::read(&marker) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
                return Err(not_layout("no such directory".into()));
            }
            Err(e) => return Err(not_layout(format!("cannot read oci-layout: {e}"))),
        };
        let layout: ImageLayout = parse_json(&marker, &text)?;
        if layout.version != spec::LAYOUT_VERSION {
            return Err(not_layout(format!(
                "imageLayoutVersion {} (expected {})",
                layout.version,
                spec::LAYOUT_VERSION
            )));
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    fn blob(&self, desc: &Descriptor) -> Result<(PathBuf, Digest), Error> {
        let digest = Digest::parse(&desc.digest).ok_or_else(|| Error::BadDigest {
            digest: desc.digest.clone(),
        })?;
        Ok((self.dir.join("blobs/sha256").join(digest.hex()), digest))
    }

    /// Reads a JSON blob, checked against its descriptor.
    fn read_json<T: DeserializeOwned>(
        &self,
        desc: &Descriptor,
        what: &'static str,
    ) -> Result<T, Error> {
        let (path, digest) = self.blob(desc)?;
        if desc.size > JSON_LIMIT_BYTES {
            return Err(Error::BlobTooLarge {
                path,
                what,
                limit_bytes: JSON_LIMIT_BYTES,
            });
        }
        let bytes = read_limited(&path, what)?;
        check_blob(
            &path,
            &digest,
            desc.size,
            Digest::of(&bytes),
            bytes.len() as u64,
        )?;
        parse_json(&path, &bytes)
    }

    /// Picks the image: by tag, or the only one; through indexes by platform.
    pub fn resolve(&self, tag: Option<&str>, architecture: &str) -> Result<Image, Error> {
        let index_path = self.dir.join("index.json");
        let text = read_limited(&index_path, "an image index")?;
        let index: Index = parse_json(&index_path, &text)?;
        let tags = || {
            list_or_none(
                index
                    .manifests
                    .iter()
                    .filter_map(|d| d.ref_name())
                    .map(String::from),
            )
        };
        let candidates: Vec<&Descriptor> = match tag {
            Some(tag) => index
                .manifests
                .iter()
                .filter(|d| d.ref_name() == Some(tag))
                .collect(),
            None => index.manifests.iter().collect(),
        };
        let mut chosen = match candidates[..] {
            [] => {
                return Err(Error::NoSuchTag {
                    dir: self.dir.clone(),
                    tag: tag.unwrap_or_default().into(),
                    available: tags(),
                });
            }
            [one] => one.clone(),
            // Several: one per platform (skopeo copy --all), or a choice
            // the user has to make.
            _ if candidates.iter().all(|d| d.platform.is_some()) => {
                self.pick_platform(&candidates, architecture)?
            }
            _ => {
                return Err(Error::AmbiguousImage {
                    dir: self.dir.clone(),
                    count: candidates.len(),
                    available: tags(),
                });
            }
        };
        for _ in 0..MAX_INDEX_DEPTH {
            if !is_index(&chosen.media_type) {
                break;
            }
            let nested: Index = self.read_json(&chosen, "an image index")?;
            let all: Vec<&Descriptor> = nested.manifests.iter().collect();
            chosen = self.pick_platform(&all, architecture)?;
        }
        let (path, manifest_digest) = self.blob(&chosen)?;
        if chosen.media_type != MEDIA_TYPE_MANIFEST && chosen.media_type != DOCKER_MANIFEST {
            return Err(Error::UnsupportedMediaType {
                path,
                media_type: chosen.media_type.clone(),
            });
        }
        let manifest: Manifest = self.read_json(&chosen, "a manifest")?;
        let config: ImageConfig = self.read_json(&manifest.config, "an image config")?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::DiffIdCount {
                path: self.blob(&manifest.config)?.0,
                layers: manifest.layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let (path, digest) = self.blob(desc)?;
            let compression = spec::layer_compression(&desc.media_type).ok_or_else(|| {
                Error::UnsupportedMediaType {
                    path: path.clone(),
                    media_type: desc.media_type.clone(),
                }
            })?;
            let diff_id = Digest::parse(diff_id).ok_or_else(|| Error::BadDigest {
                digest: diff_id.clone(),
            })?;
            layers.push(LayerBlob {
                path,
                digest,
                size: desc.size,
                compression,
                diff_id,
            });
        }
        Ok(Image {
            manifest_digest,
            layers,
        })
    }

    fn pick_platform(
        &self,
        manifests: &[&Descriptor],
        architecture: &str,
    ) -> Result<Descriptor, Error> {
        manifests
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.architecture == architecture && p.os == "linux")
            })
            .map(|d| (*d).clone())
            .ok_or_else(|| Error::NoMatchingPlatform {
                dir: self.dir.clone(),
                architecture: architecture.into(),
                available: list_or_none(manifests.iter().map(|d| platform_name(d))),
            })
    }
}

/// Reads a JSON document, refusing one larger than any real one.
fn read_limited(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    let reading = |source| Error::ReadingBlob {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(reading)?
        .take(JSON_LIMIT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(reading)?;
    if bytes.len() as u64 > JSON_LIMIT_BYTES {
        return Err(Error::BlobTooLarge {
            path: path.to_path_buf(),
            what,
            limit_bytes: JSON_LIMIT_BYTES,
        });
    }
    Ok(bytes)
}

fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadJson {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Compares what was read with what the descriptor promised.
fn check_blob(
    path: &Path,
    expected: &Digest,
    expected_bytes: u64,
    actual: Digest,
    actual_bytes: u64,
) -> Result<(), Error> {
    if actual != *expected {
        return Err(Error::DigestMismatch {
            path: path.to_path_buf(),
            actual,
        });
    }
    if actual_bytes != expected_bytes {
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            expected_bytes,
            actual_bytes,
        });
    }
    Ok(())
}

type Blob = BufReader<HashingReader<File>>;

enum Decompress {
    None(Blob),
    Gzip(GzipReader<Blob>),
    Zstd(zstd::stream::read::Decoder<'static, Blob>),
}

impl Read for Decompress {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompress::None(r) => r.read(buf),
            Decompress::Gzip(r) => r.read(buf),
            Decompress::Zstd(r) => r.read(buf),
        }
    }
}

impl Decompress {
    fn into_blob(self) -> Blob {
        match self {
            Decompress::None(r) => r,
            Decompress::Gzip(r) => r.into_inner(),
            Decompress::Zstd(r) => r.finish(),
        }
    }
}

/// A layer's tar stream, decompressed; [`LayerReader::finish`] checks the
/// blob's digest and size and the uncompressed stream's diff_id.
pub(crate) struct LayerReader {
    inner: HashingReader<Decompress>,
    layer: LayerBlob,
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl LayerReader {
    pub fn open(layer: &LayerBlob) -> Result<LayerReader, Error> {
        let file = File::open(&layer.path).map_err(|source| Error::ReadingBlob {
            path: layer.path.clone(),
            source,
        })?;
        let blob = BufReader::with_capacity(READ_BUFFER_BYTES, HashingReader::new(file));
        let decompress = match layer.compression {
            LayerCompression::None => Decompress::None(blob),
            LayerCompression::Gzip => Decompress::Gzip(GzipReader::new(blob)),
            LayerCompression::Zstd => {
                Decompress::Zstd(zstd::stream::read::Decoder::with_buffer(blob).map_err(
                    |source| Error::BadLayer {
                        path: layer.path.clone(),
                        source,
                    },
                )?)
            }
        };
        Ok(LayerReader {
            inner: HashingReader::new(decompress),
            layer: layer.clone(),
        })
    }

    /// Reads what is left and checks the digests.
    pub fn finish(self) -> Result<(), Error> {
        let layer = self.layer;
        let (decompress, diff_id, _) = self.inner.finish().map_err(|e| explain(&layer, e))?;
        let (_, digest, bytes) =
            decompress
                .into_blob()
                .into_inner()
                .finish()
                .map_err(|source| Error::ReadingBlob {
                    path: layer.path.clone(),
                    source,
                })?;
        check_blob(&layer.path, &layer.digest, layer.size, digest, bytes)?;
        if diff_id != layer.diff_id {
            return Err(Error::DiffIdMismatch {
                path: layer.path.clone(),
                expected: layer.diff_id.to_string(),
                actual: diff_id,
            });
        }
        Ok(())
    }
}

/// The error to report when reading a layer's tar stream failed: a digest
/// mismatch when the blob has changed (the usual cause of a corrupt
/// stream), else the reading error.
pub(crate) fn explain(layer: &LayerBlob, source: io::Error) -> Error {
    verify_file(layer).err().unwrap_or(Error::BadLayer {
        path: layer.path.clone(),
        source,
    })
}

/// Hashes a layer's file on its own.
fn verify_file(layer: &LayerBlob) -> Result<(), Error> {
    let reading = |source| Error::ReadingBlob {
        path: layer.path.clone(),
        source,
    };
    let file = File::open(&layer.path).map_err(reading)?;
    let (_, digest, bytes) = HashingReader::new(file).finish().map_err(reading)?;
    check_blob(&layer.path, &layer.digest, layer.size, digest, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_off_a_tag_unless_the_directory_has_the_colon() {
        let dir = tempfile::tempdir().unwrap();
        let with_colon = dir.path().join("a:b");
        std::fs::create_dir(&with_colon).unwrap();
        let text = with_colon.to_str().unwrap();
        assert_eq!(ImageRef::parse(text).tag, None);
        assert_eq!(
            ImageRef::parse(&format!("oci:{text}:v1")),
            ImageRef {
                dir: with_colon.clone(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(ImageRef::parse("img").tag, None);
        assert_eq!(ImageRef::parse("img:latest").dir, PathBuf::from("img"));
    }
}
