//! `osforge inspect --json` on artifacts made by osforge's own subcommands:
//! what it reports must be what was put in (the profile's layout, the
//! staged files, the grub.cfg, the squashfs options), cross-checked with
//! the reference tools (sgdisk, blkid, mdir, unsquashfs) where they can say
//! the same thing. No QEMU, no bootstrap.

mod disk_fixture;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use disk_fixture::{Built, EPOCH, KERNEL_VERSION, build_in, text};
use serde_json::Value;
use support::{noise, run_ok, temp_dir};

/// The fixture disk, built in a directory of its own (tests/disk.rs builds
/// the same disk in another, and may run at the same time).
fn disk() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| build_in("inspect-disk"))
}

fn inspect(path: &Path) -> Output {
    support::osforge()
        .args(["inspect", "--json"])
        .arg(path)
        .output()
        .expect("run osforge inspect")
}

fn inspect_json(path: &Path) -> Value {
    let out = inspect(path);
    assert!(
        out.status.success(),
        "osforge inspect failed:\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn partition<'a>(disk: &'a Value, name: &str) -> &'a Value {
    disk["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no partition {name} in {disk:#}"))
}

const MIB: u64 = 1 << 20;

#[test]
fn a_qcow2_disk_shows_its_header_and_the_profiles_partitions_as_sgdisk_does() {
    let b = disk();
    let report = inspect_json(&b.qcow2);
    assert_eq!(report["kind"], "qcow2");
    let q = &report["qcow2"];
    assert_eq!(q["version"], 3);
    assert_eq!(q["virtual_size_bytes"], 2u64 << 30, "disk.size: 2G");
    assert_eq!(q["cluster_size_bytes"], 65536);
    assert_eq!(q["compression"], "zlib", "qcow2-host's disk.compression");

    let d = &report["disk"];
    assert_eq!(d["gpt"]["primary"]["valid"], true);
    assert_eq!(d["gpt"]["backup"]["valid"], true);
    assert_eq!(d["mbr"][0]["type_code"], 0xEE);
    // The profile's order and sizes; root is `rest`, placed last.
    for (name, size, type_name) in [
        ("bios", 4 * MIB, "BIOS boot"),
        ("esp", 64 * MIB, "EFI System"),
        ("boot", 256 * MIB, "Linux filesystem"),
        ("swap", 64 * MIB, "Linux swap"),
    ] {
        let p = partition(d, name);
        assert_eq!(p["size_bytes"], size, "{name}");
        assert_eq!(p["type_name"], type_name, "{name}");
    }
    let numbers: Vec<(u64, &str)> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["number"].as_u64().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        numbers,
        [
            (1, "root"),
            (2, "bios"),
            (3, "esp"),
            (4, "boot"),
            (5, "swap")
        ]
    );
    // sgdisk agrees on every start and end.
    for (number, first, last, _, name) in disk_fixture::partitions(&b.raw) {
        let p = partition(d, &name);
        assert_eq!(p["number"], number);
        assert_eq!(
            (p["first_lba"].as_u64(), p["last_lba"].as_u64()),
            (Some(first), Some(last)),
            "{name}"
        );
    }
}

#[test]
fn filesystems_esp_files_grub_menu_and_kernels_are_read_through_the_qcow2_mapping() {
    let b = disk();
    let d = &inspect_json(&b.qcow2)["disk"];
    for (name, fs_type) in [
        ("root", "ext4"),
        ("boot", "ext4"),
        ("swap", "swap"),
        ("esp", "vfat"),
    ] {
        let p = partition(d, name);
        assert_eq!(p["filesystem"]["type"], fs_type, "{name}");
        let offset = p["start_bytes"].as_u64().unwrap().to_string();
        let blkid = |tag: &str| {
            let out = run_ok(
                Command::new("blkid")
                    .args(["-p", "-O", &offset, "-o", "value", "-s", tag])
                    .arg(&b.raw),
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        if fs_type != "vfat" {
            assert_eq!(p["filesystem"]["uuid"], blkid("UUID"), "{name}");
        } else {
            assert_eq!(p["filesystem"]["serial"], blkid("UUID"), "{name}");
        }
        assert_eq!(p["filesystem"]["label"], blkid("LABEL"), "{name}");
    }
    assert_eq!(
        partition(d, "boot")["filesystem"]["size_bytes"],
        256 * MIB,
        "ext4 fills its partition"
    );

    // The ESP's files, as mtools lists them from the raw image.
    let esp = partition(d, "esp");
    let files: Vec<&str> = esp["filesystem"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"EFI/BOOT/BOOTX64.EFI"), "{files:?}");
    assert!(files.contains(&"EFI/debian/notes.txt"), "{files:?}");
    let mdir = run_ok(
        Command::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(format!("{}@@{}", b.raw.display(), esp["start_bytes"]))
            .arg("::/"),
    );
    let mut listed: Vec<String> = String::from_utf8(mdir.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("::/").to_string())
        .filter(|l| !l.ends_with('/') && !l.is_empty())
        .collect();
    listed.sort();
    let mut ours: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    ours.sort();
    assert_eq!(ours, listed, "the ESP's files, as mdir lists them");

    // The menu on /boot, with the profile's command line and root's UUID.
    let grub = &d["grub"];
    assert_eq!(grub["source"], "partition 4 (boot): /grub/grub.cfg");
    let entry = &grub["entries"][0];
    assert_eq!(entry["kernel"], format!("/vmlinuz-{KERNEL_VERSION}"));
    let cmdline = entry["cmdline"].as_str().unwrap();
    let root_uuid = partition(d, "root")["filesystem"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        cmdline.starts_with(&format!("root=UUID={root_uuid} ro ")),
        "{cmdline}"
    );
    assert!(cmdline.contains("hugepages=4 isolcpus=1"), "{cmdline}");
    assert_eq!(entry["initrd"][0], format!("/initrd.img-{KERNEL_VERSION}"));

    let kernels = d["kernels"].as_array().unwrap();
    let find = |role: &str| {
        kernels
            .iter()
            .find(|k| k["role"] == role)
            .unwrap_or_else(|| panic!("no {role} in {kernels:?}"))
    };
    assert_eq!(find("kernel")["version"], KERNEL_VERSION);
    assert_eq!(find("kernel")["size_bytes"], 3 * MIB);
    assert_eq!(
        find("initrd")["path"],
        format!("/initrd.img-{KERNEL_VERSION}")
    );
    assert_eq!(find("initrd")["size_bytes"], 5 * MIB);
}

#[test]
fn the_raw_image_and_a_zstd_qcow2_of_it_read_exactly_like_the_zlib_qcow2() {
    let b = disk();
    let (raw, qcow2) = (inspect_json(&b.raw), inspect_json(&b.qcow2));
    assert_eq!(raw["kind"], "raw");
    assert!(raw.get("qcow2").is_none());
    assert_eq!(raw["disk"], qcow2["disk"]);

    let dir = temp_dir("inspect-zstd-");
    let zstd = dir.path().join("disk-zstd.qcow2");
    let out = support::osforge()
        .arg("qcow2")
        .arg(&b.raw)
        .arg(&zstd)
        .args(["--compress", "zstd", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = inspect_json(&zstd);
    assert_eq!(report["qcow2"]["compression"], "zstd");
    assert_eq!(report["disk"], qcow2["disk"]);
}

#[test]
fn a_damaged_backup_gpt_header_is_reported_and_the_primary_still_read() {
    let b = disk();
    let dir = temp_dir("inspect-gpt-");
    let copy = dir.path().join("damaged.img");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&b.raw)
            .arg(&copy),
    );
    let len = fs::metadata(&copy).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&copy).unwrap();
    // Byte 40 of the last LBA: FirstUsableLBA, covered by the header CRC.
    std::os::unix::fs::FileExt::write_all_at(&file, &[0xff], len - 512 + 40).unwrap();
    drop(file);
    let d = &inspect_json(&copy)["disk"];
    assert_eq!(d["gpt"]["primary"]["valid"], true);
    assert_eq!(d["gpt"]["backup"]["valid"], false);
    let problem = d["gpt"]["backup"]["problem"].as_str().unwrap();
    assert!(problem.contains("CRC32"), "{problem}");
    assert_eq!(d["partitions"].as_array().unwrap().len(), 5);
}

/// A bzImage head as the Linux boot protocol lays it out: "HdrS" at 0x202,
/// `kernel_version` at 0x20E pointing (minus 0x200) at the version string.
fn fake_bzimage(version: &str) -> Vec<u8> {
    let mut image = noise(200_000, 9);
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x20E..0x210].copy_from_slice(&0x0c00u16.to_le_bytes());
    let at = 0x0e00;
    image[at..at + version.len()].copy_from_slice(version.as_bytes());
    image[at + version.len()] = 0;
    image
}

const ISO_CMDLINE: &str = "boot=live console=ttyS0,115200n8 ds=nocloud;s=/cdrom/";
const ISO_KERNEL: &str = "6.1.0-99-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian";

/// A live ISO layout staged by hand, with its squashfs made by `osforge
/// squashfs` and the ISO by `osforge iso --bios --uefi`.
fn live_iso(dir: &Path) -> (PathBuf, PathBuf) {
    let staging = dir.join("staging");
    let w = |path: &str, data: &[u8]| {
        let p = staging.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    w(
        "boot/grub/grub.cfg",
        format!(
            "set timeout=3\nmenuentry \"Live (node-1)\" {{\n    linux /live/vmlinuz {}\n    initrd /live/initrd.img\n}}\n",
            "boot=live console=ttyS0,115200n8 'ds=nocloud;s=/cdrom/'"
        )
        .as_bytes(),
    );
    w("live/vmlinuz", &fake_bzimage(ISO_KERNEL));
    w("live/initrd.img", &noise(300_000, 10));
    w("user-data", b"#cloud-config\nhostname: node-1\n");
    w("meta-data", b"instance-id: node-1\n");
    w("network-config", b"version: 2\n");
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), "node-1\n").unwrap();
    let sqfs = staging.join("live/filesystem.squashfs");
    let out = support::osforge()
        .arg("squashfs")
        .arg(&tree)
        .arg(&sqfs)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let iso = dir.join("live.iso");
    let out = support::osforge()
        .arg("iso")
        .arg(&staging)
        .arg(&iso)
        .args([
            "--volume-id",
            "cidata",
            "--bios",
            "--uefi",
            "--quiet",
            "--mtime",
            EPOCH,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (staging, iso)
}

#[test]
fn a_live_iso_shows_its_boot_entries_files_menu_seed_and_kernel_version() {
    let dir = temp_dir("inspect-iso-");
    let (staging, iso) = live_iso(dir.path());
    let report = inspect_json(&iso);
    assert_eq!(report["kind"], "iso");
    let i = &report["iso"];
    assert_eq!(i["volume_id"], "cidata");
    let platforms: Vec<&str> = i["boot_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["BIOS", "UEFI"]);
    assert_eq!(i["boot_entries"][0]["emulation"], "none");
    assert_eq!(i["boot_entries"][0]["load_sectors"], 4, "GRUB's cdboot.img");
    // The hybrid GPT's EFI System Partition is the UEFI El Torito image.
    let esp = i["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type_name"] == "EFI System")
        .expect("an EFI System Partition");
    assert_eq!(
        esp["start_bytes"],
        i["boot_entries"][1]["image_offset_bytes"]
    );
    let esp_files = esp["filesystem"]["files"].as_array().unwrap();
    assert!(
        esp_files
            .iter()
            .any(|f| f["path"] == "EFI/BOOT/BOOTX64.EFI"),
        "{esp_files:?}"
    );
    assert_eq!(i["gpt"]["backup"]["valid"], true);

    for f in i["live_files"].as_array().unwrap() {
        let staged = fs::metadata(staging.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(f["size_bytes"], staged.len(), "{f}");
    }
    assert_eq!(i["live_files"].as_array().unwrap().len(), 3);
    assert_eq!(i["kernel_version"], ISO_KERNEL);
    let stat = unsquashfs_stat(&staging.join("live/filesystem.squashfs"));
    let inodes = i["squashfs"]["inode_count"].to_string();
    assert!(
        stat.contains(&format!("Number of inodes {inodes}\n")),
        "{stat}"
    );
    let compression = i["squashfs"]["compression"].as_str().unwrap();
    assert!(
        stat.contains(&format!("Compression {compression}\n")),
        "{stat}"
    );
    let entry = &i["grub"]["entries"][0];
    assert_eq!(entry["title"], "Live (node-1)");
    assert_eq!(entry["kernel"], "/live/vmlinuz");
    assert_eq!(entry["cmdline"], ISO_CMDLINE, "GRUB's quotes removed");
    assert_eq!(i["seed"]["datasource"], "nocloud");
    let seed: Vec<(String, u64)> = i["seed"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let staged = |name: &str| {
        (
            name.to_string(),
            fs::metadata(staging.join(name)).unwrap().len(),
        )
    };
    assert_eq!(
        seed,
        [
            staged("user-data"),
            staged("meta-data"),
            staged("network-config")
        ]
    );
}

/// `unsquashfs -s` values by the label it prints.
fn unsquashfs_stat(image: &Path) -> String {
    String::from_utf8(run_ok(Command::new("unsquashfs").arg("-s").arg(image)).stdout).unwrap()
}

#[test]
fn a_squashfs_shows_what_unsquashfs_s_shows_and_its_kernel_module_versions() {
    let dir = temp_dir("inspect-sqfs-");
    let tree = dir.path().join("tree");
    for (path, len) in [
        ("lib/modules/6.1.0-99-amd64/modules.dep", 100),
        ("lib/modules/6.1.0-98-amd64/kernel/a.ko", 5000),
        ("usr/lib/modules/6.12.0-1-amd64/modules.order", 10),
        ("etc/hostname", 7),
        ("usr/bin/tool", 300_000),
    ] {
        let p = tree.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, noise(len, len as u64)).unwrap();
    }
    let image = dir.path().join("root.img");
    let out = support::osforge()
        .arg("squashfs")
        .arg(&tree)
        .arg(&image)
        .args([
            "--comp",
            "xz",
            "--block-size",
            "64K",
            "--mtime",
            EPOCH,
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = inspect_json(&image);
    assert_eq!(s["kind"], "squashfs");
    let s = &s["squashfs"];
    let stat = unsquashfs_stat(&image);
    assert!(stat.contains("Compression xz"), "{stat}");
    assert_eq!(s["compression"], "xz");
    assert!(stat.contains("Block size 65536"), "{stat}");
    assert_eq!(s["block_size_bytes"], 65536);
    let inodes = stat
        .lines()
        .find_map(|l| l.strip_prefix("Number of inodes "))
        .unwrap();
    assert_eq!(s["inode_count"].to_string(), inodes.trim());
    assert_eq!(s["mkfs_time"], EPOCH.parse::<u64>().unwrap());
    assert_eq!(s["regular_file_count"], 5);
    assert_eq!(
        s["kernel_versions"],
        serde_json::json!(["6.1.0-98-amd64", "6.1.0-99-amd64", "6.12.0-1-amd64"])
    );
}

#[test]
fn checksum_files_beside_the_image_are_checked() {
    let dir = temp_dir("inspect-sum-");
    let image = dir.path().join("root.sqfs");
    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a"), "a\n").unwrap();
    let out = support::osforge()
        .arg("squashfs")
        .arg(&tree)
        .arg(&image)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sum = run_ok(
        Command::new("sha256sum")
            .arg("root.sqfs")
            .current_dir(dir.path()),
    );
    fs::write(dir.path().join("root.sqfs.sha256"), &sum.stdout).unwrap();
    let checks = inspect_json(&image)["checksums"].clone();
    assert_eq!(checks[0]["algorithm"], "sha256");
    assert_eq!(checks[0]["matches"], true);

    let wrong = format!("{}  root.sqfs\n", "0".repeat(64));
    fs::write(dir.path().join("root.sqfs.sha256"), wrong).unwrap();
    let out = inspect(&image);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("root.sqfs.sha256 does not match"),
        "{stderr}"
    );
}

/// The one line of a failed inspect, which exited 2.
fn one_line_error(path: &Path) -> String {
    let out = inspect(path);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty(), "no report on stdout");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    stderr
}

#[test]
fn a_truncated_qcow2_and_a_random_file_give_one_line_and_exit_2() {
    let b = disk();
    let dir = temp_dir("inspect-bad-");
    let cut = dir.path().join("cut.qcow2");
    let bytes = fs::read(&b.qcow2).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let line = one_line_error(&cut);
    assert!(
        line.contains("qcow2") && line.contains("truncated"),
        "{line}"
    );

    let random = dir.path().join("random.iso");
    fs::write(&random, noise(100_000, 77)).unwrap();
    let line = one_line_error(&random);
    assert!(
        line.contains("not an ISO 9660 image, qcow2, raw disk"),
        "{line}"
    );

    let line = one_line_error(&dir.path().join("missing.iso"));
    assert!(line.contains("No such file"), "{line}");

    let short = dir.path().join("short.qcow2");
    fs::write(&short, b"QFI\xfb").unwrap();
    let line = one_line_error(&short);
    assert!(line.contains("qcow2"), "{line}");
}

#[test]
fn the_text_form_shows_the_same_facts_one_per_line() {
    let b = disk();
    let out = support::osforge()
        .arg("inspect")
        .arg(&b.qcow2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "qcow2: version 3, virtual size 2.0 GiB (2147483648 bytes), cluster size 64.0 KiB, compression zlib",
        "primary header LBA 1 valid; backup header LBA 4194303 valid",
        "partition 3 'esp': EFI System [C12A7328-F81F-11D2-BA4B-00A0C93EC93B]",
        "files on partition 3 'esp':\n  EFI/BOOT/BOOTX64.EFI (",
        "GRUB menu (partition 4 (boot): /grub/grub.cfg):",
        &format!("kernel {KERNEL_VERSION}: /vmlinuz-{KERNEL_VERSION} (3.0 MiB)"),
    ] {
        assert!(shown.contains(expected), "no '{expected}' in:\n{shown}");
    }
    let linux = shown
        .lines()
        .find(|l| l.trim_start().starts_with("linux "))
        .expect("a linux line");
    assert!(linux.ends_with("hugepages=4 isolcpus=1"), "{linux}");
}

#[test]
fn a_data_only_config_drive_iso_has_no_boot_entries_and_an_openstack_seed() {
    let dir = temp_dir("inspect-cfg2-");
    let staging = dir.path().join("staging");
    let latest = staging.join("openstack/latest");
    fs::create_dir_all(&latest).unwrap();
    fs::write(latest.join("user_data"), "#cloud-config\n").unwrap();
    fs::write(latest.join("meta_data.json"), r#"{"uuid": "n1"}"#).unwrap();
    fs::write(latest.join("network_data.json"), r#"{"links": []}"#).unwrap();
    let iso = dir.path().join("config-drive.iso");
    let out = support::osforge()
        .arg("iso")
        .arg(&staging)
        .arg(&iso)
        .args(["--volume-id", "config-2", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let i = &inspect_json(&iso)["iso"];
    assert_eq!(i["volume_id"], "config-2");
    assert_eq!(i["boot_entries"], serde_json::json!([]));
    assert!(i["grub"].is_null() && i["kernel_version"].is_null());
    assert_eq!(i["seed"]["datasource"], "configdrive");
    let files: Vec<(&str, u64)> = i["seed"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap(),
                f["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("openstack/latest/meta_data.json", 14),
            ("openstack/latest/network_data.json", 13),
            ("openstack/latest/user_data", 14),
        ]
    );
}

#[test]
fn an_mbr_only_disk_shows_its_primary_partitions_and_their_filesystems() {
    let dir = temp_dir("inspect-mbr-");
    let img = dir.path().join("mbr.img");
    fs::File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        sfdisk.stdin.as_mut().unwrap(),
        b"label: dos\nstart=2048, size=40960, type=83\nstart=43008, size=40960, type=c, bootable\n",
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    run_ok(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-L", "data", "-E", "offset=1048576"])
            .arg(&img)
            .arg("20M"),
    );
    run_ok(
        Command::new("mkfs.fat")
            .args(["--offset=43008", "-n", "MBRFAT"])
            .arg(&img)
            .arg("20480"),
    );
    let hello = dir.path().join("hello.txt");
    fs::write(&hello, "hello\n").unwrap();
    run_ok(
        Command::new("mcopy")
            .arg("-i")
            .arg(format!("{}@@{}", img.display(), 43008 * 512))
            .arg(&hello)
            .arg("::/HELLO.TXT"),
    );
    let d = &inspect_json(&img)["disk"];
    assert!(d["gpt"].is_null());
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(
        (parts[0]["number"].as_u64(), parts[0]["mbr_type"].as_u64()),
        (Some(1), Some(0x83))
    );
    assert_eq!(parts[0]["start_bytes"], MIB);
    assert_eq!(parts[0]["filesystem"]["type"], "ext4");
    assert_eq!(parts[0]["filesystem"]["label"], "data");
    assert_eq!(parts[1]["size_bytes"], 20 * MIB);
    assert_eq!(parts[1]["filesystem"]["label"], "MBRFAT");
    assert_eq!(
        parts[1]["filesystem"]["files"],
        serde_json::json!([{"path": "HELLO.TXT", "size_bytes": 6}])
    );
    assert_eq!(d["mbr"][1]["bootable"], true);
}

#[test]
fn qcow2_images_written_by_qemu_img_read_like_the_raw_image() {
    let b = disk();
    let raw = inspect_json(&b.raw);
    let dir = temp_dir("inspect-qemu-");
    // Version 2, version 3 with zlib clusters, zstd clusters of 4 KiB: the
    // reader must follow qemu's layout (tables first), not only osforge's.
    for (name, options, version, compression) in [
        ("v2.qcow2", vec!["-o", "compat=0.10"], 2, "zlib"),
        ("zlib.qcow2", vec!["-c"], 3, "zlib"),
        (
            "zstd.qcow2",
            vec!["-c", "-o", "compression_type=zstd,cluster_size=4096"],
            3,
            "zstd",
        ),
    ] {
        let image = dir.path().join(name);
        run_ok(
            Command::new("qemu-img")
                .args(["convert", "-O", "qcow2"])
                .args(&options)
                .arg(&b.raw)
                .arg(&image),
        );
        let report = inspect_json(&image);
        assert_eq!(report["qcow2"]["version"], version, "{name}");
        assert_eq!(report["qcow2"]["compression"], compression, "{name}");
        assert_eq!(report["disk"], raw["disk"], "{name}");
    }
}
