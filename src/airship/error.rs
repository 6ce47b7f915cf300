//! What can stop an import: an Airship file that cannot be read or is not
//! what Airship itself would accept, or an output that cannot be written.
//!
//! Keys osforge has no equivalent for are not errors: they are
//! [`super::Unmapped`] entries, and the import goes on.

use std::path::PathBuf;

use crate::profile::{KeyPath, ProfileError, SourceLocation};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The directory holds no Airship layout osforge recognises.
    #[error(
        "{}: no Airship manifests here (expected qcow-bundle*/<image>/qcow-vars.yaml, or <image>/qcow-vars.yaml in a qcow-bundle folder)",
        dir.display()
    )]
    NoManifests { dir: PathBuf },
    /// A file or directory of the tree could not be read.
    #[error("{}: {source}", path.display())]
    ReadingFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML (or JSON, for network_data.json).
    #[error("{0}")]
    ParsingYaml(#[from] ProfileError),
    /// A key has a value Airship would not take either (a wrong type, a size
    /// like `12XB`, a path that is not absolute).
    #[error("{at}: {}{message}", key_prefix(key))]
    InvalidValue {
        at: SourceLocation,
        key: KeyPath,
        message: String,
    },
    /// Two images would get the same profile, or an image's name would hide
    /// a profile the imported ones inherit.
    #[error("{}: {message}", path.display())]
    NameClash { path: PathBuf, message: String },
    /// An output file could not be written.
    #[error("writing {}: {source}", path.display())]
    WritingProfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn key_prefix(key: &KeyPath) -> String {
    if key.is_root() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ImportError {
    /// Whether the error is the user's input being wrong (exit 2) rather than
    /// osforge failing to write its output (exit 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ImportError::WritingProfile { .. })
    }
}
