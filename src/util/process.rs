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

use std::process::{Child, ExitStatus, Output};
use std::sync::Mutex;

/// Children running now, so that the signal handler can stop them before
/// it removes the directories they write into.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Records a spawned child until [`untrack`].
pub fn track(child: &Child) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child.id());
}

pub fn untrack(child: &Child) {
    untrack_pid(child.id());
}

/// [`untrack`] for a child already consumed by `wait_with_output`.
pub fn untrack_pid(pid: u32) {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    running.retain(|p| *p != pid);
}

/// `cmd.output()`, tied to osforge and stoppable by the signal handler. As
/// with `output()`, stdin is not inherited (mke2fs would ask on a terminal).
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    // No new child once interrupted: it would refill what the handler removes.
    super::cleanup::checkpoint();
    use std::process::Stdio;
    let child = die_with_parent(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    track(&child);
    let pid = child.id();
    let result = child.wait_with_output();
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
    result
}

/// `cmd.status()`, tied to osforge and stoppable by the signal handler.
pub fn status(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    super::cleanup::checkpoint();
    let mut child = die_with_parent(cmd).spawn()?;
    track(&child);
    let result = child.wait();
    untrack(&child);
    result
}

/// SIGKILLs every tracked child and gives them a moment to be gone: called
/// by the signal handler before it removes temporaries.
pub fn kill_running() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in &running {
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    // A killed child stays a zombie until reaped, and its waiter thread
    // reaps it; /proc/PID/stat's state says when it stopped running.
    while std::time::Instant::now() < deadline
        && running.iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    let state = s.rsplit(')').next().unwrap_or("").trim_start();
                    !state.starts_with('Z')
                })
                .unwrap_or(false)
        })
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The last line of a tool's output that says something, trimmed: what an
/// error message quotes from its stderr.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}
