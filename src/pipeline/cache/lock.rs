//! The per-key lock files, beside the entries in each stage directory.
//!
//! - `.<key>.lock` is held exclusively while a build looks the key up and, on
//!   a miss, builds it ([`super::Cache::lock`]): a second osforge building the
//!   same stage waits, then finds the entry made by the first.
//! - `.<key>.use` is held shared by every build that got the entry, until the
//!   build ends: later stages read their inputs' entries long after the key
//!   lock is released (squashfs reads the configured rootfs), and a shared
//!   lock lets two builds use one entry at the same time.
//!
//! `osforge cache prune` and `clear` take both exclusively without waiting,
//! so they skip whatever a build holds, and unlink them (while still holding
//! them) once the entry is gone. A waiter may then win the lock on the
//! unlinked file, which no later osforge can see; so every lock is checked
//! against the file at the path and taken again when they differ.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::CacheError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockFile {
    /// `.<key>.lock`: building.
    Build,
    /// `.<key>.use`: using.
    Use,
}

impl LockFile {
    pub(super) const ALL: [LockFile; 2] = [LockFile::Build, LockFile::Use];

    pub(super) fn suffix(self) -> &'static str {
        match self {
            LockFile::Build => "lock",
            LockFile::Use => "use",
        }
    }

    pub(super) fn path(self, stage_dir: &Path, key: &str) -> PathBuf {
        stage_dir.join(format!(".{key}.{}", self.suffix()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Exclusive,
    Shared,
}

/// A held flock(2) lock; released when dropped.
#[derive(Debug)]
pub(super) struct Flock {
    _file: fs::File,
    path: PathBuf,
}

/// Locks `path` (creating it), waiting as long as it is held elsewhere.
pub(super) fn acquire(path: &Path, mode: Mode) -> Result<Flock, CacheError> {
    take(path, mode, true).map(|lock| lock.expect("a waiting flock returns locked"))
}

/// Locks `path` (creating it) if no one else holds it.
pub(super) fn try_acquire(path: &Path, mode: Mode) -> Result<Option<Flock>, CacheError> {
    take(path, mode, false)
}

fn take(path: &Path, mode: Mode, wait: bool) -> Result<Option<Flock>, CacheError> {
    let mut op = match mode {
        Mode::Exclusive => libc::LOCK_EX,
        Mode::Shared => libc::LOCK_SH,
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    loop {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(CacheError::access(path))?;
        match flock(&file, op) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CacheError::access(path)(e)),
        }
        let held = file.metadata().map_err(CacheError::access(path))?;
        match fs::metadata(path) {
            Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => {
                return Ok(Some(Flock {
                    _file: file,
                    path: path.to_path_buf(),
                }));
            }
            // Unlinked (or replaced) by a remover while we waited: lock the
            // file that is there now.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CacheError::access(path)(e)),
        }
    }
}

/// Whether someone holds `path` (shared or exclusive), without creating it
/// and without keeping a lock: for listings.
pub(super) fn is_held(path: &Path) -> bool {
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    matches!(
        flock(&file, libc::LOCK_EX | libc::LOCK_NB),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

impl Flock {
    /// Deletes the lock file while still holding it (see the module comment),
    /// then releases it.
    pub(super) fn unlink(self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn flock(file: &fs::File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor we own; the lock goes when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
