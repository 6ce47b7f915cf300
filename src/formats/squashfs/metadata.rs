//! Metadata blocks: the inode, directory, fragment, export, id and xattr tables
//! are streams cut into 8 KiB pieces, each compressed alone and prefixed with a
//! 16-bit header (length, bit 15 set = stored raw).
//!
//! ```text
//!   table start
//!   | hdr | block 0 (≤ 8 KiB uncompressed) | hdr | block 1 | ...
//!           ^ a reference is (block start relative to table start) << 16 | offset
//! ```
//!
//! Fixed-size records (ids, fragment entries, export entries, xattr ids) are
//! found through a "lookup table": the absolute positions of their metadata
//! blocks, as u64s, written right after the blocks.

use super::Error;
use super::compressor::Codec;

pub(crate) const METADATA_SIZE: usize = 8192;
const STORED_RAW: u16 = 0x8000;

/// A position in a metadata stream: which block (byte offset of its header
/// relative to the table start) and where in the uncompressed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MetaRef {
    pub block: u64,
    pub offset: u16,
}

impl MetaRef {
    /// The 48/16-bit packing used by inode references.
    pub fn packed(self) -> u64 {
        (self.block << 16) | self.offset as u64
    }
}

pub(crate) struct MetadataWriter {
    pending: Vec<u8>,
    out: Vec<u8>,
    /// Start (relative to the table) of every block flushed so far.
    block_starts: Vec<u64>,
    scratch: Vec<u8>,
}

impl MetadataWriter {
    pub fn new() -> MetadataWriter {
        MetadataWriter {
            pending: Vec::with_capacity(METADATA_SIZE),
            out: Vec::new(),
            block_starts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Where the next byte written will be.
    pub fn position(&self) -> MetaRef {
        MetaRef {
            block: self.out.len() as u64,
            offset: self.pending.len() as u16,
        }
    }

    /// Bytes written so far, counted uncompressed.
    pub fn uncompressed_position(&self) -> u64 {
        (self.block_starts.len() * METADATA_SIZE + self.pending.len()) as u64
    }

    pub fn write(&mut self, codec: &mut Codec, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let room = METADATA_SIZE - self.pending.len();
            let take = room.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == METADATA_SIZE {
                self.flush_block(codec)?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self, codec: &mut Codec) -> Result<(), Error> {
        self.block_starts.push(self.out.len() as u64);
        let compressed = codec.compress(&self.pending, &mut self.scratch)?;
        let (header, payload) = if compressed {
            (self.scratch.len() as u16, &self.scratch)
        } else {
            (self.pending.len() as u16 | STORED_RAW, &self.pending)
        };
        self.out.extend_from_slice(&header.to_le_bytes());
        self.out.extend_from_slice(payload);
        self.pending.clear();
        Ok(())
    }

    /// Flushes the partial last block and returns the table's bytes and the
    /// relative start of every block.
    pub fn finish(mut self, codec: &mut Codec) -> Result<(Vec<u8>, Vec<u64>), Error> {
        if !self.pending.is_empty() {
            self.flush_block(codec)?;
        }
        Ok((self.out, self.block_starts))
    }
}

/// Serialises fixed-size records into metadata blocks followed by their lookup
/// table, for a table that will start at absolute position `table_start`.
/// `header` (the xattr table has one) goes between the blocks and the lookup
/// list. Returns the bytes and the absolute position the superblock points at:
/// the header if there is one, else the lookup list.
pub(crate) fn lookup_table(
    codec: &mut Codec,
    records: &[u8],
    header: &[u8],
    table_start: u64,
) -> Result<(Vec<u8>, u64), Error> {
    let mut writer = MetadataWriter::new();
    writer.write(codec, records)?;
    let (mut bytes, starts) = writer.finish(codec)?;
    let pointed_at = table_start + bytes.len() as u64;
    bytes.extend_from_slice(header);
    for start in starts {
        bytes.extend_from_slice(&(table_start + start).to_le_bytes());
    }
    Ok((bytes, pointed_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::squashfs::compressor::{CodecSettings, Compression};

    fn codec() -> Codec {
        Codec::new(CodecSettings {
            compression: Compression::Gzip,
            level: 9,
            block_size: 131072,
        })
        .unwrap()
    }

    #[test]
    fn references_point_at_the_block_holding_the_byte() {
        let mut c = codec();
        let mut w = MetadataWriter::new();
        w.write(&mut c, &vec![7u8; METADATA_SIZE + 100]).unwrap();
        let here = w.position();
        assert_eq!(here.offset, 100);
        assert!(
            here.block > 2 && here.block < 200,
            "first block compressed well: {here:?}"
        );
        assert_eq!(w.uncompressed_position(), METADATA_SIZE as u64 + 100);
        let (bytes, starts) = w.finish(&mut c).unwrap();
        assert_eq!(starts, vec![0, here.block]);
        let first_header = u16::from_le_bytes([bytes[0], bytes[1]]);
        assert_eq!(
            first_header & STORED_RAW,
            0,
            "repetitive block is stored compressed"
        );
        assert_eq!(first_header as u64 + 2, here.block);
    }

    #[test]
    fn lookup_tables_list_absolute_block_positions() {
        let mut c = codec();
        // 3000 ids of 4 bytes = two metadata blocks
        let records: Vec<u8> = (0..3000u32).flat_map(|i| i.to_le_bytes()).collect();
        let (bytes, lookup) = lookup_table(&mut c, &records, &[], 1000).unwrap();
        let table = &bytes[(lookup - 1000) as usize..];
        assert_eq!(table.len(), 16);
        assert_eq!(u64::from_le_bytes(table[0..8].try_into().unwrap()), 1000);
        let second = u64::from_le_bytes(table[8..16].try_into().unwrap());
        let first_len = (u16::from_le_bytes([bytes[0], bytes[1]]) & !STORED_RAW) as u64 + 2;
        assert_eq!(second, 1000 + first_len);
    }
}
