//! The configured rootfs split by mount point into one source tree per
//! filesystem, for `mke2fs -d` and the ESP's FAT writer.
//!
//! mke2fs copies a whole directory and has no way to leave `/boot` out of
//! the root filesystem, and the configured rootfs is a cache entry that must
//! not change. So each filesystem gets a tree of its own in a scratch
//! directory, built without copying file data: directories are made anew
//! (same owner, mode, xattrs and times), everything else is hard-linked.
//! A hard link is the same inode, so owners, modes, xattrs (file
//! capabilities included) and the grouping of existing hard links carry
//! over exactly; building the trees for a 800 MB rootfs takes well under a
//! second and no space. The scratch directory must be on the rootfs's
//! filesystem for that (the pipeline puts it in the cache); elsewhere,
//! files are copied instead.
//!
//! A mount point becomes an empty directory in the filesystem above it (as
//! an installed system has it), and the files under it go to its own tree.
//!
//! Files osforge adds (fstab, grub.cfg, GRUB's modules) go into these trees
//! by [`SplitTree::put_file`], which removes whatever name was there before
//! creating a new file: a hard-linked file is never opened for writing, so
//! the cache entry behind it cannot change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::plan::DiskPlan;
use crate::formats::ext4::{BLOCK_BYTES, Usage};
use crate::osconfig::rootpath;

/// ext4 keeps symlink targets shorter than this in the inode.
const FAST_SYMLINK_BYTES: u64 = 60;
/// A directory entry: 8 bytes of header and the name, padded to 4.
const DIRENT_HEADER_BYTES: u64 = 8;

/// The trees, one per mounted filesystem, under a scratch directory.
pub struct SplitTree {
    /// Partition number → its tree.
    roots: BTreeMap<u32, PathBuf>,
}

/// One entry met while walking the rootfs.
struct Walked<'a> {
    host: &'a Path,
    md: &'a fs::Metadata,
    /// The partition holding it and the path inside that partition.
    owner: u32,
    rel: &'a Path,
    /// For a directory that is a mount point: the partition mounted there.
    mounts: Option<u32>,
}

/// Mount point (relative to `/`, no leading slash) → partition number.
fn mount_points(plan: &DiskPlan) -> HashMap<Vec<u8>, u32> {
    plan.mounted()
        .filter(|p| p.mount.as_deref() != Some("/"))
        .map(|p| {
            (
                p.mount
                    .as_deref()
                    .unwrap_or("")
                    .trim_matches('/')
                    .as_bytes()
                    .to_vec(),
                p.number,
            )
        })
        .collect()
}

/// Called after a directory's children: (host path, owner, path inside the
/// owner, metadata, child names).
type LeaveDir<'a> =
    dyn FnMut(&Path, u32, &Path, &fs::Metadata, &[Vec<u8>]) -> anyhow::Result<()> + 'a;

/// Walks `rootfs` depth-first, parents before children, calling `visit`;
/// then calls `leave` for each directory after its children.
fn walk(
    rootfs: &Path,
    plan: &DiskPlan,
    visit: &mut dyn FnMut(&Walked) -> anyhow::Result<()>,
    leave: &mut LeaveDir<'_>,
) -> anyhow::Result<()> {
    let mounts = mount_points(plan);
    let root_number = plan.root().number;
    // (host dir, image path, owner, path inside the owner)
    struct Frame {
        host: PathBuf,
        image: Vec<u8>,
        owner: u32,
        rel: PathBuf,
        md: fs::Metadata,
        names: Vec<Vec<u8>>,
        next: usize,
    }
    let open = |host: PathBuf, image: Vec<u8>, owner: u32, rel: PathBuf| -> anyhow::Result<Frame> {
        let md =
            fs::symlink_metadata(&host).with_context(|| format!("reading {}", host.display()))?;
        let mut names: Vec<Vec<u8>> = fs::read_dir(&host)
            .with_context(|| format!("listing {}", host.display()))?
            .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(Frame {
            host,
            image,
            owner,
            rel,
            md,
            names,
            next: 0,
        })
    };
    let mut stack = vec![open(
        rootfs.to_path_buf(),
        Vec::new(),
        root_number,
        PathBuf::new(),
    )?];
    while let Some(top) = stack.last_mut() {
        if top.next == top.names.len() {
            let done = stack.pop().expect("non-empty");
            leave(&done.host, done.owner, &done.rel, &done.md, &done.names)?;
            continue;
        }
        let name = top.names[top.next].clone();
        top.next += 1;
        let host = top.host.join(OsStr::from_bytes(&name));
        let image = if top.image.is_empty() {
            name.clone()
        } else {
            [&top.image[..], b"/", &name].concat()
        };
        let md =
            fs::symlink_metadata(&host).with_context(|| format!("reading {}", host.display()))?;
        let rel = top.rel.join(OsStr::from_bytes(&name));
        let owner = top.owner;
        let mounted_here = if md.is_dir() {
            mounts.get(&image).copied()
        } else {
            None
        };
        visit(&Walked {
            host: &host,
            md: &md,
            owner,
            rel: &rel,
            mounts: mounted_here,
        })?;
        if md.is_dir() {
            let frame = match mounted_here {
                Some(child) => open(host, image, child, PathBuf::new())?,
                None => open(host, image, owner, rel)?,
            };
            stack.push(frame);
        }
    }
    Ok(())
}

/// What each mounted filesystem will hold, measured without writing.
pub fn measure(rootfs: &Path, plan: &DiskPlan) -> anyhow::Result<BTreeMap<u32, Usage>> {
    // Both callbacks add to it; one runs at a time.
    let usage: std::cell::RefCell<BTreeMap<u32, Usage>> = std::cell::RefCell::new(
        plan.mounted()
            .map(|p| (p.number, Usage::default()))
            .collect(),
    );
    let mut seen_inodes: HashSet<(u64, u64)> = HashSet::new();
    let blocks = |bytes: u64| bytes.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    walk(
        rootfs,
        plan,
        &mut |w| {
            let mut usage = usage.borrow_mut();
            let u = usage.entry(w.owner).or_default();
            if w.md.is_dir() {
                return Ok(()); // counted on leaving, when its names are known
            }
            if w.md.nlink() > 1 && !seen_inodes.insert((w.md.dev(), w.md.ino())) {
                return Ok(());
            }
            u.inodes += 1;
            let ft = w.md.file_type();
            if ft.is_file() {
                // Sparse files stay sparse (mke2fs copies data regions only).
                u.data_bytes += blocks(w.md.len().min(w.md.blocks() * 512));
            } else if ft.is_symlink() && w.md.len() >= FAST_SYMLINK_BYTES {
                u.data_bytes += BLOCK_BYTES;
            }
            Ok(())
        },
        &mut |_, owner, _, _, names| {
            let entries: u64 = names
                .iter()
                .map(|n| DIRENT_HEADER_BYTES + (n.len() as u64).next_multiple_of(4))
                .sum();
            let mut usage = usage.borrow_mut();
            let u = usage.entry(owner).or_default();
            u.inodes += 1;
            u.data_bytes += blocks(entries.max(1));
            Ok(())
        },
    )?;
    Ok(usage.into_inner())
}

impl SplitTree {
    /// Builds the trees under `scratch` (which must exist and be empty).
    pub fn build(rootfs: &Path, plan: &DiskPlan, scratch: &Path) -> anyhow::Result<SplitTree> {
        let roots: BTreeMap<u32, PathBuf> = plan
            .mounted()
            .map(|p| (p.number, scratch.join(format!("p{}", p.number))))
            .collect();
        for dir in roots.values() {
            fs::DirBuilder::new()
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let dest = |owner: u32, rel: &Path| roots[&owner].join(rel);
        walk(
            rootfs,
            plan,
            &mut |w| {
                let target = dest(w.owner, w.rel);
                if w.md.is_dir() {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&target)
                        .with_context(|| format!("creating {}", target.display()))?;
                    copy_owner_mode_xattrs(w.host, w.md, &target)?;
                    if w.mounts.is_some() {
                        // A mount point stays empty here; its files go to its own tree.
                        set_times(&target, w.md)?;
                    }
                    return Ok(());
                }
                match fs::hard_link(w.host, &target) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        copy_entry(w.host, w.md, &target)
                    }
                    Err(e) => Err(e).with_context(|| {
                        format!("linking {} to {}", w.host.display(), target.display())
                    }),
                }
            },
            &mut |_, owner, rel, md, _| {
                // Times last: making the children changed the directory's mtime.
                set_times(&dest(owner, rel), md)
            },
        )?;
        let tree = SplitTree { roots };
        // Mount points the rootfs lacks (a new /data) still need a directory.
        for p in plan.mounted().filter(|p| p.mount.as_deref() != Some("/")) {
            let mount = p.mount.as_deref().unwrap_or("/");
            let (parent, rel) = plan.owner_of(
                mount
                    .rsplit_once('/')
                    .map(|(a, _)| a)
                    .filter(|a| !a.is_empty())
                    .unwrap_or("/"),
            );
            let name = mount.rsplit('/').next().unwrap_or("");
            let at = tree.roots[&parent.number].join(rel).join(name);
            if !at.exists() {
                tree.make_dirs(&at)?;
            }
        }
        Ok(tree)
    }

    /// The tree of partition `number`.
    pub fn root(&self, number: u32) -> &Path {
        &self.roots[&number]
    }

    /// Writes a new root-owned file at `image_path` (`/etc/fstab`) in the
    /// tree that holds it, replacing whatever was there.
    pub fn put_file(
        &self,
        plan: &DiskPlan,
        image_path: &str,
        contents: &[u8],
        mode: u32,
    ) -> anyhow::Result<()> {
        let (owner, rel) = plan.owner_of(image_path);
        let root = &self.roots[&owner.number];
        let host = rootpath::resolve(root, Path::new(rel), false)
            .with_context(|| format!("resolving {image_path} in the image"))?;
        if let Some(parent) = host.parent() {
            self.make_dirs(parent)?;
        }
        match fs::symlink_metadata(&host) {
            Ok(md) if md.is_dir() => anyhow::bail!("{image_path} is a directory in the image"),
            // Unlink, never open: it may be a hard link into the cache.
            Ok(_) => {
                fs::remove_file(&host).with_context(|| format!("replacing {}", host.display()))?
            }
            Err(_) => {}
        }
        let write = || -> io::Result<()> {
            use std::io::Write;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&host)?;
            f.write_all(contents)?;
            std::os::unix::fs::lchown(&host, Some(0), Some(0))?;
            fs::set_permissions(&host, fs::Permissions::from_mode(mode))
        };
        write().with_context(|| format!("writing {image_path} ({})", host.display()))
    }

    /// Creates a directory and its missing parents, root-owned, mode 0755.
    fn make_dirs(&self, dir: &Path) -> anyhow::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_dirs(parent)?;
        }
        fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }
}

fn copy_owner_mode_xattrs(src: &Path, md: &fs::Metadata, dest: &Path) -> anyhow::Result<()> {
    let fail = |what: &str| format!("{what} {}", dest.display());
    std::os::unix::fs::lchown(dest, Some(md.uid()), Some(md.gid()))
        .with_context(|| fail("chown"))?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(dest, fs::Permissions::from_mode(md.mode() & 0o7777))
            .with_context(|| fail("chmod"))?;
    }
    for name in xattr::list(src).with_context(|| format!("listing xattrs of {}", src.display()))? {
        if let Some(value) = xattr::get(src, &name)? {
            xattr::set(dest, &name, &value)
                .with_context(|| fail(&format!("setting xattr {} on", name.to_string_lossy())))?;
        }
    }
    Ok(())
}

/// Copies a non-directory when it cannot be linked (another filesystem).
fn copy_entry(src: &Path, md: &fs::Metadata, dest: &Path) -> anyhow::Result<()> {
    let ft = md.file_type();
    if ft.is_file() {
        fs::copy(src, dest).with_context(|| format!("copying {}", src.display()))?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
        let c = std::ffi::CString::new(dest.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; mknod only creates the node.
        if unsafe {
            libc::mknod(
                c.as_ptr(),
                md.mode() as libc::mode_t,
                md.rdev() as libc::dev_t,
            )
        } != 0
        {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("mknod {}", dest.display()));
        }
    }
    copy_owner_mode_xattrs(src, md, dest)?;
    set_times(dest, md)
}

fn set_times(path: &Path, md: &fs::Metadata) -> anyhow::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let times = [
        libc::timespec {
            tv_sec: md.atime() as libc::time_t,
            tv_nsec: md.atime_nsec() as _,
        },
        libc::timespec {
            tv_sec: md.mtime() as libc::time_t,
            tv_nsec: md.mtime_nsec() as _,
        },
    ];
    // SAFETY: a valid path and two timespecs, as utimensat expects.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("setting times on {}", path.display()));
    }
    Ok(())
}
