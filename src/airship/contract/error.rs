//! What stops an airshipctl container build before it starts: an environment
//! variable, a builder configuration key, an input file or a key of the v2
//! document that is missing or wrong. Every variant names the variable, file
//! or key, because airshipctl shows the container's last line and nothing else.

use std::path::PathBuf;

use crate::airship::ImportError;
use crate::profile::ProfileError;

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// A variable the build needs is not set (nor its builder-conf.yaml key).
    #[error("{var} is not set{hint}")]
    MissingEnv { var: &'static str, hint: String },
    /// A variable has a value osforge cannot use.
    #[error("{var}={value}: {message}")]
    InvalidEnv {
        var: &'static str,
        value: String,
        message: String,
    },
    /// builder-conf.yaml is not YAML.
    #[error("BUILDER_CONFIG: {0}")]
    ParsingConf(#[source] ProfileError),
    /// builder-conf.yaml lacks a key or has a wrong value; `at` is `file:line`.
    #[error("BUILDER_CONFIG {at}: {key}: {message}")]
    InvalidConf {
        at: String,
        key: &'static str,
        message: String,
    },
    /// An input file (named by `what`: the variable or key) cannot be read.
    #[error("{what} {}: {source}", path.display())]
    ReadingInput {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file was read but is not what it should be.
    #[error("{what} {}: {message}", path.display())]
    InvalidInput {
        what: String,
        path: PathBuf,
        message: String,
    },
    /// The v2 document on stdin is not YAML.
    #[error("{0}")]
    ParsingDocument(#[source] ProfileError),
    /// A key of the v2 document on stdin is missing or has the wrong shape.
    #[error("stdin: {key}: {message}")]
    InvalidDocument { key: String, message: String },
    /// An osconfig or qcow vars file cannot be mapped (the import's checks).
    #[error("{0}")]
    Vars(#[from] ImportError),
}
