//! `osforge iso` and `osforge fat` end to end: the real binary, with the
//! reference tools as oracles (xorriso/osirrox for ISO 9660, El Torito and
//! the system area; fsck.fat and mtools for FAT; sgdisk for the GPT) and
//! QEMU booting the ISO in all four firmware × media modes.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tempfile::TempDir;

mod support;
use support::noise;
use support::qemu::{Boot, Firmware, ImageFormat, Media, boot_until};

const OSFORGE: &str = env!("CARGO_BIN_EXE_osforge");
/// 2023-11-14T22:13:20Z.
const MTIME: &str = "1700000000";
const VOLUME_ID: &str = "config-2";
/// What the test grub.cfg prints; the line ends with `MARKER_END` so a
/// reader of the serial log knows it is complete.
const MARKER: &str = "OSFORGE-GRUB-OK";
const MARKER_END: &str = "OSFORGE-END";
/// A generous bound for one boot under TCG on a shared 2-core machine;
/// a boot takes 5 to 25 s there.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// A long UTF-8 name: Rock Ridge keeps it whole, Joliet cuts it to 64.
const LONG_NAME: &str = "ünïcödé ñame with spaces — and a very long tail that goes on and on and on well past sixty-four characters.txt";

/// The grub.cfg every bootable test image carries: serial console, one
/// line naming how GRUB was started, then power off.
const TEST_GRUB_CFG: &str = r#"serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
if [ "$grub_platform" = "efi" ]; then set fw=uefi; else set fw=bios; fi
echo "OSFORGE-GRUB-OK firmware=$fw root=$root cmdpath=$cmdpath OSFORGE-END"
halt
"#;

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(cmd: &mut Command) -> String {
    let output = run(cmd);
    // xorriso reports on stderr, so take both.
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn osforge(args: &[&str]) -> Output {
    Command::new(OSFORGE)
        .args(args)
        .output()
        .expect("run osforge")
}

/// Deterministic bytes that do not compress: xorshift64.
/// A staging tree like a live ISO's, with the awkward cases: long UTF-8
/// names, deep directories, many small files, symlinks, hard links, empty
/// files and directories.
fn stage(root: &Path) {
    let w = |path: &str, data: &[u8]| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    };
    w("boot/grub/grub.cfg", TEST_GRUB_CFG.as_bytes());
    w("live/filesystem.squashfs", &noise(3 << 20, 1));
    w("live/vmlinuz", &noise(100_000, 2));
    w(
        "openstack/latest/meta_data.json",
        br#"{"uuid": "osforge-test", "hostname": "node1"}"#,
    );
    w("openstack/latest/user_data", b"#cloud-config\n");
    w("openstack/latest/network_data.json", b"{\"links\": []}\n");
    w(
        &format!("docs/{LONG_NAME}"),
        "long names survive\n".as_bytes(),
    );
    w("docs/ReadMe.TXT", b"mixed case\n");
    w("a/b/c/d/e/f/g/h/i/j/deep.txt", b"ten levels down\n");
    w("empty-file", b"");
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    for i in 0..300 {
        w(
            &format!("many/file-{i:04}.conf"),
            format!("setting {i}\n").as_bytes(),
        );
    }
    symlink("../live/vmlinuz", root.join("docs/kernel-link")).unwrap();
    fs::hard_link(
        root.join("docs/ReadMe.TXT"),
        root.join("docs/readme-hardlink"),
    )
    .unwrap();
}

fn build_iso(staging: &Path, iso: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "iso",
        staging.to_str().unwrap(),
        iso.to_str().unwrap(),
        "--volume-id",
        VOLUME_ID,
        "--mtime",
        MTIME,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let output = osforge(&args);
    assert!(
        output.status.success(),
        "osforge iso failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn hybrid_iso(work: &Path) -> (PathBuf, PathBuf) {
    let staging = work.join("staging");
    stage(&staging);
    let iso = work.join("hybrid.iso");
    build_iso(&staging, &iso, &["--bios", "--uefi"]);
    (staging, iso)
}

/// Files added for booting, and Rock Ridge's relocation directory (empty
/// once a reader has put the deep directories back), which are not in the
/// staging tree.
fn is_boot_file(relative: &Path) -> bool {
    relative.starts_with(".disk")
        || relative == Path::new(".rr_moved")
        || relative.starts_with("EFI")
        || relative == Path::new("boot/grub/i386-pc")
        || relative.starts_with("boot/grub/i386-pc/")
}

/// Every path below `root`, relative, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(root.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let relative = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                pending.push(relative.clone());
            }
            out.push(relative);
        }
    }
    out.sort();
    out
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Asserts that `extracted` holds exactly `staged` (plus boot files):
/// names, types, file contents and symlink targets.
fn assert_same_tree(staged: &Path, extracted: &Path) {
    let want = walk(staged);
    let got: Vec<PathBuf> = walk(extracted)
        .into_iter()
        .filter(|p| !is_boot_file(p))
        .collect();
    assert_eq!(got, want, "the extracted names differ from the staged ones");
    for relative in &want {
        let (s, e) = (staged.join(relative), extracted.join(relative));
        let (sm, em) = (
            fs::symlink_metadata(&s).unwrap(),
            fs::symlink_metadata(&e).unwrap(),
        );
        assert_eq!(sm.file_type(), em.file_type(), "type of {relative:?}");
        if sm.file_type().is_symlink() {
            assert_eq!(fs::read_link(&s).unwrap(), fs::read_link(&e).unwrap());
        } else if sm.is_file() {
            assert!(same_contents(&s, &e), "contents of {relative:?} differ");
        }
    }
}

fn extract(iso: &Path, dir: &Path) {
    run(Command::new("osirrox")
        .arg("-indev")
        .arg(iso)
        .args(["-osirrox", "on:sparse=1m", "-extract", "/"])
        .arg(dir));
}

#[test]
fn xorriso_lists_a_bios_and_a_uefi_boot_image_and_a_grub2_hybrid_system_area() {
    let work = TempDir::new().unwrap();
    let (_, iso) = hybrid_iso(work.path());
    let report = stdout(Command::new("xorriso").arg("-indev").arg(&iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]));
    let image_line = |platform: &str| {
        report
            .lines()
            .find(|l| l.starts_with("El Torito boot img :") && l.contains(platform))
            .unwrap_or_else(|| panic!("no {platform} boot image in:\n{report}"))
            .to_string()
    };
    assert!(
        image_line("BIOS").contains("none"),
        "BIOS entry is not no-emulation"
    );
    assert!(image_line("UEFI").contains("none"));
    assert!(
        report.contains("/boot/grub/i386-pc/eltorito.img"),
        "{report}"
    );
    assert!(
        report.contains("boot-info-table grub2-boot-info"),
        "{report}"
    );
    // xorriso recognises GRUB's MBR only when byte 432 holds image*4+4.
    let summary = report
        .lines()
        .find(|l| l.starts_with("System area summary:"))
        .unwrap();
    assert!(summary.contains("grub2-mbr"), "{summary}");
    assert!(summary.contains("GPT"), "{summary}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("MBR partition") && l.contains("0xef")),
        "no ESP in the MBR:\n{report}"
    );
}

#[test]
fn the_gpt_has_an_efi_system_partition_that_sgdisk_accepts() {
    let work = TempDir::new().unwrap();
    let (_, iso) = hybrid_iso(work.path());
    let verify = stdout(Command::new("sgdisk").arg("--verify").arg(&iso));
    assert!(verify.contains("No problems found"), "{verify}");
    let table = stdout(Command::new("sgdisk").arg("--print").arg(&iso));
    assert!(
        table.lines().any(|l| l.contains(" EF00 ")),
        "no EF00 partition:\n{table}"
    );
}

#[test]
fn osirrox_extracts_exactly_the_staged_tree_with_long_utf8_names() {
    let work = TempDir::new().unwrap();
    let (staging, iso) = hybrid_iso(work.path());
    let out = work.path().join("extracted");
    extract(&iso, &out);
    assert_same_tree(&staging, &out);
    assert!(out.join("docs").join(LONG_NAME).is_file());
    // The deep directory was relocated and put back: only the empty
    // relocation directory is left of it.
    assert_eq!(fs::read_dir(out.join(".rr_moved")).unwrap().count(), 0);
    assert!(out.join("boot/grub/i386-pc/eltorito.img").is_file());
    assert!(out.join("EFI/BOOT/BOOTX64.EFI").is_file());
    let ids: Vec<_> = fs::read_dir(out.join(".disk/id")).unwrap().collect();
    assert_eq!(ids.len(), 1, "one boot id marker");
}

#[test]
fn joliet_holds_the_names_cut_to_64_characters() {
    let work = TempDir::new().unwrap();
    let (_, iso) = hybrid_iso(work.path());
    let listing = stdout(
        Command::new("xorriso")
            .args(["-read_fs", "norock", "-indev"])
            .arg(&iso)
            .args(["-find", "/docs", "-type", "f"]),
    );
    let joliet: String = LONG_NAME.chars().take(64).collect();
    assert!(listing.contains(&format!("'/docs/{joliet}'")), "{listing}");
    assert!(listing.contains("'/docs/ReadMe.TXT'"), "{listing}");
    assert!(
        !listing.contains(LONG_NAME),
        "the full name is Rock Ridge's only"
    );
}

#[test]
fn the_volume_id_and_dates_are_the_ones_given() {
    let work = TempDir::new().unwrap();
    let (_, iso) = hybrid_iso(work.path());
    let info = stdout(
        Command::new("xorriso")
            .arg("-indev")
            .arg(&iso)
            .arg("-pvd_info"),
    );
    assert!(info.contains("Volume Id    : config-2"), "{info}");
    assert!(info.contains("Creation Time: 2023111422132000"), "{info}");
    assert!(info.contains("App Id       : OSFORGE"), "{info}");
}

#[test]
fn the_uefi_boot_image_is_a_clean_fat_with_the_grub_loader() {
    let work = TempDir::new().unwrap();
    let (_, iso) = hybrid_iso(work.path());
    let images = work.path().join("boot-images");
    fs::create_dir(&images).unwrap();
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .arg("-extract_boot_images")
        .arg(format!("{}/", images.display())));
    let esp = images.join("eltorito_img2_uefi.img");
    // The El Torito image and the GPT's ESP are the same bytes.
    assert!(same_contents(&esp, &images.join("gpt_part2_efi.img")));
    run(Command::new("fsck.fat").arg("-n").arg(&esp));
    let listing = stdout(Command::new("mdir").arg("-i").arg(&esp).arg("::/EFI/BOOT"));
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    let copied = work.path().join("loader.efi");
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&esp)
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .arg(&copied));
    let loader = fs::read(&copied).unwrap();
    assert_eq!(&loader[..2], b"MZ", "not a PE image");
    let extracted = work.path().join("tree");
    extract(&iso, &extracted);
    assert_eq!(
        fs::read(extracted.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        loader
    );
}

#[test]
fn two_builds_with_the_same_inputs_and_mtime_are_bit_identical() {
    let work = TempDir::new().unwrap();
    let (staging, first) = hybrid_iso(work.path());
    // Touch a file: its new time is after --mtime, so it is clamped and the
    // image must not change.
    let file = File::options()
        .append(true)
        .open(staging.join("docs/ReadMe.TXT"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    drop(file);
    let second = work.path().join("second.iso");
    build_iso(&staging, &second, &["--bios", "--uefi"]);
    assert_eq!(fs::read(&first).unwrap(), fs::read(&second).unwrap());

    // And a changed tree gives a different image and a different boot id.
    fs::write(staging.join("docs/new-file"), b"new").unwrap();
    let third = work.path().join("third.iso");
    build_iso(&staging, &third, &["--bios", "--uefi"]);
    assert_ne!(fs::read(&first).unwrap(), fs::read(&third).unwrap());
}

#[test]
fn a_file_over_4_gib_round_trips_as_a_multi_extent_file_in_bounded_memory() {
    let work = TempDir::new().unwrap();
    let staging = work.path().join("staging");
    fs::create_dir_all(staging.join("live")).unwrap();
    let big = staging.join("live/filesystem.squashfs");
    // Sparse, with data at the start, across the first extent boundary
    // (4 GiB - 2 KiB) and at the end.
    let len: u64 = (4 << 30) + (3 << 20) + 1234;
    let mut f = File::create(&big).unwrap();
    f.set_len(len).unwrap();
    for (at, seed) in [(0u64, 1u64), ((4 << 30) - 100_000, 2), (len - 70_000, 3)] {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&noise(70_000, seed)).unwrap();
    }
    drop(f);
    fs::write(staging.join("small.txt"), b"small\n").unwrap();
    let iso = work.path().join("big.iso");
    // The whole process may map no more than 512 MiB: the 4 GiB file
    // must be streamed, not read into memory.
    run(Command::new("prlimit")
        .arg(format!("--as={}", 512u64 << 20))
        .arg(OSFORGE)
        .arg("iso")
        .arg(&staging)
        .arg(&iso)
        .args(["--volume-id", "BIG", "--mtime", MTIME, "--quiet"]));
    let md = fs::metadata(&iso).unwrap();
    assert!(md.len() > len, "the image is smaller than the file");
    assert!(
        md.blocks() * 512 < 64 << 20,
        "zero blocks were written out: {} bytes allocated",
        md.blocks() * 512
    );
    let lba = stdout(Command::new("xorriso").arg("-indev").arg(&iso).args([
        "-find",
        "/live/filesystem.squashfs",
        "-exec",
        "report_lba",
    ]));
    let extents = lba
        .lines()
        .filter(|l| l.starts_with("File data lba:"))
        .count();
    assert_eq!(extents, 2, "expected two extents:\n{lba}");
    let out = work.path().join("extracted");
    extract(&iso, &out);
    assert_same_tree(&staging, &out);
}

#[test]
fn a_data_only_iso_is_a_config_drive_without_boot_records() {
    let work = TempDir::new().unwrap();
    let staging = work.path().join("seed");
    fs::create_dir_all(staging.join("openstack/latest")).unwrap();
    fs::write(staging.join("openstack/latest/meta_data.json"), b"{}").unwrap();
    let iso = work.path().join("seed.iso");
    build_iso(&staging, &iso, &[]);
    let report = stdout(Command::new("xorriso").arg("-indev").arg(&iso).args([
        "-report_el_torito",
        "plain",
        "-pvd_info",
    ]));
    assert!(report.contains("Volume Id    : config-2"), "{report}");
    assert!(!report.contains("El Torito boot img"), "{report}");
    let blkid = stdout(Command::new("blkid").args(["-o", "export"]).arg(&iso));
    assert!(blkid.contains("LABEL=config-2"), "{blkid}");
    assert!(blkid.contains("TYPE=iso9660"), "{blkid}");
}

#[test]
fn bad_input_exits_2_with_one_line_and_leaves_no_output() {
    let work = TempDir::new().unwrap();
    let staging = work.path().join("staging");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("file"), b"x").unwrap();
    let iso = work.path().join("out.iso");
    let iso_arg = iso.to_str().unwrap();
    let staging_arg = staging.to_str().unwrap();
    let missing = work.path().join("missing");
    let long_id = "x".repeat(33);
    let cases: [(&[&str], &str); 3] = [
        (
            &["iso", missing.to_str().unwrap(), iso_arg, "-V", "X"],
            "no such file",
        ),
        (
            &["iso", staging_arg, iso_arg, "-V", &long_id],
            "longer than 32 bytes",
        ),
        (
            &["iso", staging_arg, iso_arg, "-V", "X", "--bios"],
            "boot/grub/grub.cfg",
        ),
    ];
    for (args, expected) in cases {
        let output = osforge(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!iso.exists());
    }
    // Nothing half-written is left beside the output either.
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 1);

    fs::create_dir_all(staging.join("boot/grub")).unwrap();
    fs::write(staging.join("boot/grub/grub.cfg"), TEST_GRUB_CFG).unwrap();
    let output = osforge(&[
        "iso",
        staging_arg,
        iso_arg,
        "-V",
        "X",
        "--uefi",
        "--boot-id",
        "a b",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid boot id"), "{stderr}");

    // A staged file that osforge would add itself is refused, not replaced.
    fs::create_dir_all(staging.join("EFI/BOOT")).unwrap();
    fs::write(staging.join("EFI/BOOT/BOOTX64.EFI"), b"mine").unwrap();
    let output = osforge(&["iso", staging_arg, iso_arg, "-V", "X", "--uefi"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("EFI/BOOT/BOOTX64.EFI"), "{stderr}");
    assert!(!iso.exists());
}

#[test]
fn osforge_fat_writes_a_clean_image_of_a_directory() {
    let work = TempDir::new().unwrap();
    let src = work.path().join("esp");
    fs::create_dir_all(src.join("EFI/BOOT")).unwrap();
    fs::write(src.join("EFI/BOOT/BOOTX64.EFI"), noise(300_000, 9)).unwrap();
    fs::write(
        src.join("EFI/BOOT/grub.cfg"),
        b"configfile /boot/grub/grub.cfg\n",
    )
    .unwrap();
    fs::write(src.join("Long File Name.txt"), b"lfn\n").unwrap();
    for (kind, size, expect) in [("12", None, "FAT12"), ("32", Some("40M"), "FAT32")] {
        let img = work.path().join(format!("fat{kind}.img"));
        let mut args = vec![
            "fat",
            src.to_str().unwrap(),
            img.to_str().unwrap(),
            "--fat",
            kind,
            "--label",
            "EFIBOOT",
            "--mtime",
            MTIME,
            "--json",
        ];
        if let Some(size) = size {
            args.extend(["--size", size]);
        }
        let output = osforge(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["kind"], expect.to_lowercase());
        run(Command::new("fsck.fat").arg("-n").arg(&img));
        let fsck = stdout(Command::new("fsck.fat").arg("-v").arg("-n").arg(&img));
        let bits = &expect[3..];
        assert!(fsck.contains(&format!("{bits} bit entries")), "{fsck}");
        assert!(fsck.contains("\"OSFORGE \""), "{fsck}");
        let listing = stdout(
            Command::new("mdir")
                .arg("-i")
                .arg(&img)
                .arg("-/")
                .arg("::/"),
        );
        assert!(listing.contains("Long File Name.txt"), "{listing}");
        let copy = work.path().join(format!("copy{kind}.efi"));
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&img)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&copy));
        assert!(same_contents(&copy, &src.join("EFI/BOOT/BOOTX64.EFI")));
    }
    let too_small = work.path().join("small.img");
    let output = osforge(&[
        "fat",
        src.to_str().unwrap(),
        too_small.to_str().unwrap(),
        "--size",
        "64K",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!too_small.exists());
}

#[test]
fn a_fat_volume_formatted_into_a_window_of_a_disk_image_is_clean() {
    use osforge::formats::fat::{FatImage, FatOptions};
    let work = TempDir::new().unwrap();
    let disk_path = work.path().join("disk.img");
    let disk = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&disk_path)
        .unwrap();
    let (offset, len) = (1u64 << 20, 32u64 << 20);
    disk.set_len(offset + len + (1 << 20)).unwrap();
    // Bytes around the window must survive.
    disk.write_all_at(&[0xAA; 512], offset - 512).unwrap();
    disk.write_all_at(&[0xBB; 512], offset + len).unwrap();
    let mut image = FatImage::new(FatOptions {
        label: Some("ESP".into()),
        mtime: Some(1_700_000_000),
        ..FatOptions::default()
    })
    .unwrap();
    image
        .add_bytes("EFI/BOOT/BOOTX64.EFI", noise(200_000, 4))
        .unwrap();
    let summary = image.write_at(&disk, offset, len).unwrap();
    assert_eq!(summary.size_bytes, len);
    let all = fs::read(&disk_path).unwrap();
    assert_eq!(&all[(offset - 512) as usize..offset as usize], &[0xAA; 512]);
    assert_eq!(
        &all[(offset + len) as usize..(offset + len + 512) as usize],
        &[0xBB; 512]
    );
    let volume = work.path().join("volume.img");
    fs::write(&volume, &all[offset as usize..(offset + len) as usize]).unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&volume));
    // The boot sector records where the partition starts (hidden sectors).
    let hidden = u32::from_le_bytes(
        all[offset as usize + 28..offset as usize + 32]
            .try_into()
            .unwrap(),
    );
    assert_eq!(u64::from(hidden), offset / 512);
}

// ---------------------------------------------------------------------------
// Booting in QEMU.

/// Boots `iso` and returns GRUB's marker line, or why there is none.
fn boot(iso: &Path, work: &Path, firmware: Firmware, media: Media) -> Result<String, String> {
    let b = Boot {
        image: iso,
        format: ImageFormat::Raw,
        firmware,
        media,
        memory_mib: 256,
        extra_cdroms: Vec::new(),
        ovmf_vars: None,
        timeout: BOOT_TIMEOUT,
    };
    let log = boot_until(&b, work, |text| {
        text.find(MARKER)
            .is_some_and(|at| text[at..].contains(MARKER_END))
    })?;
    let at = log.find(MARKER).expect("checked by the predicate");
    let end = log[at..]
        .find(MARKER_END)
        .expect("checked by the predicate");
    Ok(log[at..at + end].trim().to_string())
}

#[test]
fn the_iso_boots_grub_from_cd_and_usb_disk_under_bios_and_uefi() {
    let work = TempDir::new().unwrap();
    let (_, iso) = hybrid_iso(work.path());
    let modes = [
        (Firmware::Bios, Media::Cd),
        (Firmware::Bios, Media::Usb),
        (Firmware::Uefi, Media::Cd),
        (Firmware::Uefi, Media::Usb),
    ];
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = modes
            .iter()
            .map(|&(firmware, media)| {
                let (iso, work) = (&iso, work.path());
                scope.spawn(move || boot(iso, work, firmware, media))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lines: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_string()
    };
    // BIOS from CD: GRUB's root is the El Torito CD.
    assert_eq!(field(&lines[0], "firmware"), "bios", "{}", lines[0]);
    assert!(field(&lines[0], "root").starts_with("cd"), "{}", lines[0]);
    // BIOS from disk: through the MBR code, reading the ISO on a hard disk.
    assert_eq!(field(&lines[1], "firmware"), "bios", "{}", lines[1]);
    assert!(field(&lines[1], "root").starts_with("hd"), "{}", lines[1]);
    // UEFI from CD: the loader came from the El Torito image.
    assert_eq!(field(&lines[2], "firmware"), "uefi", "{}", lines[2]);
    assert!(
        field(&lines[2], "cmdpath").starts_with("(cd"),
        "{}",
        lines[2]
    );
    // UEFI from disk: the loader came from the GPT's EFI system partition.
    assert_eq!(field(&lines[3], "firmware"), "uefi", "{}", lines[3]);
    assert!(field(&lines[3], "cmdpath").contains(",gpt"), "{}", lines[3]);
}
