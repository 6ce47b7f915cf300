//! A directory tree as the writers that store one read it (squashfs images,
//! OCI layers): scanned first (names, lstat, xattrs; no data), so the caller
//! knows the total size for a progress bar, then handed over in one
//! deterministic order.
//!
//! The order is depth first with each directory's names sorted bytewise, a
//! directory's own entry before its contents (as mksquashfs and `tar
//! --sort=name` read them). A file with several names is a file under the
//! first name met in that order and a hard link to it under the others, so
//! the target always precedes its links.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Extended attributes: full names (`security.capability`) and values.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Attributes of one entry as the source has them.
#[derive(Debug, Clone, Default)]
pub struct EntryMeta {
    /// st_mode; the writers use the permission bits (07777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    pub xattrs: Xattrs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Block,
    Char,
}

#[derive(Debug, Clone)]
pub enum EntryKind {
    Directory,
    File {
        size: u64,
    },
    Symlink(Vec<u8>),
    Device {
        kind: DeviceKind,
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
    /// A further name of an inode already scanned under this path.
    HardLink(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the root; empty for the root itself.
    pub path: Vec<u8>,
    pub meta: EntryMeta,
    pub kind: EntryKind,
}

/// A scanned tree: the root first, then everything below it in scan order.
pub struct DirTree {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
    /// Bytes of regular-file data (each hard-linked file once).
    pub total_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct ScanError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn scan_err(path: &Path, source: io::Error) -> ScanError {
    ScanError {
        path: path.to_path_buf(),
        source,
    }
}

fn meta_of(md: &std::fs::Metadata) -> EntryMeta {
    EntryMeta {
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        xattrs: Vec::new(),
    }
}

/// The xattrs of `path` itself (not of a symlink's target), sorted by name
/// so that what is written from them does not depend on listing order.
pub fn read_xattrs(path: &Path) -> Result<Xattrs, ScanError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        // The filesystem has no xattrs at all.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(scan_err(path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        // xattr::get does not follow symlinks (lgetxattr).
        if let Some(value) = xattr::get(path, &name).map_err(|e| scan_err(path, e))? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

impl DirTree {
    /// Walks `root` without following symlinks, leaving out every path under
    /// one of the `excluded` prefixes (relative, e.g. `boot/` keeps the
    /// directory but not its contents). `with_xattrs: false` skips reading
    /// them (faster when they will not be stored).
    pub fn scan(root: &Path, with_xattrs: bool, excluded: &[&[u8]]) -> Result<DirTree, ScanError> {
        let md = std::fs::symlink_metadata(root).map_err(|e| scan_err(root, e))?;
        if !md.is_dir() {
            return Err(scan_err(root, io::Error::other("not a directory")));
        }
        let mut root_meta = meta_of(&md);
        if with_xattrs {
            root_meta.xattrs = read_xattrs(root)?;
        }
        let mut entries = vec![Entry {
            path: Vec::new(),
            meta: root_meta,
            kind: EntryKind::Directory,
        }];
        let mut total_bytes = 0;
        let mut first_names: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let list = |dir_rel: &[u8]| -> Result<Vec<Vec<u8>>, ScanError> {
            let dir_path = root.join(OsStr::from_bytes(dir_rel));
            let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir_path)
                .map_err(|e| scan_err(&dir_path, e))?
                .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
                .collect::<Result<_, _>>()
                .map_err(|e| scan_err(&dir_path, e))?;
            names.sort();
            Ok(names)
        };
        // An explicit stack of (directory, sorted names, next index) keeps
        // deep trees off the call stack.
        let mut stack: Vec<(Vec<u8>, Vec<Vec<u8>>, usize)> = vec![(Vec::new(), list(b"")?, 0)];
        while let Some((dir_rel, names, next)) = stack.last_mut() {
            let Some(name) = names.get(*next) else {
                stack.pop();
                continue;
            };
            *next += 1;
            let rel = if dir_rel.is_empty() {
                name.clone()
            } else {
                [&dir_rel[..], b"/", name].concat()
            };
            if excluded.iter().any(|prefix| rel.starts_with(prefix)) {
                continue;
            }
            let full = root.join(OsStr::from_bytes(&rel));
            let md = std::fs::symlink_metadata(&full).map_err(|e| scan_err(&full, e))?;
            let mut meta = meta_of(&md);
            if with_xattrs {
                meta.xattrs = read_xattrs(&full)?;
            }
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                EntryKind::Directory
            } else if md.nlink() > 1
                && let Some(first) = first_names.get(&(md.dev(), md.ino()))
            {
                EntryKind::HardLink(first.clone())
            } else {
                if md.nlink() > 1 {
                    first_names.insert((md.dev(), md.ino()), rel.clone());
                }
                if ft.is_file() {
                    total_bytes += md.len();
                    EntryKind::File { size: md.len() }
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&full).map_err(|e| scan_err(&full, e))?;
                    EntryKind::Symlink(target.as_os_str().as_bytes().to_vec())
                } else if ft.is_block_device() || ft.is_char_device() {
                    let rdev = md.rdev();
                    let kind = if ft.is_block_device() {
                        DeviceKind::Block
                    } else {
                        DeviceKind::Char
                    };
                    EntryKind::Device {
                        kind,
                        major: libc::major(rdev),
                        minor: libc::minor(rdev),
                    }
                } else if ft.is_fifo() {
                    EntryKind::Fifo
                } else {
                    EntryKind::Socket
                }
            };
            let is_dir = matches!(kind, EntryKind::Directory);
            entries.push(Entry {
                path: rel.clone(),
                meta,
                kind,
            });
            if is_dir {
                let children = list(&rel)?;
                stack.push((rel, children, 0));
            }
        }
        Ok(DirTree {
            root: root.to_path_buf(),
            entries,
            total_bytes,
        })
    }

    /// Where an entry's data is on the host.
    pub fn host_path(&self, entry: &Entry) -> PathBuf {
        self.root.join(OsStr::from_bytes(&entry.path))
    }

    /// Splits the tree in two, for two image layers: what is under one of
    /// `prefixes` (relative directories, `etc`, `var/lib`), with the
    /// directories above them, and the rest, where those directories stay
    /// empty. Either part is a whole tree: a hard link whose first name is
    /// in the other part becomes the file itself.
    pub fn split_off(self, prefixes: &[&[u8]]) -> (DirTree, DirTree) {
        let under = |path: &[u8]| {
            prefixes.iter().any(|p| {
                path.strip_prefix(*p)
                    .is_some_and(|rest| rest.first() == Some(&b'/'))
            })
        };
        let leads_to = |path: &[u8]| {
            path.is_empty()
                || prefixes.iter().any(|p| {
                    *p == path
                        || p.strip_prefix(path)
                            .is_some_and(|rest| rest.first() == Some(&b'/'))
                })
        };
        let sizes: std::collections::HashMap<Vec<u8>, u64> = self
            .entries
            .iter()
            .filter_map(|e| match e.kind {
                EntryKind::File { size } => Some((e.path.clone(), size)),
                _ => None,
            })
            .collect();
        let (mut rest, mut part) = (Vec::new(), Vec::new());
        for entry in self.entries {
            if under(&entry.path) {
                part.push(entry);
            } else if leads_to(&entry.path) {
                part.push(entry.clone());
                rest.push(entry);
            } else {
                rest.push(entry);
            }
        }
        let whole = |entries: Vec<Entry>| {
            let mut first_names: std::collections::HashMap<Vec<u8>, Vec<u8>> =
                std::collections::HashMap::new();
            let present: std::collections::HashSet<Vec<u8>> =
                entries.iter().map(|e| e.path.clone()).collect();
            let mut total_bytes = 0;
            let entries = entries
                .into_iter()
                .map(|mut e| {
                    if let EntryKind::HardLink(target) = &e.kind
                        && !present.contains(target)
                    {
                        match first_names.get(target) {
                            Some(first) => e.kind = EntryKind::HardLink(first.clone()),
                            None => {
                                first_names.insert(target.clone(), e.path.clone());
                                e.kind = EntryKind::File {
                                    size: sizes.get(target).copied().unwrap_or(0),
                                };
                            }
                        }
                    }
                    if let EntryKind::File { size } = e.kind {
                        total_bytes += size;
                    }
                    e
                })
                .collect();
            (entries, total_bytes)
        };
        let (rest, rest_bytes) = whole(rest);
        let (part, part_bytes) = whole(part);
        (
            DirTree {
                root: self.root.clone(),
                entries: rest,
                total_bytes: rest_bytes,
            },
            DirTree {
                root: self.root,
                entries: part,
                total_bytes: part_bytes,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_lists_directories_before_their_sorted_contents_and_links_after_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("b/c/file"), b"data").unwrap();
        std::fs::hard_link(root.join("b/c/file"), root.join("a-link")).unwrap();
        std::fs::hard_link(root.join("b/c/file"), root.join("b/z-link")).unwrap();
        std::os::unix::fs::symlink("b", root.join("s")).unwrap();
        let tree = DirTree::scan(root, false, &[]).unwrap();
        let paths: Vec<&[u8]> = tree.entries.iter().map(|e| &e.path[..]).collect();
        assert_eq!(
            paths,
            [
                &b""[..],
                b"a-link",
                b"b",
                b"b/c",
                b"b/c/file",
                b"b/z-link",
                b"s"
            ]
        );
        // "a-link" sorts first, so it is the file and the others link to it.
        assert!(matches!(tree.entries[1].kind, EntryKind::File { size: 4 }));
        assert!(matches!(&tree.entries[4].kind, EntryKind::HardLink(t) if t == b"a-link"));
        assert!(matches!(&tree.entries[5].kind, EntryKind::HardLink(t) if t == b"a-link"));
        assert!(matches!(&tree.entries[6].kind, EntryKind::Symlink(t) if t == b"b"));
        assert_eq!(tree.total_bytes, 4);
    }

    #[test]
    fn a_split_gives_two_whole_trees_with_hard_links_made_files_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::create_dir_all(root.join("usr")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/x")).unwrap();
        std::fs::write(root.join("etc/ssh/key"), b"key").unwrap();
        std::fs::write(root.join("var/lib/x/state"), b"state").unwrap();
        std::fs::write(root.join("var/log"), b"log").unwrap();
        // The first name (a-link, sorted first) stays in the rest.
        std::fs::hard_link(root.join("etc/ssh/key"), root.join("a-link")).unwrap();
        let tree = DirTree::scan(root, false, &[]).unwrap();
        let (rest, part) = tree.split_off(&[b"etc", b"var/lib"]);
        let paths = |t: &DirTree| -> Vec<String> {
            t.entries
                .iter()
                .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                .collect()
        };
        assert_eq!(
            paths(&part),
            [
                "",
                "etc",
                "etc/ssh",
                "etc/ssh/key",
                "var",
                "var/lib",
                "var/lib/x",
                "var/lib/x/state"
            ]
        );
        assert_eq!(
            paths(&rest),
            ["", "a-link", "etc", "usr", "var", "var/lib", "var/log"]
        );
        // etc/ssh/key linked to a-link, which is not in its part: now the file.
        let key = part
            .entries
            .iter()
            .find(|e| e.path == b"etc/ssh/key")
            .unwrap();
        assert!(
            matches!(key.kind, EntryKind::File { size: 3 }),
            "{:?}",
            key.kind
        );
        assert_eq!((part.total_bytes, rest.total_bytes), (8, 6));
    }

    #[test]
    fn scan_leaves_out_excluded_prefixes_but_keeps_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("boot/grub")).unwrap();
        std::fs::write(dir.path().join("boot/vmlinuz"), b"k").unwrap();
        let tree = DirTree::scan(dir.path(), false, &[b"boot/"]).unwrap();
        let paths: Vec<&[u8]> = tree.entries.iter().map(|e| &e.path[..]).collect();
        assert_eq!(paths, [&b""[..], b"boot"]);
    }
}
