//! Outputs that appear whole or not at all.
//!
//! A failed or interrupted build must never leave a half-written artifact at the
//! output path: writers get a temporary file in the destination's directory (same
//! filesystem, so the final rename is atomic), and only [`AtomicOutput::commit`]
//! moves it into place.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::cleanup;

pub struct AtomicOutput {
    file: Option<File>,
    temp_path: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

impl AtomicOutput {
    /// Creates `.<name>.osforge-tmp-<random>` next to `final_path`.
    pub fn create(final_path: &Path) -> io::Result<Self> {
        let dir = match final_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = final_path.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
        })?;
        let prefix = format!(".{}.osforge-tmp-", name.to_string_lossy());
        let creating = cleanup::Creating::start();
        let temp = tempfile::Builder::new().prefix(&prefix).tempfile_in(&dir)?;
        let (file, temp_path) = temp.keep().map_err(|e| e.error)?;
        cleanup::register(&temp_path);
        drop(creating);
        Ok(AtomicOutput {
            file: Some(file),
            temp_path,
            final_path: final_path.to_path_buf(),
            committed: false,
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes to disk and renames into place. The file is made readable by all
    /// (tempfile creates it 0600), as an image written by mkfs tools would be.
    pub fn commit(mut self) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.file.take().expect("file is present until commit");
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temp_path, &self.final_path)?;
        cleanup::unregister(&self.temp_path);
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = std::fs::remove_file(&self.temp_path);
            cleanup::unregister(&self.temp_path);
        }
    }
}
