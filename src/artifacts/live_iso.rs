//! The live ISO: the configured rootfs as `live/filesystem.squashfs`, the
//! kernel and initrd it booted with, a cloud-init seed for this host, and
//! GRUB for BIOS and UEFI, from CD or USB.
//!
//! Layout (what live-boot and cloud-init look for):
//! ```text
//!  /live/vmlinuz, /live/initrd.img, /live/filesystem.squashfs
//!  /boot/grub/grub.cfg                 rendered per host (kernel command line)
//!  NoCloud:      /user-data /meta-data /network-config   volume label "cidata"
//!  config drive: /openstack/latest/{user_data,meta_data.json,network_data.json}
//!                                                        volume label "config-2"
//! ```
//! The ISO is its own seed: cloud-init finds it by its label, as Airship's
//! ephemeral ISO was its own config drive.
//!
//! With `iso.secure_boot` the UEFI path is the distribution's signed chain
//! ([`crate::boot::secure`]): shim as `EFI/BOOT/BOOTX64.EFI`, the signed
//! GRUB beside it, and `EFI/debian/grub.cfg` holding the early config the
//! unsigned GRUB embeds. With a site's own key (`--signing-key`), UEFI
//! boots a unified kernel image signed with it ([`crate::boot::uki`]) from
//! the ESP instead. The BIOS path is the same either way.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::boot::grub::{self, GrubOptions};
use crate::boot::uki::{self, SigningKey};
use crate::formats::Progress;
use crate::formats::iso::{IsoImage, IsoOptions, IsoSummary};
use crate::osconfig::rootpath;
use crate::util::output::AtomicOutput;

/// The per-host cloud-init data, already rendered.
#[derive(Debug, Clone)]
pub enum Seed {
    NoCloud {
        user_data: String,
        meta_data: String,
        network_config: Option<String>,
    },
    ConfigDrive {
        user_data: String,
        meta_data_json: String,
        network_data_json: Option<String>,
    },
}

pub struct LiveIso<'a> {
    /// The configured tree the squashfs was made from (kernel and initrd come from it).
    pub rootfs: &'a Path,
    pub squashfs: &'a Path,
    pub grub_cfg: String,
    pub volume_id: &'a str,
    pub seed: &'a Seed,
    pub mtime: Option<i64>,
    /// UEFI through the image's signed shim and GRUB (`iso.secure_boot`).
    pub secure_boot: bool,
    /// The kernel command line (what grub.cfg passes), for a signed UKI.
    pub cmdline: &'a str,
    /// A site's own key: UEFI boots a UKI signed with it instead of GRUB.
    pub signing: Option<&'a SigningKey>,
}

/// The kernel and initrd the image boots: `/vmlinuz` and `/initrd.img` as the
/// image links them, else the newest pair in /boot, else (a bootable
/// container image, as bootc lays it out) the newest
/// `/usr/lib/modules/VERSION/vmlinuz` with `initramfs.img` or `initrd.img`
/// beside it.
pub fn find_kernel(rootfs: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let linked = (
        rootpath::resolve(rootfs, Path::new("/vmlinuz"), true)?,
        rootpath::resolve(rootfs, Path::new("/initrd.img"), true)?,
    );
    if linked.0.is_file() && linked.1.is_file() {
        return Ok(linked);
    }
    if let Some(pair) = newest_in_boot(rootfs)? {
        return Ok(pair);
    }
    if let Some(pair) = newest_in_modules(rootfs)? {
        return Ok(pair);
    }
    bail!(
        "the image has no kernel and initrd in /boot or /usr/lib/modules/*/ (install linux-image-amd64; live-boot rebuilds the initrd)"
    )
}

/// `vmlinuz-V` with `initrd.img-V` in /boot, the newest V.
fn newest_in_boot(rootfs: &Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let boot = rootpath::resolve(rootfs, Path::new("/boot"), true)?;
    if !boot.is_dir() {
        return Ok(None);
    }
    let mut versions: Vec<String> = std::fs::read_dir(&boot)
        .with_context(|| format!("listing the image's /boot ({})", boot.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .filter(|v| boot.join(format!("initrd.img-{v}")).is_file())
        .collect();
    versions.sort_by_key(|v| version_key(v));
    Ok(versions.pop().map(|v| {
        (
            boot.join(format!("vmlinuz-{v}")),
            boot.join(format!("initrd.img-{v}")),
        )
    }))
}

/// bootc's layout: `/usr/lib/modules/V/vmlinuz` and, beside it,
/// `initramfs.img` (dracut's name, Fedora and CentOS) or `initrd.img`.
fn newest_in_modules(rootfs: &Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let modules = rootpath::resolve(rootfs, Path::new("/usr/lib/modules"), true)?;
    if !modules.is_dir() {
        return Ok(None);
    }
    let mut found: Vec<(String, PathBuf, PathBuf)> = std::fs::read_dir(&modules)
        .with_context(|| {
            format!(
                "listing the image's /usr/lib/modules ({})",
                modules.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.to_string();
            let dir = e.path();
            let kernel = dir.join("vmlinuz");
            let initrd = ["initramfs.img", "initrd.img"]
                .iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())?;
            kernel.is_file().then_some((version, kernel, initrd))
        })
        .collect();
    found.sort_by_key(|(v, _, _)| version_key(v));
    Ok(found.pop().map(|(_, kernel, initrd)| (kernel, initrd)))
}

/// Orders `6.1.0-10-amd64` after `6.1.0-9-amd64`: numbers compare as numbers.
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(|c: char| !c.is_ascii_alphanumeric())
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (0, part.to_string()),
        })
        .collect()
}

pub fn write(
    iso: &LiveIso,
    out_path: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<IsoSummary> {
    let (kernel, initrd) = find_kernel(iso.rootfs)?;
    let mut options = IsoOptions::new(iso.volume_id);
    options.mtime = iso.mtime;
    let mut image = IsoImage::new(options)?;
    image.add_file("live/vmlinuz", &kernel)?;
    image.add_file("live/initrd.img", &initrd)?;
    image.add_file("live/filesystem.squashfs", iso.squashfs)?;
    match iso.seed {
        Seed::NoCloud {
            user_data,
            meta_data,
            network_config,
        } => {
            image.add_bytes("user-data", user_data.as_bytes())?;
            image.add_bytes("meta-data", meta_data.as_bytes())?;
            if let Some(n) = network_config {
                image.add_bytes("network-config", n.as_bytes())?;
            }
        }
        Seed::ConfigDrive {
            user_data,
            meta_data_json,
            network_data_json,
        } => {
            image.add_bytes("openstack/latest/user_data", user_data.as_bytes())?;
            image.add_bytes("openstack/latest/meta_data.json", meta_data_json.as_bytes())?;
            if let Some(n) = network_data_json {
                image.add_bytes("openstack/latest/network_data.json", n.as_bytes())?;
            }
        }
    }
    image.add_bytes(grub::CONFIG_PATH, iso.grub_cfg.as_bytes())?;
    let mut options = GrubOptions::for_image(&image);
    if let Some(key) = iso.signing {
        let work = tempfile::Builder::new()
            .prefix("osforge-uki-")
            .tempdir()
            .context("creating a scratch directory for the UKI")?;
        let _registered = crate::util::cleanup::Registered::new(work.path());
        let uki = uki::signed_uki(iso.rootfs, &kernel, &initrd, iso.cmdline, key, work.path())?;
        options.efi_files = Some(vec![(grub::EFI_LOADER_PATH.to_string(), uki)]);
    } else if iso.secure_boot {
        let stub = grub::early_config(&options.boot_id);
        let files = crate::boot::secure::signed_loaders(iso.rootfs, &stub, "iso.secure_boot")?;
        let mut read = Vec::new();
        for (path, file) in files {
            read.push((path, file.read()?));
        }
        options.efi_files = Some(read);
    }
    let mut boot = grub::build(&options)?;
    if let (Some(_), Some(efi)) = (iso.signing, boot.efi.as_mut()) {
        // The UKI (kernel and initrd, ~50 MB) stays in the ESP only.
        efi.files.clear();
    }
    boot.install(&mut image)?;
    progress.set_total(image.planned_size().context("laying out the ISO")?);

    let mut out = AtomicOutput::create(out_path)
        .with_context(|| format!("cannot create {}", out_path.display()))?;
    let summary = image
        .write(out.file(), progress)
        .with_context(|| format!("writing {}", out_path.display()))?;
    out.commit()
        .with_context(|| format!("moving {} into place", out_path.display()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootc_image_s_kernel_is_found_under_usr_lib_modules() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (v, initrd) in [
            ("6.1.0-9-amd64", "initrd.img"),
            ("6.1.0-10-amd64", "initramfs.img"),
        ] {
            let dir = r.join("usr/lib/modules").join(v);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("vmlinuz"), v).unwrap();
            std::fs::write(dir.join(initrd), v).unwrap();
        }
        // Modules without a kernel (a -dbg tree) are not candidates.
        std::fs::create_dir_all(r.join("usr/lib/modules/7.0.0-1-amd64")).unwrap();
        std::fs::create_dir_all(r.join("boot")).unwrap();
        let (kernel, initrd) = find_kernel(r).unwrap();
        assert!(kernel.ends_with("usr/lib/modules/6.1.0-10-amd64/vmlinuz"));
        assert!(initrd.ends_with("usr/lib/modules/6.1.0-10-amd64/initramfs.img"));
        // A kernel in /boot still comes first.
        std::fs::write(r.join("boot/vmlinuz-5.10.0-1-amd64"), "k").unwrap();
        std::fs::write(r.join("boot/initrd.img-5.10.0-1-amd64"), "i").unwrap();
        assert!(
            find_kernel(r)
                .unwrap()
                .0
                .ends_with("boot/vmlinuz-5.10.0-1-amd64")
        );
        let empty = tempfile::tempdir().unwrap();
        let e = find_kernel(empty.path()).unwrap_err().to_string();
        assert!(e.contains("/usr/lib/modules"), "{e}");
    }

    #[test]
    fn kernel_versions_sort_numerically() {
        let mut v = ["6.1.0-10-amd64", "6.1.0-9-amd64", "5.10.0-30-amd64"];
        v.sort_by_key(|x| version_key(x));
        assert_eq!(v[2], "6.1.0-10-amd64");
    }
}
