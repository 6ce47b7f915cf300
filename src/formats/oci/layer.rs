//! A scanned tree as a layer's tar stream, in the tree's order (sorted by
//! name, depth first), with what a root filesystem needs: numeric owners,
//! modes, mtimes (clamped for reproducible images), hard links as tar hard
//! links, symlinks, devices, fifos and every xattr as `SCHILY.xattr.*`.
//!
//! The root directory itself is not stored, as Docker's and buildah's layers
//! do not store it: the runtime makes the root. Sockets cannot be stored in
//! tar and are counted and left out, as GNU tar does.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use tar::EntryType;

use super::Error;
use super::tar_out::{Member, NotingReader, TarWriter};
use crate::formats::Progress;
use crate::formats::dirtree::{DeviceKind, DirTree, Entry, EntryKind};

/// The pax record prefix GNU tar and the container tools use for xattrs.
const XATTR_PAX_PREFIX: &[u8] = b"SCHILY.xattr.";

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LayerStats {
    pub entries: u64,
    /// Bytes of file data stored.
    pub bytes_in: u64,
    pub skipped_sockets: u64,
}

/// Writes every entry of `tree` but the root to `tar` (without the end
/// marker). `mtime_clamp`: newer mtimes are written as it.
pub(crate) fn write_tree<W: Write>(
    tree: &DirTree,
    tar: &mut TarWriter<W>,
    mtime_clamp: Option<i64>,
    progress: &dyn Progress,
) -> Result<LayerStats, Error> {
    let mut stats = LayerStats::default();
    for entry in tree.entries.iter().filter(|e| !e.path.is_empty()) {
        let (kind, link, size, device): (EntryType, &[u8], u64, (u32, u32)) = match &entry.kind {
            EntryKind::Directory => (EntryType::Directory, b"", 0, (0, 0)),
            EntryKind::File { size } => (EntryType::Regular, b"", *size, (0, 0)),
            EntryKind::Symlink(target) => (EntryType::Symlink, target, 0, (0, 0)),
            EntryKind::HardLink(first) => (EntryType::Link, first, 0, (0, 0)),
            EntryKind::Device { kind, major, minor } => {
                let t = match kind {
                    DeviceKind::Block => EntryType::Block,
                    DeviceKind::Char => EntryType::Char,
                };
                (t, b"", 0, (*major, *minor))
            }
            EntryKind::Fifo => (EntryType::Fifo, b"", 0, (0, 0)),
            EntryKind::Socket => {
                stats.skipped_sockets += 1;
                continue;
            }
        };
        // A hard link shares its target's inode, xattrs included.
        let pax: Vec<(Vec<u8>, Vec<u8>)> = if kind == EntryType::Link {
            Vec::new()
        } else {
            entry
                .meta
                .xattrs
                .iter()
                .map(|(name, value)| ([XATTR_PAX_PREFIX, name].concat(), value.clone()))
                .collect()
        };
        let member = Member {
            path: &entry.path,
            kind,
            link,
            size,
            mode: entry.meta.mode,
            uid: entry.meta.uid.into(),
            gid: entry.meta.gid.into(),
            mtime: mtime_clamp.map_or(entry.meta.mtime, |t| entry.meta.mtime.min(t)),
            device,
            uname: b"",
            gname: b"",
            pax: &pax,
        };
        if kind == EntryType::Regular {
            append_file(tree, entry, tar, &member)?;
            stats.bytes_in += size;
            progress.advance(size);
        } else {
            tar.append(&member, &mut io::empty())
                .map_err(Error::Writing)?;
        }
        stats.entries += 1;
    }
    Ok(stats)
}

/// Stores a regular file's data, which must still be as long as when the
/// tree was scanned: the header already says how long.
fn append_file<W: Write>(
    tree: &DirTree,
    entry: &Entry,
    tar: &mut TarWriter<W>,
    member: &Member<'_>,
) -> Result<(), Error> {
    let path = tree.host_path(entry);
    let reading = |source| Error::ReadingSource {
        path: path.clone(),
        source,
    };
    let changed = || Error::SourceChanged {
        path: path.clone(),
        expected_bytes: member.size,
    };
    // O_NOFOLLOW: a file swapped for a symlink since the scan is not read.
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(reading)?;
    let mut source = NotingReader::new(&mut file);
    match tar.append(member, &mut source) {
        Ok(()) => {}
        Err(e) if source.failed => return Err(reading(e)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(changed()),
        Err(e) => return Err(Error::Writing(e)),
    }
    let mut probe = [0u8; 1];
    if file.read(&mut probe).map_err(reading)? != 0 {
        return Err(changed());
    }
    Ok(())
}
