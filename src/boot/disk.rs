//! GRUB for installed disks: the core images a GPT disk boots, and the files
//! `grub-install` would leave in `/boot/grub`.
//!
//! Both core images embed the same early config, which finds the filesystem
//! holding `/boot` by its UUID (fixed before the filesystem is made, so the
//! config can name it) and loads `grub.cfg` from it:
//! ```text
//! search --no-floppy --fs-uuid --set=root <uuid of the /boot filesystem>
//! set prefix=($root)/grub          (/boot/grub when /boot is on the root filesystem)
//! configfile ($root)/grub/grub.cfg
//! ```
//! That is what grub-install's `load.cfg` does (with `search.fs_uuid`), and
//! it keeps working after the host runs `update-grub`, which rewrites
//! `/boot/grub/grub.cfg` in place. Searching by UUID rather than by
//! partition number means a disk moved to another controller, or with a
//! config drive attached beside it, still boots.
//!
//! The modules a first boot needs are embedded; the platform directories
//! are also copied to `/boot/grub/<platform>/`, because configs written
//! later by `update-grub` load modules with `insmod` from there.
//!
//! The BIOS image is `grub-mkimage -O i386-pc` (diskboot.img + kernel),
//! installed by [`super::bios::embed`]; the UEFI one is the removable-media
//! loader `EFI/BOOT/BOOTX64.EFI`, which firmware finds on the ESP without
//! a boot entry in NVRAM (Ironic-deployed hosts have none at first).

use std::io;
use std::path::{Path, PathBuf};

use super::grub::{self, Error, Mkimage};
use crate::formats::gpt::Guid;

/// Modules in the BIOS core image: read GPT disks and ext2/3/4 through the
/// BIOS, find /boot, run the menu, talk over serial, boot Linux.
pub const BIOS_MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "part_msdos",
    "ext2",
    "fat",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "echo",
    "test",
    "ls",
    "cat",
    "serial",
    "terminal",
    "linux",
    "halt",
    "reboot",
];
/// Modules in `BOOTX64.EFI`: the same over UEFI disks, plus the framebuffer.
pub const EFI_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "ext2",
    "fat",
    "search",
    "search_fs_uuid",
    "configfile",
    "normal",
    "echo",
    "test",
    "ls",
    "cat",
    "serial",
    "terminal",
    "linux",
    "halt",
    "reboot",
    "efi_gop",
];
/// grub-bios-setup's first stage, copied into the MBR.
pub const BOOT_IMG: &str = "boot.img";
/// An empty GRUB environment block (`grub-editenv create`): 1024 bytes.
pub const GRUBENV_BYTES: usize = 1024;
const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

pub struct DiskGrubOptions<'a> {
    /// GRUB's lib dir, holding `i386-pc/` and `x86_64-efi/` (the image's own
    /// when it has GRUB installed, so modules match what it updates later).
    pub lib_dir: &'a Path,
    pub boot_fs_uuid: Guid,
    /// The GRUB directory inside the /boot filesystem: `/grub` when /boot is
    /// a partition of its own, `/boot/grub` when it is on the root filesystem.
    pub grub_dir: &'a str,
    pub bios: bool,
    pub uefi: bool,
    /// `grub-mkimage` to run; found on PATH when `None`.
    pub mkimage: Option<&'a Path>,
}

/// The images; [`super::bios::embed`] patches the BIOS pair for its place.
#[derive(Debug, Clone)]
pub struct DiskGrub {
    pub early_config: String,
    pub boot_img: Option<Vec<u8>>,
    pub core_img: Option<Vec<u8>>,
    pub efi_loader: Option<Vec<u8>>,
}

pub fn early_config(boot_fs_uuid: Guid, grub_dir: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {boot_fs_uuid}\n\
         set prefix=($root){grub_dir}\n\
         configfile ($root){grub_dir}/grub.cfg\n"
    )
}

/// Runs grub-mkimage for each platform asked for.
pub fn build(opts: &DiskGrubOptions) -> Result<DiskGrub, Error> {
    let early_config = early_config(opts.boot_fs_uuid, opts.grub_dir);
    let running = |source| Error::Running {
        tool: "a temporary directory".into(),
        source,
    };
    let work = tempfile::Builder::new()
        .prefix("osforge-grub-disk-")
        .tempdir()
        .map_err(running)?;
    crate::util::cleanup::register(work.path());
    let result = (|| {
        let config = work.path().join("early.cfg");
        std::fs::write(&config, &early_config).map_err(running)?;
        let tool = match opts.mkimage {
            Some(p) => p.to_path_buf(),
            None => grub::find_mkimage().ok_or(Error::MkimageMissing)?,
        };
        let mkimage = Mkimage {
            tool: &tool,
            lib_dir: opts.lib_dir,
            config: &config,
            work: work.path(),
            extra: &[],
        };
        let (mut boot_img, mut core_img, mut efi_loader) = (None, None, None);
        if opts.bios {
            core_img =
                Some(mkimage.run(grub::BIOS_PLATFORM, "i386-pc", BIOS_MODULES, "grub-pc-bin")?);
            let path = opts.lib_dir.join(grub::BIOS_PLATFORM).join(BOOT_IMG);
            boot_img =
                Some(std::fs::read(&path).map_err(|source| Error::Reading { path, source })?);
        }
        if opts.uefi {
            efi_loader = Some(mkimage.run(
                grub::EFI_PLATFORM,
                "x86_64-efi",
                EFI_MODULES,
                "grub-efi-amd64-bin",
            )?);
        }
        Ok(DiskGrub {
            early_config: early_config.clone(),
            boot_img,
            core_img,
            efi_loader,
        })
    })();
    crate::util::cleanup::unregister(work.path());
    result
}

/// The platform files grub-install copies to `/boot/grub/<platform>/`:
/// modules and their lists. Sorted by name.
pub fn platform_files(lib_dir: &Path, platform: &str) -> io::Result<Vec<(String, PathBuf)>> {
    let dir = lib_dir.join(platform);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = name.ends_with(".mod") || name.ends_with(".lst");
        if wanted && entry.file_type()?.is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// `grub-editenv create`'s empty environment block.
pub fn grubenv() -> Vec<u8> {
    let mut block = GRUBENV_HEADER.as_bytes().to_vec();
    block.resize(GRUBENV_BYTES, b'#');
    block
}

/// The GRUB lib dir to build from: the image's own (`/usr/lib/grub` in the
/// tree) when it has the platforms asked for, else `fallback` (the build
/// host's).
pub fn pick_lib_dir(image_lib_dir: &Path, fallback: &Path, bios: bool, uefi: bool) -> PathBuf {
    let has = |platform: &str| image_lib_dir.join(platform).join("moddep.lst").is_file();
    if (!bios || has(grub::BIOS_PLATFORM)) && (!uefi || has(grub::EFI_PLATFORM)) {
        image_lib_dir.to_path_buf()
    } else {
        fallback.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_early_config_finds_boot_by_uuid_and_loads_its_grub_cfg() {
        let uuid: Guid = "0b5cd4b0-7f3c-4b6a-9c1e-0a1b2c3d4e5f".parse().unwrap();
        assert_eq!(
            early_config(uuid, "/grub"),
            "search --no-floppy --fs-uuid --set=root 0b5cd4b0-7f3c-4b6a-9c1e-0a1b2c3d4e5f\n\
             set prefix=($root)/grub\n\
             configfile ($root)/grub/grub.cfg\n"
        );
    }

    #[test]
    fn grubenv_is_a_1024_byte_block_as_grub_editenv_writes_it() {
        let env = grubenv();
        assert_eq!(env.len(), 1024);
        assert!(env.starts_with(b"# GRUB Environment Block\n#"));
        assert!(env.ends_with(b"##"));
    }
}
