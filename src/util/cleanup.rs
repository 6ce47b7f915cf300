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
/// Temporary paths being made and not yet registered ([`Creating`]).
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Marks the making of a temporary path, from before it is created until
/// it is registered: the signal handler runs on its own thread while the
/// build goes on, and waits for these before it exits, so that a folder
/// made just after the handler looked is not left behind (seen on a loaded
/// machine).
pub struct Creating(());

impl Creating {
    pub fn start() -> Creating {
        IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Creating(())
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Whether a signal is being handled: the handler is cleaning up and will
/// exit with 130, so an error the interruption caused elsewhere must not
/// end osforge first with another code.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Parks the calling thread for good once a signal is being handled: work
/// that goes on while the handler removes the temporaries would make new
/// files in them (a loaded machine showed it). Called between steps.
pub fn checkpoint() {
    if interrupted() {
        park_forever();
    }
}

/// Blocks the calling thread until the signal handler's `exit` ends osforge.
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

pub fn register(path: &Path) {
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.to_path_buf());
    if interrupted() {
        // The handler may have looked already: remove it here, and make no
        // more files in it while the handler finishes and exits.
        remove_all();
        park_forever();
    }
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

/// Removes every registered path now (files or directory trees). They stay
/// registered: the handler removes them again after the other threads had
/// time to stop at a [`checkpoint`].
pub fn remove_all() {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for path in pending {
        if path.is_dir() {
            remove_dir_all_retrying(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// `remove_dir_all` that finishes the job when other threads change the
/// same tree meanwhile: the build's error path removes parts of it, and a
/// thread not yet at its [`checkpoint`] may still add entries. std gives up
/// at the first entry that vanished or appeared under it, so it is run
/// again until the tree is gone, for up to a few seconds.
pub fn remove_dir_all_retrying(path: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return,
            Err(_) if std::fs::symlink_metadata(path).is_err() => return,
            Err(_) if std::time::Instant::now() >= deadline => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

/// A folder being removed on a thread of its own; dropping this waits until
/// it is gone. For scratch trees that are done with while the build goes on
/// (the disk's split trees: tens of thousands of hard links, a second or two
/// of unlinking that the qcow2 step overlaps). An interruption meanwhile is
/// safe: the handler's own removal and this one both retry until the tree is
/// gone, and this thread makes nothing.
pub struct BackgroundRemoval(Option<std::thread::JoinHandle<()>>);

impl BackgroundRemoval {
    pub fn start(path: PathBuf) -> BackgroundRemoval {
        let spawned = std::thread::Builder::new()
            .name("osforge-remove".into())
            .spawn({
                let path = path.clone();
                move || remove_dir_all_retrying(&path)
            });
        match spawned {
            Ok(handle) => BackgroundRemoval(Some(handle)),
            // No thread to be had: remove it here instead.
            Err(_) => {
                remove_dir_all_retrying(&path);
                BackgroundRemoval(None)
            }
        }
    }
}

impl Drop for BackgroundRemoval {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler. Safe to call more than once.
pub fn install_signal_handler() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        // Children first: a tar still unpacking would refill what is removed.
        // The other threads go on until their next checkpoint, registration
        // or child process: a few rounds remove what they made meanwhile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        for _ in 0..3 {
            super::process::kill_running();
            remove_all();
            while IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) > 0
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        super::process::kill_running();
        remove_all();
        eprintln!("osforge: interrupted; partial outputs removed");
        // 130 is what shells report for SIGINT; used for SIGTERM too since ctrlc
        // does not say which signal arrived.
        std::process::exit(130);
    });
}
