//! The cheapest bootable Linux guest for boot tests: Debian's kernel, an
//! initramfs of static busybox and an `/init` script, on an ISO made by
//! `osforge iso` (GRUB for BIOS and UEFI). It boots to its script in about
//! 10 s under TCG, against minutes for a full Debian root.
//!
//! The kernel comes from Debian's package (`apt-get download`, unpacked with
//! `dpkg-deb`, nothing installed), cached under the target dir by package
//! name, which carries the kernel ABI, so reruns skip the download. It is
//! the generic kernel, not `-cloud`: the cloud flavour has no AHCI driver,
//! and q35's CD-ROMs sit on AHCI, so its guests could not read a second CD.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel modules a guest needs to read q35's CD-ROMs, in load order
/// (each after what it depends on), by path under `lib/modules/<version>/kernel`.
pub const CDROM_MODULES: [&str; 7] = [
    "drivers/scsi/scsi_common.ko",
    "drivers/scsi/scsi_mod.ko",
    "drivers/ata/libata.ko",
    "drivers/ata/libahci.ko",
    "drivers/ata/ahci.ko",
    "drivers/cdrom/cdrom.ko",
    "drivers/scsi/sr_mod.ko",
];

/// Debian's static busybox (package busybox-static, in deps/packages.tsv).
pub const BUSYBOX: &str = "/bin/busybox";

/// The unpacked parts of Debian's kernel package.
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// [`CDROM_MODULES`], in that order.
    pub modules: Vec<PathBuf>,
}

/// Debian's current amd64 kernel, downloaded once into `<target tmp>/guest-kernel/<package>`.
pub fn debian_kernel() -> Result<Kernel, String> {
    // The metapackage names the current ABI's package: linux-image-6.1.0-N-amd64.
    let depends = output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let package = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| format!("apt-cache names no kernel package:\n{depends}"))?
        .to_string();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-kernel");
    let dir = cache.join(&package);
    if !dir.join("complete").exists() {
        // Unpacked beside the final place and renamed, so a test binary
        // running at the same time never sees half a kernel.
        fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
        let work = tempfile::tempdir_in(&cache).map_err(|e| e.to_string())?;
        output(
            Command::new("apt-get")
                .current_dir(work.path())
                .args(["download", "-q", &package]),
        )?;
        let deb = fs::read_dir(work.path())
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or("apt-get download left no .deb")?;
        let unpacked = work.path().join("x");
        fs::create_dir(&unpacked).map_err(|e| e.to_string())?;
        // Only the kernel and the modules: the whole package is 400 MB unpacked.
        let script = format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*' {}",
            deb.display(),
            unpacked.display(),
            CDROM_MODULES
                .iter()
                .map(|m| format!("'./lib/modules/*/kernel/{m}'"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        output(Command::new("sh").args(["-ec", &script]))?;
        fs::write(unpacked.join("complete"), &package).map_err(|e| e.to_string())?;
        if let Err(e) = fs::rename(&unpacked, &dir)
            && !dir.join("complete").exists()
        {
            return Err(format!("caching the kernel at {}: {e}", dir.display()));
        }
    }
    let only = |pattern: &str| -> Result<PathBuf, String> {
        let found = glob_one(&dir, pattern)?;
        Ok(found)
    };
    let vmlinuz = only("boot/vmlinuz-")?;
    let modules_root = only("lib/modules/")?.join("kernel");
    Ok(Kernel {
        vmlinuz,
        modules: CDROM_MODULES.iter().map(|m| modules_root.join(m)).collect(),
    })
}

/// The one entry of `dir/<parent>` whose name starts with `pattern`'s last part.
fn glob_one(dir: &Path, pattern: &str) -> Result<PathBuf, String> {
    let (parent, prefix) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    let parent = dir.join(parent);
    let mut found: Vec<PathBuf> = fs::read_dir(&parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!("{n} entries {pattern}* in {}", dir.display())),
    }
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A file in an initramfs.
pub enum Entry {
    Dir(&'static str),
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    CharDevice {
        path: &'static str,
        major: u32,
        minor: u32,
    },
}

/// An initramfs: `/init` running `init_script` under busybox, busybox at
/// `/bin/busybox`, the modules in `/modules/` (by file name) and
/// `/dev/console`, so init's output reaches the kernel console. Not
/// compressed: the kernel takes a plain cpio, and it boots faster.
pub fn initramfs(init_script: &str, modules: &[PathBuf]) -> Vec<u8> {
    let busybox = fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (install busybox-static: deps/setup test)"));
    assert!(
        !has_interpreter(&busybox),
        "{BUSYBOX} is dynamically linked (package busybox, not busybox-static); the initramfs has no libc"
    );
    let mut entries = vec![
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("modules"),
        Entry::CharDevice {
            path: "dev/console",
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox,
        },
        Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: format!("#!/bin/busybox sh\n{init_script}").into_bytes(),
        },
    ];
    for module in modules {
        entries.push(Entry::File {
            path: format!("modules/{}", module.file_name().unwrap().to_string_lossy()),
            mode: 0o644,
            data: fs::read(module).unwrap_or_else(|e| panic!("{}: {e}", module.display())),
        });
    }
    cpio_newc(&entries)
}

/// Whether a 64-bit little-endian ELF file asks for a dynamic loader: a
/// `PT_INTERP` program header.
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, len: usize| -> u64 {
        elf.get(at..at + len)
            .map_or(0, |b| b.iter().rev().fold(0, |v, &x| v << 8 | u64::from(x)))
    };
    let (phoff, phentsize, phnum) = (
        read(0x20, 8) as usize,
        read(0x36, 2) as usize,
        read(0x38, 2),
    );
    (0..phnum as usize).any(|i| read(phoff + i * phentsize, 4) as u32 == PT_INTERP)
}

/// A cpio archive in the "new ASCII" format the kernel unpacks: per entry a
/// 110-byte header of `070701` and 13 eight-digit hex fields, the name with
/// its NUL, padding to 4 bytes, the data, padding; then `TRAILER!!!`.
pub fn cpio_newc(entries: &[Entry]) -> Vec<u8> {
    fn record(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check: unused in 070701
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match entry {
            Entry::Dir(path) => record(&mut out, ino, path, 0o040755, (0, 0), &[]),
            Entry::File { path, mode, data } => {
                record(&mut out, ino, path, 0o100000 | mode, (0, 0), data)
            }
            Entry::CharDevice { path, major, minor } => {
                record(&mut out, ino, path, 0o020600, (*major, *minor), &[])
            }
        }
    }
    record(&mut out, 0, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

/// A GRUB config that boots `/vmlinuz` with `/initrd` and `cmdline`, on the
/// serial console, without a menu.
pub fn grub_cfg(cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n\
         linux /vmlinuz console=ttyS0,115200 {cmdline}\ninitrd /initrd\nboot\n"
    )
}

/// Stages the kernel, `initrd` and a grub.cfg with `cmdline`, and writes a
/// BIOS + UEFI ISO of them with `osforge iso` at `iso`.
pub fn live_iso(kernel: &Kernel, initrd: &[u8], cmdline: &str, iso: &Path) {
    let staging = iso.with_extension("staging");
    fs::create_dir_all(staging.join("boot/grub")).unwrap();
    fs::copy(&kernel.vmlinuz, staging.join("vmlinuz")).unwrap();
    fs::write(staging.join("initrd"), initrd).unwrap();
    fs::write(staging.join("boot/grub/grub.cfg"), grub_cfg(cmdline)).unwrap();
    super::run_ok(
        super::osforge()
            .args([
                "iso",
                "--quiet",
                "--volume-id",
                "OSFORGE_GUEST",
                "--bios",
                "--uefi",
            ])
            .arg(&staging)
            .arg(iso),
    );
}
