//! A VM's configuration and the QEMU command line it becomes.
//!
//! The machine is what the boot tests have always used: q35, one CPU, no
//! display, `-no-reboot` (a guest that reboots or powers off ends the run,
//! so "it finished" is observable), the serial console on QEMU's stdout, and
//! a user-mode virtio NIC (cloud-init waits for a network otherwise).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{Accel, ImageFormat};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF built for Secure Boot (it needs SMM) and variables with Microsoft's
/// keys enrolled and Secure Boot on, as on a typical server.
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

pub const DEFAULT_MEMORY_MIB: u32 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF.
    Uefi,
    /// OVMF with Secure Boot enforced.
    UefiSecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Media {
    /// An IDE (AHCI on q35) CD-ROM, booted first.
    Cd,
    /// A USB stick (XHCI), read-only.
    Usb,
    /// A virtio hard disk; writes go to a throwaway overlay (`snapshot=on`).
    Disk,
}

impl Firmware {
    pub const NAMES: [&'static str; 3] = ["bios", "uefi", "uefi-secure"];

    pub fn from_name(name: &str) -> Option<Firmware> {
        match name {
            "bios" => Some(Firmware::Bios),
            "uefi" => Some(Firmware::Uefi),
            "uefi-secure" => Some(Firmware::UefiSecure),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::UefiSecure => "uefi-secure",
        }
    }

    /// The OVMF code and the variables template copied for each boot, or
    /// `None` for SeaBIOS.
    pub fn ovmf(self) -> Option<(&'static str, &'static str)> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => Some((OVMF_CODE, OVMF_VARS)),
            Firmware::UefiSecure => Some((OVMF_SECBOOT_CODE, OVMF_MS_VARS)),
        }
    }
}

impl Media {
    pub const NAMES: [&'static str; 3] = ["cd", "usb", "disk"];

    pub fn from_name(name: &str) -> Option<Media> {
        match name {
            "cd" => Some(Media::Cd),
            "usb" => Some(Media::Usb),
            "disk" => Some(Media::Disk),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Media::Cd => "cd",
            Media::Usb => "usb",
            Media::Disk => "disk",
        }
    }

    /// How an image boots when the user does not say: an ISO as a CD, a
    /// disk image as a disk.
    pub fn default_for(format: ImageFormat) -> Media {
        match format {
            ImageFormat::Iso => Media::Cd,
            ImageFormat::Qcow2 | ImageFormat::Raw => Media::Disk,
        }
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One VM: what to boot, and how.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub image: PathBuf,
    pub format: ImageFormat,
    pub firmware: Firmware,
    pub media: Media,
    pub memory_mib: u32,
    /// Extra read-only CD images after the boot medium (a NoCloud seed, as
    /// metal3 attaches a config drive).
    pub extra_cdroms: Vec<PathBuf>,
    pub accel: Accel,
    /// Where the per-boot copy of the OVMF variables is made, so that boots
    /// never share (or change) the template.
    pub work_dir: PathBuf,
    /// The variables template to copy instead of the firmware's own: one
    /// with a site's Secure Boot keys enrolled.
    pub ovmf_vars: Option<PathBuf>,
    /// Boot this kernel and initrd directly (QEMU's `-kernel`), as a network
    /// boot loader would, instead of the image: no boot medium or extra CD
    /// is attached.
    pub direct_kernel: Option<DirectKernel>,
    /// A user-mode NIC; off to boot as an air-gapped site would.
    pub network: bool,
}

/// A kernel, its initrd and its command line, loaded by QEMU itself.
#[derive(Debug, Clone)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

impl VmConfig {
    /// SeaBIOS, the format's default media, TCG, [`DEFAULT_MEMORY_MIB`].
    pub fn new(image: &Path, format: ImageFormat, work_dir: &Path) -> VmConfig {
        VmConfig {
            image: image.to_path_buf(),
            format,
            firmware: Firmware::Bios,
            media: Media::default_for(format),
            memory_mib: DEFAULT_MEMORY_MIB,
            extra_cdroms: Vec::new(),
            accel: Accel::Tcg,
            work_dir: work_dir.to_path_buf(),
            ovmf_vars: None,
            direct_kernel: None,
            network: true,
        }
    }

    /// A short name for messages and file names: `uefi-cd`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.firmware, self.media)
    }
}

/// QEMU's arguments for `config` (without the program name). `ovmf_vars` is
/// the per-boot copy of the variables, needed for UEFI firmware.
pub fn command(config: &VmConfig, ovmf_vars: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |parts: &[&str]| args.extend(parts.iter().map(OsString::from));
    push(&["-accel", config.accel.name()]);
    push(&["-machine", "q35", "-smp", "1", "-display", "none"]);
    push(&["-no-reboot", "-m", &config.memory_mib.to_string()]);
    // The console goes to QEMU's stdout; the monitor (which would otherwise
    // share it once stdio is taken) and the parallel port go nowhere.
    push(&["-serial", "stdio", "-monitor", "none", "-parallel", "none"]);
    if config.network {
        push(&[
            "-netdev",
            "user,id=net0",
            "-device",
            "virtio-net-pci,netdev=net0",
        ]);
    } else {
        push(&["-nic", "none"]);
    }
    if config.firmware == Firmware::UefiSecure {
        // The Secure Boot build keeps its variables in SMM-protected flash.
        push(&[
            "-machine",
            "smm=on",
            "-global",
            "driver=cfi.pflash01,property=secure,value=on",
        ]);
    }
    if let (Some((code, _)), Some(vars)) = (config.firmware.ovmf(), ovmf_vars) {
        push(&[
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={code}"),
            "-drive",
            &format!("if=pflash,format=raw,file={}", drive_path(vars)),
        ]);
    }
    let image = drive_path(&config.image);
    let format = config.format.qemu_format();
    if let Some(direct) = &config.direct_kernel {
        args.extend([
            OsString::from("-kernel"),
            direct.kernel.clone().into_os_string(),
            OsString::from("-initrd"),
            direct.initrd.clone().into_os_string(),
            OsString::from("-append"),
            OsString::from(&direct.append),
        ]);
        return args;
    }
    match config.media {
        Media::Cd => push(&[
            "-drive",
            &format!("file={image},format={format},media=cdrom,readonly=on,if=ide,index=0"),
            "-boot",
            "d",
        ]),
        Media::Usb => push(&[
            "-drive",
            &format!("file={image},format={format},if=none,id=stick,readonly=on"),
            "-device",
            "qemu-xhci",
            "-device",
            "usb-storage,drive=stick,bootindex=0",
        ]),
        Media::Disk => push(&[
            "-drive",
            &format!("file={image},format={format},if=none,id=disk,snapshot=on"),
            "-device",
            "virtio-blk-pci,drive=disk,bootindex=0",
        ]),
    }
    for (i, extra) in config.extra_cdroms.iter().enumerate() {
        push(&[
            "-drive",
            &format!(
                "file={},format=raw,media=cdrom,readonly=on,if=ide,index={}",
                drive_path(extra),
                i + 1
            ),
        ]);
    }
    args
}

/// A path inside a `-drive` option, where a comma separates options unless
/// it is doubled.
fn drive_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(config: &VmConfig, vars: Option<&Path>) -> String {
        command(config, vars)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn an_iso_boots_as_a_cd_first_and_a_disk_image_as_a_throwaway_virtio_disk() {
        let iso = VmConfig::new(Path::new("/i/a.iso"), ImageFormat::Iso, Path::new("/w"));
        let text = line(&iso, None);
        assert!(
            text.contains(
                "-drive file=/i/a.iso,format=raw,media=cdrom,readonly=on,if=ide,index=0 -boot d"
            ),
            "{text}"
        );
        assert!(!text.contains("pflash"), "SeaBIOS needs no flash: {text}");
        let disk = VmConfig::new(Path::new("/i/d.qcow2"), ImageFormat::Qcow2, Path::new("/w"));
        let text = line(&disk, None);
        assert!(
            text.contains("file=/i/d.qcow2,format=qcow2,if=none,id=disk,snapshot=on"),
            "{text}"
        );
        assert!(
            text.contains("virtio-blk-pci,drive=disk,bootindex=0"),
            "{text}"
        );
    }

    #[test]
    fn secure_boot_uses_the_secboot_code_smm_and_the_per_boot_vars_copy() {
        let mut c = VmConfig::new(Path::new("/i/d.raw"), ImageFormat::Raw, Path::new("/w"));
        c.firmware = Firmware::UefiSecure;
        let text = line(&c, Some(Path::new("/w/vars.fd")));
        assert!(text.contains("-machine smm=on"), "{text}");
        assert!(
            text.contains("driver=cfi.pflash01,property=secure,value=on"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "if=pflash,format=raw,readonly=on,file={OVMF_SECBOOT_CODE}"
            )),
            "{text}"
        );
        assert!(
            text.contains("if=pflash,format=raw,file=/w/vars.fd"),
            "{text}"
        );
        c.firmware = Firmware::Uefi;
        let text = line(&c, Some(Path::new("/w/vars.fd")));
        assert!(!text.contains("smm=on"), "{text}");
        assert!(text.contains(&format!("file={OVMF_CODE}")), "{text}");
    }

    #[test]
    fn extra_cdroms_follow_the_boot_medium_and_commas_in_paths_are_escaped() {
        let mut c = VmConfig::new(Path::new("/i/a,b.iso"), ImageFormat::Iso, Path::new("/w"));
        c.media = Media::Usb;
        c.extra_cdroms = vec![PathBuf::from("/s/seed.iso"), PathBuf::from("/s/two.iso")];
        let text = line(&c, None);
        assert!(
            text.contains("file=/i/a,,b.iso,format=raw,if=none,id=stick"),
            "{text}"
        );
        assert!(
            text.contains("usb-storage,drive=stick,bootindex=0"),
            "{text}"
        );
        assert!(
            text.contains("file=/s/seed.iso,format=raw,media=cdrom,readonly=on,if=ide,index=1"),
            "{text}"
        );
        assert!(
            text.contains("file=/s/two.iso,format=raw,media=cdrom,readonly=on,if=ide,index=2"),
            "{text}"
        );
        assert!(!text.contains("-boot d"), "{text}");
    }

    #[test]
    fn a_direct_kernel_boot_passes_kernel_initrd_and_command_line_and_no_medium() {
        let mut c = VmConfig::new(Path::new("/i/unused"), ImageFormat::Raw, Path::new("/w"));
        c.direct_kernel = Some(DirectKernel {
            kernel: PathBuf::from("/n/base.vmlinuz"),
            initrd: PathBuf::from("/n/base.initrd.img"),
            append: "boot=live fetch=http://10.0.2.2/x.squashfs".into(),
        });
        let args = command(&c, None);
        let text = line(&c, None);
        assert!(
            text.contains("-kernel /n/base.vmlinuz -initrd /n/base.initrd.img -append boot=live"),
            "{text}"
        );
        // One argument, spaces and all.
        assert!(args.contains(&OsString::from(
            "boot=live fetch=http://10.0.2.2/x.squashfs"
        )));
        assert!(!text.contains("/i/unused"), "{text}");
    }

    #[test]
    fn the_accelerator_and_memory_are_passed() {
        let mut c = VmConfig::new(Path::new("/i/a.iso"), ImageFormat::Iso, Path::new("/w"));
        c.accel = Accel::Kvm;
        c.memory_mib = 1536;
        let text = line(&c, None);
        assert!(text.starts_with("-accel kvm "), "{text}");
        assert!(text.contains("-m 1536"), "{text}");
    }

    #[test]
    fn names_round_trip() {
        for name in Firmware::NAMES {
            assert_eq!(Firmware::from_name(name).unwrap().name(), name);
        }
        for name in Media::NAMES {
            assert_eq!(Media::from_name(name).unwrap().name(), name);
        }
    }
}
