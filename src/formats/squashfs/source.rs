//! Feeding a [`SquashfsWriter`] from a directory or a tar stream.
//!
//! A directory is scanned first (names, lstat, xattrs; no data), so the caller
//! knows the total size for a progress bar, then added in sorted depth-first
//! order. A tar stream is added in archive order as it is read: a root
//! filesystem built in a user namespace keeps its owners in the tar (as with
//! tar2sqfs), and nothing needs root to turn it into an image.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{DeviceKind, EntryMeta, Error, FileContent, SquashfsWriter};
use crate::formats::dirtree::{DirTree, EntryKind, ScanError};

/// A scanned directory tree, ready to be added.
pub struct DirectorySource {
    tree: DirTree,
    /// Bytes of regular-file data (each hard-linked file once).
    pub total_bytes: u64,
}

fn scan_error(e: ScanError) -> Error {
    Error::ReadingSource {
        path: e.path.display().to_string(),
        source: e.source,
    }
}

impl DirectorySource {
    /// Walks `root` without following symlinks. `with_xattrs: false` skips
    /// reading them (faster when they will not be stored).
    pub fn scan(root: &Path, with_xattrs: bool) -> Result<DirectorySource, Error> {
        Self::scan_excluding(root, with_xattrs, &[])
    }

    /// Like [`scan`](Self::scan), leaving out every path under one of the
    /// `excluded` prefixes (relative, e.g. `boot/` keeps the directory but
    /// not its contents).
    pub fn scan_excluding(
        root: &Path,
        with_xattrs: bool,
        excluded: &[&[u8]],
    ) -> Result<DirectorySource, Error> {
        // Depth-first in sorted order, as mksquashfs reads them: tails of
        // neighbouring files share fragment blocks and compress together.
        let tree = DirTree::scan(root, with_xattrs, excluded).map_err(scan_error)?;
        let total_bytes = tree.total_bytes;
        Ok(DirectorySource { tree, total_bytes })
    }

    pub fn entry_count(&self) -> usize {
        self.tree.entries.len()
    }

    /// Adds every scanned entry, reading file data now.
    pub fn add_to(self, writer: &mut SquashfsWriter) -> Result<(), Error> {
        for e in &self.tree.entries {
            match &e.kind {
                EntryKind::Directory => writer.add_directory(&e.path, &e.meta)?,
                EntryKind::File { size } => {
                    let full = self.tree.host_path(e);
                    let file = File::open(&full).map_err(|source| Error::ReadingSource {
                        path: full.display().to_string(),
                        source,
                    })?;
                    writer.add_file(&e.path, &e.meta, FileContent::File(&file), *size)?;
                }
                EntryKind::Symlink(target) => writer.add_symlink(&e.path, &e.meta, target)?,
                EntryKind::Device { kind, major, minor } => {
                    writer.add_device(&e.path, &e.meta, *kind, *major, *minor)?
                }
                EntryKind::Fifo => writer.add_fifo(&e.path, &e.meta)?,
                EntryKind::Socket => writer.add_socket(&e.path, &e.meta)?,
                EntryKind::HardLink(first) => writer.add_hard_link(&e.path, first)?,
            }
        }
        Ok(())
    }
}

/// Adds every member of a tar stream (ustar, GNU or pax; GNU sparse members;
/// pax `SCHILY.xattr.*` records as written by GNU tar and mmdebstrap).
pub fn add_tar<R: Read>(writer: &mut SquashfsWriter, reader: R) -> Result<u64, Error> {
    let mut archive = tar::Archive::new(reader);
    let tar_err = |source: io::Error| Error::ReadingSource {
        path: "tar stream".into(),
        source,
    };
    let mut count = 0;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let path = entry.path_bytes().into_owned();
        let member_err = |source: io::Error| Error::ReadingSource {
            path: format!("tar member {}", String::from_utf8_lossy(&path)),
            source,
        };
        let header = entry.header().clone();
        let mut meta = EntryMeta {
            mode: header.mode().map_err(member_err)?,
            uid: header.uid().map_err(member_err)? as u32,
            gid: header.gid().map_err(member_err)? as u32,
            mtime: header.mtime().map_err(member_err)? as i64,
            xattrs: Vec::new(),
        };
        let mut sparse = PaxSparse::default();
        if let Some(pax) = entry.pax_extensions().map_err(member_err)? {
            for ext in pax {
                let ext = ext.map_err(member_err)?;
                let (key, value) = (ext.key_bytes(), ext.value_bytes());
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    meta.xattrs.push((name.to_vec(), value.to_vec()));
                } else if key == b"mtime" {
                    // pax times may carry a fraction: keep whole seconds
                    let text = String::from_utf8_lossy(value);
                    let whole = text.split('.').next().unwrap_or("");
                    meta.mtime = whole.parse().map_err(|_| {
                        member_err(io::Error::other(format!("bad pax mtime '{text}'")))
                    })?;
                } else if key.starts_with(b"GNU.sparse.") {
                    sparse.record(key, value).map_err(member_err)?;
                }
            }
        }
        let path = sparse.name.clone().unwrap_or_else(|| path.clone());
        let link_target = || {
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default()
        };
        use tar::EntryType as T;
        match header.entry_type() {
            T::Regular | T::Continuous if sparse.is_sparse() => {
                let mut reader = sparse.reader(&mut entry).map_err(member_err)?;
                let size = reader.logical_size;
                writer.add_file(&path, &meta, FileContent::Reader(&mut reader), size)?;
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size();
                writer.add_file(&path, &meta, FileContent::Reader(&mut entry), size)?;
            }
            T::Directory => writer.add_directory(&path, &meta)?,
            T::Symlink => writer.add_symlink(&path, &meta, &link_target())?,
            T::Link => writer.add_hard_link(&path, &link_target())?,
            T::Char | T::Block => {
                let major = header.device_major().map_err(member_err)?.unwrap_or(0);
                let minor = header.device_minor().map_err(member_err)?.unwrap_or(0);
                let kind = if header.entry_type() == T::Block {
                    DeviceKind::Block
                } else {
                    DeviceKind::Char
                };
                writer.add_device(&path, &meta, kind, major, minor)?;
            }
            T::Fifo => writer.add_fifo(&path, &meta)?,
            other => {
                return Err(member_err(io::Error::other(format!(
                    "unsupported tar entry type {other:?}"
                ))));
            }
        }
        count += 1;
    }
    Ok(count)
}

/// GNU tar's pax sparse formats (0.0, 0.1 and 1.0; tar writes them when
/// `--sparse` meets `--xattrs` or `--format=pax`), which the tar crate leaves
/// to us: the real name and size are pax records, and the map of data
/// segments is either in the records (0.x) or at the start of the data (1.0).
#[derive(Default)]
struct PaxSparse {
    name: Option<Vec<u8>>,
    real_size: Option<u64>,
    major: Option<u64>,
    map: Vec<u64>,
}

fn pax_number(value: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            io::Error::other(format!(
                "bad number '{}' in a pax sparse record",
                String::from_utf8_lossy(value)
            ))
        })
}

impl PaxSparse {
    fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match key {
            b"GNU.sparse.name" => self.name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                self.real_size = Some(pax_number(value)?)
            }
            b"GNU.sparse.major" => self.major = Some(pax_number(value)?),
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => self.map.push(pax_number(value)?),
            b"GNU.sparse.map" => {
                for n in value.split(|&b| b == b',') {
                    self.map.push(pax_number(n)?);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn is_sparse(&self) -> bool {
        self.real_size.is_some()
    }

    fn reader<'r, R: Read>(&self, data: &'r mut R) -> io::Result<SparseReader<&'r mut R>> {
        let logical_size = self.real_size.expect("checked by is_sparse");
        let mut map = self.map.clone();
        let mut consumed = 0u64;
        if self.major == Some(1) {
            // 1.0: decimal lines "count\n(offset\nsize\n)*" padded to 512 bytes
            let mut read_number = |consumed: &mut u64| -> io::Result<u64> {
                let mut digits = Vec::new();
                loop {
                    let mut b = [0u8];
                    data.read_exact(&mut b)?;
                    *consumed += 1;
                    if b[0] == b'\n' {
                        break;
                    }
                    digits.push(b[0]);
                }
                pax_number(&digits)
            };
            let count = read_number(&mut consumed)?;
            for _ in 0..count * 2 {
                map.push(read_number(&mut consumed)?);
            }
            let padding = (512 - consumed % 512) % 512;
            io::copy(&mut data.take(padding), &mut io::sink())?;
        }
        if !map.len().is_multiple_of(2) {
            return Err(io::Error::other(
                "pax sparse map has an odd number of values",
            ));
        }
        let segments: Vec<(u64, u64)> = map.chunks(2).map(|c| (c[0], c[1])).collect();
        let mut end = 0;
        for &(offset, len) in &segments {
            if offset < end || offset.checked_add(len).is_none_or(|e| e > logical_size) {
                return Err(io::Error::other(
                    "pax sparse map is out of order or past the file size",
                ));
            }
            end = offset + len;
        }
        Ok(SparseReader {
            data,
            segments,
            next: 0,
            pos: 0,
            logical_size,
        })
    }
}

/// Presents a sparse member's logical contents: zeros between the segments.
struct SparseReader<R> {
    data: R,
    segments: Vec<(u64, u64)>,
    next: usize,
    pos: u64,
    logical_size: u64,
}

impl<R: Read> Read for SparseReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.logical_size || buf.is_empty() {
            return Ok(0);
        }
        while self.next < self.segments.len()
            && self.pos >= self.segments[self.next].0 + self.segments[self.next].1
        {
            self.next += 1;
        }
        let (n, from_data) = match self.segments.get(self.next) {
            Some(&(offset, len)) if self.pos >= offset => {
                ((offset + len - self.pos).min(buf.len() as u64), true)
            }
            Some(&(offset, _)) => ((offset - self.pos).min(buf.len() as u64), false),
            None => ((self.logical_size - self.pos).min(buf.len() as u64), false),
        };
        let n = n as usize;
        if from_data {
            self.data.read_exact(&mut buf[..n])?;
        } else {
            buf[..n].fill(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}
