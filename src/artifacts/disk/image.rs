//! From parts to an image file: the disk as a [`CompositeDisk`] of extents
//! (GPT head and tail, the BIOS boot area, one file per filesystem), written
//! as qcow2 by the qcow2 writer or as a sparse raw file. Neither needs a
//! raw file of the whole disk first.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::blockcache::{self, BlockStore};
use crate::formats::Progress;
use crate::formats::qcow2::{self, CompositeDisk, DiskSource, Qcow2Writer};

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A sparse raw disk.
    Raw,
    Qcow2 {
        compression: qcow2::Compression,
        level: Option<u32>,
    },
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 { .. } => "qcow2",
        }
    }
}

/// Raw images are written in chunks of this size; all-zero chunks are
/// skipped so the file stays sparse.
const RAW_CHUNK_BYTES: usize = 1 << 20;

/// Writes `disk` to `out` (empty) in `format`; returns the file's size and,
/// for qcow2 with a `block_cache`, what the cache did.
pub fn write(
    disk: &CompositeDisk,
    format: ImageFormat,
    jobs: usize,
    block_cache: Option<&Arc<BlockStore>>,
    out: &mut File,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<(u64, Option<blockcache::Stats>)> {
    match format {
        ImageFormat::Qcow2 { compression, level } => {
            let opts = qcow2::Options {
                compression,
                level,
                jobs,
                block_cache: block_cache.cloned(),
                ..qcow2::Options::default()
            };
            let summary =
                Qcow2Writer::with_progress(opts, progress)?.write_disk(disk, &mut *out)?;
            Ok((summary.file_size_bytes, summary.block_cache))
        }
        ImageFormat::Raw => {
            write_raw(disk, out, &*progress)?;
            Ok((disk.len_bytes(), None))
        }
    }
}

fn write_raw(disk: &CompositeDisk, out: &File, progress: &dyn Progress) -> io::Result<()> {
    out.set_len(disk.len_bytes())?;
    let mut buf = vec![0u8; RAW_CHUNK_BYTES];
    let mut data_bytes = 0;
    for range in disk.data_ranges()? {
        let mut at = range.start;
        while at < range.end {
            let n = (range.end - at).min(RAW_CHUNK_BYTES as u64) as usize;
            disk.read_at(&mut buf[..n], at)?;
            if buf[..n].iter().any(|&b| b != 0) {
                out.write_all_at(&buf[..n], at)?;
            }
            progress.advance(n as u64);
            data_bytes += n as u64;
            at += n as u64;
        }
    }
    // Holes count as written.
    progress.advance(disk.len_bytes().saturating_sub(data_bytes));
    Ok(())
}

/// A file that stands for a window of a disk: position `p` of the disk is
/// byte `p − base` of the file. Formatters that write a partition "at its
/// offset" (hadris-fat records the offset as hidden sectors) can then write
/// into a partition-sized file.
pub struct Window {
    file: File,
    base: u64,
    pos: u64,
}

impl Window {
    pub fn new(file: File, base: u64) -> Window {
        Window {
            file,
            base,
            pos: base,
        }
    }

    fn file_offset(&self) -> io::Result<u64> {
        self.pos.checked_sub(self.base).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "position before the window")
        })
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.file_offset()?)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.file_offset()?)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => (self.base + self.file.metadata()?.len()).checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::NoProgress;
    use crate::formats::qcow2::{Extent, ExtentData};

    #[test]
    fn a_window_maps_disk_offsets_onto_its_file() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        let mut w = Window::new(file.try_clone().unwrap(), 1 << 20);
        w.seek(SeekFrom::Start((1 << 20) + 100)).unwrap();
        w.write_all(b"fat").unwrap();
        let mut back = [0u8; 3];
        file.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(&back, b"fat");
        assert!(
            w.seek(SeekFrom::Start(0)).is_ok() && w.write(b"x").is_err(),
            "before the window"
        );
    }

    #[test]
    fn raw_images_hold_the_extents_at_their_offsets_and_stay_sparse() {
        let disk = CompositeDisk::new(
            64 << 20,
            vec![
                Extent {
                    offset_bytes: 0,
                    data: ExtentData::Bytes(vec![1; 512]),
                },
                Extent {
                    offset_bytes: 32 << 20,
                    data: ExtentData::Bytes(vec![2; 4096]),
                },
            ],
        )
        .unwrap();
        let mut out = tempfile::tempfile().unwrap();
        assert_eq!(
            write(
                &disk,
                ImageFormat::Raw,
                1,
                None,
                &mut out,
                Arc::new(NoProgress)
            )
            .unwrap(),
            (64 << 20, None)
        );
        let mut b = [0u8; 1];
        out.read_exact_at(&mut b, 511).unwrap();
        assert_eq!(b[0], 1);
        out.read_exact_at(&mut b, (32 << 20) + 4095).unwrap();
        assert_eq!(b[0], 2);
        use std::os::unix::fs::MetadataExt;
        assert!(
            out.metadata().unwrap().blocks() * 512 < 1 << 20,
            "holes stay holes"
        );
    }
}
