//! The disk `inspect` reads: a raw image or a qcow2 guest disk, and the
//! file debugfs reads an ext4 partition of it from.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::ext4;
use crate::formats::qcow2::Qcow2Reader;

/// A disk's bytes are copied to temporary files in chunks this big; all-zero
/// chunks are skipped so the copy stays sparse.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// The disk being read.
pub enum Source {
    Raw { file: File, path: PathBuf },
    Qcow2(Box<Qcow2Reader<File>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Raw { file, .. } => file.read(buf),
            Source::Qcow2(r) => r.read(buf),
        }
    }
}

impl Seek for Source {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            Source::Raw { file, .. } => file.seek(pos),
            Source::Qcow2(r) => r.seek(pos),
        }
    }
}

impl Source {
    pub(super) fn read_at(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Where debugfs can read the filesystem at `start`: the raw image
    /// itself, or a sparse copy of the partition (debugfs cannot read
    /// qcow2). The temporary file lives as long as the returned guard.
    pub(crate) fn ext4_target(
        &mut self,
        start: u64,
        len: u64,
    ) -> io::Result<(ext4::Target, Option<tempfile::NamedTempFile>)> {
        if let Source::Raw { path, .. } = self
            && ext4::spec_safe(path)
        {
            let target = ext4::Target {
                file: path.clone(),
                offset_bytes: start,
            };
            return Ok((target, None));
        }
        let copy = self.sparse_copy(start, len)?;
        let target = ext4::Target {
            file: copy.path().to_path_buf(),
            offset_bytes: 0,
        };
        Ok((target, Some(copy)))
    }
}

impl Source {
    /// The `len` bytes at `start` in a temporary file of their own, for
    /// tools that read a filesystem from the start of a file (fsck.fat,
    /// debugfs on qcow2). All-zero chunks are skipped, so it stays sparse.
    pub(crate) fn sparse_copy(
        &mut self,
        start: u64,
        len: u64,
    ) -> io::Result<tempfile::NamedTempFile> {
        let copy = tempfile::Builder::new()
            .prefix(".osforge-inspect-")
            .tempfile()?;
        copy.as_file().set_len(len)?;
        let mut buf = vec![0u8; COPY_CHUNK_BYTES];
        let mut done = 0u64;
        self.seek(SeekFrom::Start(start))?;
        while done < len {
            let n = (len - done).min(COPY_CHUNK_BYTES as u64) as usize;
            self.read_exact(&mut buf[..n])?;
            if !all_zero(&buf[..n]) {
                let mut f = copy.as_file();
                f.seek(SeekFrom::Start(done))?;
                f.write_all(&buf[..n])?;
            }
            done += n as u64;
        }
        Ok(copy)
    }
}

/// Whether every byte is zero: the first is, and each equals the next (one
/// `memcmp`, fast even in a debug build).
fn all_zero(buf: &[u8]) -> bool {
    buf.split_first()
        .is_none_or(|(&first, rest)| first == 0 && rest == &buf[..buf.len() - 1])
}
