//! GRUB for BIOS on a GPT disk, installed the way `grub-bios-setup` installs
//! it, but into bytes instead of onto a device.
//!
//! BIOS runs the 440 bytes of boot code in the MBR. GRUB's `boot.img` loads
//! the first sector of `core.img` from the LBA patched into it; that sector
//! (`diskboot.img`) loads the rest from the blocklist patched into its end.
//! On GPT, core.img lives in the BIOS boot partition (type
//! 21686148-6449-6E6F-744E-656564454649), contiguous, so one blocklist entry
//! covers it. What grub-bios-setup changes, with GRUB 2.06's offsets
//! (include/grub/i386/pc/boot.h, include/grub/offsets.h):
//!
//! ```text
//!  boot.img (→ MBR bytes 0..440)
//!    0x03..0x5A  BPB               copied from the disk's sector 0 (zero on a new disk)
//!    0x5C  u64   kernel_sector     LBA of core.img's first sector
//!    0x64  u8    boot_drive        0xFF: the drive the BIOS booted from
//!    0x66  2     boot_drive_check  0x90 0x90: the jump skipped for hard disks
//!    0x1B8..     disk signature, partition table: kept from the disk
//!  core.img, first sector (diskboot.img), blocklists growing down from its end
//!    0x1F4 u64 start, u16 len, u16 segment
//!                first entry       start = kernel_sector + 1, len = sectors − 1,
//!                                  segment 0x820 (loaded after the first sector at 0x8000)
//!    0x1E8       terminator        zero
//!  core.img, second sector (lzma_decompress.img)
//!    0x210 u32   reed_solomon_redundancy   bytes of parity after the image
//!    0x214 u16   no_reed_solomon_length    bytes at the start parity leaves out
//! ```
//!
//! The image is given the whole BIOS boot partition up to twice its own size
//! (and at most 888 sectors, what fits below 0x78000 in real mode), and the
//! space after it is filled with Reed-Solomon parity ([`super::reed_solomon`]),
//! as `grub-install` does by default (`--no-rs-codes` not given).

use super::reed_solomon;

pub const SECTOR_BYTES: usize = 512;
/// Bytes of the MBR that hold boot code.
pub const MBR_CODE_BYTES: usize = 440;
/// boot.img's BIOS parameter block, copied from the target's sector 0.
pub const BPB_START: usize = 0x03;
pub const BPB_END: usize = 0x5A;
/// boot.img: LBA of core.img's first sector (u64, little-endian).
pub const KERNEL_SECTOR_AT: usize = 0x5C;
/// boot.img: the BIOS drive to load from; 0xFF means the boot drive.
pub const BOOT_DRIVE_AT: usize = 0x64;
pub const BOOT_DRIVE_ANY: u8 = 0xFF;
/// boot.img: a 2-byte jump that skips a fix for BIOSes passing a wrong drive
/// number; replaced by NOPs for hard disks.
pub const DRIVE_CHECK_AT: usize = 0x66;
const NOP: u8 = 0x90;
/// A blocklist entry: u64 start, u16 length in sectors, u16 load segment.
pub const BLOCKLIST_BYTES: usize = 12;
/// The first blocklist entry sits at the end of core.img's first sector.
pub const FIRST_BLOCKLIST_AT: usize = SECTOR_BYTES - BLOCKLIST_BYTES;
/// Where core.img's first sector is loaded (segment 0x800); the rest follows it.
pub const KERNEL_SEGMENT: u16 = 0x800;
pub const FIRST_LOAD_SEGMENT: u16 = KERNEL_SEGMENT + (SECTOR_BYTES as u16 >> 4);
/// core.img: bytes of Reed-Solomon parity after the image (u32).
pub const REED_SOLOMON_REDUNDANCY_AT: usize = SECTOR_BYTES + 0x10;
/// core.img: bytes after the first sector that parity does not cover (u16).
pub const NO_REED_SOLOMON_LENGTH_AT: usize = SECTOR_BYTES + 0x14;
/// GRUB's link address for i386-pc; core.img must end below 0x78000.
const KERNEL_LINK_ADDR: usize = 0x9000;
const REAL_MODE_LIMIT: usize = 0x78000;
/// The most sectors GRUB embeds: what fits between its link address and
/// the real-mode limit.
pub const MAX_EMBED_SECTORS: u64 = ((REAL_MODE_LIMIT - KERNEL_LINK_ADDR) / SECTOR_BYTES) as u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("boot.img is {len_bytes} bytes, expected {SECTOR_BYTES}")]
    BadBootImage { len_bytes: usize },
    #[error("core.img of {len_bytes} bytes is too small or too large for i386-pc")]
    BadCoreImage { len_bytes: usize },
    #[error("core.img's first sector has no blocklist terminator (not an i386-pc core image?)")]
    NoBlocklistTerminator,
    #[error("core.img's no-Reed-Solomon length is unset (core.img from another GRUB version)")]
    CoreVersionMismatch,
    #[error(
        "core.img needs {needed_sectors} sectors but the BIOS boot partition has {partition_sectors}"
    )]
    PartitionTooSmall {
        needed_sectors: u64,
        partition_sectors: u64,
    },
}

/// What goes on the disk: MBR code and the BIOS boot partition's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedGrub {
    /// The MBR's first 440 bytes; the caller keeps its own disk signature
    /// and partition table after them.
    pub mbr_code: [u8; MBR_CODE_BYTES],
    /// core.img, padded and followed by parity: the first `sectors` of the
    /// BIOS boot partition.
    pub core_area: Vec<u8>,
}

impl EmbeddedGrub {
    pub fn sectors(&self) -> u64 {
        (self.core_area.len() / SECTOR_BYTES) as u64
    }
}

/// Patches `boot_img` and `core_img` (from `grub-mkimage -O i386-pc`) for a
/// BIOS boot partition at `partition_first_lba` of `partition_sectors`.
pub fn embed(
    boot_img: &[u8],
    core_img: &[u8],
    partition_first_lba: u64,
    partition_sectors: u64,
) -> Result<EmbeddedGrub, Error> {
    if boot_img.len() != SECTOR_BYTES {
        return Err(Error::BadBootImage {
            len_bytes: boot_img.len(),
        });
    }
    let core_bytes = core_img.len();
    if !(2 * SECTOR_BYTES..=0xFFFF * SECTOR_BYTES).contains(&core_bytes) {
        return Err(Error::BadCoreImage {
            len_bytes: core_bytes,
        });
    }
    let core_sectors = core_bytes.div_ceil(SECTOR_BYTES) as u64;
    let max_sectors = (2 * core_sectors).min(MAX_EMBED_SECTORS);
    // GRUB's GPT embed: the whole BIOS boot partition, up to max_sectors.
    let sectors = partition_sectors.min(max_sectors);
    if sectors < core_sectors {
        return Err(Error::PartitionTooSmall {
            needed_sectors: core_sectors,
            partition_sectors,
        });
    }

    let mut core = core_img.to_vec();
    clear_blocklists(&mut core)?;
    // One entry for sectors 1.. of the area: they follow the first at once.
    let first = FIRST_BLOCKLIST_AT;
    core[first..first + 8].copy_from_slice(&(partition_first_lba + 1).to_le_bytes());
    core[first + 8..first + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    core[first + 10..first + 12].copy_from_slice(&FIRST_LOAD_SEGMENT.to_le_bytes());
    core[first - BLOCKLIST_BYTES..first].fill(0);

    let mut boot = [0u8; SECTOR_BYTES];
    boot.copy_from_slice(boot_img);
    // The BPB of a freshly partitioned disk's sector 0: zero.
    boot[BPB_START..BPB_END].fill(0);
    boot[DRIVE_CHECK_AT] = NOP;
    boot[DRIVE_CHECK_AT + 1] = NOP;
    boot[BOOT_DRIVE_AT] = BOOT_DRIVE_ANY;
    boot[KERNEL_SECTOR_AT..KERNEL_SECTOR_AT + 8]
        .copy_from_slice(&partition_first_lba.to_le_bytes());

    let area_bytes = sectors as usize * SECTOR_BYTES;
    core.resize(area_bytes, 0);
    let no_rs = u16::from_le_bytes([
        core[NO_REED_SOLOMON_LENGTH_AT],
        core[NO_REED_SOLOMON_LENGTH_AT + 1],
    ]);
    if no_rs == 0xFFFF {
        return Err(Error::CoreVersionMismatch);
    }
    let redundancy = (area_bytes - core_bytes) as u32;
    core[REED_SOLOMON_REDUNDANCY_AT..REED_SOLOMON_REDUNDANCY_AT + 4]
        .copy_from_slice(&redundancy.to_le_bytes());
    let protected_from = SECTOR_BYTES + no_rs as usize;
    reed_solomon::add_redundancy(&mut core[protected_from..], core_bytes - protected_from);

    let mut mbr_code = [0u8; MBR_CODE_BYTES];
    mbr_code.copy_from_slice(&boot[..MBR_CODE_BYTES]);
    Ok(EmbeddedGrub {
        mbr_code,
        core_area: core,
    })
}

/// Zeroes the blocklist entries mkimage left, from the end of the first
/// sector down to the first empty one.
fn clear_blocklists(core: &mut [u8]) -> Result<(), Error> {
    let mut at = FIRST_BLOCKLIST_AT;
    loop {
        let len = u16::from_le_bytes([core[at + 8], core[at + 9]]);
        if len == 0 {
            return Ok(());
        }
        core[at..at + BLOCKLIST_BYTES].fill(0);
        if at < BLOCKLIST_BYTES {
            return Err(Error::NoBlocklistTerminator);
        }
        at -= BLOCKLIST_BYTES;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in core.img: a first sector with mkimage's default blocklist
    /// (start 2, len N, segment 0x820) and a no-RS length of 0x100.
    fn fake_core(len: usize) -> Vec<u8> {
        let mut core: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        core[..SECTOR_BYTES].fill(0x11);
        core[FIRST_BLOCKLIST_AT..FIRST_BLOCKLIST_AT + 8].copy_from_slice(&2u64.to_le_bytes());
        core[FIRST_BLOCKLIST_AT + 8..FIRST_BLOCKLIST_AT + 10].copy_from_slice(&60u16.to_le_bytes());
        core[FIRST_BLOCKLIST_AT + 10..FIRST_BLOCKLIST_AT + 12]
            .copy_from_slice(&0x820u16.to_le_bytes());
        core[FIRST_BLOCKLIST_AT - 12..FIRST_BLOCKLIST_AT].fill(0);
        core[REED_SOLOMON_REDUNDANCY_AT..REED_SOLOMON_REDUNDANCY_AT + 4].fill(0);
        core[NO_REED_SOLOMON_LENGTH_AT..NO_REED_SOLOMON_LENGTH_AT + 2]
            .copy_from_slice(&0x100u16.to_le_bytes());
        core
    }

    #[test]
    fn boot_img_points_at_the_partition_and_diskboot_at_the_sectors_after_it() {
        let boot = vec![0xAA; 512];
        let core = fake_core(30 * 512 + 17);
        let grub = embed(&boot, &core, 2048, 8192).unwrap();
        let m = &grub.mbr_code;
        assert_eq!(u64::from_le_bytes(m[0x5C..0x64].try_into().unwrap()), 2048);
        assert_eq!(m[0x64], 0xFF);
        assert_eq!(&m[0x66..0x68], &[0x90, 0x90]);
        assert!(
            m[0x03..0x5A].iter().all(|&b| b == 0),
            "BPB as on a new disk"
        );
        assert_eq!(m[0], 0xAA);
        // 31 sectors of image, given 62 (twice) with parity in the rest.
        assert_eq!(grub.sectors(), 62);
        let c = &grub.core_area;
        assert_eq!(
            u64::from_le_bytes(c[0x1F4..0x1FC].try_into().unwrap()),
            2049
        );
        assert_eq!(u16::from_le_bytes(c[0x1FC..0x1FE].try_into().unwrap()), 61);
        assert_eq!(
            u16::from_le_bytes(c[0x1FE..0x200].try_into().unwrap()),
            0x820
        );
        assert!(c[0x1E8..0x1F4].iter().all(|&b| b == 0), "terminator");
        assert_eq!(
            u32::from_le_bytes(c[0x210..0x214].try_into().unwrap()) as usize,
            62 * 512 - core.len()
        );
        assert_eq!(
            &c[0x300..core.len()],
            &core[0x300..],
            "the image itself is unchanged"
        );
        assert!(c[core.len()..].iter().any(|&b| b != 0), "parity written");
    }

    #[test]
    fn a_small_bios_boot_partition_limits_the_parity_and_a_tiny_one_is_refused() {
        let core = fake_core(30 * 512);
        let grub = embed(&[0; 512], &core, 34, 40).unwrap();
        assert_eq!(grub.sectors(), 40);
        let err = embed(&[0; 512], &core, 34, 29).unwrap_err();
        assert_eq!(
            err,
            Error::PartitionTooSmall {
                needed_sectors: 30,
                partition_sectors: 29
            }
        );
        assert!(matches!(
            embed(&[0; 100], &core, 34, 100),
            Err(Error::BadBootImage { .. })
        ));
    }
}
