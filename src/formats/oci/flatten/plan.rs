//! Which member of which layer the flattened tree keeps, decided from names
//! and types alone (no data), by applying the layers bottom-up the way a
//! container runtime unpacks them:
//!
//! - a member replaces what lower layers (and earlier members) have at its
//!   path; a directory over a directory replaces only the directory's own
//!   attributes, anything else also drops what was below the path;
//! - `.wh.NAME` drops NAME and what is below it, and `.wh..wh..opq` what is
//!   below its directory, in the lower layers only (image-spec: a whiteout
//!   never hides its own layer's members);
//! - a hard link takes its target's content as it is when the link is
//!   applied. When the target is later replaced or deleted, the content the
//!   link had is still needed: the target's member is then written under the
//!   name of its first surviving link, and the other links point there.
//!
//! Members are then written in (layer, position) order, so every hard-link
//! target precedes its links.

use std::collections::{BTreeMap, HashMap};

use super::super::names;

/// A member's place: its layer (0 = bottom) and position in that layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct MemberId {
    pub layer: u32,
    pub index: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    Directory(&'a [u8]),
    /// A file, symlink, device or fifo.
    Other(&'a [u8]),
    HardLink {
        path: &'a [u8],
        target: &'a [u8],
    },
    Whiteout(&'a [u8]),
    Opaque(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Emit {
    /// Written as it is.
    AsIs,
    /// Written under this name: a hard link's target that no longer
    /// survives under its own name.
    Renamed(Vec<u8>),
    /// A hard link to this path.
    LinkTo(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
struct Node {
    id: MemberId,
    dir: bool,
    /// The member whose content this path has: itself, or for a hard link
    /// its target's.
    source: MemberId,
}

#[derive(Default)]
pub(crate) struct Plan {
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl Plan {
    /// Applies one member; Err says why the member is refused.
    pub fn apply(&mut self, id: MemberId, op: Op<'_>) -> Result<(), String> {
        match op {
            Op::Whiteout(path) => self.remove_below(path, true, Some(id.layer)),
            Op::Opaque(dir) => self.remove_below(dir, false, Some(id.layer)),
            Op::Directory(path) => {
                self.check_parents(path)?;
                self.nodes.insert(
                    path.to_vec(),
                    Node {
                        id,
                        dir: true,
                        source: id,
                    },
                );
            }
            Op::Other(path) => self.put_non_dir(path, id, id)?,
            Op::HardLink { path, target } => {
                let source = match self.nodes.get(target) {
                    Some(node) if !node.dir && target != path => node.source,
                    Some(_) => return Err("hard link to a directory or to itself".into()),
                    None => {
                        return Err(format!(
                            "hard link to '{}', which no layer up to here has",
                            String::from_utf8_lossy(target)
                        ));
                    }
                };
                self.put_non_dir(path, id, source)?;
            }
        }
        Ok(())
    }

    fn put_non_dir(&mut self, path: &[u8], id: MemberId, source: MemberId) -> Result<(), String> {
        if path.is_empty() {
            return Err("the root is not a directory".into());
        }
        self.check_parents(path)?;
        // A non-directory has no children, whatever layer put them there.
        self.remove_below(path, false, None);
        self.nodes.insert(
            path.to_vec(),
            Node {
                id,
                dir: false,
                source,
            },
        );
        Ok(())
    }

    /// A member below a symlink would be written through it on extraction
    /// (to wherever it points, outside the root too): refused.
    fn check_parents(&self, path: &[u8]) -> Result<(), String> {
        match names::ancestors(path).find(|a| self.nodes.get(*a).is_some_and(|n| !n.dir)) {
            Some(a) => Err(format!(
                "below '{}', which is not a directory",
                String::from_utf8_lossy(a)
            )),
            None => Ok(()),
        }
    }

    /// Drops what is below `path` (and `path` itself with `and_self`), only
    /// members of layers under `below_layer` when it is given.
    fn remove_below(&mut self, path: &[u8], and_self: bool, below_layer: Option<u32>) {
        let lower = |n: &Node| below_layer.is_none_or(|layer| n.id.layer < layer);
        let doomed: Vec<Vec<u8>> = if path.is_empty() {
            // Below the root: everything but the root.
            self.nodes
                .iter()
                .filter(|(p, n)| !p.is_empty() && lower(n))
                .map(|(p, _)| p.clone())
                .collect()
        } else {
            // Children sort between "path/" and "path0" ('0' follows '/').
            let from = [path, b"/"].concat();
            let to = [path, b"0"].concat();
            self.nodes
                .range(from..to)
                .filter(|(_, n)| lower(n))
                .map(|(p, _)| p.clone())
                .collect()
        };
        for p in doomed {
            self.nodes.remove(&p);
        }
        if and_self && self.nodes.get(path).is_some_and(lower) {
            self.nodes.remove(path);
        }
    }

    /// What to write for each member that survives; members not listed are
    /// skipped.
    pub fn finish(self) -> HashMap<MemberId, Emit> {
        let surviving: HashMap<MemberId, &Vec<u8>> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.id == n.source)
            .map(|(p, n)| (n.id, p))
            .collect();
        let mut by_position: Vec<(&Vec<u8>, &Node)> = self.nodes.iter().collect();
        by_position.sort_by_key(|(_, n)| n.id);
        let mut emit = HashMap::with_capacity(by_position.len());
        let mut renamed: HashMap<MemberId, &Vec<u8>> = HashMap::new();
        for (path, node) in by_position {
            if node.id == node.source {
                emit.insert(node.id, Emit::AsIs);
            } else if let Some(target) = surviving.get(&node.source) {
                emit.insert(node.id, Emit::LinkTo((*target).clone()));
            } else if let Some(first) = renamed.get(&node.source) {
                emit.insert(node.id, Emit::LinkTo((*first).clone()));
            } else {
                // The first link to a lost target carries its content.
                renamed.insert(node.source, path);
                emit.insert(node.source, Emit::Renamed(path.clone()));
            }
        }
        emit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies layers of ops; returns the surviving members by id.
    fn run(layers: &[&[Op<'_>]]) -> BTreeMap<(u32, u64), Emit> {
        let mut plan = Plan::default();
        for (layer, ops) in layers.iter().enumerate() {
            for (index, op) in ops.iter().enumerate() {
                let id = MemberId {
                    layer: layer as u32,
                    index: index as u64,
                };
                plan.apply(id, *op).unwrap();
            }
        }
        plan.finish()
            .into_iter()
            .map(|(id, e)| ((id.layer, id.index), e))
            .collect()
    }

    #[test]
    fn whiteouts_delete_lower_paths_and_their_children() {
        let kept = run(&[
            &[
                Op::Directory(b"etc"),
                Op::Other(b"etc/motd"),
                Op::Directory(b"opt"),
                Op::Other(b"opt/a"),
            ],
            &[Op::Whiteout(b"etc/motd"), Op::Whiteout(b"opt")],
        ]);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [(0, 0)]);
    }

    #[test]
    fn opaque_directories_hide_lower_content_but_not_their_own_layer() {
        let kept = run(&[
            &[Op::Directory(b"d"), Op::Other(b"d/old"), Op::Other(b"keep")],
            &[Op::Directory(b"d"), Op::Other(b"d/new"), Op::Opaque(b"d")],
        ]);
        assert_eq!(
            kept.keys().copied().collect::<Vec<_>>(),
            [(0, 2), (1, 0), (1, 1)]
        );
    }

    #[test]
    fn a_file_over_a_directory_drops_its_children() {
        let kept = run(&[
            &[Op::Directory(b"x"), Op::Other(b"x/child"), Op::Other(b"xy")],
            &[Op::Other(b"x")],
        ]);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [(0, 2), (1, 0)]);
    }

    #[test]
    fn a_directory_over_a_directory_keeps_the_children() {
        let kept = run(&[
            &[Op::Directory(b"x"), Op::Other(b"x/child")],
            &[Op::Directory(b"x")],
        ]);
        assert_eq!(kept.keys().copied().collect::<Vec<_>>(), [(0, 1), (1, 0)]);
    }

    #[test]
    fn links_to_a_replaced_target_keep_the_old_content_under_the_first_link() {
        let kept = run(&[
            &[
                Op::Other(b"orig"),
                Op::HardLink {
                    path: b"l1",
                    target: b"orig",
                },
                Op::HardLink {
                    path: b"l2",
                    target: b"orig",
                },
            ],
            &[Op::Other(b"orig")],
        ]);
        assert_eq!(kept[&(0, 0)], Emit::Renamed(b"l1".to_vec()));
        assert!(!kept.contains_key(&(0, 1)), "l1 is written as the file");
        assert_eq!(kept[&(0, 2)], Emit::LinkTo(b"l1".to_vec()));
        assert_eq!(kept[&(1, 0)], Emit::AsIs);
    }

    #[test]
    fn links_to_a_surviving_target_stay_links() {
        let kept = run(&[
            &[Op::Other(b"a")],
            &[Op::HardLink {
                path: b"b",
                target: b"a",
            }],
        ]);
        assert_eq!(kept[&(0, 0)], Emit::AsIs);
        assert_eq!(kept[&(1, 0)], Emit::LinkTo(b"a".to_vec()));
    }

    #[test]
    fn members_below_a_symlink_and_links_to_nothing_are_refused() {
        let mut plan = Plan::default();
        let id = |index| MemberId { layer: 0, index };
        plan.apply(id(0), Op::Other(b"link")).unwrap();
        let below = plan.apply(id(1), Op::Other(b"link/passwd")).unwrap_err();
        assert!(below.contains("not a directory"), "{below}");
        let dangling = plan
            .apply(
                id(2),
                Op::HardLink {
                    path: b"x",
                    target: b"missing",
                },
            )
            .unwrap_err();
        assert!(dangling.contains("hard link to 'missing'"), "{dangling}");
    }
}
