//! `osforge verify` on artifacts made by osforge's own subcommands (a GPT
//! disk as qcow2 and raw, a live ISO, a squashfs), each given a manifest
//! and SBOM by the library's one writer, as `osforge build` does: fresh
//! ones pass, damaged ones fail naming the problem, and the exit codes
//! are 0, 1 and 2. No QEMU, no bootstrap.

mod disk_fixture;
mod support;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use disk_fixture::{Built, EPOCH, build_in, text};
use osforge::manifest::{self, DebPackage, ManifestInputs, StageRecord};
use serde_json::Value;
use support::{noise, run_ok, temp_dir};

/// The fixture disk, in a directory of its own (other test files build
/// the same disk in theirs, and may run at the same time).
fn disk() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let built = build_in("verify-disk");
        for (image, kind) in [(&built.qcow2, "qcow2"), (&built.raw, "raw")] {
            write_manifest(image, kind);
        }
        built
    })
}

/// A dpkg status file as a Debian root has it: two installed packages
/// (one with an epoch and `+` in its version), one removed.
const DPKG_STATUS: &str = "Package: linux-image-amd64\nStatus: install ok installed\n\
    Architecture: amd64\nMaintainer: Debian Kernel Team <debian-kernel@lists.debian.org>\n\
    Version: 6.1.148-1\n\nPackage: libstdc++6\nStatus: install ok installed\n\
    Architecture: amd64\nVersion: 1:12.2.0-14+deb12u1\nDescription: GNU C++ library\n \
    a continuation line\n\nPackage: gone\nStatus: deinstall ok config-files\n\
    Architecture: amd64\nVersion: 1\n";

fn packages() -> Vec<DebPackage> {
    let root = temp_dir("verify-dpkg-");
    let status = root.path().join(manifest::dpkg::STATUS_PATH);
    fs::create_dir_all(status.parent().unwrap()).unwrap();
    fs::write(&status, DPKG_STATUS).unwrap();
    manifest::dpkg::installed_packages(root.path()).unwrap()
}

/// `<image>.sha256` like the build's, then the manifest and SBOM through
/// the library writer `osforge build` uses.
fn write_manifest(image: &Path, kind: &str) {
    let name = image.file_name().unwrap().to_str().unwrap();
    let sum = run_ok(
        Command::new("sha256sum")
            .arg(name)
            .current_dir(image.parent().unwrap()),
    );
    let sum_path = image.with_file_name(format!("{name}.sha256"));
    fs::write(&sum_path, &sum.stdout).unwrap();
    // The digest once, as the build passes its own: a 2 GiB raw disk takes
    // seconds to hash.
    let sha256 = String::from_utf8(sum.stdout).unwrap()[..64].to_string();
    let bytes = fs::metadata(image).unwrap().len();
    manifest::write(
        image,
        &ManifestInputs {
            kind,
            digest: Some((bytes, sha256)),
            outputs: &[sum_path],
            profile: None,
            stages: vec![StageRecord {
                stage: "configure".into(),
                key: "0123456789abcdef".into(),
            }],
            source_date_epoch: Some(EPOCH.parse().unwrap()),
            packages: &packages(),
        },
    )
    .unwrap();
}

fn verify(path: &Path) -> Output {
    support::osforge()
        .args(["verify", "--json"])
        .arg(path)
        .output()
        .expect("run osforge verify")
}

/// The findings of a verify that exited `code`.
fn findings(path: &Path, code: i32) -> Vec<Value> {
    let out = verify(path);
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    report["findings"].as_array().unwrap().clone()
}

/// The findings of one check, as (ok, detail).
fn of(findings: &[Value], check: &str) -> Vec<(bool, String)> {
    findings
        .iter()
        .filter(|f| f["check"] == check)
        .map(|f| (f["ok"] == true, f["detail"].as_str().unwrap().to_string()))
        .collect()
}

fn failed(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

fn copy_sparse(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("--sparse=always").arg(from).arg(to));
}

fn flip_byte(path: &Path, at: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

/// A live ISO made by `osforge squashfs` and `osforge iso --bios --uefi`,
/// with a NoCloud seed, and the squashfs on its own.
fn live_iso(dir: &Path) -> (PathBuf, PathBuf) {
    let staging = dir.join("staging");
    let w = |path: &str, data: &[u8]| {
        let p = staging.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    w(
        "boot/grub/grub.cfg",
        b"menuentry \"Live\" {\n    linux /live/vmlinuz boot=live\n    initrd /live/initrd.img\n}\n",
    );
    w("live/vmlinuz", &noise(200_000, 1));
    w("live/initrd.img", &noise(300_000, 2));
    w("user-data", b"#cloud-config\nhostname: verify-test\n");
    w("meta-data", b"instance-id: verify-test\n");
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), "verify-test\n").unwrap();
    fs::write(tree.join("blob"), noise(400_000, 3)).unwrap();
    let sqfs = dir.join("root.sqfs");
    let out = support::osforge()
        .arg("squashfs")
        .arg(&tree)
        .arg(&sqfs)
        .args(["--quiet", "--mtime", EPOCH])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    fs::copy(&sqfs, staging.join("live/filesystem.squashfs")).unwrap();
    let iso = dir.join("live.iso");
    let out = support::osforge()
        .arg("iso")
        .arg(&staging)
        .arg(&iso)
        .args(["--volume-id", "cidata", "--bios", "--uefi", "--quiet"])
        .args(["--mtime", EPOCH])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    write_manifest(&iso, "iso");
    write_manifest(&sqfs, "squashfs");
    (iso, sqfs)
}

#[test]
fn fresh_disks_pass_every_check_against_their_manifests_and_their_filesystems() {
    let b = disk();
    let qcow2 = findings(&b.qcow2, 0);
    assert!(failed(&qcow2).is_empty(), "{qcow2:#?}");
    let summary = &of(&qcow2, "qemu-img-check")[0].1;
    assert!(summary.contains("No errors were found"), "{summary}");
    assert!(of(&qcow2, "qcow2-header")[0].1.contains("version 3"));
    // Both copies of the GPT, the bounds, root and boot (ext4), the ESP.
    for check in [
        "protective-mbr",
        "gpt-primary",
        "gpt-backup",
        "partitions",
        "sha256",
        "size",
    ] {
        assert_eq!(of(&qcow2, check).len(), 1, "{check}: {qcow2:#?}");
    }
    assert!(
        of(&qcow2, "gpt-primary")[0]
            .1
            .starts_with("LBA 1: signature, header CRC32 and entry array CRC32"),
        "{qcow2:#?}"
    );
    let ext4 = of(&qcow2, "ext4");
    assert_eq!(ext4.len(), 2, "{ext4:?}");
    assert!(
        ext4.iter()
            .any(|(_, d)| d.starts_with("partition 1 (root): e2fsck -fn clean"))
    );
    assert!(
        of(&qcow2, "fat")[0]
            .1
            .starts_with("partition 3 (esp): fsck.fat -n clean")
    );
    let outputs: Vec<String> = of(&qcow2, "output").into_iter().map(|(_, d)| d).collect();
    assert_eq!(
        outputs,
        [
            "disk.qcow2.sha256: sha256 matches",
            "disk.qcow2.spdx.json: sha256 matches"
        ]
    );

    let raw = findings(&b.raw, 0);
    assert!(failed(&raw).is_empty(), "{raw:#?}");
    assert!(
        of(&raw, "qemu-img-check").is_empty(),
        "qcow2 checks only for qcow2"
    );
    assert_eq!(of(&raw, "ext4").len(), 2);
}

#[test]
fn the_manifest_and_sbom_list_the_packages_with_versions_and_the_image_digest() {
    let b = disk();
    let (manifest_path, sbom_path) = manifest::paths_for(&b.qcow2);
    let m: Value = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    let sha = run_ok(Command::new("sha256sum").arg(&b.qcow2));
    let sha = String::from_utf8(sha.stdout).unwrap()[..64].to_string();
    assert_eq!(m["artifact"]["sha256"], sha);
    assert_eq!(
        m["artifact"]["bytes"],
        fs::metadata(&b.qcow2).unwrap().len()
    );
    assert_eq!(m["source_date_epoch"], EPOCH.parse::<u64>().unwrap());
    assert_eq!(m["stages"][0]["key"], "0123456789abcdef");
    let names: Vec<&str> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["libstdc++6", "linux-image-amd64"],
        "the removed one is left out"
    );

    let sbom: Value = serde_json::from_slice(&fs::read(&sbom_path).unwrap()).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["dataLicense"], "CC0-1.0");
    assert_eq!(sbom["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert!(sbom["documentNamespace"].as_str().unwrap().ends_with(&sha));
    let pkgs = sbom["packages"].as_array().unwrap();
    let image = pkgs
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Image")
        .unwrap();
    assert_eq!(image["checksums"][0]["checksumValue"], sha);
    let kernel = pkgs
        .iter()
        .find(|p| p["name"] == "linux-image-amd64")
        .unwrap();
    assert_eq!(kernel["versionInfo"], "6.1.148-1");
    assert_eq!(
        kernel["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/linux-image-amd64@6.1.148-1?arch=amd64"
    );
    assert_eq!(
        kernel["supplier"],
        "Person: Debian Kernel Team (debian-kernel@lists.debian.org)"
    );
    let contains = sbom["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "CONTAINS" && r["spdxElementId"] == "SPDXRef-Image")
        .count();
    assert_eq!(contains, 2);
}

#[test]
fn a_fresh_live_iso_and_squashfs_pass_including_the_squashfs_inside_the_iso() {
    let dir = temp_dir("verify-iso-");
    let (iso, sqfs) = live_iso(dir.path());
    let found = findings(&iso, 0);
    assert!(failed(&found).is_empty(), "{found:#?}");
    assert!(of(&found, "el-torito")[0].1.contains("BIOS and UEFI"));
    assert_eq!(of(&found, "boot-image").len(), 2);
    assert!(of(&found, "hybrid-table").len() >= 3, "{found:#?}");
    assert!(
        of(&found, "fat")[0].1.contains("fsck.fat -n clean"),
        "the ESP"
    );
    assert!(
        of(&found, "unsquashfs")[0]
            .1
            .starts_with("/live/filesystem.squashfs: ")
    );

    let found = findings(&sqfs, 0);
    assert!(failed(&found).is_empty(), "{found:#?}");
    assert!(
        of(&found, "squashfs-superblock")[0]
            .1
            .contains("version 4.0")
    );

    // The text form: one line per finding, each `ok` or `FAIL`.
    let out = support::osforge()
        .arg("verify")
        .arg(&sqfs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(shown.lines().count(), found.len(), "{shown}");
    assert!(shown.lines().all(|l| l.starts_with("ok   ")), "{shown}");
}

#[test]
fn a_flipped_squashfs_byte_fails_unsquashfs_in_metadata_and_only_sha256_in_data() {
    // Each damage in a fresh set: the image with its manifest and SBOM.
    let dir = temp_dir("verify-flip-");
    fs::create_dir(dir.path().join("meta")).unwrap();
    let (_, image) = live_iso(&dir.path().join("meta"));
    let head = fs::read(&image).unwrap();
    let inode_table = u64::from_le_bytes(head[64..72].try_into().unwrap());
    flip_byte(&image, inode_table + 5);
    let found = findings(&image, 1);
    let unsquashfs = &of(&found, "unsquashfs")[0];
    assert!(
        !unsquashfs.0 && unsquashfs.1.contains("unsquashfs -l failed"),
        "{unsquashfs:?}"
    );
    assert!(
        unsquashfs.1.contains("inode"),
        "names what it could not read: {unsquashfs:?}"
    );
    assert!(failed(&found).contains(&"sha256".to_string()), "{found:#?}");

    // 1000 bytes into the first data block, which no listing reads.
    fs::create_dir(dir.path().join("data")).unwrap();
    let (_, image) = live_iso(&dir.path().join("data"));
    flip_byte(&image, 96 + 1000);
    let found = findings(&image, 1);
    assert_eq!(failed(&found), ["sha256"], "{found:#?}");
    assert!(
        of(&found, "sha256")[0]
            .1
            .contains("differs from the manifest")
    );
}

#[test]
fn a_truncated_qcow2_fails_qemu_img_and_the_header_check_with_exit_1() {
    let b = disk();
    let dir = temp_dir("verify-cut-");
    let cut = dir.path().join("disk.qcow2");
    let bytes = fs::read(&b.qcow2).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (m, _) = manifest::paths_for(&b.qcow2);
    fs::copy(&m, manifest::paths_for(&cut).0).unwrap();
    let found = findings(&cut, 1);
    let failures = failed(&found);
    for check in ["size", "sha256", "qemu-img-check", "qcow2-header"] {
        assert!(failures.contains(&check.to_string()), "{check}: {found:#?}");
    }
    let header = &of(&found, "qcow2-header")[0].1;
    assert!(
        header.contains("truncated") || header.contains("past the end"),
        "{header}"
    );
}

#[test]
fn a_damaged_backup_gpt_header_fails_gpt_backup_while_the_primary_passes() {
    let b = disk();
    let dir = temp_dir("verify-gpt-");
    let copy = dir.path().join("disk.raw");
    copy_sparse(&b.raw, &copy);
    let len = fs::metadata(&copy).unwrap().len();
    // Byte 40 of the last LBA: FirstUsableLBA, covered by the header CRC.
    flip_byte(&copy, len - 512 + 40);
    let found = findings(&copy, 1);
    assert_eq!(failed(&found), ["manifest", "gpt-backup"], "{found:#?}");
    let backup = &of(&found, "gpt-backup")[0].1;
    assert!(
        backup.contains("header CRC32") && backup.contains(&format!("LBA {}", len / 512 - 1)),
        "{backup}"
    );
    assert!(of(&found, "gpt-primary")[0].0);
}

#[test]
fn a_damaged_ext4_partition_fails_e2fsck_naming_the_partition_and_the_problem() {
    let b = disk();
    let dir = temp_dir("verify-ext4-");
    let copy = dir.path().join("disk.raw");
    copy_sparse(&b.raw, &copy);
    let (_, first, _, _, _) = disk_fixture::partitions(&copy)
        .into_iter()
        .find(|p| p.4 == "boot")
        .unwrap();
    // The group descriptor table: block 1 of the 4 KiB-block filesystem.
    let file = fs::OpenOptions::new().write(true).open(&copy).unwrap();
    file.write_all_at(&[0xff; 64], first * 512 + 4096).unwrap();
    drop(file);
    let found = findings(&copy, 1);
    assert_eq!(failed(&found), ["manifest", "ext4"], "{found:#?}");
    let bad = of(&found, "ext4")
        .into_iter()
        .find(|(ok, _)| !ok)
        .unwrap()
        .1;
    assert!(
        bad.starts_with("partition 4 (boot): e2fsck -fn exited 4"),
        "{bad}"
    );
    assert!(bad.contains("group descriptor"), "{bad}");
}

#[test]
fn an_iso_whose_sha256_differs_from_its_manifest_fails_only_that_check() {
    let dir = temp_dir("verify-sha-");
    let (iso, _) = live_iso(dir.path());
    // A byte of the seed's user-data: the ISO's structure stays sound.
    let bytes = fs::read(&iso).unwrap();
    let at = bytes
        .windows(11)
        .position(|w| w == b"verify-test")
        .expect("the seed's text in the ISO");
    flip_byte(&iso, at as u64);
    let found = findings(&iso, 1);
    assert_eq!(failed(&found), ["sha256"], "{found:#?}");
    assert!(of(&found, "size")[0].0, "same size");
}

#[test]
fn not_an_artifact_exits_2_and_a_missing_manifest_is_a_failed_check_not_an_error() {
    let dir = temp_dir("verify-bad-");
    let random = dir.path().join("random.iso");
    fs::write(&random, noise(100_000, 7)).unwrap();
    for path in [random, dir.path().join("missing.qcow2")] {
        let out = verify(&path);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }

    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a"), "a\n").unwrap();
    let image = dir.path().join("bare.sqfs");
    run_ok(
        support::osforge()
            .arg("squashfs")
            .arg(&tree)
            .arg(&image)
            .arg("--quiet"),
    );
    let found = findings(&image, 1);
    assert_eq!(failed(&found), ["manifest"], "{found:#?}");
    assert!(
        of(&found, "manifest")[0]
            .1
            .contains("bare.sqfs.manifest.json")
    );
    assert!(
        of(&found, "unsquashfs")[0].0,
        "the structure is still checked"
    );
}
