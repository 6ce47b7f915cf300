//! The boot files a disk image gets: grub.cfg from the `grub-disk.cfg.tera`
//! template, `/etc/default/grub` with the same kernel command line (so
//! `update-grub` on the host later writes an equivalent menu), GRUB's
//! platform directories, and the ESP's contents.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::plan::DiskPlan;
use super::tree::SplitTree;
use crate::boot::{disk as grub_disk, grub};
use crate::formats::ext4::{self, Usage};
use crate::formats::fat::{FatImage, FatOptions};

/// The grub.cfg template, looked up in the template path.
pub const GRUB_TEMPLATE: &str = "grub-disk.cfg.tera";

/// The first [`GRUB_TEMPLATE`] in `dirs`.
pub fn find_grub_template(dirs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    crate::boot::grub_cfg::find_template(dirs, GRUB_TEMPLATE)
}

/// Where the UEFI loader goes on the ESP (the removable-media path).
pub const EFI_LOADER_PATH: &str = grub::EFI_LOADER_PATH;
/// GRUB's directory in the image.
pub const GRUB_DIR: &str = "/boot/grub";
/// Seconds the menu waits; the same in grub.cfg and /etc/default/grub.
pub const MENU_TIMEOUT_SECONDS: u32 = 1;

/// The kernel and initrd, as GRUB names them on the filesystem holding /boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPaths {
    /// Path in the image (`/boot/vmlinuz-6.1.0-28-amd64`).
    pub image_kernel: String,
    pub image_initrd: String,
    /// Path on the filesystem GRUB reads (`/vmlinuz-6.1.0-28-amd64` with a
    /// /boot partition).
    pub grub_kernel: String,
    pub grub_initrd: String,
    /// Files to copy into /boot (image path, file in the rootfs): a bootc
    /// image's kernel and initrd, kept under /usr/lib/modules, which GRUB
    /// cannot read when /boot is a filesystem of its own.
    pub copies: Vec<(String, PathBuf)>,
}

/// Finds the kernel and initrd the image boots and says where GRUB sees them.
pub fn kernel_paths(rootfs: &Path, plan: &DiskPlan) -> anyhow::Result<KernelPaths> {
    let (kernel, initrd) = crate::artifacts::live_iso::find_kernel(rootfs)?;
    let image_path = |host: &Path| -> anyhow::Result<String> {
        let rel = host
            .strip_prefix(rootfs)
            .with_context(|| format!("{} is outside the rootfs", host.display()))?;
        Ok(format!("/{}", rel.to_string_lossy()))
    };
    let (mut image_kernel, mut image_initrd) = (image_path(&kernel)?, image_path(&initrd)?);
    let boot_number = plan.owner_of(GRUB_DIR).0.number;
    let on_boot_fs = |image: &str| plan.owner_of(image).0.number == boot_number;
    let mut copies = Vec::new();
    // bootc's layout: /usr/lib/modules/VERSION/vmlinuz. With /boot on a
    // filesystem of its own, the pair is copied there under Debian's
    // names, as bootc's installer puts it in /boot.
    if let Some(version) = bootc_version(&image_kernel)
        && !(on_boot_fs(&image_kernel) && on_boot_fs(&image_initrd))
    {
        let (k, i) = (
            format!("/boot/vmlinuz-{version}"),
            format!("/boot/initrd.img-{version}"),
        );
        copies = vec![(k.clone(), kernel.clone()), (i.clone(), initrd.clone())];
        (image_kernel, image_initrd) = (k, i);
    }
    let grub_path = |image: &str| -> anyhow::Result<String> {
        if !on_boot_fs(image) {
            anyhow::bail!(
                "{image} is not on the filesystem that holds {GRUB_DIR}; GRUB could not load it"
            );
        }
        Ok(format!("/{}", plan.owner_of(image).1))
    };
    Ok(KernelPaths {
        grub_kernel: grub_path(&image_kernel)?,
        grub_initrd: grub_path(&image_initrd)?,
        image_kernel,
        image_initrd,
        copies,
    })
}

/// VERSION of `/usr/lib/modules/VERSION/vmlinuz`.
fn bootc_version(image_kernel: &str) -> Option<&str> {
    image_kernel
        .strip_prefix("/usr/lib/modules/")?
        .strip_suffix("/vmlinuz")
        .filter(|v| !v.is_empty() && !v.contains('/'))
}

/// The ext4 space the kernel copies take on /boot's filesystem.
pub fn copies_usage(kernel: &KernelPaths) -> anyhow::Result<Usage> {
    let mut usage = Usage::default();
    for (_, file) in &kernel.copies {
        let len = std::fs::metadata(file)
            .with_context(|| format!("reading {}", file.display()))?
            .len();
        usage.add(Usage {
            data_bytes: len.next_multiple_of(ext4::BLOCK_BYTES),
            inodes: 1,
        });
    }
    Ok(usage)
}

/// What grub.cfg is rendered from.
pub struct Menu<'a> {
    pub profile: &'a str,
    pub hostname: &'a str,
    pub title: &'a str,
    /// The kernel command line, one parameter per space, unquoted.
    pub cmdline: &'a str,
    pub kernel: &'a KernelPaths,
}

/// Renders the grub.cfg template (`grub-disk.cfg.tera`). Its variables:
/// `profile`, `hostname`, `title`, `cmdline` (quoted for GRUB), `kernel`
/// and `initrd` (paths on the /boot filesystem), `root_uuid`, `boot_uuid`,
/// `timeout`.
pub fn render_grub_cfg(template: &Path, plan: &DiskPlan, menu: &Menu) -> anyhow::Result<String> {
    let boot = plan.owner_of(GRUB_DIR).0;
    let quoted = crate::boot::grub_cfg::quote_cmdline(menu.cmdline);
    let values = MenuValues {
        profile: menu.profile,
        hostname: menu.hostname,
        title: menu.title,
        cmdline: &quoted,
        kernel: &menu.kernel.grub_kernel,
        initrd: &menu.kernel.grub_initrd,
        root_uuid: &plan.root().fs_uuid.to_string(),
        boot_uuid: &boot.fs_uuid.to_string(),
    };
    render(template, &values)
}

/// Renders the template with stand-in values: a syntax error or an unknown
/// variable shows before a build starts.
pub fn check_grub_template(template: &Path) -> anyhow::Result<()> {
    let uuid = crate::formats::gpt::Guid::NIL.to_string();
    let values = MenuValues {
        profile: "p",
        hostname: "h",
        title: "t",
        cmdline: "console=ttyS0",
        kernel: "/vmlinuz",
        initrd: "/initrd.img",
        root_uuid: &uuid,
        boot_uuid: &uuid,
    };
    render(template, &values).map(|_| ())
}

/// The template's variables, by these names.
#[derive(serde::Serialize)]
struct MenuValues<'a> {
    profile: &'a str,
    hostname: &'a str,
    title: &'a str,
    cmdline: &'a str,
    kernel: &'a str,
    initrd: &'a str,
    root_uuid: &'a str,
    boot_uuid: &'a str,
}

fn render(template: &Path, values: &MenuValues) -> anyhow::Result<String> {
    let mut context = tera::Context::from_serialize(values).context("grub.cfg variables")?;
    context.insert("timeout", &MENU_TIMEOUT_SECONDS);
    crate::boot::grub_cfg::render(template, &context)
}

/// `/etc/default/grub`: what `update-grub` reads on the host. The profile's
/// kernel parameters go in GRUB_CMDLINE_LINUX_DEFAULT, as Airship's
/// `grub_cmdline_linux_default_append` did; root and `ro` grub-mkconfig
/// adds itself.
pub fn default_grub(profile: &str, cmdline: &str) -> String {
    format!(
        "# Written by osforge from profile {profile}; update-grub reads it.\n\
         GRUB_DEFAULT=0\n\
         GRUB_TIMEOUT={MENU_TIMEOUT_SECONDS}\n\
         GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
         GRUB_CMDLINE_LINUX_DEFAULT={}\n\
         GRUB_CMDLINE_LINUX=\"\"\n\
         GRUB_TERMINAL=\"console serial\"\n\
         GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\"\n\
         GRUB_DISABLE_OS_PROBER=true\n",
        // /etc/default/grub is sourced by sh.
        crate::util::shell_quote(cmdline)
    )
}

/// GRUB's files under /boot/grub, as grub-install leaves them: the platform
/// directories (modules, lists, and for BIOS boot.img and core.img) and an
/// empty environment block. Returns their total size.
pub fn install_grub_files(
    tree: &SplitTree,
    plan: &DiskPlan,
    lib_dir: &Path,
    images: &grub_disk::DiskGrub,
) -> anyhow::Result<u64> {
    let mut bytes = 0u64;
    let mut put = |path: String, contents: &[u8]| -> anyhow::Result<()> {
        bytes += contents.len() as u64;
        tree.put_file(plan, &path, contents, 0o644)
    };
    for files in grub_files(lib_dir, images)? {
        let (path, contents) = files?;
        put(path, &contents)?;
    }
    put(format!("{GRUB_DIR}/grubenv"), &grub_disk::grubenv())?;
    Ok(bytes)
}

/// A file for the image: its path there and its contents.
type ImageFile = (String, Vec<u8>);

/// Every file [`install_grub_files`] writes but grubenv, with its contents.
fn grub_files(
    lib_dir: &Path,
    images: &grub_disk::DiskGrub,
) -> anyhow::Result<Vec<anyhow::Result<ImageFile>>> {
    let mut out: Vec<anyhow::Result<ImageFile>> = Vec::new();
    let mut platforms = Vec::new();
    if let (Some(boot), Some(core)) = (&images.boot_img, &images.core_img) {
        platforms.push(grub::BIOS_PLATFORM);
        out.push(Ok((
            format!("{GRUB_DIR}/{}/boot.img", grub::BIOS_PLATFORM),
            boot.clone(),
        )));
        out.push(Ok((
            format!("{GRUB_DIR}/{}/core.img", grub::BIOS_PLATFORM),
            core.clone(),
        )));
    }
    if let Some(loader) = &images.efi_loader {
        platforms.push(grub::EFI_PLATFORM);
        out.push(Ok((
            format!("{GRUB_DIR}/{}/core.efi", grub::EFI_PLATFORM),
            loader.clone(),
        )));
    }
    for platform in platforms {
        let files = grub_disk::platform_files(lib_dir, platform)
            .with_context(|| format!("listing {}", lib_dir.join(platform).display()))?;
        for (name, path) in files {
            out.push(
                std::fs::read(&path)
                    .map(|c| (format!("{GRUB_DIR}/{platform}/{name}"), c))
                    .with_context(|| format!("reading {}", path.display())),
            );
        }
    }
    Ok(out)
}

/// What [`install_grub_files`] and grub.cfg (`grub_cfg_bytes`) will add,
/// for the size check made before anything is written: each file in whole
/// blocks, and the platform directories.
pub fn grub_files_usage(
    lib_dir: &Path,
    images: &grub_disk::DiskGrub,
    grub_cfg_bytes: u64,
) -> anyhow::Result<Usage> {
    let blocks = |n: u64| n.max(1).next_multiple_of(ext4::BLOCK_BYTES);
    let mut usage = Usage {
        data_bytes: blocks(grub_disk::GRUBENV_BYTES as u64) + blocks(grub_cfg_bytes),
        inodes: 2,
    };
    for f in grub_files(lib_dir, images)? {
        usage.add(Usage {
            data_bytes: blocks(f?.1.len() as u64),
            inodes: 1,
        });
    }
    // /boot/grub and a directory per platform.
    usage.add(Usage {
        data_bytes: 3 * ext4::BLOCK_BYTES,
        inodes: 3,
    });
    Ok(usage)
}

pub use crate::boot::secure::EspFile;

/// The UEFI boot files: GRUB built here as the removable-media loader, or,
/// for Secure Boot, the distribution's signed chain
/// ([`crate::boot::secure::signed_loaders`]), whose GRUB reads
/// `stub_config` (the same early config the unsigned image embeds) from the
/// ESP.
pub fn uefi_files(
    rootfs: &Path,
    loader: Option<&[u8]>,
    secure_boot: bool,
    stub_config: &str,
) -> anyhow::Result<Vec<(String, EspFile)>> {
    if !secure_boot {
        return Ok(loader
            .map(|l| (EFI_LOADER_PATH.to_string(), EspFile::Bytes(l.to_vec())))
            .into_iter()
            .collect());
    }
    crate::boot::secure::signed_loaders(rootfs, stub_config, "disk.secure_boot")
}

/// The ESP: its tree from the rootfs (`/boot/efi`) and the UEFI boot files.
pub fn esp_image(
    tree_root: &Path,
    files: &[(String, EspFile)],
    label: &str,
    serial: u32,
    mtime: Option<i64>,
) -> anyhow::Result<FatImage> {
    let mut image = FatImage::new(FatOptions {
        label: Some(label.to_string()),
        volume_id: Some(serial),
        mtime,
        ..FatOptions::default()
    })?;
    image
        .add_tree(tree_root)
        .with_context(|| format!("adding {} to the ESP", tree_root.display()))?;
    for (path, file) in files {
        match file {
            EspFile::Bytes(bytes) => image.add_bytes(path, bytes.clone()),
            EspFile::Host(source) => image.add_file(path, source),
        }
        .with_context(|| format!("adding {path} to the ESP"))?;
    }
    Ok(image)
}

/// The GRUB lib dir to use: `override_dir`, else the image's own, else the host's.
pub fn grub_lib_dir(
    rootfs: &Path,
    override_dir: Option<&Path>,
    bios: bool,
    uefi: bool,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = override_dir {
        return Ok(dir.to_path_buf());
    }
    let image_dir = crate::osconfig::rootpath::resolve(rootfs, Path::new("/usr/lib/grub"), true)?;
    Ok(grub_disk::pick_lib_dir(
        &image_dir,
        Path::new(grub::DEFAULT_LIB_DIR),
        bios,
        uefi,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootc_kernel_is_copied_to_a_separate_boot_filesystem() {
        let plan = DiskPlan::new(
            &crate::profile::disk_layouts::airship(),
            &super::super::Ids::Derived("t".into()),
        )
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let modules = root.path().join("usr/lib/modules/6.1.0-9-amd64");
        std::fs::create_dir_all(&modules).unwrap();
        std::fs::write(modules.join("vmlinuz"), "kernel").unwrap();
        std::fs::write(modules.join("initramfs.img"), "initrd").unwrap();
        let paths = kernel_paths(root.path(), &plan).unwrap();
        // Airship's layout has /boot on a partition of its own.
        assert_eq!(paths.grub_kernel, "/vmlinuz-6.1.0-9-amd64");
        assert_eq!(paths.grub_initrd, "/initrd.img-6.1.0-9-amd64");
        assert_eq!(
            paths.copies,
            [
                (
                    "/boot/vmlinuz-6.1.0-9-amd64".to_string(),
                    modules.join("vmlinuz")
                ),
                (
                    "/boot/initrd.img-6.1.0-9-amd64".to_string(),
                    modules.join("initramfs.img")
                ),
            ]
        );
        assert_eq!(copies_usage(&paths).unwrap().inodes, 2);
    }

    #[test]
    fn default_grub_quotes_the_command_line_for_the_shell() {
        let text = default_grub("data-plane", "console=ttyS0,115200n8 hugepages=16 x='y'");
        assert!(
            text.contains(
                "GRUB_CMDLINE_LINUX_DEFAULT='console=ttyS0,115200n8 hugepages=16 x='\\''y'\\'''\n"
            ),
            "{text}"
        );
        assert!(text.contains("GRUB_TIMEOUT=1\n"));
    }
}
