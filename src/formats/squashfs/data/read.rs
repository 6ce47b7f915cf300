//! Reading source files block by block, skipping holes.

use super::*;

/// Reads a file block by block; for open files, regions that SEEK_DATA reports
/// as holes are not read at all.
pub(super) struct BlockReader<'a> {
    content: FileContent<'a>,
    /// Known data region `[start, end)` from the last SEEK_DATA/SEEK_HOLE pair.
    data_region: Option<(u64, u64)>,
    /// Known hole `[start, end)`.
    hole: Option<(u64, u64)>,
}

impl<'a> BlockReader<'a> {
    pub(super) fn new(content: FileContent<'a>) -> Self {
        BlockReader {
            content,
            data_region: None,
            hole: None,
        }
    }

    /// Fills `buf` with `len` bytes at `start`; returns true when the range is a
    /// hole (then `buf` is left empty).
    pub(super) fn read_block(
        &mut self,
        start: u64,
        len: usize,
        buf: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        buf.clear();
        if len == 0 {
            return Ok(false);
        }
        if let FileContent::File(f) = &self.content {
            let f: &'a File = f;
            let end = start + len as u64;
            if self.is_hole(f, start, end)? {
                return Ok(true);
            }
            buf.resize(len, 0);
            f.read_exact_at(buf, start).map_err(read_error)?;
        } else if let FileContent::Reader(r) = &mut self.content {
            buf.resize(len, 0);
            r.read_exact(buf).map_err(read_error)?;
        }
        Ok(false)
    }

    pub(super) fn is_hole(&mut self, f: &File, start: u64, end: u64) -> Result<bool, Error> {
        if self
            .data_region
            .is_some_and(|(s, e)| s <= start && start < e)
        {
            return Ok(false);
        }
        if self.hole.is_some_and(|(s, e)| s <= start && end <= e) {
            return Ok(true);
        }
        let fd = f.as_raw_fd();
        // SAFETY: lseek on a valid descriptor; it only moves this descriptor's
        // offset, which positional reads do not use.
        let data = unsafe { libc::lseek(fd, start as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENXIO) => {
                    self.hole = Some((start, u64::MAX));
                    Ok(true)
                }
                // Filesystems without SEEK_DATA: treat everything as data.
                _ => {
                    self.data_region = Some((start, u64::MAX));
                    Ok(false)
                }
            };
        }
        let data = data as u64;
        if data >= end {
            self.hole = Some((start, data));
            return Ok(true);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 { u64::MAX } else { hole as u64 };
        self.data_region = Some((start.min(data), hole));
        Ok(false)
    }
}

/// A read failure; the caller adds the path. A short read means the file
/// changed size between stat and read.
pub(super) fn read_error(e: std::io::Error) -> Error {
    let source = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        std::io::Error::other("file shrank while it was being read")
    } else {
        e
    };
    Error::ReadingSource {
        path: String::new(),
        source,
    }
}
