//! The output device hadris-iso writes to: a host file, written with
//! positioned writes, sparse where the image is zero, reporting progress.
//!
//! Why not hadris-storage's `FileDevice`: its flush calls `sync_data`
//! (osforge syncs once, in [`crate::util::output::AtomicOutput::commit`]),
//! and it writes every zero block. An ISO is mostly file data, but a
//! sparse multi-GB file (a test's `> 4 GiB` file, an empty disk image
//! shipped on the ISO) would otherwise be written out in full; skipping
//! all-zero chunks leaves holes instead, which read back as the same
//! zeros, so the image's bytes do not change.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use hadris_fs::{Error, ErrorKind, Location};
use hadris_storage::{BlockIndex, BlockSize};

use crate::formats::Progress;

/// ISO 9660 logical blocks: 2048 bytes, the only size hadris-iso writes.
pub const BLOCK_BYTES: u32 = 2048;

pub struct SparseFile<'a> {
    file: &'a File,
    /// Bytes up to the end of the last block written or skipped.
    len: u64,
    progress: &'a dyn Progress,
}

impl<'a> SparseFile<'a> {
    /// Truncates `file` to nothing, so that every block not written later
    /// is a hole that reads as zeros.
    pub fn new(file: &'a File, progress: &'a dyn Progress) -> io::Result<Self> {
        file.set_len(0)?;
        Ok(SparseFile {
            file,
            len: 0,
            progress,
        })
    }

    /// Extends the file over trailing zero blocks that were skipped.
    pub fn finish(self, total_bytes: u64) -> io::Result<()> {
        self.file.set_len(total_bytes.max(self.len))
    }

    fn offset(first: BlockIndex) -> Result<u64, Error<io::Error>> {
        first
            .get()
            .checked_mul(u64::from(BLOCK_BYTES))
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, "block address overflows")
                    .with_location(Location::Block(first.get()))
            })
    }
}

/// Whether every byte of `buf` is zero: the first byte is, and each byte
/// equals the next (one `memcmp`, which is vectorised).
fn all_zero(buf: &[u8]) -> bool {
    match buf.split_first() {
        None => true,
        Some((&first, rest)) => first == 0 && rest == &buf[..buf.len() - 1],
    }
}

impl hadris_io::ErrorType for SparseFile<'_> {
    type Error = io::Error;
}

impl hadris_storage::sync::BlockDevice for SparseFile<'_> {
    fn block_size(&self) -> BlockSize {
        BlockSize::new(BLOCK_BYTES).expect("2048 is not zero")
    }

    fn block_count(&self) -> u64 {
        self.len / u64::from(BLOCK_BYTES)
    }

    fn max_block_count(&self) -> u64 {
        u64::MAX / u64::from(BLOCK_BYTES)
    }

    fn writable(&self) -> bool {
        true
    }

    fn read_blocks(&mut self, first: BlockIndex, buf: &mut [u8]) -> Result<(), Error<io::Error>> {
        let mut at = Self::offset(first)?;
        let mut rest = &mut buf[..];
        while !rest.is_empty() {
            match self.file.read_at(rest, at) {
                // Past the end: a skipped zero block not yet covered by set_len.
                Ok(0) => {
                    rest.fill(0);
                    break;
                }
                Ok(n) => {
                    rest = &mut rest[n..];
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::device(e, "reading the image failed")
                        .with_location(Location::Block(first.get())));
                }
            }
        }
        Ok(())
    }

    fn write_blocks(&mut self, first: BlockIndex, buf: &[u8]) -> Result<(), Error<io::Error>> {
        let at = Self::offset(first)?;
        if !all_zero(buf) {
            self.file.write_all_at(buf, at).map_err(|e| {
                Error::device(e, "writing the image failed")
                    .with_location(Location::Block(first.get()))
            })?;
        }
        self.len = self.len.max(at + buf.len() as u64);
        self.progress.advance(buf.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection_checks_every_byte() {
        assert!(all_zero(&[]));
        assert!(all_zero(&[0; 4096]));
        let mut buf = [0u8; 4096];
        buf[4095] = 1;
        assert!(!all_zero(&buf));
        buf[4095] = 0;
        buf[0] = 7;
        assert!(!all_zero(&buf));
        assert!(!all_zero(&[1, 1, 1]));
    }
}
