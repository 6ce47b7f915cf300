//! Paths inside an image root, resolved the way the image itself would see
//! them: a symlink is followed relative to the root, never out of it. Writing
//! `/etc/hostname` through an image whose `/etc` is a symlink to `/` of the
//! build host must land inside the image (like `openat2(RESOLVE_IN_ROOT)`).

use std::io;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINK_HOPS: usize = 40;

/// Resolves `path` (absolute, as seen inside the image) to a host path under
/// `root`. Symlinks in directory components are followed within the root; the
/// last component is followed too when `follow_last` is set. Missing
/// components are allowed: the result then names where they would be created.
pub fn resolve(root: &Path, path: &Path, follow_last: bool) -> io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = components_of(path);
    pending.reverse();
    let mut resolved: Vec<PathBuf> = Vec::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let is_last = pending.is_empty();
        let candidate = host_path(root, &resolved).join(&name);
        let is_link = std::fs::symlink_metadata(&candidate)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if is_link && (!is_last || follow_last) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(io::Error::other(format!(
                    "too many symlinks resolving {}",
                    path.display()
                )));
            }
            let target = std::fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved.clear();
            }
            let mut more = components_of(&target);
            more.reverse();
            pending.extend(more);
            continue;
        }
        resolved.push(name);
    }
    Ok(host_path(root, &resolved))
}

fn components_of(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

fn host_path(root: &Path, parts: &[PathBuf]) -> PathBuf {
    let mut p = root.to_path_buf();
    for part in parts {
        p.push(part);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_followed_inside_the_root_and_never_out_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink("/", root.join("escape")).unwrap();
        symlink("../../../../etc/passwd", root.join("usr/evil")).unwrap();
        assert_eq!(
            resolve(root, Path::new("/bin/tool"), true).unwrap(),
            root.join("usr/bin/tool")
        );
        assert_eq!(
            resolve(root, Path::new("/escape/etc/hostname"), true).unwrap(),
            root.join("etc/hostname")
        );
        assert_eq!(
            resolve(root, Path::new("/usr/evil"), true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve(root, Path::new("/usr/evil"), false).unwrap(),
            root.join("usr/evil")
        );
        assert_eq!(
            resolve(root, Path::new("/../../x"), true).unwrap(),
            root.join("x")
        );
    }

    #[test]
    fn symlink_loops_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(resolve(dir.path(), Path::new("/a/x"), true).is_err());
    }
}
