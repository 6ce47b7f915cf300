//! Boot loaders: the images firmware runs to start a kernel. Unlike
//! [`crate::formats`], these run the boot loader's own tools (GRUB's core
//! images are linked by `grub-mkimage` from its modules), and they tie
//! formats together (a GRUB EFI loader inside a FAT ESP inside an ISO).

pub mod bios;
pub mod disk;
pub mod grub;
pub mod grub_cfg;
pub mod reed_solomon;
pub mod secure;
pub mod uki;
