//! Directory listings in the directory table.
//!
//! ```text
//!  header: count-1 u32 | inode block u32 | base inode number u32
//!    entry: offset in inode block u16 | inode number - base i16 | type u16
//!           | name length-1 u16 | name
//!    ... up to 256 entries whose inodes share one metadata block
//!  header ...
//! ```
//!
//! Entries are sorted by name (bytewise, as the kernel's lookup expects). A
//! listing that spans metadata blocks gets an index: one entry for the first
//! header starting in each new block, so lookups in a 20,000-entry directory
//! jump close to the name instead of scanning from the top.

use super::Error;
use super::compressor::Codec;
use super::metadata::{METADATA_SIZE, MetaRef, MetadataWriter};
use super::superblock::Le;

const MAX_ENTRIES_PER_HEADER: usize = 256;

pub(crate) struct ChildEntry<'a> {
    pub name: &'a [u8],
    pub inode: MetaRef,
    pub inode_number: u32,
    pub basic_type: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirIndexEntry {
    /// Offset of the header within the listing.
    pub listing_offset: u32,
    /// Start of the metadata block holding that header, relative to the table.
    pub block: u32,
    /// First name under that header.
    pub name: Vec<u8>,
}

pub(crate) struct Listing {
    pub start: MetaRef,
    pub size: u32,
    pub index: Vec<DirIndexEntry>,
}

fn fits_delta(number: u32, base: u32) -> bool {
    i16::try_from(number as i64 - base as i64).is_ok()
}

pub(crate) fn write_listing(
    table: &mut MetadataWriter,
    codec: &mut Codec,
    entries: &[ChildEntry],
) -> Result<Listing, Error> {
    let start = table.position();
    let start_pos = table.uncompressed_position();
    let mut index = Vec::new();
    let mut indexed_block = start_pos / METADATA_SIZE as u64;
    let mut i = 0;
    while i < entries.len() {
        let first = &entries[i];
        let mut end = i + 1;
        while end < entries.len()
            && end - i < MAX_ENTRIES_PER_HEADER
            && entries[end].inode.block == first.inode.block
            && fits_delta(entries[end].inode_number, first.inode_number)
        {
            end += 1;
        }
        let header_pos = table.uncompressed_position();
        if header_pos / METADATA_SIZE as u64 != indexed_block {
            indexed_block = header_pos / METADATA_SIZE as u64;
            index.push(DirIndexEntry {
                listing_offset: (header_pos - start_pos) as u32,
                block: table.position().block as u32,
                name: first.name.to_vec(),
            });
        }
        let mut b = Le::with_capacity(12 + (end - i) * 24);
        b.u32((end - i - 1) as u32);
        b.u32(first.inode.block as u32);
        b.u32(first.inode_number);
        for e in &entries[i..end] {
            b.u16(e.inode.offset);
            b.i16((e.inode_number as i64 - first.inode_number as i64) as i16);
            b.u16(e.basic_type);
            b.u16(e.name.len() as u16 - 1);
            b.bytes(e.name);
        }
        table.write(codec, &b.0)?;
        i = end;
    }
    Ok(Listing {
        start,
        size: (table.uncompressed_position() - start_pos) as u32,
        index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::squashfs::compressor::{CodecSettings, Compression};

    fn codec() -> Codec {
        Codec::new(CodecSettings {
            compression: Compression::Zstd,
            level: 3,
            block_size: 131072,
        })
        .unwrap()
    }

    #[test]
    fn headers_split_at_256_entries_and_at_inode_block_changes() {
        let names: Vec<Vec<u8>> = (0..300).map(|i| format!("n{i:04}").into_bytes()).collect();
        let entries: Vec<ChildEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ChildEntry {
                name: n,
                inode: MetaRef {
                    block: if i < 290 { 0 } else { 5000 },
                    offset: (i * 10) as u16,
                },
                inode_number: i as u32 + 1,
                basic_type: 2,
            })
            .collect();
        let mut table = MetadataWriter::new();
        let listing = write_listing(&mut table, &mut codec(), &entries).unwrap();
        // three headers (256 + 34 + 10 entries), each 12 bytes, entries 8 + 5 bytes
        assert_eq!(listing.size, 3 * 12 + 300 * 13);
        assert!(listing.index.is_empty(), "fits in one metadata block");
    }

    #[test]
    fn large_listings_get_an_index_entry_per_metadata_block() {
        let names: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("entry-{i:06}").into_bytes())
            .collect();
        let entries: Vec<ChildEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| ChildEntry {
                name: n,
                inode: MetaRef {
                    block: (i / 300) as u64 * 3000,
                    offset: (i % 300 * 20) as u16,
                },
                inode_number: i as u32 + 1,
                basic_type: 2,
            })
            .collect();
        let mut table = MetadataWriter::new();
        let listing = write_listing(&mut table, &mut codec(), &entries).unwrap();
        let blocks = listing.size as usize / METADATA_SIZE;
        assert!(
            listing.index.len() >= blocks - 1 && listing.index.len() <= blocks + 1,
            "{} vs {blocks}",
            listing.index.len()
        );
        for pair in listing.index.windows(2) {
            assert!(pair[0].name < pair[1].name, "index names ascend");
            assert!(pair[0].listing_offset < pair[1].listing_offset);
        }
    }
}
