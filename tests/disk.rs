//! `osforge disk` end to end on a small synthetic rootfs (no mmdebstrap):
//! the reference tools are the oracles. qemu-img checks the qcow2 and
//! compares it with the raw image of the same build; sgdisk verifies and
//! lists the GPT; e2fsck, fsck.fat and blkid check every partition, cut out
//! of the raw image by offset; debugfs and mtools read what landed where;
//! grub-bios-setup, run on a copy, must write the same boot sectors.

mod disk_fixture;
mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use disk_fixture::*;
use support::{diff_snapshots, leftover_temporaries, noise, run_ok, snapshot};

#[test]
fn the_qcow2_is_clean_for_qemu_img_and_holds_the_same_disk_as_the_raw_image() {
    let b = built();
    let check = run_ok(Command::new("qemu-img").arg("check").arg(&b.qcow2));
    assert!(String::from_utf8_lossy(&check.stdout).contains("No errors were found"));
    let compare = run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&b.raw)
            .arg(&b.qcow2),
    );
    assert!(String::from_utf8_lossy(&compare.stdout).contains("Images are identical"));
    let info = String::from_utf8(
        run_ok(
            Command::new("qemu-img")
                .args(["info", "--output=json"])
                .arg(&b.qcow2),
        )
        .stdout,
    )
    .unwrap();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], 2u64 << 30);
    assert_eq!(
        info["format-specific"]["data"]["compression-type"], "zlib",
        "the profile's default"
    );
    let raw_md = fs::metadata(&b.raw).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(raw_md.len(), 2 << 30);
    assert!(raw_md.blocks() * 512 < 200 << 20, "the raw image is sparse");
    assert!(
        fs::metadata(&b.qcow2).unwrap().len() < 60 << 20,
        "the qcow2 holds data clusters only"
    );
}

#[test]
fn sgdisk_verifies_the_gpt_and_lists_names_types_and_sizes_in_profile_order() {
    let b = built();
    let verify = run_ok(Command::new("sgdisk").arg("-v").arg(&b.raw));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("No problems found"),
        "{}",
        text(&verify)
    );
    let parts = partitions(&b.raw);
    let mib = (1 << 20) / SECTOR;
    let summary: Vec<(u32, String, String)> = parts
        .iter()
        .map(|p| (p.0, p.3.clone(), p.4.clone()))
        .collect();
    let expected = [
        (1, "8300", "root"),
        (2, "EF02", "bios"),
        (3, "EF00", "esp"),
        (4, "8300", "boot"),
        (5, "8200", "swap"),
    ];
    assert_eq!(
        summary,
        expected.map(|(n, c, name)| (n, c.to_string(), name.to_string()))
    );
    let sizes: Vec<u64> = parts.iter().map(|p| (p.2 - p.1 + 1) / mib).collect();
    assert_eq!(&sizes[1..], &[4, 64, 256, 64]);
    // Root is entry 1 but last on the disk, up to the backup GPT's MiB.
    let root = &parts[0];
    assert_eq!(root.1, (1 + 4 + 64 + 256 + 64) * mib);
    assert_eq!(root.2 + 1, (2048 - 1) * mib);
    let info =
        String::from_utf8(run_ok(Command::new("sgdisk").args(["-i", "2"]).arg(&b.raw)).stdout)
            .unwrap();
    assert!(
        info.contains("BIOS boot partition") && info.contains("Attribute flags: 0000000000000001"),
        "{info}"
    );
}

#[test]
fn every_filesystem_checks_clean_and_fstab_names_them_by_uuid() {
    let b = built();
    let work = support::temp_dir("disk-fsck-");
    let root = extract(&b.raw, 1, &work.path().join("root.ext4"));
    let esp = extract(&b.raw, 3, &work.path().join("esp.fat"));
    let boot = extract(&b.raw, 4, &work.path().join("boot.ext4"));
    let swap = extract(&b.raw, 5, &work.path().join("swap"));
    for fs_image in [&root, &boot] {
        run_ok(Command::new("e2fsck").arg("-fn").arg(fs_image));
    }
    run_ok(Command::new("fsck.fat").arg("-n").arg(&esp));
    assert_eq!(blkid(&root, "TYPE"), "ext4");
    assert_eq!(blkid(&boot, "LABEL"), "boot");
    assert_eq!(blkid(&esp, "TYPE"), "vfat");
    assert_eq!(blkid(&swap, "TYPE"), "swap");
    let fstab = debugfs(&root, "cat /etc/fstab");
    let lines: Vec<&str> = fstab.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            format!(
                "UUID={} / ext4 defaults,errors=remount-ro 0 1",
                blkid(&root, "UUID")
            ),
            format!("UUID={} /boot ext4 defaults 0 2", blkid(&boot, "UUID")),
            format!("UUID={} /boot/efi vfat umask=0077 0 2", blkid(&esp, "UUID")),
            format!("UUID={} none swap sw 0 0", blkid(&swap, "UUID")),
        ]
    );
    let features =
        String::from_utf8(run_ok(Command::new("dumpe2fs").arg("-h").arg(&boot)).stdout).unwrap();
    assert!(
        !features.contains("metadata_csum_seed") && !features.contains("orphan_file"),
        "GRUB 2.06 reads it"
    );
}

#[test]
fn the_rootfs_is_split_by_mount_point_with_owners_capabilities_and_links_intact() {
    let b = built();
    let work = support::temp_dir("disk-split-");
    let root = extract(&b.raw, 1, &work.path().join("root.ext4"));
    let boot = extract(&b.raw, 4, &work.path().join("boot.ext4"));
    let esp = extract(&b.raw, 3, &work.path().join("esp.fat"));
    // /boot is an empty mount point on root; the kernel is on the boot filesystem.
    let listing = debugfs(&root, "ls /boot");
    assert!(!listing.contains("vmlinuz"), "{listing}");
    assert!(debugfs(&boot, "ls /").contains(&format!("vmlinuz-{KERNEL_VERSION}")));
    assert!(
        !debugfs(&boot, "ls /efi").contains("EFI"),
        "/boot/efi is a mount point, empty on /boot"
    );
    let ping = debugfs(&root, "ea_get /usr/bin/ping security.capability");
    assert!(ping.contains("01 00 00 02 00 20 00 00"), "{ping}");
    assert!(debugfs(&root, "stat /usr/bin/tool").contains("Links: 2"));
    assert_eq!(
        debugfs(&root, "stat /usr/bin/tool").lines().next(),
        debugfs(&root, "stat /usr/bin/tool-alias").lines().next()
    );
    let home = debugfs(&root, "stat /home/user");
    assert!(
        home.contains("Mode:  0700") && home.contains("User:  1000   Group:  1000"),
        "{home}"
    );
    assert!(debugfs(&root, "stat /tmp").contains("Mode:  01777"));
    assert!(debugfs(&root, "stat /dev/null").contains("Type: character special"));
    assert!(
        debugfs(&root, "stat /var/lib/data/sparse").contains("Blockcount: 0"),
        "holes stay holes"
    );
    assert_eq!(
        debugfs(&root, "cat /etc/default/keyboard"),
        "XKBLAYOUT=us\n"
    );
    let grub_default = debugfs(&root, "cat /etc/default/grub");
    assert!(grub_default.contains("GRUB_CMDLINE_LINUX_DEFAULT='console=tty0 console=ttyS0,115200n8 hugepages=4 isolcpus=1'"), "{grub_default}");
    // The ESP: the tree under /boot/efi and the removable-media loader.
    let mdir = |path: &str| {
        text(
            &Command::new("mdir")
                .args(["-b", "-i"])
                .arg(&esp)
                .arg(path)
                .output()
                .unwrap(),
        )
    };
    assert!(mdir("::/EFI/debian").contains("notes.txt"));
    assert!(mdir("::/EFI/BOOT").contains("BOOTX64.EFI"));
    // GRUB: the menu names the root by UUID with the profile's parameters;
    // the module directories are there for update-grub's insmods.
    let grub_cfg = debugfs(&boot, "cat /grub/grub.cfg");
    let root_uuid = blkid(&root, "UUID");
    let line = format!(
        "linux /vmlinuz-{KERNEL_VERSION} root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200n8 hugepages=4 isolcpus=1"
    );
    assert!(grub_cfg.contains(&line), "{grub_cfg}");
    assert!(grub_cfg.contains(&format!(
        "search --no-floppy --fs-uuid --set=root {}",
        blkid(&boot, "UUID")
    )));
    assert!(debugfs(&boot, "ls /grub/i386-pc").contains("ext2.mod"));
    assert!(debugfs(&boot, "ls /grub/x86_64-efi").contains("linux.mod"));
    assert_eq!(debugfs(&boot, "cat /grub/grubenv").len(), 1024);
}

#[test]
fn the_source_tree_is_left_exactly_as_it_was() {
    let b = built();
    let after = snapshot(&b.rootfs, &SNAPSHOT);
    let problems = diff_snapshots(&b.before, &after, &[]);
    assert!(problems.is_empty(), "{problems:#?}");
    let leftovers: Vec<_> = fs::read_dir(&b.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "scratch left behind: {leftovers:?}");
}

#[test]
fn the_bios_boot_sectors_are_what_grub_bios_setup_writes() {
    let b = built();
    let work = support::temp_dir("disk-grub-setup-");
    let w = work.path();
    // A copy with the MBR boot code and the BIOS boot partition wiped.
    let copy = w.join("copy.raw");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&b.raw)
            .arg(&copy),
    );
    let (_, first, last, _, _) = partitions(&b.raw).into_iter().find(|p| p.0 == 2).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&copy).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0u8; 440], 0).unwrap();
    f.write_all_at(
        &vec![0u8; ((last - first + 1) * SECTOR) as usize],
        first * SECTOR,
    )
    .unwrap();
    drop(f);
    // grub-bios-setup wants the images in a directory and a device map.
    let grub_dir = w.join("grub");
    fs::create_dir(&grub_dir).unwrap();
    let boot = extract(&b.raw, 4, &w.join("boot.ext4"));
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!(
                "dump /grub/i386-pc/core.img {}",
                grub_dir.join("core.img").display()
            ))
            .arg(&boot),
    );
    fs::copy("/usr/lib/grub/i386-pc/boot.img", grub_dir.join("boot.img")).unwrap();
    fs::write(
        grub_dir.join("device.map"),
        format!("(hd0) {}\n", copy.display()),
    )
    .unwrap();
    // It also insists on opening the device holding its directory. In a
    // private mount namespace, that directory is a tmpfs whose "device" is
    // a symlink to a dummy file, whatever the build machine's disks are.
    let dummy = w.join("dummy");
    fs::File::create(&dummy).unwrap().set_len(1 << 20).unwrap();
    let mnt = w.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let script = format!(
        "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /dev; ln -s {dummy} /dev/osforge-grub-dir; \
         mount -t tmpfs /dev/osforge-grub-dir {mnt}; cp {grub}/* {mnt}/; \
         /usr/lib/grub/i386-pc/grub-bios-setup --directory={mnt} --device-map={mnt}/device.map --skip-fs-probe '(hd0)'",
        dummy = dummy.display(),
        mnt = mnt.display(),
        grub = grub_dir.display()
    );
    run_ok(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    let read = |path: &Path, offset: u64, len: u64| {
        let mut buf = vec![0u8; len as usize];
        fs::File::open(path)
            .unwrap()
            .read_exact_at(&mut buf, offset)
            .unwrap();
        buf
    };
    assert_eq!(read(&copy, 0, SECTOR), read(&b.raw, 0, SECTOR), "MBR");
    let area = (last - first + 1) * SECTOR;
    assert!(
        read(&copy, first * SECTOR, area) == read(&b.raw, first * SECTOR, area),
        "BIOS boot partition (core.img, blocklist, Reed-Solomon parity)"
    );
    let boot_code = read(&b.raw, 0, 440);
    assert_eq!(
        u64::from_le_bytes(boot_code[0x5c..0x64].try_into().unwrap()),
        first,
        "boot.img points at core.img"
    );
}

#[test]
fn the_same_source_date_epoch_gives_the_same_identifiers_and_bytes() {
    let b = built();
    let work = support::temp_dir("disk-ids-");
    let again = work.path().join("again.raw");
    // A new ctime on a source file (same mode, so nothing else changes):
    // mke2fs copies inode times from the tree, osforge must not keep them.
    let source = b.rootfs.join("etc/hostname");
    fs::set_permissions(&source, fs::metadata(&source).unwrap().permissions()).unwrap();
    let out = support::osforge()
        .args([
            "disk",
            "--profile",
            b.profile.to_str().unwrap(),
            "--root",
            b.rootfs.to_str().unwrap(),
        ])
        .arg(&again)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ids = |raw: &Path| {
        let mut all =
            String::from_utf8(run_ok(Command::new("sgdisk").arg("-p").arg(raw)).stdout).unwrap();
        for n in 1..=5 {
            all += &String::from_utf8(
                run_ok(Command::new("sgdisk").arg("-i").arg(n.to_string()).arg(raw)).stdout,
            )
            .unwrap();
        }
        all.replace(&raw.display().to_string(), "")
    };
    assert_eq!(ids(&b.raw), ids(&again));
    let same = Command::new("cmp")
        .arg(&b.raw)
        .arg(&again)
        .output()
        .unwrap();
    assert!(same.status.success(), "not byte-identical: {}", text(&same));
    let stat = debugfs(
        &extract(&again, 1, &work.path().join("c")),
        "stat /etc/hostname",
    );
    for field in ["ctime", " atime", "mtime", "crtime"] {
        let line = stat
            .lines()
            .find(|l| l.trim_start().starts_with(field.trim()))
            .unwrap();
        assert!(
            line.contains(&format!("0x{:x}:00000000", EPOCH.parse::<u32>().unwrap())),
            "{field} of /etc/hostname is not SOURCE_DATE_EPOCH: {line}"
        );
    }
    let first = debugfs(
        &extract(&b.raw, 1, &work.path().join("a")),
        "cat /etc/fstab",
    );
    assert_eq!(
        first,
        debugfs(
            &extract(&again, 1, &work.path().join("b")),
            "cat /etc/fstab"
        )
    );
    // Without it, every build is a new disk.
    let random = work.path().join("random.raw");
    let out = support::osforge()
        .args([
            "disk",
            "--profile",
            b.profile.to_str().unwrap(),
            "--root",
            b.rootfs.to_str().unwrap(),
        ])
        .arg(&random)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(ids(&b.raw), ids(&random));
}

#[test]
fn zstd_from_the_profile_or_the_command_line_reaches_the_qcow2_header() {
    let b = built();
    let work = support::temp_dir("disk-zstd-");
    let profile = work.path().join("zstd.yaml");
    fs::write(
        &profile,
        format!(
            "inherits: [{}]\ndisk:\n  compression: zstd\n",
            b.profile.display()
        ),
    )
    .unwrap();
    let image = work.path().join("z.qcow2");
    let out = osforge(&[
        "disk",
        "--profile",
        profile.to_str().unwrap(),
        "--root",
        b.rootfs.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let info =
        String::from_utf8(run_ok(Command::new("qemu-img").args(["info"]).arg(&image)).stdout)
            .unwrap();
    assert!(info.contains("compression type: zstd"), "{info}");
    run_ok(Command::new("qemu-img").arg("check").arg(&image));
    let none = work.path().join("n.qcow2");
    let out = osforge(&[
        "disk",
        "--profile",
        profile.to_str().unwrap(),
        "--root",
        b.rootfs.to_str().unwrap(),
        "--compression",
        "none",
        none.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let check =
        String::from_utf8(run_ok(Command::new("qemu-img").arg("check").arg(&none)).stdout).unwrap();
    assert!(
        !check.contains("compressed clusters") || check.contains("0.00% compressed"),
        "{check}"
    );
}

/// Runs `osforge disk` on a profile that must be refused; returns stderr.
fn refused(work: &Path, name: &str, yaml: &str, extra: &[&str]) -> String {
    let b = built();
    let profile = work.join(format!("{name}.yaml"));
    fs::write(&profile, yaml).unwrap();
    let out_dir = work.join(name);
    fs::create_dir(&out_dir).unwrap();
    let image = out_dir.join("disk.qcow2");
    let mut args = vec![
        "disk",
        "--profile",
        profile.to_str().unwrap(),
        "--root",
        b.rootfs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(image.to_str().unwrap());
    let out = osforge(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
    assert!(stderr.starts_with("osforge: error: "), "{stderr}");
    assert!(!image.exists(), "{name}: no image");
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "{name}: nothing written: {:?}",
        leftover_temporaries(&out_dir)
    );
    stderr
}

const BASE_PARTS: &str = "    - {name: root, size: rest, type: linux, filesystem: ext4, mount: /}\n    - {name: bios, size: 4M, type: bios_grub, filesystem: none}\n";

#[test]
fn bad_layouts_fail_with_one_line_before_anything_is_written() {
    let work = support::temp_dir("disk-bad-");
    let w = work.path();
    let disk = |size: &str, more: &str| {
        format!(
            "inherits: [qcow2-host]\ndisk: !replace\n  size: {size}\n  partitions:\n{BASE_PARTS}{more}"
        )
    };
    let e = refused(
        w,
        "oversized",
        &disk(
            "1G",
            "    - {name: big, size: 2G, type: linux, filesystem: ext4, mount: /srv}\n",
        ),
        &[],
    );
    assert!(e.contains("disk.size") && e.contains("need"), "{e}");
    let e = refused(
        w,
        "overlapping-mounts",
        &disk(
            "4G",
            "    - {name: a, size: 64M, type: linux, filesystem: ext4, mount: /srv}\n    - {name: b, size: 64M, type: linux, filesystem: ext4, mount: /srv}\n",
        ),
        &[],
    );
    assert!(e.contains("a second partition mounted at /srv"), "{e}");
    let no_root = "inherits: [qcow2-host]\ndisk: !replace\n  size: 2G\n  partitions:\n    - {name: data, size: rest, type: linux, filesystem: ext4, mount: /data}\n";
    let e = refused(w, "no-root", no_root, &[]);
    assert!(
        e.contains("exactly one partition must be mounted at /"),
        "{e}"
    );
    let e = refused(
        w,
        "two-esps",
        &disk(
            "2G",
            "    - {name: esp1, size: 64M, type: esp, filesystem: vfat}\n    - {name: esp2, size: 64M, type: esp, filesystem: vfat}\n",
        ),
        &[],
    );
    assert!(e.contains("a second esp partition"), "{e}");
    let e = refused(
        w,
        "unknown-fs",
        &disk(
            "2G",
            "    - {name: data, size: 64M, type: linux, filesystem: btrfs, mount: /data}\n",
        ),
        &[],
    );
    assert!(e.contains("btrfs") && e.contains("ext4"), "{e}");
    // The layout is fine but the files do not fit: the message says how big.
    let e = refused(
        w,
        "too-small",
        "inherits: [qcow2-host]\n",
        &["--size", "1300M"],
    );
    assert!(
        e.contains("partition 'root' (/)") && e.contains("make disk.size at least"),
        "{e}"
    );
    let needed: String = e
        .split("at least ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let needed_mib: u64 = needed.parse().unwrap();
    assert!(needed_mib > 1300 && needed_mib < 1450, "{e}");
    let fits = w.join("fits.qcow2");
    let out = osforge(&[
        "disk",
        "--profile",
        "qcow2-host",
        "--root",
        built().rootfs.to_str().unwrap(),
        "--size",
        &format!("{needed_mib}M"),
        fits.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "the suggested size is enough: {}",
        text(&out)
    );
}

#[test]
fn an_interrupted_build_leaves_no_image_and_no_scratch_files() {
    let b = built();
    let work = support::temp_dir("disk-interrupt-");
    // A tree with 300 MB that zlib -9 works hard on: seconds of work at one
    // thread. Not plain noise: the writers store incompressible blocks raw
    // without trying, which would finish before the signal.
    let rootfs = support::temp_dir("disk-interrupt-root-");
    make_rootfs(rootfs.path());
    let letters: Vec<u8> = noise(300 << 20, 6)
        .into_iter()
        .map(|b| b'a' + (b & 15))
        .collect();
    fs::write(rootfs.path().join("var/lib/data/large"), letters).unwrap();
    let image = work.path().join("disk.qcow2");
    let child = support::osforge()
        .args([
            "disk",
            "--profile",
            b.profile.to_str().unwrap(),
            "--root",
            rootfs.path().to_str().unwrap(),
            "--compression",
            "zlib",
            "--level",
            "9",
            "--jobs",
            "1",
        ])
        .arg(&image)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough for the split trees and mke2fs to exist, not for the end.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "osforge finished before the signal; the test needs a slower build"
    );
    assert!(!image.exists());
    let left: Vec<_> = walkdir(work.path());
    assert!(left.is_empty(), "left behind: {left:?}\nstderr: {stderr}");
}

/// Debian's signed loaders on this machine (shim-signed, shim-helpers-amd64-signed,
/// grub-efi-amd64-signed), put where the image would have them.
const SIGNED: [(&str, &str); 3] = [
    ("/usr/lib/shim/shimx64.efi.signed", "EFI/BOOT/BOOTX64.EFI"),
    ("/usr/lib/shim/mmx64.efi.signed", "EFI/BOOT/mmx64.efi"),
    (
        "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        "EFI/BOOT/grubx64.efi",
    ),
];

#[test]
fn secure_boot_puts_the_signed_shim_and_grub_on_the_esp_or_names_the_missing_package() {
    let b = built();
    let work = support::temp_dir("disk-sb-");
    let w = work.path();
    let yaml = format!(
        "inherits: [{}]\ndisk:\n  secure_boot: true\n",
        b.profile.display()
    );
    let e = refused(w, "sb-without-shim", &yaml, &[]);
    assert!(
        e.contains("/usr/lib/shim/shimx64.efi.signed") && e.contains("shim-signed"),
        "{e}"
    );

    let rootfs = w.join("rootfs");
    make_rootfs(&rootfs);
    for (host, _) in SIGNED {
        let to = rootfs.join(host.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(host, &to).unwrap_or_else(|e| {
            panic!("{host}: {e} (install shim-signed and grub-efi-amd64-signed)")
        });
    }
    let profile = w.join("sb.yaml");
    fs::write(&profile, &yaml).unwrap();
    let raw = w.join("sb.raw");
    let out = osforge(&[
        "disk",
        "--profile",
        profile.to_str().unwrap(),
        "--root",
        rootfs.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let esp = extract(&raw, 3, &w.join("esp.fat"));
    run_ok(Command::new("fsck.fat").arg("-n").arg(&esp));
    let read = |path: &str| {
        run_ok(
            Command::new("mtype")
                .arg("-i")
                .arg(&esp)
                .arg(format!("::/{path}")),
        )
        .stdout
    };
    for (host, on_esp) in SIGNED {
        assert!(
            read(on_esp) == fs::read(host).unwrap(),
            "{on_esp} is {host}"
        );
    }
    let boot_uuid = blkid(&extract(&raw, 4, &w.join("boot.ext4")), "UUID");
    let stub = String::from_utf8(read("EFI/debian/grub.cfg")).unwrap();
    assert!(
        stub.contains(&format!(
            "search --no-floppy --fs-uuid --set=root {boot_uuid}"
        )),
        "{stub}"
    );
    assert!(stub.contains("configfile ($root)/grub/grub.cfg"), "{stub}");
    let listing = text(
        &Command::new("mdir")
            .args(["-b", "-i"])
            .arg(&esp)
            .arg("::/EFI/BOOT")
            .output()
            .unwrap(),
    );
    assert!(
        !listing.to_lowercase().contains("fbx64"),
        "no fallback loader: {listing}"
    );
    // BIOS boot is unchanged by it.
    assert_eq!(
        &fs::read(&raw).unwrap()[..2],
        &fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap()[..2]
    );
}

/// Every path below `dir`, for a message.
fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.display().to_string());
        if path.is_dir() && !path.is_symlink() {
            out.extend(walkdir(&path));
        }
    }
    out
}
