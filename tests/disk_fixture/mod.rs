//! The synthetic rootfs and the shared build the `osforge disk` tests read,
//! and the helpers that look inside a disk image with the reference tools.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::{self, SnapshotOptions, noise, require_root, run_ok, snapshot};

/// 2023-11-14T22:13:20Z: identifiers derive from it, times are fixed by it.
pub const EPOCH: &str = "1700000000";
pub const KERNEL_VERSION: &str = "6.1.0-99-amd64";
pub const SECTOR: u64 = 512;
/// cap_net_raw+ep as setcap writes it (VFS_CAP_REVISION_2).
pub const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A profile like qcow2-host, on a 2 GiB disk, with a swap partition too.
pub const PROFILE: &str = r#"description: "disk tests: Airship layout plus swap on 2G"
inherits: [qcow2-host]
variables:
  hostname: disk-test
kernel:
  cmdline: ["hugepages=4", "isolcpus=1"]
disk: !replace
  size: 2G
  partitions:
    - {name: root, size: rest, type: linux, filesystem: ext4, mount: /, fstab_options: "defaults,errors=remount-ro"}
    - {name: bios, size: 4M, type: bios_grub, filesystem: none}
    - {name: esp, size: 64M, type: esp, filesystem: vfat, mount: /boot/efi, fstab_options: "umask=0077"}
    - {name: boot, size: 256M, type: linux, filesystem: ext4, mount: /boot}
    - {name: swap, size: 64M, type: swap, filesystem: swap}
"#;

pub fn osforge(args: &[&str]) -> Output {
    support::osforge().args(args).output().expect("run osforge")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A small rootfs with what a real one has that is easy to lose: a kernel
/// in /boot, files under /boot/efi, owners, modes, a file capability, hard
/// links, a device node, symlinks short and long, a sparse file.
pub fn make_rootfs(root: &Path) {
    let write = |path: &str, bytes: &[u8]| {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    };
    fs::create_dir_all(root).unwrap();
    write(
        &format!("/boot/vmlinuz-{KERNEL_VERSION}"),
        &noise(3 << 20, 1),
    );
    write(
        &format!("/boot/initrd.img-{KERNEL_VERSION}"),
        &noise(5 << 20, 2),
    );
    write(
        &format!("/boot/config-{KERNEL_VERSION}"),
        b"CONFIG_EXT4_FS=y\n",
    );
    symlink(
        format!("boot/vmlinuz-{KERNEL_VERSION}"),
        root.join("vmlinuz"),
    )
    .unwrap();
    symlink(
        format!("boot/initrd.img-{KERNEL_VERSION}"),
        root.join("initrd.img"),
    )
    .unwrap();
    write(
        "/boot/efi/EFI/debian/notes.txt",
        b"left by the distribution\n",
    );
    write("/etc/hostname", b"image\n");
    write("/etc/fstab", b"# the bootstrap's empty fstab\n");
    write("/etc/default/keyboard", b"XKBLAYOUT=us\n");
    write("/usr/bin/ping", &noise(70_000, 3));
    xattr::set(
        root.join("usr/bin/ping"),
        "security.capability",
        &CAP_NET_RAW,
    )
    .unwrap();
    write("/usr/bin/tool", &noise(10_000, 4));
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    write("/var/lib/data/blob", &noise(20 << 20, 5));
    let sparse = fs::File::create(root.join("var/lib/data/sparse")).unwrap();
    sparse.set_len(1 << 30).unwrap();
    symlink("../lib/data/blob", root.join("usr/bin/short-link")).unwrap();
    symlink(
        "/".to_string() + &"long/".repeat(20) + "target",
        root.join("usr/bin/long-link"),
    )
    .unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    let null = std::ffi::CString::new(root.join("dev/null").to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mknod creates the node only.
    assert_eq!(
        unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
        0
    );
    fs::create_dir_all(root.join("home/user")).unwrap();
    std::os::unix::fs::chown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(root.join("home/user"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
}

/// One build shared by the tests that only read it: the same disk as qcow2
/// and raw.
pub struct Built {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub profile: PathBuf,
    pub qcow2: PathBuf,
    pub raw: PathBuf,
    pub before: std::collections::BTreeMap<Vec<u8>, support::EntryInfo>,
}

pub const SNAPSHOT: SnapshotOptions = SnapshotOptions {
    xattrs: true,
    contents: true,
};

pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build_in("disk-tests"))
}

/// Builds the fixture disk in `<target tmp>/<name>` (emptied first). Test
/// files that run at the same time use different names, so that one
/// does not remove another's images.
pub fn build_in(name: &str) -> Built {
    require_root();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs);
    let profile = dir.join("disk-test.yaml");
    fs::write(&profile, PROFILE).unwrap();
    let before = snapshot(&rootfs, &SNAPSHOT);
    let (qcow2, raw) = (dir.join("disk.qcow2"), dir.join("disk.raw"));
    let out = support::osforge()
        .args([
            "disk",
            "--profile",
            profile.to_str().unwrap(),
            "--root",
            rootfs.to_str().unwrap(),
        ])
        .arg(&qcow2)
        .arg(&raw)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(out.status.success(), "osforge disk failed:\n{}", text(&out));
    Built {
        dir,
        rootfs,
        profile,
        qcow2,
        raw,
        before,
    }
}

/// `sgdisk -p`'s partition lines: (number, first LBA, last LBA, code, name).
pub fn partitions(raw: &Path) -> Vec<(u32, u64, u64, String, String)> {
    let out = String::from_utf8(run_ok(Command::new("sgdisk").arg("-p").arg(raw)).stdout).unwrap();
    out.lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[5].to_string(),
                f[6..].join(" "),
            )
        })
        .collect()
}

/// Cuts partition `number` out of the raw image into its own (sparse) file.
pub fn extract(raw: &Path, number: u32, out: &Path) -> PathBuf {
    let (_, first, last, _, _) = partitions(raw)
        .into_iter()
        .find(|p| p.0 == number)
        .expect("partition");
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", raw.display()))
            .arg(format!("of={}", out.display()))
            .args(["bs=512", "conv=sparse", "status=none"])
            .arg(format!("skip={first}"))
            .arg(format!("count={}", last - first + 1)),
    );
    out.to_path_buf()
}

pub fn debugfs(image: &Path, request: &str) -> String {
    String::from_utf8(run_ok(Command::new("debugfs").arg("-R").arg(request).arg(image)).stdout)
        .unwrap()
}

pub fn blkid(image: &Path, tag: &str) -> String {
    let out = run_ok(
        Command::new("blkid")
            .args(["-p", "-o", "value", "-s", tag])
            .arg(image),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
