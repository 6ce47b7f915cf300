//! The virtual disk a qcow2 image is made from.
//!
//! A [`DiskSource`] is read with positional reads from several threads and tells
//! which byte ranges may hold data, so holes are skipped without being read.
//! [`RawFile`] is a raw disk image (holes found with `SEEK_DATA`/`SEEK_HOLE`);
//! [`CompositeDisk`] assembles a disk from extents (partition images, in-memory
//! GPT headers) with zeros in between, so the disk builder never needs a raw
//! file of the whole disk.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::Error;

/// A virtual disk of `len_bytes()` bytes.
pub trait DiskSource: Sync {
    fn len_bytes(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`; `offset + buf.len()` is at most
    /// `len_bytes()`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Sorted, non-overlapping ranges that may hold non-zero bytes. Everything
    /// else reads as zeros and is skipped unread.
    fn data_ranges(&self) -> io::Result<Vec<Range<u64>>>;
}

/// A raw disk image: a regular file or a block device.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    len_bytes: u64,
}

impl RawFile {
    pub fn new(file: File) -> io::Result<RawFile> {
        // Seeking to the end also gives a block device's size (its metadata says 0).
        let len_bytes = (&file).seek(SeekFrom::End(0))?;
        Ok(RawFile { file, len_bytes })
    }
}

impl DiskSource for RawFile {
    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset).map_err(shrank)
    }

    fn data_ranges(&self) -> io::Result<Vec<Range<u64>>> {
        file_data_ranges(&self.file, 0..self.len_bytes)
    }
}

/// Where an extent's bytes come from.
#[derive(Debug)]
pub enum ExtentData {
    /// `len_bytes` of `file` from byte `offset_bytes`; holes in the file are
    /// found with `SEEK_DATA` and skipped.
    File {
        file: File,
        offset_bytes: u64,
        len_bytes: u64,
    },
    /// Bytes held in memory (a partition table, a small boot image).
    Bytes(Vec<u8>),
}

impl ExtentData {
    pub fn len_bytes(&self) -> u64 {
        match self {
            ExtentData::File { len_bytes, .. } => *len_bytes,
            ExtentData::Bytes(b) => b.len() as u64,
        }
    }
}

/// Contents placed at byte `offset_bytes` of a [`CompositeDisk`].
#[derive(Debug)]
pub struct Extent {
    pub offset_bytes: u64,
    pub data: ExtentData,
}

impl Extent {
    fn end(&self) -> u64 {
        self.offset_bytes + self.data.len_bytes()
    }
}

/// A disk of `len_bytes` made of non-overlapping extents, zeros elsewhere.
#[derive(Debug)]
pub struct CompositeDisk {
    len_bytes: u64,
    /// Sorted by offset, non-empty, non-overlapping.
    extents: Vec<Extent>,
}

impl CompositeDisk {
    pub fn new(len_bytes: u64, mut extents: Vec<Extent>) -> Result<CompositeDisk, Error> {
        extents.retain(|e| e.data.len_bytes() > 0);
        extents.sort_by_key(|e| e.offset_bytes);
        let bad = |e: &Extent, reason| Error::BadExtent {
            offset: e.offset_bytes,
            len_bytes: e.data.len_bytes(),
            reason,
        };
        let mut previous_end = 0;
        for e in &extents {
            if e.offset_bytes < previous_end {
                return Err(bad(e, "overlaps the extent before it"));
            }
            if e.offset_bytes
                .checked_add(e.data.len_bytes())
                .is_none_or(|end| end > len_bytes)
            {
                return Err(bad(e, "ends past the end of the disk"));
            }
            if let ExtentData::File {
                file,
                offset_bytes,
                len_bytes,
            } = &e.data
            {
                let file_len =
                    (&*file)
                        .seek(SeekFrom::End(0))
                        .map_err(|source| Error::ReadingSource {
                            offset: e.offset_bytes,
                            source,
                        })?;
                if offset_bytes + len_bytes > file_len {
                    return Err(bad(e, "reaches past the end of its file"));
                }
            }
            previous_end = e.end();
        }
        Ok(CompositeDisk { len_bytes, extents })
    }
}

impl DiskSource for CompositeDisk {
    fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        let first = self.extents.partition_point(|e| e.end() <= offset);
        for e in self.extents[first..]
            .iter()
            .take_while(|e| e.offset_bytes < end)
        {
            let from = offset.max(e.offset_bytes);
            let to = end.min(e.end());
            let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
            let within = from - e.offset_bytes;
            match &e.data {
                ExtentData::File {
                    file, offset_bytes, ..
                } => file
                    .read_exact_at(dst, offset_bytes + within)
                    .map_err(shrank)?,
                ExtentData::Bytes(bytes) => {
                    dst.copy_from_slice(&bytes[within as usize..][..dst.len()]);
                }
            }
        }
        Ok(())
    }

    fn data_ranges(&self) -> io::Result<Vec<Range<u64>>> {
        let mut ranges = Vec::new();
        for e in &self.extents {
            match &e.data {
                ExtentData::Bytes(_) => ranges.push(e.offset_bytes..e.end()),
                ExtentData::File {
                    file,
                    offset_bytes,
                    len_bytes,
                } => {
                    let in_file = file_data_ranges(file, *offset_bytes..offset_bytes + len_bytes)?;
                    let shift = |x: u64| x - offset_bytes + e.offset_bytes;
                    ranges.extend(in_file.into_iter().map(|r| shift(r.start)..shift(r.end)));
                }
            }
        }
        Ok(ranges)
    }
}

/// The data regions of `file` within `span`, from `SEEK_DATA`/`SEEK_HOLE`.
/// Filesystems without them report the whole span as data.
fn file_data_ranges(file: &File, span: Range<u64>) -> io::Result<Vec<Range<u64>>> {
    let fd = file.as_raw_fd();
    let mut ranges = Vec::new();
    let mut pos = span.start;
    while pos < span.end {
        // SAFETY: lseek on a valid descriptor; it only moves this descriptor's
        // offset, which the positional reads used everywhere else ignore.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENXIO) {
                // No SEEK_DATA here (or a device): everything may be data.
                ranges.push(pos..span.end);
            }
            // ENXIO: nothing but a hole from `pos` to the end of the file.
            break;
        }
        let data = data as u64;
        if data >= span.end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            span.end
        } else {
            (hole as u64).min(span.end)
        };
        ranges.push(data..hole);
        pos = hole;
    }
    Ok(ranges)
}

/// A short read means the file shrank after its size was taken.
fn shrank(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(e.kind(), "the file shrank while it was being read")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sparse_file(len: u64, data_at: &[(u64, &[u8])]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(len).unwrap();
        for (offset, bytes) in data_at {
            f.seek(SeekFrom::Start(*offset)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f
    }

    #[test]
    fn raw_files_report_holes_as_missing_from_the_data_ranges() {
        let f = sparse_file(16 << 20, &[(4 << 20, &[7; 100])]);
        let raw = RawFile::new(f).unwrap();
        assert_eq!(raw.len_bytes(), 16 << 20);
        let ranges = raw.data_ranges().unwrap();
        // Filesystems allocate in blocks; the data byte range must be covered,
        // and (on anything with holes) most of the file left out.
        assert!(
            ranges
                .iter()
                .any(|r| r.start <= 4 << 20 && r.end >= (4 << 20) + 100)
        );
        let covered: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        assert!(
            covered < 16 << 20 || ranges == std::iter::once(0..16 << 20).collect::<Vec<_>>(),
            "{ranges:?}"
        );
    }

    #[test]
    fn composite_disks_read_extents_and_zeros_between_them() {
        let f = sparse_file(8192, &[(1000, b"file-bytes")]);
        let disk = CompositeDisk::new(
            10_000,
            vec![
                Extent {
                    offset_bytes: 5000,
                    data: ExtentData::File {
                        file: f,
                        offset_bytes: 1000,
                        len_bytes: 10,
                    },
                },
                Extent {
                    offset_bytes: 10,
                    data: ExtentData::Bytes(b"header".to_vec()),
                },
            ],
        )
        .unwrap();
        let mut buf = vec![0xffu8; 10_000];
        disk.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[10..16], b"header");
        assert_eq!(&buf[5000..5010], b"file-bytes");
        let nonzero = buf.iter().filter(|&&b| b != 0).count();
        assert_eq!(nonzero, 16, "everything else reads as zeros");
        let mut part = vec![0u8; 4];
        disk.read_at(&mut part, 5008).unwrap();
        assert_eq!(&part, b"es\0\0", "a read may start inside an extent");
        let ranges = disk.data_ranges().unwrap();
        assert_eq!(ranges[0], 10..16);
        assert!(ranges[1].start >= 5000 && ranges[1].end <= 5010);
    }

    #[test]
    fn overlapping_or_oversized_extents_are_refused() {
        let bytes = |offset_bytes, n| Extent {
            offset_bytes,
            data: ExtentData::Bytes(vec![1; n]),
        };
        let err = CompositeDisk::new(100, vec![bytes(0, 50), bytes(40, 10)]).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
        let err = CompositeDisk::new(100, vec![bytes(90, 20)]).unwrap_err();
        assert!(
            err.to_string().contains("past the end of the disk"),
            "{err}"
        );
        let short = Extent {
            offset_bytes: 0,
            data: ExtentData::File {
                file: sparse_file(10, &[]),
                offset_bytes: 5,
                len_bytes: 10,
            },
        };
        let err = CompositeDisk::new(100, vec![short]).unwrap_err();
        assert!(
            err.to_string().contains("past the end of its file"),
            "{err}"
        );
    }
}
