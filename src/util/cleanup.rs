//! Removal of half-written outputs when osforge is interrupted.
//!
//! Outputs are written to a temporary file beside their final path and renamed at
//! the end ([`super::output::AtomicOutput`]). Destructors do not run when SIGINT or
//! SIGTERM kills the process, so every temporary path is registered here and the
//! signal handler removes them before exiting with 128 + signal.
//!
//! QEMU (`osforge boot`, the boot tests) needs no entry here: it is started
//! with `PR_SET_PDEATHSIG` ([`crate::vm::run`]), so the kernel kills it when
//! this handler's `exit` ends osforge.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a signal is being handled: the handler is cleaning up and will
/// exit with 130, so an error the interruption caused elsewhere must not
/// end osforge first with another code.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

pub fn register(path: &Path) {
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_path_buf());
}

pub fn unregister(path: &Path) {
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = pending.iter().rposition(|p| p == path) {
        pending.swap_remove(i);
    }
}

/// Registers `path` for removal on interruption until dropped (the owner,
/// a `TempDir`, removes it on an ordinary exit).
pub struct Registered(PathBuf);

impl Registered {
    pub fn new(path: &Path) -> Registered {
        register(path);
        Registered(path.to_path_buf())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        unregister(&self.0);
    }
}

/// Removes every registered path now (files or directory trees).
pub fn remove_all() {
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    for path in pending {
        if path.is_dir() {
            remove_dir_all_retrying(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `remove_dir_all` that finishes the job when another thread removes parts
/// of the same tree at the same time (the build's own error path does, as
/// the interrupted stage fails): std gives up at the first entry that
/// vanished under it, so it is run again until the tree is gone.
pub fn remove_dir_all_retrying(path: &Path) {
    for _ in 0..20 {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return,
            Err(_) if std::fs::symlink_metadata(path).is_err() => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler. Safe to call more than once.
pub fn install_signal_handler() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        // Children first: a tar still unpacking would refill what is removed.
        super::process::kill_running();
        remove_all();
        eprintln!("osforge: interrupted; partial outputs removed");
        // 130 is what shells report for SIGINT; used for SIGTERM too since ctrlc
        // does not say which signal arrived.
        std::process::exit(130);
    });
}
