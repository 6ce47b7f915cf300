//! How an ISO boots: El Torito entries for optical media, and a partition
//! table in the system area (the first 32 KiB) for disks and USB sticks.
//!
//! ```text
//!  byte 0        MBR: boot code (GRUB boot_hybrid.img) | partition entries
//!  byte 512      GPT header, then partition entries     (system area,
//!  ...                                                   16 × 2048 bytes)
//!  block 16      primary volume descriptor, boot record (→ catalog),
//!                Joliet descriptor, terminator
//!  ...           directories, path tables, catalog, file data
//!                (the BIOS El Torito image is a file of the tree)
//!  ...           appended ESP (FAT efiboot.img): El Torito UEFI entry and
//!                the GPT's EFI system partition point at the same bytes
//!  end           padding, backup GPT
//! ```
//!
//! The four ways in:
//! - BIOS, CD: firmware loads 4 sectors of the no-emulation image (GRUB's
//!   `cdboot.img`), which reads the rest using the boot info table.
//! - BIOS, disk: firmware runs the MBR code, which loads the sector at the
//!   64-bit address at byte 432 (`0x1b0`): the boot image's second 2048-byte
//!   part, GRUB's `diskboot.img`, whose block list was patched to the image's
//!   address by `--grub2-boot-info`.
//! - UEFI, CD: firmware reads the El Torito UEFI entry, a FAT image, and
//!   runs `EFI/BOOT/BOOTX64.EFI` from it.
//! - UEFI, disk: firmware reads the GPT, finds the EFI system partition
//!   (the same FAT image) and runs the same file.
//!
//! The partition table defaults to a GPT with a hybrid MBR: the GPT for
//! UEFI, and in the MBR a bootable partition over the ISO and one over the
//! ESP, because some BIOSes only boot a disk with an active partition and
//! some UEFI firmware only looks at MBR partitions. It is what xorriso
//! writes for Debian's and Fedora's hybrid ISOs (`-isohybrid-gpt-basdat`);
//! the MBR-only layout of `grub-mkrescue` and Airship
//! (`-append_partition 2 0xef`) is available as [`PartitionTable::Mbr`]
//! with the ESP stored as a file.

use std::path::PathBuf;

/// The sectors BIOS loads of a no-emulation image: 4 × 512 = one CD
/// block, GRUB's `cdboot.img` (`-boot-load-size 4`).
pub const DEFAULT_LOAD_SECTORS: u16 = 4;
/// Where MBR boot code reads the 512-byte address of the sector to load
/// next (GRUB's `boot_hybrid.img`, syslinux's `isohdpfx.bin`).
pub const MBR_BOOT_ADDRESS_OFFSET: u64 = 0x1b0;
/// Boot code in an MBR ends before the disk signature.
pub const MBR_CODE_BYTES: usize = 440;
/// 512-byte sectors per ISO block.
pub const SECTORS_PER_BLOCK: u64 = 4;

/// How the image boots; paths are paths inside the ISO.
#[derive(Debug, Clone, Default)]
pub struct BootConfig {
    pub bios: Option<BiosBoot>,
    pub uefi: Option<UefiBoot>,
    pub partition_table: PartitionTable,
    /// Shows the El Torito catalog as this file (`xorriso -c`); hidden,
    /// as grub-mkrescue leaves it, when `None`.
    pub catalog_path: Option<String>,
}

/// The El Torito BIOS entry: a no-emulation image that is a file of the tree.
#[derive(Debug, Clone)]
pub struct BiosBoot {
    /// The image's path in the ISO, e.g. `boot/grub/i386-pc/eltorito.img`.
    pub image: String,
    /// 512-byte sectors the BIOS loads ([`DEFAULT_LOAD_SECTORS`]).
    pub load_sectors: u16,
    pub boot_info: BootInfoTable,
    /// MBR boot code for booting the image from a disk.
    pub mbr: Option<MbrBootCode>,
}

impl BiosBoot {
    /// GRUB's `i386-pc-eltorito` image at `image`, with `boot_hybrid.img`
    /// as MBR code: what `xorriso -b IMAGE -no-emul-boot -boot-load-size 4
    /// -boot-info-table --grub2-boot-info --grub2-mbr boot_hybrid.img` does.
    pub fn grub2(image: &str, boot_hybrid: Vec<u8>) -> Self {
        BiosBoot {
            image: image.to_string(),
            load_sectors: DEFAULT_LOAD_SECTORS,
            boot_info: BootInfoTable::Grub2,
            mbr: Some(MbrBootCode::Grub2(boot_hybrid)),
        }
    }
}

/// What is patched into the BIOS image when the ISO is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoTable {
    None,
    /// `-boot-info-table`: ISOLINUX.
    Table,
    /// `-boot-info-table --grub2-boot-info`: GRUB 2's `eltorito.img`.
    Grub2,
}

/// MBR boot code, at most [`MBR_CODE_BYTES`] are used.
#[derive(Debug, Clone)]
pub enum MbrBootCode {
    /// GRUB's `boot_hybrid.img` (`--grub2-mbr`): byte 432 gets the boot
    /// image's 512-byte address plus 4, the sector after `cdboot.img`.
    Grub2(Vec<u8>),
    /// syslinux's `isohdpfx.bin` (`-isohybrid-mbr`): byte 432 gets the
    /// boot image's 512-byte address.
    Isohybrid(Vec<u8>),
}

impl MbrBootCode {
    pub fn code(&self) -> &[u8] {
        match self {
            MbrBootCode::Grub2(code) | MbrBootCode::Isohybrid(code) => code,
        }
    }

    /// The value at [`MBR_BOOT_ADDRESS_OFFSET`] for a boot image at ISO
    /// block `image_block`.
    pub fn boot_address(&self, image_block: u64) -> u64 {
        match self {
            MbrBootCode::Grub2(_) => image_block * SECTORS_PER_BLOCK + SECTORS_PER_BLOCK,
            MbrBootCode::Isohybrid(_) => image_block * SECTORS_PER_BLOCK,
        }
    }
}

/// The El Torito UEFI entry: a FAT image holding `EFI/BOOT/BOOTX64.EFI`.
#[derive(Debug, Clone)]
pub struct UefiBoot {
    pub esp: EspImage,
    pub placement: EspPlacement,
}

#[derive(Debug, Clone)]
pub enum EspImage {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Where the ESP image is stored; either way it is stored once, and El
/// Torito and the GPT point at the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EspPlacement {
    /// After the files, in no directory (`-append_partition 2 0xef`).
    #[default]
    Appended,
    /// As a file of the tree at this path (`-e PATH`).
    File(String),
}

/// The partition table in the system area, for booting from a disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionTable {
    /// Optical media only.
    None,
    /// An MBR with one bootable partition over the ISO: BIOS disks only.
    Mbr,
    /// A GPT with a protective MBR: UEFI disks only (no MBR boot code).
    Gpt,
    /// A GPT and a hybrid MBR: BIOS and UEFI disks.
    #[default]
    GptHybridMbr,
}
