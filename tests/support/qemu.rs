//! Booting images in QEMU (TCG: KVM hangs guests on these machines) and
//! reading what they print on the serial console.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF built for Secure Boot (needs SMM) and variables with Microsoft's
/// keys enrolled and Secure Boot on, as on a typical server.
pub const OVMF_SECBOOT_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    SeaBios,
    Ovmf,
    /// OVMF with Secure Boot enforced.
    OvmfSecureBoot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// An IDE CD-ROM, booted first.
    Cd,
    /// A USB stick (EHCI), read-only.
    UsbDisk,
    /// A virtio hard disk; writes go to a throwaway overlay (`snapshot=on`).
    VirtioDisk,
}

pub struct Boot<'a> {
    pub image: &'a Path,
    /// `raw` or `qcow2`.
    pub format: &'a str,
    pub firmware: Firmware,
    pub media: Media,
    pub memory_mib: u32,
    /// Extra read-only CD images (a NoCloud seed, as metal3 attaches a config drive).
    pub extra_cdroms: Vec<PathBuf>,
    pub timeout: Duration,
}

impl Boot<'_> {
    pub fn name(&self) -> String {
        format!("{:?}-{:?}", self.firmware, self.media)
    }
}

/// Kills QEMU when the test is done with it, whatever happened.
pub struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots and waits until `done` accepts the serial log so far; returns the
/// log, or an error with its tail.
pub fn boot_until(b: &Boot, work: &Path, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let name = b.name();
    let log = work.join(format!("{name}.serial.log"));
    let _ = fs::remove_file(&log);
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-smp",
        "1",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-m")
    .arg(b.memory_mib.to_string())
    .arg("-serial")
    .arg(format!("file:{}", log.display()))
    .args([
        "-netdev",
        "user,id=net0",
        "-device",
        "virtio-net-pci,netdev=net0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let ovmf = match b.firmware {
        Firmware::SeaBios => None,
        Firmware::Ovmf => Some((OVMF_CODE, OVMF_VARS)),
        Firmware::OvmfSecureBoot => {
            // The Secure Boot build keeps its variables in SMM-protected flash.
            cmd.args([
                "-machine",
                "smm=on",
                "-global",
                "driver=cfi.pflash01,property=secure,value=on",
            ]);
            Some((OVMF_SECBOOT_CODE, OVMF_MS_VARS))
        }
    };
    if let Some((code, vars_template)) = ovmf {
        let vars = work.join(format!("{name}-vars.fd"));
        fs::copy(vars_template, &vars).map_err(|e| format!("copying OVMF vars: {e}"))?;
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={code}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    let image = b.image.display();
    match b.media {
        Media::Cd => {
            cmd.arg("-drive").arg(format!(
                "file={image},format=raw,media=cdrom,readonly=on,if=ide,index=0"
            ));
            cmd.args(["-boot", "d"]);
        }
        Media::UsbDisk => {
            cmd.arg("-drive").arg(format!(
                "file={image},format={},if=none,id=stick,readonly=on",
                b.format
            ));
            cmd.args([
                "-device",
                "qemu-xhci",
                "-device",
                "usb-storage,drive=stick,bootindex=0",
            ]);
        }
        Media::VirtioDisk => {
            cmd.arg("-drive").arg(format!(
                "file={image},format={},if=none,id=disk,snapshot=on",
                b.format
            ));
            cmd.args(["-device", "virtio-blk-pci,drive=disk,bootindex=0"]);
        }
    }
    for (i, extra) in b.extra_cdroms.iter().enumerate() {
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,media=cdrom,readonly=on,if=ide,index={}",
            extra.display(),
            i + 1
        ));
    }
    let mut qemu = Qemu(cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?);
    let started = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).into_owned();
        if done(&text) {
            return Ok(text);
        }
        let exited = qemu.0.try_wait().map_err(|e| e.to_string())?;
        if exited.is_some() || started.elapsed() > b.timeout {
            let tail: String = text
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!(
                "{name}: no marker after {:.0} s (QEMU {}); serial log ends with:\n{tail}",
                started.elapsed().as_secs_f64(),
                if exited.is_some() {
                    "exited"
                } else {
                    "timed out"
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs several boots at once and returns their results in order.
pub fn boot_all(
    boots: &[Boot],
    work: &Path,
    done: impl Fn(&str) -> bool + Sync,
) -> Vec<Result<String, String>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = boots
            .iter()
            .map(|b| scope.spawn(|| boot_until(b, work, &done)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("boot thread panicked".into()))
            })
            .collect()
    })
}

/// The text after `KEY=` up to the next space, in the marker line.
pub fn marker_field(log: &str, marker: &str, key: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .map(|s| s.trim_end_matches('\r').to_string())
}
