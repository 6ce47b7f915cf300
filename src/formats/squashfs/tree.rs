//! The in-memory tree of names and inodes, built as entries are added and
//! serialised in `finish`. File data is not held here: a file inode only holds
//! the id of its record in the data pipeline.

use std::collections::BTreeMap;

use super::Error;

pub(crate) type InodeId = usize;
pub(crate) const ROOT: InodeId = 0;
/// Linux's NAME_MAX; squashfs could store 256 but nothing could create it.
const NAME_MAX: usize = 255;

#[derive(Debug, Clone)]
pub(crate) struct Attrs {
    /// Permission bits including setuid/setgid/sticky (the low 12 bits of st_mode).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    /// Index into the image's xattr sets, if the inode has any.
    pub xattr: Option<u32>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Dir {
        entries: BTreeMap<Vec<u8>, InodeId>,
        parent: InodeId,
    },
    File {
        file_id: u32,
    },
    Symlink(Vec<u8>),
    BlockDev(u32),
    CharDev(u32),
    Fifo,
    Socket,
}

#[derive(Debug)]
pub(crate) struct Inode {
    pub kind: Kind,
    pub attrs: Attrs,
    /// Names pointing at this inode (hard links); directories count "." and
    /// their subdirectories' ".." at serialisation time instead.
    pub links: u32,
}

impl Inode {
    /// The directory-entry type: always the basic type, even for extended inodes.
    pub fn basic_type(&self) -> u16 {
        match self.kind {
            Kind::Dir { .. } => 1,
            Kind::File { .. } => 2,
            Kind::Symlink(_) => 3,
            Kind::BlockDev(_) => 4,
            Kind::CharDev(_) => 5,
            Kind::Fifo => 6,
            Kind::Socket => 7,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir { .. })
    }
}

pub(crate) struct Tree {
    pub inodes: Vec<Inode>,
    /// Attributes given to directories that are implied by a path but never
    /// added themselves (a tar stream need not list every parent).
    implied_dir_attrs: Attrs,
}

/// Splits a path into its names: leading `/` and `./`, empty and `.` components
/// are dropped; `..` is refused so hostile archives cannot escape the root.
pub(crate) fn components(path: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut names = Vec::new();
    for name in path.split(|&b| b == b'/') {
        match name {
            b"" | b"." => continue,
            b".." => return Err(invalid(path, "'..' is not allowed in paths")),
            _ if name.len() > NAME_MAX => {
                return Err(invalid(
                    path,
                    &format!(
                        "a name is {} bytes long; the limit is {NAME_MAX}",
                        name.len()
                    ),
                ));
            }
            _ if name.contains(&0) => return Err(invalid(path, "names cannot contain NUL bytes")),
            _ => names.push(name),
        }
    }
    Ok(names)
}

pub(crate) fn invalid(path: &[u8], reason: &str) -> Error {
    Error::InvalidEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.to_string(),
    }
}

impl Tree {
    pub fn new(root: Attrs, implied_dir_attrs: Attrs) -> Tree {
        let root = Inode {
            kind: Kind::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
            attrs: root,
            links: 1,
        };
        Tree {
            inodes: vec![root],
            implied_dir_attrs,
        }
    }

    pub fn set_root_attrs(&mut self, attrs: Attrs) {
        self.inodes[ROOT].attrs = attrs;
    }

    /// Walks to the directory that will hold the last name of `path`, creating
    /// implied directories on the way.
    fn parent_of<'p>(&mut self, path: &'p [u8]) -> Result<(InodeId, &'p [u8]), Error> {
        let names = components(path)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(invalid(path, "the path names the root itself"));
        };
        let mut dir = ROOT;
        for name in parents {
            let next = match &self.inodes[dir].kind {
                Kind::Dir { entries, .. } => entries.get(*name).copied(),
                _ => unreachable!("walk only descends into directories"),
            };
            dir = match next {
                Some(id) if self.inodes[id].is_dir() => id,
                Some(_) => return Err(invalid(path, "a parent component is not a directory")),
                None => {
                    let attrs = self.implied_dir_attrs.clone();
                    self.push_child(
                        dir,
                        name,
                        Inode {
                            kind: Kind::Dir {
                                entries: BTreeMap::new(),
                                parent: dir,
                            },
                            attrs,
                            links: 1,
                        },
                    )
                }
            };
        }
        Ok((dir, last))
    }

    fn push_child(&mut self, dir: InodeId, name: &[u8], inode: Inode) -> InodeId {
        let id = self.inodes.len();
        self.inodes.push(inode);
        if let Kind::Dir { entries, .. } = &mut self.inodes[dir].kind {
            entries.insert(name.to_vec(), id);
        }
        id
    }

    /// Adds an inode under `path`. A directory added where an implied one exists
    /// gives it its attributes; any other existing name is replaced, as tar
    /// extraction would.
    pub fn insert(&mut self, path: &[u8], kind: Kind, attrs: Attrs) -> Result<InodeId, Error> {
        if components(path)?.is_empty() {
            return match kind {
                Kind::Dir { .. } => {
                    self.set_root_attrs(attrs);
                    Ok(ROOT)
                }
                _ => Err(invalid(path, "the root must be a directory")),
            };
        }
        let (dir, name) = self.parent_of(path)?;
        let existing = match &self.inodes[dir].kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        };
        if let Some(id) = existing {
            if self.inodes[id].is_dir() && matches!(kind, Kind::Dir { .. }) {
                self.inodes[id].attrs = attrs;
                return Ok(id);
            }
            if self.inodes[id].is_dir() {
                return Err(invalid(path, "a directory of this name already exists"));
            }
            self.inodes[id].links -= 1;
        }
        let kind = match kind {
            Kind::Dir { entries, .. } => Kind::Dir {
                entries,
                parent: dir,
            },
            other => other,
        };
        Ok(self.push_child(
            dir,
            name,
            Inode {
                kind,
                attrs,
                links: 1,
            },
        ))
    }

    pub fn lookup(&self, path: &[u8]) -> Result<Option<InodeId>, Error> {
        let mut id = ROOT;
        for name in components(path)? {
            match &self.inodes[id].kind {
                Kind::Dir { entries, .. } => match entries.get(name) {
                    Some(&next) => id = next,
                    None => return Ok(None),
                },
                _ => return Ok(None),
            }
        }
        Ok(Some(id))
    }

    /// Adds a second name for an existing non-directory inode.
    pub fn link(&mut self, path: &[u8], target: &[u8]) -> Result<(), Error> {
        let Some(target_id) = self.lookup(target)? else {
            return Err(invalid(
                path,
                &format!(
                    "hard link target '{}' does not exist",
                    String::from_utf8_lossy(target)
                ),
            ));
        };
        if self.inodes[target_id].is_dir() {
            return Err(invalid(path, "hard links to directories are not allowed"));
        }
        let (dir, name) = self.parent_of(path)?;
        let existing = match &self.inodes[dir].kind {
            Kind::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        };
        if let Some(old) = existing {
            if old == target_id {
                return Ok(());
            }
            if self.inodes[old].is_dir() {
                return Err(invalid(path, "a directory of this name already exists"));
            }
            self.inodes[old].links -= 1;
        }
        if let Kind::Dir { entries, .. } = &mut self.inodes[dir].kind {
            entries.insert(name.to_vec(), target_id);
        }
        self.inodes[target_id].links += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(mode: u16) -> Attrs {
        Attrs {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattr: None,
        }
    }

    #[test]
    fn paths_are_normalised_and_dotdot_is_refused() {
        assert_eq!(
            components(b"./a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(
            components(b"a/../../etc")
                .unwrap_err()
                .to_string()
                .contains("'..'")
        );
        assert!(
            components(&[b'x'; 256])
                .unwrap_err()
                .to_string()
                .contains("limit is 255")
        );
    }

    #[test]
    fn implied_parents_are_created_then_take_real_attributes() {
        let mut t = Tree::new(attrs(0o755), attrs(0o700));
        t.insert(b"usr/bin/ls", Kind::Fifo, attrs(0o644)).unwrap();
        let usr = t.lookup(b"usr").unwrap().unwrap();
        assert_eq!(t.inodes[usr].attrs.mode, 0o700);
        t.insert(
            b"usr",
            Kind::Dir {
                entries: BTreeMap::new(),
                parent: 0,
            },
            attrs(0o755),
        )
        .unwrap();
        assert_eq!(t.inodes[usr].attrs.mode, 0o755);
        assert!(t.lookup(b"usr/bin/ls").unwrap().is_some());
    }

    #[test]
    fn hard_links_share_one_inode_and_count_names() {
        let mut t = Tree::new(attrs(0o755), attrs(0o755));
        let a = t.insert(b"a", Kind::Fifo, attrs(0o644)).unwrap();
        t.link(b"dir/b", b"a").unwrap();
        assert_eq!(t.lookup(b"dir/b").unwrap(), Some(a));
        assert_eq!(t.inodes[a].links, 2);
        assert!(
            t.link(b"c", b"missing")
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        assert!(
            t.link(b"d", b"dir")
                .unwrap_err()
                .to_string()
                .contains("directories")
        );
    }
}
