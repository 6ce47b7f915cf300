//! Building test trees: files, nodes, owners, times, xattrs and capabilities.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{SnapshotOptions, require_root, snapshot};

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

pub fn mknod(path: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string; mknod only creates a node.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o640, libc::makedev(major, minor)) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

pub fn set_mtime(path: &Path, t: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: t,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Sets every mtime under `root` (the root too) to `time(i, path)`, `i`
/// counting entries from the last in sorted order; children first, so
/// directories keep theirs.
pub fn set_mtimes(root: &Path, time: impl Fn(usize, &[u8]) -> i64) {
    let snap = snapshot(
        root,
        &SnapshotOptions {
            xattrs: false,
            contents: false,
        },
    );
    for (i, rel) in snap.keys().rev().enumerate() {
        let full = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(rel))
        };
        set_mtime(&full, time(i, rel));
    }
}

/// security.capability granting cap_net_raw=ep (VFS_CAP_REVISION_2).
pub fn net_raw_capability() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v
}

/// What every root filesystem may hold and writers get wrong, in `root`:
/// odd names (spaces, a newline, UTF-8, 255 bytes), empty and one-byte
/// files, text, one inode under three names, symlinks (relative, absolute,
/// dangling, a 1000-byte target), a fifo, a socket, devices, setuid, setgid
/// and sticky modes, other owners, xattrs (user., trusted., on a directory
/// and a symlink) and a file capability.
pub fn build_odd_entries(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let p = |rel: &str| root.join(rel);
    write(&p("name with spaces"), b"spaces\n");
    write(&p("new\nline"), b"newline in the name\n");
    write(&p("ünïcødé-名前-🦀"), "utf-8 name\n".as_bytes());
    write(
        &root.join(OsStr::from_bytes(&[b'n'; 255])),
        b"255-byte name\n",
    );
    write(&p("empty"), b"");
    write(&p("one-byte"), b"x");
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("line {i} of a compressible file\n").into_bytes())
        .collect();
    write(&p("text"), &text);
    fs::create_dir_all(p("sub/deeper")).unwrap();
    write(&p("hard-1"), b"one inode, three names\n");
    fs::hard_link(p("hard-1"), p("sub/hard-2")).unwrap();
    fs::hard_link(p("hard-1"), p("sub/deeper/hard-3")).unwrap();

    symlink("name with spaces", p("rel-link")).unwrap();
    symlink("/etc/passwd", p("abs-link")).unwrap();
    symlink("does/not/exist", p("dangling")).unwrap();
    symlink("t".repeat(1000), p("long-target")).unwrap();

    let fifo = std::ffi::CString::new(p("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    drop(std::os::unix::net::UnixListener::bind(p("socket")).unwrap());
    mknod(&p("null-like"), libc::S_IFCHR, 1, 3);
    mknod(&p("disk-like"), libc::S_IFBLK, 8, 0);
    mknod(&p("big-minor"), libc::S_IFCHR, 240, 70_000);

    write(&p("setuid"), b"#!/bin/sh\n");
    fs::set_permissions(p("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(p("setgid-dir")).unwrap();
    fs::set_permissions(p("setgid-dir"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir(p("sticky")).unwrap();
    fs::set_permissions(p("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    write(&p("owned"), b"owned by someone else\n");
    lchown(&p("owned"), 1234, 5678);
    lchown(&p("sticky"), 65534, 65534);
    lchown(&p("rel-link"), 42, 43);

    write(&p("with-xattrs"), b"xattrs\n");
    xattr::set(p("with-xattrs"), "user.comment", b"hello").unwrap();
    xattr::set(p("with-xattrs"), "trusted.overlay.opaque", b"y").unwrap();
    write(&p("ping"), b"\x7fELF pretend\n");
    xattr::set(p("ping"), "security.capability", &net_raw_capability()).unwrap();
    xattr::set(p("sub"), "user.dir-attr", &[0u8, 1, 2, 255]).unwrap();
    xattr::set(p("abs-link"), "trusted.on-a-symlink", b"link").unwrap();
}

/// A tree that the tests of one binary share: built on first use under the
/// target's temp dir as `name`, after removing what an earlier run left.
pub fn shared_tree(
    cell: &'static OnceLock<PathBuf>,
    name: &str,
    build: fn(&Path),
) -> &'static Path {
    cell.get_or_init(|| {
        require_root();
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = fs::remove_dir_all(&root);
        build(&root);
        root
    })
}
