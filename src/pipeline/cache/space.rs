//! A stage that fills the disk says where, how much was free, and how much
//! the stage needs, instead of the bare "No space left on device" of
//! whichever tool hit it first.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::util::size::human_bytes;

/// Whether the error chain says the disk was full: an ENOSPC anywhere, or the
/// message a child tool (tar, mmdebstrap, mke2fs) printed for it.
pub(crate) fn is_disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(libc::ENOSPC)
            || cause.to_string().contains("No space left on device")
    })
}

/// Bytes an unprivileged writer can still use on the filesystem of `path`.
pub(super) fn free_bytes(path: &Path) -> Option<u64> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The message for a stage that ran out of space in `dir`: what it had
/// written when it failed, what is free, and (when an earlier entry of the
/// same stage exists) what a whole entry takes.
pub(super) fn disk_full_message(
    stage: &str,
    dir: &Path,
    written: u64,
    last_entry: Option<u64>,
) -> String {
    let free = free_bytes(dir).map_or("unknown".into(), human_bytes);
    let needed = match last_entry {
        Some(size) => format!(
            "a {stage} entry takes about {} (the last one built)",
            human_bytes(size.max(written))
        ),
        None => format!(
            "it needs more than the {} it had written",
            human_bytes(written)
        ),
    };
    format!(
        "no space left on device for the {stage} stage in {}: {free} free, {needed}; free some space (osforge cache prune) or use --cache-dir on a larger filesystem",
        dir.display()
    )
}

/// An artifact that filled the output folder's disk: the error says so with
/// the folder, what is free and what the artifact needs at least (`needed`:
/// what the caller knows, e.g. "the live ISO needs more than its
/// squashfs's 187.5 MiB"), instead of a writer's bare ENOSPC.
pub(crate) fn output_full(err: anyhow::Error, dir: &Path, needed: Option<String>) -> anyhow::Error {
    if !is_disk_full(&err) {
        return err;
    }
    let free = free_bytes(dir).map_or("unknown".into(), human_bytes);
    let needed = needed.map_or(String::new(), |n| format!(", {n}"));
    err.context(format!(
        "no space left on device for the images in {}: {free} free{needed}; free some space or use --output on a larger filesystem",
        dir.display()
    ))
}
