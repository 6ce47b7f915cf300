//! Child processes that die with osforge.
//!
//! The signal handler removes temporaries and exits ([`super::cleanup`]);
//! a child still running (tar unpacking, mmdebstrap, mke2fs) would go on
//! writing into a directory being removed, or hold the cache's files. With
//! `PR_SET_PDEATHSIG` the kernel kills the child when the thread that
//! started it ends, even when osforge itself is killed with SIGKILL.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd`'s process get SIGKILL when the calling thread exits.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory
    // of the parent.
    unsafe {
        cmd.pre_exec(move || {
            // If the parent died before this ran, give up now.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent
            {
                return Err(std::io::Error::other("the parent exited"));
            }
            Ok(())
        })
    }
}
