//! Rootless builds: an unprivileged `osforge build` runs itself again as root
//! of a user namespace that maps the caller to uid 0 and the caller's
//! subordinate ids (/etc/subuid, /etc/subgid) to 1..N, as mkosi and podman do.
//!
//! Inside, every step sees a root filesystem with its real owners: tar
//! restores them, chroot and the working container's mounts are allowed
//! (their namespaces belong to ours), mmdebstrap's unshare mode only has to
//! unshare the mount namespace, and mke2fs and the squashfs writer read the
//! owners the image needs. What a user namespace cannot do is create device
//! nodes; the tree is unpacked without them (see [`device_nodes`]): /dev is a
//! devtmpfs on every booted system, and the working container binds its own.
//! Files left in the cache belong to the subordinate ids outside, which is
//! why `osforge cache` enters the namespace too.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Set in the re-executed process, so it never tries again.
const MARK: &str = "OSFORGE_USERNS";

/// Debian's system accounts run up to 65534 (nobody): the namespace needs
/// that many ids besides root.
const MIN_IDS: u64 = 65536;

/// A range of subordinate ids: the first outer id and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u64,
    pub count: u64,
}

/// Runs the current command again inside a user namespace when this process
/// is not root; returns only when nothing needs to be done (already root, or
/// already inside), otherwise execs or fails.
pub fn enter_if_unprivileged() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 || std::env::var_os(MARK).is_some() {
        return Ok(());
    }
    let user = user_name(euid)?;
    let uids = subordinate_range(Path::new("/etc/subuid"), &user, euid)?;
    // SAFETY: getegid has no preconditions.
    let gids = subordinate_range(Path::new("/etc/subgid"), &user, unsafe { libc::getegid() })?;
    let exe = std::env::current_exe().context("cannot find osforge's own executable")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new("unshare");
    cmd.arg("--map-root-user")
        .arg(format!("--map-users={},1,{}", uids.start, uids.count))
        .arg(format!("--map-groups={},1,{}", gids.start, gids.count))
        .arg("--")
        .arg(exe)
        .args(args)
        .env(MARK, "1");
    let err = cmd.exec();
    bail!(
        "cannot enter a user namespace for a rootless build (unshare --map-users, from util-linux, with newuidmap from uidmap): {err}"
    )
}

fn user_name(uid: u32) -> anyhow::Result<String> {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name
    // is copied out before any other call can reuse it.
    let name = unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    name.with_context(|| format!("uid {uid} has no entry in the user database"))
}

/// The caller's first range in /etc/subuid or /etc/subgid (lines
/// `name-or-id:start:count`), with the fix spelled out when there is none.
pub fn subordinate_range(file: &Path, user: &str, id: u32) -> anyhow::Result<IdRange> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let range = parse_subordinate(&text, user, id);
    let fix = format!(
        "as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user} (or run osforge as root)"
    );
    match range {
        Some(r) if r.count >= MIN_IDS => Ok(r),
        Some(r) => bail!(
            "{}: {user}'s range has {} ids, a rootless build needs at least {MIN_IDS}; {fix}",
            file.display(),
            r.count
        ),
        None => bail!(
            "{}: no subordinate ids for {user}, which a rootless build needs; {fix}",
            file.display()
        ),
    }
}

fn parse_subordinate(text: &str, user: &str, id: u32) -> Option<IdRange> {
    text.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
        if owner != user && owner != id.to_string() {
            return None;
        }
        Some(IdRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    })
}

/// The device nodes in a tar archive: a user namespace cannot create them, so
/// they are left out when unpacking there.
pub fn device_nodes(tar_path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let file =
        std::fs::File::open(tar_path).with_context(|| format!("opening {}", tar_path.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut nodes = Vec::new();
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", tar_path.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", tar_path.display()))?;
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            nodes.push(entry.path_bytes().into_owned());
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_range_by_name_or_uid() {
        let text = "alice:100000:65536\n1002:300000:65536\nbob:200000:1000\n";
        assert_eq!(
            parse_subordinate(text, "alice", 1001),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subordinate(text, "carol", 1002).unwrap().start,
            300000
        );
        assert_eq!(parse_subordinate(text, "dave", 1003), None);
    }

    #[test]
    fn a_missing_or_short_range_says_how_to_add_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        std::fs::write(&file, "bob:200000:1000\n").unwrap();
        let short = subordinate_range(&file, "bob", 1000)
            .unwrap_err()
            .to_string();
        assert!(short.contains("has 1000 ids") && short.contains("usermod --add-subuids"));
        let none = subordinate_range(&file, "eve", 1001)
            .unwrap_err()
            .to_string();
        assert!(none.contains("no subordinate ids for eve"), "{none}");
    }
}
