//! A hadris block device over any `Read + Write + Seek`, limited to a byte
//! window of it.
//!
//! hadris-storage's own `FileDevice` is a whole file and calls `sync_data`
//! on every flush; osforge wants to format a window of a larger disk image
//! (an ESP partition) as well as a whole `efiboot.img`, and leaves
//! durability to [`crate::util::output::AtomicOutput::commit`], which syncs
//! once at the end. So this adapter: block 0 is byte `offset` of the
//! stream, the device is `len` bytes long, flushes only flush.

use std::io::{self, Read, Seek, SeekFrom, Write};

use hadris_fs::{Error, ErrorKind, Location};
use hadris_storage::{BlockIndex, BlockSize};

/// FAT's logical sector size on disks and images: every firmware reads it.
pub const SECTOR_BYTES: u32 = 512;

pub struct WindowDevice<T> {
    inner: T,
    offset: u64,
    len: u64,
}

impl<T: Read + Write + Seek> WindowDevice<T> {
    /// The `len` bytes of `inner` from byte `offset`; both multiples of
    /// [`SECTOR_BYTES`] (the caller checks).
    pub fn new(inner: T, offset: u64, len: u64) -> Self {
        debug_assert!(
            offset.is_multiple_of(u64::from(SECTOR_BYTES))
                && len.is_multiple_of(u64::from(SECTOR_BYTES))
        );
        WindowDevice { inner, offset, len }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    fn locate(&self, first: BlockIndex, bytes: usize) -> Result<u64, Error<io::Error>> {
        let start = first
            .get()
            .checked_mul(u64::from(SECTOR_BYTES))
            .filter(|start| start.saturating_add(bytes as u64) <= self.len)
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, "block past the end of the window")
                    .with_location(Location::Block(first.get()))
            })?;
        Ok(self.offset + start)
    }
}

impl<T> hadris_io::ErrorType for WindowDevice<T> {
    type Error = io::Error;
}

impl<T: Read + Write + Seek> hadris_storage::sync::BlockDevice for WindowDevice<T> {
    fn block_size(&self) -> BlockSize {
        BlockSize::new(SECTOR_BYTES).expect("512 is not zero")
    }

    fn block_count(&self) -> u64 {
        self.len / u64::from(SECTOR_BYTES)
    }

    fn writable(&self) -> bool {
        true
    }

    fn read_blocks(&mut self, first: BlockIndex, buf: &mut [u8]) -> Result<(), Error<io::Error>> {
        let at = self.locate(first, buf.len())?;
        self.inner
            .seek(SeekFrom::Start(at))
            .and_then(|_| read_filling_holes(&mut self.inner, buf))
            .map_err(|e| {
                Error::device(e, "reading the image failed")
                    .with_location(Location::Block(first.get()))
            })
    }

    fn write_blocks(&mut self, first: BlockIndex, buf: &[u8]) -> Result<(), Error<io::Error>> {
        let at = self.locate(first, buf.len())?;
        self.inner
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.inner.write_all(buf))
            .map_err(|e| {
                Error::device(e, "writing the image failed")
                    .with_location(Location::Block(first.get()))
            })
    }

    fn flush(&mut self) -> Result<(), Error<io::Error>> {
        self.inner
            .flush()
            .map_err(|e| Error::device(e, "flushing the image failed"))
    }
}

/// Reads `buf` whole; bytes past the end of the stream read as zeros, as
/// they would in a file extended with `set_len`.
fn read_filling_holes(reader: &mut impl Read, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match reader.read(buf) {
            Ok(0) => {
                buf.fill(0);
                return Ok(());
            }
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A reader that refuses writes, so [`WindowDevice`] can serve a FAT volume
/// that is only read (mounted `read_only`, which never writes) out of a
/// source that cannot be written, such as a qcow2 image's guest disk.
pub struct ReadOnly<T>(pub T);

impl<T: Read> Read for ReadOnly<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<T: Seek> Seek for ReadOnly<T> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl<T> Write for ReadOnly<T> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the volume is opened read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
