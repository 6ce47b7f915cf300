//! Secure Boot through the distribution's signed loaders, shared by disks
//! (`disk.secure_boot`) and live ISOs (`iso.secure_boot`): Debian's shim,
//! signed by Microsoft, as the removable-media loader, its signed GRUB and
//! MOK manager beside it, and a small `grub.cfg` where that signed GRUB
//! looks for one. The kernel GRUB then loads is the image's own, which
//! Debian signs and shim checks. The binaries come from the image, so an
//! image that has the packages needs nothing from the build host.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::grub::EFI_LOADER_PATH;

/// Debian's signed UEFI loaders, where the packages install them: shim
/// (shim-signed), its MOK manager (shim-helpers-amd64-signed) and GRUB
/// (grub-efi-amd64-signed).
pub const SIGNED_SHIM: &str = "/usr/lib/shim/shimx64.efi.signed";
pub const SIGNED_MOK_MANAGER: &str = "/usr/lib/shim/mmx64.efi.signed";
pub const SIGNED_GRUB: &str = "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
/// Debian's signed GRUB has `/EFI/debian` as its built-in prefix and
/// sources `grub.cfg` from there (or, failing that, from its own directory).
pub const SIGNED_GRUB_CONFIGS: [&str; 2] = ["EFI/debian/grub.cfg", "EFI/BOOT/grub.cfg"];

/// A file the ESP gets besides the rootfs's /boot/efi.
#[derive(Debug, Clone)]
pub enum EspFile {
    Bytes(Vec<u8>),
    /// A file of the rootfs, read when the ESP is written.
    Host(PathBuf),
}

impl EspFile {
    pub fn len_bytes(&self) -> anyhow::Result<u64> {
        Ok(match self {
            EspFile::Bytes(b) => b.len() as u64,
            EspFile::Host(p) => std::fs::metadata(p)
                .with_context(|| format!("reading {}", p.display()))?
                .len(),
        })
    }

    /// The contents, read now for a file of the rootfs.
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            EspFile::Bytes(b) => Ok(b.clone()),
            EspFile::Host(p) => {
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))
            }
        }
    }
}

/// The signed boot chain for an ESP: shim as [`EFI_LOADER_PATH`], GRUB and
/// the MOK manager beside it, and `stub_config` at each place the signed
/// GRUB reads its config from. `setting` names the profile key that asked
/// for it, for the error when a package is missing. No fallback
/// (fbx64.efi): it would write boot entries to NVRAM and reset the machine
/// on first boot.
pub fn signed_loaders(
    rootfs: &Path,
    stub_config: &str,
    setting: &str,
) -> anyhow::Result<Vec<(String, EspFile)>> {
    let signed = |image_path: &str, package: &str| -> anyhow::Result<PathBuf> {
        let host = crate::osconfig::rootpath::resolve(rootfs, Path::new(image_path), true)?;
        if !host.is_file() {
            return Err(anyhow::Error::new(crate::error::InputError(format!(
                "{setting} needs {image_path} in the image: add {package} to the profile's packages"
            ))));
        }
        Ok(host)
    };
    let mut files = vec![
        (
            EFI_LOADER_PATH.to_string(),
            EspFile::Host(signed(SIGNED_SHIM, "shim-signed")?),
        ),
        (
            "EFI/BOOT/grubx64.efi".to_string(),
            EspFile::Host(signed(SIGNED_GRUB, "grub-efi-amd64-signed")?),
        ),
        (
            "EFI/BOOT/mmx64.efi".to_string(),
            EspFile::Host(signed(SIGNED_MOK_MANAGER, "shim-helpers-amd64-signed")?),
        ),
    ];
    for path in SIGNED_GRUB_CONFIGS {
        files.push((
            path.to_string(),
            EspFile::Bytes(stub_config.as_bytes().to_vec()),
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_signed_loader_names_the_setting_and_the_package() {
        let root = tempfile::tempdir().unwrap();
        let e = signed_loaders(root.path(), "cfg", "iso.secure_boot").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "iso.secure_boot needs {SIGNED_SHIM} in the image: add shim-signed to the profile's packages"
            )
        );
        for (path, package) in [
            (SIGNED_SHIM, "shim"),
            (SIGNED_GRUB, "grub"),
            (SIGNED_MOK_MANAGER, "mm"),
        ] {
            let host = root.path().join(&path[1..]);
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(host, package).unwrap();
        }
        let files = signed_loaders(root.path(), "stub\n", "iso.secure_boot").unwrap();
        let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                EFI_LOADER_PATH,
                "EFI/BOOT/grubx64.efi",
                "EFI/BOOT/mmx64.efi",
                "EFI/debian/grub.cfg",
                "EFI/BOOT/grub.cfg"
            ]
        );
        assert_eq!(files[0].1.read().unwrap(), b"shim");
        assert_eq!(files[3].1.read().unwrap(), b"stub\n");
    }
}
