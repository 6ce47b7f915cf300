//! GUID partition tables with a protective MBR, written as bytes.
//!
//! The disk builder never has the whole disk in a file: it assembles the
//! image from extents ([`crate::formats::qcow2::CompositeDisk`]). So this
//! writer does not write into a disk; [`PartitionTable::to_bytes`] returns
//! the two regions a GPT occupies, the head (protective MBR, primary header
//! and entry array, LBA 0 to 33) and the tail (backup entry array and
//! header, the last 33 LBAs), for the caller to place.
//!
//! ```text
//!  LBA 0        protective MBR (boot code, disk signature, one 0xEE record)
//!  LBA 1        primary header ──► entries at LBA 2
//!  LBA 2..33    128 entries of 128 bytes
//!  LBA 34..     partitions (first usable LBA 34; osforge aligns to 1 MiB)
//!  last-32..-1  backup entries
//!  last LBA     backup header ──► entries at last-32
//! ```
//!
//! [`read_table`] reads a table back, checking both header copies.
//!
//! Everything is checked when a partition is added (bounds, overlaps, name
//! length), so [`PartitionTable::to_bytes`] cannot fail. Written by hand
//! rather than with gptman: the format is three small structures, and the
//! caller needs bytes, not a writer over a disk that does not exist.

mod entry;
mod guid;
mod header;
mod mbr;
mod read;

pub use entry::{
    ATTR_LEGACY_BIOS_BOOTABLE, ATTR_REQUIRED_PARTITION, ENTRY_BYTES, Entry, NAME_UNITS,
};
pub use guid::{Guid, ParseGuidError};
pub use header::Header;
pub use mbr::{BOOT_CODE_BYTES, GPT_PROTECTIVE_TYPE, ProtectiveMbr};
pub use read::{HeaderCheck, HeaderError, MbrRecord, TableRead, parse_mbr, read_table};

/// GPT on these disks uses 512-byte logical blocks.
pub const SECTOR_BYTES: u64 = 512;
/// Entries in the array: the standard 128, which every tool expects.
pub const ENTRY_COUNT: u32 = 128;
/// Sectors of the entry array: 128 × 128 bytes.
pub const ENTRY_ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_BYTES as u64) / SECTOR_BYTES;
/// LBA of the primary header.
pub const PRIMARY_HEADER_LBA: u64 = 1;
/// LBA of the primary entry array.
pub const PRIMARY_ENTRIES_LBA: u64 = 2;
/// Sectors at the start the table uses: MBR, header, entries.
pub const HEAD_SECTORS: u64 = PRIMARY_ENTRIES_LBA + ENTRY_ARRAY_SECTORS;
/// Sectors at the end: backup entries and header.
pub const TAIL_SECTORS: u64 = ENTRY_ARRAY_SECTORS + 1;
/// The smallest disk with room for one sector of partition.
pub const MIN_DISK_SECTORS: u64 = HEAD_SECTORS + TAIL_SECTORS + 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("a disk of {size_bytes} bytes is not a whole number of {SECTOR_BYTES}-byte sectors")]
    UnalignedDiskSize { size_bytes: u64 },
    #[error("a disk of {size_bytes} bytes is too small for a GPT (at least {min_bytes})")]
    DiskTooSmall { size_bytes: u64, min_bytes: u64 },
    #[error("partition number {number} is outside 1..={ENTRY_COUNT}")]
    BadNumber { number: u32 },
    #[error("partition {number} is defined twice")]
    DuplicateNumber { number: u32 },
    #[error(
        "partition {number} (LBA {first_lba}..={last_lba}) is outside the usable area \
         (LBA {first_usable_lba}..={last_usable_lba})"
    )]
    OutOfRange {
        number: u32,
        first_lba: u64,
        last_lba: u64,
        first_usable_lba: u64,
        last_usable_lba: u64,
    },
    #[error("partition {number} (LBA {first_lba}..={last_lba}) overlaps partition {other}")]
    Overlapping {
        number: u32,
        other: u32,
        first_lba: u64,
        last_lba: u64,
    },
    #[error("partition {number}'s name '{name}' is longer than {NAME_UNITS} UTF-16 units")]
    NameTooLong { number: u32, name: String },
    #[error("partition {number} has the nil type GUID, which marks an unused entry")]
    NilType { number: u32 },
}

/// The two byte regions of a GPT disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableBytes {
    /// LBA 0 to [`HEAD_SECTORS`] − 1: MBR, primary header, primary entries.
    pub head: Vec<u8>,
    /// Backup entries and header.
    pub tail: Vec<u8>,
    /// Where `tail` goes: [`TAIL_SECTORS`] before the end of the disk.
    pub tail_offset_bytes: u64,
}

/// A partition table being assembled for a disk of a known size.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    disk_sectors: u64,
    disk_guid: Guid,
    /// Index = partition number − 1.
    entries: Vec<Option<Entry>>,
}

impl PartitionTable {
    pub fn new(disk_size_bytes: u64, disk_guid: Guid) -> Result<Self, Error> {
        if !disk_size_bytes.is_multiple_of(SECTOR_BYTES) {
            return Err(Error::UnalignedDiskSize {
                size_bytes: disk_size_bytes,
            });
        }
        let disk_sectors = disk_size_bytes / SECTOR_BYTES;
        if disk_sectors < MIN_DISK_SECTORS {
            return Err(Error::DiskTooSmall {
                size_bytes: disk_size_bytes,
                min_bytes: MIN_DISK_SECTORS * SECTOR_BYTES,
            });
        }
        Ok(PartitionTable {
            disk_sectors,
            disk_guid,
            entries: vec![None; ENTRY_COUNT as usize],
        })
    }

    pub fn first_usable_lba(&self) -> u64 {
        HEAD_SECTORS
    }

    pub fn last_usable_lba(&self) -> u64 {
        self.last_lba() - TAIL_SECTORS
    }

    fn last_lba(&self) -> u64 {
        self.disk_sectors - 1
    }

    /// Adds partition `number` (1-based). Fails if it does not fit or
    /// overlaps one added before.
    pub fn add(&mut self, number: u32, entry: Entry) -> Result<(), Error> {
        if number == 0 || number > ENTRY_COUNT {
            return Err(Error::BadNumber { number });
        }
        if entry.type_guid == Guid::NIL {
            return Err(Error::NilType { number });
        }
        if entry.name_units() > NAME_UNITS {
            return Err(Error::NameTooLong {
                number,
                name: entry.name.clone(),
            });
        }
        let (first_usable_lba, last_usable_lba) = (self.first_usable_lba(), self.last_usable_lba());
        if entry.first_lba > entry.last_lba
            || entry.first_lba < first_usable_lba
            || entry.last_lba > last_usable_lba
        {
            return Err(Error::OutOfRange {
                number,
                first_lba: entry.first_lba,
                last_lba: entry.last_lba,
                first_usable_lba,
                last_usable_lba,
            });
        }
        for (i, other) in self.entries.iter().enumerate() {
            if let Some(other) = other
                && entry.first_lba <= other.last_lba
                && other.first_lba <= entry.last_lba
            {
                return Err(Error::Overlapping {
                    number,
                    other: i as u32 + 1,
                    first_lba: entry.first_lba,
                    last_lba: entry.last_lba,
                });
            }
        }
        let slot = &mut self.entries[number as usize - 1];
        if slot.is_some() {
            return Err(Error::DuplicateNumber { number });
        }
        *slot = Some(entry);
        Ok(())
    }

    /// The head and tail regions, with `mbr` in LBA 0.
    pub fn to_bytes(&self, mbr: &ProtectiveMbr) -> TableBytes {
        let mut array = vec![0u8; (ENTRY_ARRAY_SECTORS * SECTOR_BYTES) as usize];
        for (slot, chunk) in self
            .entries
            .iter()
            .zip(array.chunks_mut(ENTRY_BYTES as usize))
        {
            if let Some(entry) = slot {
                entry.write_to(chunk);
            }
        }
        let entries_crc32 = libdeflater::crc32(&array);
        let backup_entries_lba = self.last_lba() - ENTRY_ARRAY_SECTORS;
        let primary = Header {
            my_lba: PRIMARY_HEADER_LBA,
            alternate_lba: self.last_lba(),
            first_usable_lba: self.first_usable_lba(),
            last_usable_lba: self.last_usable_lba(),
            disk_guid: self.disk_guid,
            entries_lba: PRIMARY_ENTRIES_LBA,
            entry_count: ENTRY_COUNT,
            entry_bytes: ENTRY_BYTES,
            entries_crc32,
        };
        let backup = Header {
            my_lba: self.last_lba(),
            alternate_lba: PRIMARY_HEADER_LBA,
            entries_lba: backup_entries_lba,
            ..primary
        };
        let mut head = Vec::with_capacity((HEAD_SECTORS * SECTOR_BYTES) as usize);
        head.extend_from_slice(&mbr.to_block(self.disk_sectors));
        head.extend_from_slice(&primary.to_block());
        head.extend_from_slice(&array);
        let mut tail = array;
        tail.extend_from_slice(&backup.to_block());
        TableBytes {
            head,
            tail,
            tail_offset_bytes: backup_entries_lba * SECTOR_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB_SECTORS: u64 = (1 << 20) / SECTOR_BYTES;

    fn linux(first_lba: u64, last_lba: u64, name: &str) -> Entry {
        Entry {
            type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".parse().unwrap(),
            unique_guid: Guid::from_random_bytes([9; 16]),
            first_lba,
            last_lba,
            attributes: 0,
            name: name.into(),
        }
    }

    #[test]
    fn head_and_tail_hold_matching_headers_and_entry_arrays() {
        let size = 64 << 20;
        let mut table = PartitionTable::new(size, Guid([3; 16])).unwrap();
        table
            .add(1, linux(MIB_SECTORS, 2 * MIB_SECTORS - 1, "a"))
            .unwrap();
        let bytes = table.to_bytes(&ProtectiveMbr::without_boot_code(1));
        assert_eq!(bytes.head.len() as u64, HEAD_SECTORS * SECTOR_BYTES);
        assert_eq!(bytes.tail.len() as u64, TAIL_SECTORS * SECTOR_BYTES);
        assert_eq!(bytes.tail_offset_bytes + bytes.tail.len() as u64, size);
        let primary_entries = &bytes.head[1024..];
        let backup_entries = &bytes.tail[..bytes.tail.len() - 512];
        assert_eq!(primary_entries, backup_entries);
        let primary = &bytes.head[512..1024];
        let backup = &bytes.tail[bytes.tail.len() - 512..];
        let lba = |h: &[u8], at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
        let last = size / SECTOR_BYTES - 1;
        assert_eq!(
            (lba(primary, 24), lba(primary, 32), lba(primary, 72)),
            (1, last, 2)
        );
        assert_eq!(
            (lba(backup, 24), lba(backup, 32), lba(backup, 72)),
            (last, 1, last - 32)
        );
        assert_eq!(lba(primary, 48), last - 33);
    }

    #[test]
    fn overlapping_out_of_range_and_duplicate_partitions_are_refused() {
        let mut table = PartitionTable::new(64 << 20, Guid::NIL).unwrap();
        table.add(1, linux(2048, 4095, "a")).unwrap();
        let e = table.add(2, linux(4000, 5000, "b")).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Overlapping {
                    number: 2,
                    other: 1,
                    ..
                }
            ),
            "{e}"
        );
        let e = table.add(2, linux(33, 100, "b")).unwrap_err();
        assert!(e.to_string().contains("outside the usable area"), "{e}");
        let last = (64 << 20) / SECTOR_BYTES - 1;
        assert!(table.add(2, linux(8192, last - 33, "b")).is_ok());
        assert!(matches!(
            table.add(3, linux(last - 33, last - 32, "c")),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            table.add(2, linux(6000, 6001, "c")),
            Err(Error::DuplicateNumber { number: 2 })
        ));
        assert!(matches!(
            table.add(129, linux(6000, 6001, "c")),
            Err(Error::BadNumber { number: 129 })
        ));
        let long = "x".repeat(37);
        assert!(matches!(
            table.add(4, linux(6000, 6001, &long)),
            Err(Error::NameTooLong { .. })
        ));
    }

    #[test]
    fn disks_too_small_or_unaligned_are_refused() {
        assert!(matches!(
            PartitionTable::new(1000, Guid::NIL),
            Err(Error::UnalignedDiskSize { .. })
        ));
        assert!(matches!(
            PartitionTable::new(512 * 67, Guid::NIL),
            Err(Error::DiskTooSmall { .. })
        ));
        assert!(PartitionTable::new(512 * 68, Guid::NIL).is_ok());
    }
}
