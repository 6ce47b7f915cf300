//! What can go wrong in the cache itself (as opposed to a stage's own work).

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A directory, lock file or entry record could not be read, created or locked.
    #[error("cache directory {}: {source}", path.display())]
    Access {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An entry or a leftover could not be deleted (it is already out of
    /// sight under a temporary name; a later `osforge cache prune` retries).
    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl CacheError {
    pub(crate) fn access(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
        move |source| CacheError::Access {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn remove(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
        move |source| CacheError::Remove {
            path: path.to_path_buf(),
            source,
        }
    }
}
