//! The GPT header (UEFI 2.10, section 5.3.2), one in LBA 1 and its backup
//! in the disk's last LBA.
//!
//! ```text
//!  offset  size  field
//!       0     8  Signature "EFI PART"
//!       8     4  Revision 0x00010000
//!      12     4  HeaderSize 92
//!      16     4  HeaderCRC32 (of the 92 bytes, this field zero)
//!      20     4  Reserved, zero
//!      24     8  MyLBA
//!      32     8  AlternateLBA
//!      40     8  FirstUsableLBA
//!      48     8  LastUsableLBA
//!      56    16  DiskGUID (mixed-endian)
//!      72     8  PartitionEntryLBA
//!      80     4  NumberOfPartitionEntries
//!      84     4  SizeOfPartitionEntry
//!      88     4  PartitionEntryArrayCRC32
//!      92   420  reserved, zero (rest of the 512-byte block)
//! ```

use super::{Guid, SECTOR_BYTES};

pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// GPT revision 1.0.
pub const REVISION: u32 = 0x0001_0000;
pub const HEADER_BYTES: u32 = 92;

const SIGNATURE_AT: usize = 0;
const REVISION_AT: usize = 8;
const HEADER_SIZE_AT: usize = 12;
const HEADER_CRC_AT: usize = 16;
const MY_LBA_AT: usize = 24;
const ALTERNATE_LBA_AT: usize = 32;
const FIRST_USABLE_AT: usize = 40;
const LAST_USABLE_AT: usize = 48;
const DISK_GUID_AT: usize = 56;
const ENTRIES_LBA_AT: usize = 72;
const ENTRY_COUNT_AT: usize = 80;
const ENTRY_SIZE_AT: usize = 84;
const ENTRIES_CRC_AT: usize = 88;

/// The fields of one header copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: Guid,
    pub entries_lba: u64,
    pub entry_count: u32,
    pub entry_bytes: u32,
    pub entries_crc32: u32,
}

impl Header {
    /// The header as one 512-byte block, its CRC filled in.
    pub fn to_block(&self) -> [u8; SECTOR_BYTES as usize] {
        let mut b = [0u8; SECTOR_BYTES as usize];
        b[SIGNATURE_AT..SIGNATURE_AT + 8].copy_from_slice(SIGNATURE);
        put_u32(&mut b, REVISION_AT, REVISION);
        put_u32(&mut b, HEADER_SIZE_AT, HEADER_BYTES);
        put_u64(&mut b, MY_LBA_AT, self.my_lba);
        put_u64(&mut b, ALTERNATE_LBA_AT, self.alternate_lba);
        put_u64(&mut b, FIRST_USABLE_AT, self.first_usable_lba);
        put_u64(&mut b, LAST_USABLE_AT, self.last_usable_lba);
        b[DISK_GUID_AT..DISK_GUID_AT + 16].copy_from_slice(&self.disk_guid.to_gpt_bytes());
        put_u64(&mut b, ENTRIES_LBA_AT, self.entries_lba);
        put_u32(&mut b, ENTRY_COUNT_AT, self.entry_count);
        put_u32(&mut b, ENTRY_SIZE_AT, self.entry_bytes);
        put_u32(&mut b, ENTRIES_CRC_AT, self.entries_crc32);
        let crc = libdeflater::crc32(&b[..HEADER_BYTES as usize]);
        put_u32(&mut b, HEADER_CRC_AT, crc);
        b
    }
}

pub(super) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_crc_covers_92_bytes_with_its_own_field_zeroed() {
        let h = Header {
            my_lba: 1,
            alternate_lba: 2047,
            first_usable_lba: 34,
            last_usable_lba: 2014,
            disk_guid: Guid([7; 16]),
            entries_lba: 2,
            entry_count: 128,
            entry_bytes: 128,
            entries_crc32: 0xdead_beef,
        };
        let mut b = h.to_block();
        assert_eq!(&b[..8], b"EFI PART");
        assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 92);
        let stored = u32::from_le_bytes(b[16..20].try_into().unwrap());
        b[16..20].fill(0);
        assert_eq!(stored, libdeflater::crc32(&b[..92]));
        assert!(b[92..].iter().all(|&x| x == 0));
    }
}
