//! The ISO's directory tree, staged from host directories, host files and
//! bytes, with the metadata policy applied as entries are added.
//!
//! osforge walks host directories itself rather than calling
//! `hadris_fs::host::read_tree`, to apply, per entry:
//! - time clamping: modification times later than `SOURCE_DATE_EPOCH` are
//!   lowered to it (access and change times are not recorded at all: they
//!   change on every read and would make builds differ);
//! - "rational Rock Ridge" (`mkisofs -r`, what live-ISO builders use):
//!   owner 0:0, every read bit set, all execute bits if any, no write bits,
//!   no set-id or sticky bits, so an image built by an unprivileged user
//!   unpacks the same for everyone;
//! - sorted directory walks, so entry order never depends on the host
//!   filesystem.
//!
//! Hard links stay hard links (one node, one extent), symlinks and device
//! nodes are kept (Rock Ridge stores them). Nothing is read here but
//! metadata: file contents are `hadris_fs::host::file` references, read
//! in 64 KiB chunks while the image is written.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::UNIX_EPOCH;

use hadris_fs::{
    Content, DateTime, DeviceNumber, FileType, Node, Owner, Permissions, SetAttr, Tree,
};

use super::Error;

/// What the staged entries are made of.
pub(super) struct Staging {
    pub tree: Tree,
    pub clamp: Option<DateTime>,
    pub rational_rock: bool,
    pub files: u64,
    pub directories: u64,
    pub content_bytes: u64,
    /// First tree path of each host inode with several links.
    links: HashMap<(u64, u64), Vec<u8>>,
}

const ROOT_OWNER: Owner = Owner::new(0, 0);
const READ_BITS: u32 = 0o444;
const EXEC_BITS: u32 = 0o111;
const SYMLINK_MODE: u32 = 0o777;

impl Staging {
    pub fn new(clamp: Option<DateTime>, rational_rock: bool) -> Self {
        Staging {
            tree: Tree::new(),
            clamp,
            rational_rock,
            files: 0,
            directories: 0,
            content_bytes: 0,
            links: HashMap::new(),
        }
    }

    /// Attributes for an entry whose host metadata is `md` (None: made up
    /// by osforge, such as a generated config file).
    fn attrs(&self, md: Option<&Metadata>, is_dir: bool) -> SetAttr {
        let mut attrs = SetAttr::new();
        let host_mtime = md.and_then(|md| md.modified().ok()).and_then(|t| {
            let seconds = match t.duration_since(UNIX_EPOCH) {
                Ok(after) => i64::try_from(after.as_secs()).ok()?,
                Err(before) => -i64::try_from(before.duration().as_secs()).ok()?,
            };
            DateTime::from_unix_seconds(seconds).ok()
        });
        let mtime = match (host_mtime, self.clamp) {
            (Some(t), Some(limit)) if t.unix_seconds() > limit.unix_seconds() => Some(limit),
            (Some(t), _) => Some(t),
            (None, limit) => limit,
        };
        if let Some(mtime) = mtime {
            attrs = attrs.with_modified(mtime);
        }
        let host_mode = md.map(|md| md.mode() & 0o7777);
        let mode = if self.rational_rock || host_mode.is_none() {
            let executable = is_dir || host_mode.is_some_and(|m| m & EXEC_BITS != 0);
            READ_BITS | if executable { EXEC_BITS } else { 0 }
        } else {
            host_mode.unwrap_or(READ_BITS)
        };
        attrs = attrs.with_permissions(Permissions::new(mode));
        match md {
            Some(md) if !self.rational_rock => attrs.with_owner(Owner::new(md.uid(), md.gid())),
            _ => attrs.with_owner(ROOT_OWNER),
        }
    }

    fn insert(&mut self, path: &[u8], node: Node) -> Result<(), Error> {
        self.ensure_parents(path)?;
        self.tree
            .insert(path, node)
            .map_err(|e| tree_error(path, e))
    }

    /// Creates missing parent directories explicitly, so they get the
    /// same attributes as walked ones rather than the writer's defaults.
    fn ensure_parents(&mut self, path: &[u8]) -> Result<(), Error> {
        for (at, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
            let parent = &path[..at];
            match self.tree.get(parent) {
                Some(node) if node.file_type().is_dir() => {}
                Some(_) => {
                    return Err(Error::InvalidPath {
                        path: String::from_utf8_lossy(path).into_owned(),
                        reason: "a parent is not a directory",
                    });
                }
                None => {
                    let attrs = self.attrs(None, true);
                    self.tree
                        .insert(parent, Node::dir().with_attrs(attrs))
                        .map_err(|e| tree_error(parent, e))?;
                    self.directories += 1;
                }
            }
        }
        Ok(())
    }

    pub fn add_bytes(&mut self, path: &[u8], bytes: Vec<u8>) -> Result<(), Error> {
        let attrs = self.attrs(None, false);
        let len = bytes.len() as u64;
        self.insert(path, Node::file(Content::bytes(bytes)).with_attrs(attrs))?;
        self.files += 1;
        self.content_bytes += len;
        Ok(())
    }

    pub fn add_dir(&mut self, path: &[u8]) -> Result<(), Error> {
        if self.tree.get(path).is_some_and(|n| n.file_type().is_dir()) {
            return Ok(());
        }
        let attrs = self.attrs(None, true);
        self.insert(path, Node::dir().with_attrs(attrs))?;
        self.directories += 1;
        Ok(())
    }

    /// Adds the host file (following a symlink) `host` at `path`.
    pub fn add_file(&mut self, path: &[u8], host: &Path) -> Result<(), Error> {
        let md = std::fs::metadata(host).map_err(|e| reading(host, e))?;
        if !md.is_file() {
            return Err(Error::UnsupportedFileType {
                path: host.to_path_buf(),
            });
        }
        self.add_regular(path, host, &md)
    }

    fn add_regular(&mut self, path: &[u8], host: &Path, md: &Metadata) -> Result<(), Error> {
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                self.ensure_parents(path)?;
                return self
                    .tree
                    .link(&first, path)
                    .map_err(|e| tree_error(path, e));
            }
            self.links.insert(key, path.to_vec());
        }
        let content =
            hadris_fs::host::file(host).map_err(|e| reading(host, std::io::Error::other(e)))?;
        let len = content.len();
        let attrs = self.attrs(Some(md), false);
        self.insert(path, Node::file(content).with_attrs(attrs))?;
        self.files += 1;
        self.content_bytes += len;
        Ok(())
    }

    /// Adds everything below the host directory `host` under `path` (the
    /// root when empty); `path` itself gets `host`'s attributes.
    pub fn add_tree(&mut self, path: &[u8], host: &Path) -> Result<(), Error> {
        let md = std::fs::metadata(host).map_err(|e| reading(host, e))?;
        if !md.is_dir() {
            return Err(Error::NotADirectory {
                path: host.to_path_buf(),
            });
        }
        let attrs = self.attrs(Some(&md), true);
        if path.is_empty() {
            self.tree
                .replace("", Node::dir().with_attrs(attrs))
                .map_err(|e| tree_error(b"/", e))?;
        } else if self.tree.get(path).is_some() {
            self.tree
                .replace(path, Node::dir().with_attrs(attrs))
                .map_err(|e| tree_error(path, e))?;
        } else {
            self.insert(path, Node::dir().with_attrs(attrs))?;
            self.directories += 1;
        }
        self.walk(path, host)
    }

    fn walk(&mut self, path: &[u8], host: &Path) -> Result<(), Error> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(host).map_err(|e| reading(host, e))? {
            names.push(entry.map_err(|e| reading(host, e))?.file_name());
        }
        names.sort();
        for name in names {
            let child_host = host.join(&name);
            let mut child = path.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let md = std::fs::symlink_metadata(&child_host).map_err(|e| reading(&child_host, e))?;
            let kind = md.file_type();
            if kind.is_dir() {
                let attrs = self.attrs(Some(&md), true);
                self.insert(&child, Node::dir().with_attrs(attrs))?;
                self.directories += 1;
                self.walk(&child, &child_host)?;
            } else if kind.is_file() {
                self.add_regular(&child, &child_host, &md)?;
            } else if kind.is_symlink() {
                let target =
                    std::fs::read_link(&child_host).map_err(|e| reading(&child_host, e))?;
                // Link permissions mean nothing on Linux; 0777 is what
                // readers expect to see.
                let attrs = self
                    .attrs(Some(&md), false)
                    .with_permissions(Permissions::new(SYMLINK_MODE));
                self.insert(
                    &child,
                    Node::symlink(target.as_os_str().as_bytes()).with_attrs(attrs),
                )?;
            } else {
                let (file_type, device) = if kind.is_block_device() {
                    (FileType::BlockDevice, Some(device_number(md.rdev())))
                } else if kind.is_char_device() {
                    (FileType::CharDevice, Some(device_number(md.rdev())))
                } else if kind.is_fifo() {
                    (FileType::Fifo, None)
                } else {
                    (FileType::Socket, None)
                };
                let attrs = self.attrs(Some(&md), false);
                self.insert(&child, Node::special(file_type, device).with_attrs(attrs))?;
            }
        }
        Ok(())
    }
}

/// Linux's `dev_t` split into major and minor numbers.
fn device_number(rdev: u64) -> DeviceNumber {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    DeviceNumber::new(major as u32, minor as u32)
}

fn reading(path: &Path, source: std::io::Error) -> Error {
    Error::ReadingSource {
        path: path.to_path_buf(),
        source,
    }
}

fn tree_error(path: &[u8], source: hadris_fs::PathError) -> Error {
    let path = String::from_utf8_lossy(path).into_owned();
    if source.kind() == hadris_fs::ErrorKind::AlreadyExists {
        Error::DuplicatePath { path }
    } else {
        Error::Staging {
            path,
            source: Box::new(source),
        }
    }
}

/// Normalises a path inside the ISO (`/boot/grub/` → `boot/grub`) and
/// refuses empty, `.` and `..` components.
pub(super) fn iso_path(path: &str) -> Result<Vec<u8>, Error> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(Error::InvalidPath {
            path: path.to_string(),
            reason: "empty, '.' and '..' components are not allowed",
        });
    }
    Ok(trimmed.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(staging: &Staging, path: &str) -> u32 {
        let node = staging.tree.get(path).expect("staged");
        node.attrs().permissions().expect("permissions set").bits()
    }

    #[test]
    fn rational_rock_makes_everything_readable_and_nothing_writable() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o4700)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut staging = Staging::new(None, true);
        staging.add_tree(b"", dir.path()).unwrap();
        assert_eq!(mode_of(&staging, "run.sh"), 0o555);
        assert_eq!(mode_of(&staging, "secret"), 0o444);
        let owner = staging.tree.get("secret").unwrap().attrs().owner().unwrap();
        assert_eq!((owner.uid(), owner.gid()), (0, 0));

        let mut kept = Staging::new(None, false);
        kept.add_tree(b"", dir.path()).unwrap();
        assert_eq!(mode_of(&kept, "run.sh"), 0o4700);
    }

    #[test]
    fn times_later_than_the_clamp_are_lowered_and_earlier_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let new = dir.path().join("new");
        std::fs::write(&old, "o").unwrap();
        std::fs::write(&new, "n").unwrap();
        let at = |secs| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(at(1_000))
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&new)
            .unwrap()
            .set_modified(at(5_000))
            .unwrap();
        let clamp = DateTime::from_unix_seconds(2_000).unwrap();
        let mut staging = Staging::new(Some(clamp), true);
        staging.add_tree(b"", dir.path()).unwrap();
        fn mtime(staging: &Staging, path: &str) -> i64 {
            let node = staging.tree.get(path).unwrap();
            node.attrs().modified().unwrap().unix_seconds()
        }
        assert_eq!(mtime(&staging, "old"), 1_000);
        assert_eq!(mtime(&staging, "new"), 2_000);
        // Directories made up for a file's parents get the clamp time too.
        staging.add_bytes(b"made/up/file", b"x".to_vec()).unwrap();
        assert_eq!(mtime(&staging, "made/up"), 2_000);
    }

    #[test]
    fn iso_paths_are_normalised_and_dot_components_refused() {
        assert_eq!(iso_path("/boot/grub/").unwrap(), b"boot/grub");
        assert_eq!(iso_path("/").unwrap(), b"");
        assert!(iso_path("a/../b").is_err());
        assert!(iso_path("a//b").is_err());
    }
}
