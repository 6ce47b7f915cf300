//! OCI images (image-spec v1.1): a directory tree written as a single-layer
//! image in an oci-archive, and an image layout's layers flattened into one
//! tar stream of the root filesystem.
//!
//! osforge writes the archive itself so that the image of a root filesystem
//! is reproducible (sorted entries, clamped mtimes, a gzip stream that is the
//! same whatever the number of threads) and keeps everything a root
//! filesystem needs (numeric owners, hard links, devices, xattrs with
//! `security.capability`), in the oci-archive form that `skopeo` and
//! `podman load` read and any registry takes. Flattening is the way back: a
//! pulled image as one tar, with whiteouts applied, read without root and
//! without writing to disk.
//!
//! Writing ([`create`]) streams the layer into the output and rewinds once to
//! fill in its tar header, so the layer is never held in memory nor copied:
//! ```text
//!  oci-layout | blobs/ | blobs/sha256/ | <layer header, written last>
//!  | layer blob (tar+gzip, hashed as it streams: digest and diff_id)
//!  | config blob | manifest blob | index.json | end of archive
//! ```
//!
//! Flattening ([`flatten`]) reads every layer twice: first to decide which
//! member of which layer survives (applying the layers bottom-up, as a
//! runtime does), then to copy the survivors in layer order, so that
//! hard-link targets precede their links. Blobs are checked against their
//! digests on both passes, and nothing is written before the first pass has
//! accepted every layer.

mod archive;
mod digest;
mod flatten;
mod gzip;
mod index;
mod layer;
mod layout;
mod names;
mod spec;
mod tar_out;

use std::io;
use std::path::PathBuf;

pub use archive::{CreateOptions, Summary, create, create_layers};
pub use digest::Digest;
pub use flatten::{FlattenSummary, flatten};
pub use index::{IndexSummary, merge_archives};
pub use layout::ImageRef;
pub use spec::{ARCHITECTURES, host_architecture, platform_of_debian_arch};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}", path.display())]
    ReadingSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: the file changed while it was read ({expected_bytes} bytes expected)", path.display())]
    SourceChanged { path: PathBuf, expected_bytes: u64 },
    #[error("writing the archive failed")]
    Writing(#[source] io::Error),
    #[error("the compression workers stopped unexpectedly")]
    PipelineStopped,
    #[error("gzip level {level} is out of range (expected 1..=9)")]
    BadLevel { level: u32 },
    #[error("unknown architecture '{architecture}' (expected one of {})", ARCHITECTURES.join(", "))]
    UnknownArchitecture { architecture: String },
    #[error(
        "tag '{tag}' is not valid (letters, digits, '_', '.' and '-', at most 128, not starting with '.' or '-')"
    )]
    BadTag { tag: String },
    #[error("label '{key}': a label key must not be empty")]
    BadLabel { key: String },

    #[error("{}: not an OCI image layout: {reason}", dir.display())]
    NotALayout { dir: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    BadJson { path: PathBuf, reason: String },
    #[error("{}: no image tagged '{tag}' (tags: {available})", dir.display())]
    NoSuchTag {
        dir: PathBuf,
        tag: String,
        available: String,
    },
    #[error("{}: holds {count} images; name one as {}:TAG (tags: {available})", dir.display(), dir.display())]
    AmbiguousImage {
        dir: PathBuf,
        count: usize,
        available: String,
    },
    #[error("{}: no image for linux/{architecture} (platforms: {available})", dir.display())]
    NoMatchingPlatform {
        dir: PathBuf,
        architecture: String,
        available: String,
    },
    #[error("'{digest}' is not a sha256 digest")]
    BadDigest { digest: String },
    #[error("blob {}: cannot read it", path.display())]
    ReadingBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {}: its content hashes to {actual}, not to its name", path.display())]
    DigestMismatch { path: PathBuf, actual: Digest },
    #[error("blob {}: {actual_bytes} bytes, but its descriptor says {expected_bytes}", path.display())]
    SizeMismatch {
        path: PathBuf,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    #[error("blob {}: {what} larger than {limit_bytes} bytes", path.display())]
    BlobTooLarge {
        path: PathBuf,
        what: &'static str,
        limit_bytes: u64,
    },
    #[error("blob {}: unsupported media type '{media_type}'", path.display())]
    UnsupportedMediaType { path: PathBuf, media_type: String },
    #[error("{}: the image has {layers} layers but its config lists {diff_ids} diff_ids", path.display())]
    DiffIdCount {
        path: PathBuf,
        layers: usize,
        diff_ids: usize,
    },
    #[error("layer {}: uncompressed it hashes to {actual}, but the config's diff_id is {expected}", path.display())]
    DiffIdMismatch {
        path: PathBuf,
        expected: String,
        actual: Digest,
    },
    #[error("layer {}: not a readable tar stream", path.display())]
    BadLayer {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {}: entry '{}': {reason}", layer.display(), String::from_utf8_lossy(name))]
    HostileEntry {
        layer: PathBuf,
        name: Vec<u8>,
        reason: String,
    },
    #[error("layer {}: entry '{}': {reason}", layer.display(), String::from_utf8_lossy(name))]
    UnsupportedEntry {
        layer: PathBuf,
        name: Vec<u8>,
        reason: String,
    },
    #[error("writing the tar stream failed")]
    WritingTar(#[source] io::Error),
}

impl Error {
    /// True when the input (the source tree's path, an option, the image
    /// layout and its blobs) is what is wrong, not the machine or osforge.
    pub fn is_bad_input(&self) -> bool {
        match self {
            // A blob the layout names but does not have is the layout's fault.
            Error::ReadingBlob { source, .. } => source.kind() == io::ErrorKind::NotFound,
            Error::ReadingSource { .. }
            | Error::SourceChanged { .. }
            | Error::Writing(_)
            | Error::PipelineStopped
            | Error::WritingTar(_) => false,
            _ => true,
        }
    }
}
