//! The protective MBR in LBA 0 (UEFI 2.10, section 5.2.3): one partition of
//! type 0xEE covering the disk, so MBR-only tools see it as in use, and the
//! BIOS boot code in front of it.
//!
//! ```text
//!  offset  size  field
//!       0   440  BootCode (GRUB's boot.img on a BIOS-bootable disk; zero otherwise)
//!     440     4  UniqueMBRDiskSignature
//!     444     2  Unknown, zero
//!     446    16  PartitionRecord[0]: 0x00, CHS 000200, 0xEE, CHS FFFFFF, LBA 1, size
//!     462    48  PartitionRecord[1..4], zero
//!     510     2  Signature 0x55 0xAA
//! ```

use super::SECTOR_BYTES;
use super::header::put_u32;

/// The boot code area: everything before the disk signature.
pub const BOOT_CODE_BYTES: usize = 440;
const DISK_SIGNATURE_AT: usize = 440;
const PARTITION_RECORD_AT: usize = 446;
const SIGNATURE_AT: usize = 510;
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// The OS type that marks a GPT disk.
pub const GPT_PROTECTIVE_TYPE: u8 = 0xEE;
/// CHS of LBA 1 (cylinder 0, head 0, sector 2), as the spec writes it.
const START_CHS: [u8; 3] = [0x00, 0x02, 0x00];
/// CHS past what CHS can address.
const END_CHS: [u8; 3] = [0xFF, 0xFF, 0xFF];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectiveMbr {
    pub boot_code: [u8; BOOT_CODE_BYTES],
    pub disk_signature: u32,
}

impl ProtectiveMbr {
    /// An MBR with no boot code: firmware that boots BIOS-style finds nothing
    /// to run.
    pub fn without_boot_code(disk_signature: u32) -> Self {
        ProtectiveMbr {
            boot_code: [0; BOOT_CODE_BYTES],
            disk_signature,
        }
    }

    pub fn to_block(&self, disk_sectors: u64) -> [u8; SECTOR_BYTES as usize] {
        let mut b = [0u8; SECTOR_BYTES as usize];
        b[..BOOT_CODE_BYTES].copy_from_slice(&self.boot_code);
        put_u32(&mut b, DISK_SIGNATURE_AT, self.disk_signature);
        let record = &mut b[PARTITION_RECORD_AT..PARTITION_RECORD_AT + 16];
        record[1..4].copy_from_slice(&START_CHS);
        record[4] = GPT_PROTECTIVE_TYPE;
        record[5..8].copy_from_slice(&END_CHS);
        record[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = (disk_sectors - 1).min(u64::from(u32::MAX)) as u32;
        record[12..16].copy_from_slice(&size.to_le_bytes());
        b[SIGNATURE_AT..].copy_from_slice(&BOOT_SIGNATURE);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protective_partition_covers_the_disk_and_keeps_the_boot_code() {
        let mut mbr = ProtectiveMbr::without_boot_code(0x1234_5678);
        mbr.boot_code[0] = 0xEB;
        let b = mbr.to_block(16_777_216);
        assert_eq!(b[0], 0xEB);
        assert_eq!(&b[440..444], &0x1234_5678u32.to_le_bytes());
        assert_eq!(b[446 + 4], 0xEE);
        assert_eq!(u32::from_le_bytes(b[454..458].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(b[458..462].try_into().unwrap()),
            16_777_215
        );
        assert_eq!(&b[510..], &[0x55, 0xAA]);
        // A disk past 2 TiB: the size saturates.
        let big = mbr.to_block(1 << 33);
        assert_eq!(
            u32::from_le_bytes(big[458..462].try_into().unwrap()),
            u32::MAX
        );
    }
}
