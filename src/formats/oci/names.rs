//! Member names of layers: checked, normalised, and read for whiteouts.
//!
//! A layer is someone else's tar, so its names are input to distrust: a `..`
//! component or an absolute path would reach outside the root when the
//! flattened tar is extracted, and a hard link to one would link to a host
//! file. They are refused rather than cleaned, since no tool that makes
//! layers writes them. Symlink targets are data and are kept as they are.

/// A whiteout: `.wh.NAME` deletes NAME of the lower layers.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// `.wh..wh..opq` hides everything the lower layers have in its directory.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// aufs' own files (`.wh..wh.plnk`, `.wh..wh.aufs`): not content, skipped.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// What a layer member's name means for the flattened tree.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Name {
    /// A file, directory, link or node at this path ("" is the root).
    Path(Vec<u8>),
    /// Delete this path and what is below it in the lower layers.
    Whiteout(Vec<u8>),
    /// Hide the lower layers' content of this directory.
    Opaque(Vec<u8>),
    /// aufs metadata; not part of the tree.
    AufsMeta,
}

/// The path relative to the root: `.` components, repeated and trailing
/// slashes dropped; "" is the root itself. Refuses `..`, absolute paths and
/// NUL bytes, saying why.
pub(crate) fn normalize(name: &[u8]) -> Result<Vec<u8>, &'static str> {
    if name.starts_with(b"/") {
        return Err("absolute path");
    }
    if name.contains(&0) {
        return Err("NUL byte in the name");
    }
    let mut out = Vec::with_capacity(name.len());
    for component in name.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("'..' component"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// Normalises a member's name and reads whiteouts from it.
pub(crate) fn classify(name: &[u8]) -> Result<Name, &'static str> {
    let path = normalize(name)?;
    let (parent, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], &path[..]),
    };
    if base == OPAQUE_MARKER {
        return Ok(Name::Opaque(parent.to_vec()));
    }
    if base.starts_with(AUFS_META_PREFIX) {
        return Ok(Name::AufsMeta);
    }
    if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX) {
        if matches!(target, b"" | b"." | b"..") {
            return Err("whiteout of '.', '..' or nothing");
        }
        return Ok(Name::Whiteout(join(parent, target)));
    }
    Ok(Name::Path(path))
}

/// `parent/name`, or `name` at the root.
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

/// The proper ancestors of `path`, nearest first (not the root "").
pub(crate) fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_escapes_refused() {
        assert_eq!(normalize(b"./etc//passwd").unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"usr/lib/").unwrap(), b"usr/lib");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert_eq!(normalize(b"a/./b").unwrap(), b"a/b");
        assert_eq!(normalize(b"../../etc/x"), Err("'..' component"));
        assert_eq!(normalize(b"a/../../b"), Err("'..' component"));
        assert_eq!(normalize(b"/etc/shadow"), Err("absolute path"));
        // Names that merely start with dots are names.
        assert_eq!(normalize(b"..a/...").unwrap(), b"..a/...");
    }

    #[test]
    fn whiteouts_and_opaque_markers_name_what_they_hide() {
        assert_eq!(
            classify(b"etc/.wh.motd").unwrap(),
            Name::Whiteout(b"etc/motd".to_vec())
        );
        assert_eq!(
            classify(b"./.wh.tmp").unwrap(),
            Name::Whiteout(b"tmp".to_vec())
        );
        assert_eq!(
            classify(b"var/cache/.wh..wh..opq").unwrap(),
            Name::Opaque(b"var/cache".to_vec())
        );
        assert_eq!(classify(b".wh..wh..opq").unwrap(), Name::Opaque(Vec::new()));
        assert_eq!(classify(b"x/.wh..wh.plnk").unwrap(), Name::AufsMeta);
        assert_eq!(
            classify(b"x/.wh.."),
            Err("whiteout of '.', '..' or nothing")
        );
        assert_eq!(
            classify(b"x/.whatever").unwrap(),
            Name::Path(b"x/.whatever".to_vec())
        );
    }

    #[test]
    fn ancestors_run_from_the_parent_up() {
        let found: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(found, [&b"a/b"[..], b"a"]);
        assert_eq!(ancestors(b"top").count(), 0);
    }
}
