//! A GPT partition entry (UEFI 2.10, section 5.3.3), 128 bytes each in the
//! partition entry array.
//!
//! ```text
//!  offset  size  field
//!       0    16  PartitionTypeGUID (mixed-endian; zero: unused entry)
//!      16    16  UniquePartitionGUID
//!      32     8  StartingLBA
//!      40     8  EndingLBA (inclusive)
//!      48     8  Attributes
//!      56    72  PartitionName, 36 UTF-16LE code units, zero-padded
//! ```

use super::Guid;
use super::header::put_u64;

/// Bytes per entry; the array holds [`super::ENTRY_COUNT`] of them.
pub const ENTRY_BYTES: u32 = 128;
/// UTF-16 code units in a partition name.
pub const NAME_UNITS: usize = 36;

const TYPE_GUID_AT: usize = 0;
const UNIQUE_GUID_AT: usize = 16;
const FIRST_LBA_AT: usize = 32;
const LAST_LBA_AT: usize = 40;
const ATTRIBUTES_AT: usize = 48;
const NAME_AT: usize = 56;

/// Attribute bit 0: the platform needs this partition to work; firmware and
/// partitioning tools should leave it alone.
pub const ATTR_REQUIRED_PARTITION: u64 = 1 << 0;
/// Attribute bit 2: legacy BIOS bootable (for firmware that boots GPT disks
/// through the MBR only when a partition says so).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    /// Inclusive, as GPT stores it.
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Entry {
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }

    /// Name length in UTF-16 code units (GPT's limit is [`NAME_UNITS`]).
    pub fn name_units(&self) -> usize {
        self.name.encode_utf16().count()
    }

    pub fn write_to(&self, b: &mut [u8]) {
        debug_assert_eq!(b.len(), ENTRY_BYTES as usize);
        b.fill(0);
        b[TYPE_GUID_AT..TYPE_GUID_AT + 16].copy_from_slice(&self.type_guid.to_gpt_bytes());
        b[UNIQUE_GUID_AT..UNIQUE_GUID_AT + 16].copy_from_slice(&self.unique_guid.to_gpt_bytes());
        put_u64(b, FIRST_LBA_AT, self.first_lba);
        put_u64(b, LAST_LBA_AT, self.last_lba);
        put_u64(b, ATTRIBUTES_AT, self.attributes);
        for (i, unit) in self.name.encode_utf16().take(NAME_UNITS).enumerate() {
            b[NAME_AT + 2 * i..NAME_AT + 2 * i + 2].copy_from_slice(&unit.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_store_lbas_little_endian_and_names_as_utf16() {
        let e = Entry {
            type_guid: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".parse().unwrap(),
            unique_guid: Guid([1; 16]),
            first_lba: 2048,
            last_lba: 4095,
            attributes: ATTR_LEGACY_BIOS_BOOTABLE,
            name: "root".into(),
        };
        let mut b = [0xffu8; 128];
        e.write_to(&mut b);
        assert_eq!(&b[0..4], &[0xAF, 0x3D, 0xC6, 0x0F]);
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 2048);
        assert_eq!(u64::from_le_bytes(b[40..48].try_into().unwrap()), 4095);
        assert_eq!(u64::from_le_bytes(b[48..56].try_into().unwrap()), 4);
        assert_eq!(&b[56..64], &[b'r', 0, b'o', 0, b'o', 0, b't', 0]);
        assert!(b[64..].iter().all(|&x| x == 0));
        assert_eq!(e.sectors(), 2048);
    }
}
