//! On-disk formats osforge writes itself. Each module is a library that knows
//! nothing of profiles or the pipeline and writes to a file or `Write + Seek`.

pub mod dirtree;
pub mod ext4;
pub mod fat;
pub mod gpt;
pub mod incompressible;
pub mod iso;
pub mod oci;
pub mod pe;
pub mod qcow2;
pub mod squashfs;
pub mod swap;

/// Receives progress from long-running writers (bytes of input consumed).
pub trait Progress: Send + Sync {
    fn advance(&self, bytes: u64);
    /// The total, once known (an image's size is known only after planning).
    fn set_total(&self, _bytes: u64) {}
}

/// For callers that do not show progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}
