//! bootc-style input: a bootable container image whose kernel and initramfs
//! are under `/usr/lib/modules/VERSION/` (`vmlinuz`, `initramfs.img`) and
//! not in /boot, as bootc images lay them out. Made here from base's
//! configured image, pushed to a real registry (Debian's docker-registry),
//! then the `source:` of a profile that becomes a live ISO with no bootstrap
//! step; the ISO boots in QEMU to a cloud-init marker.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::qemu::{Boot, boot_until, has_complete_line, marker_field};
use support::registry::Registry;
use support::*;

const MARKER: &str = "OSFORGE-BOOTC-OK";
const HOSTNAME: &str = "bootc-1";

/// Moves the kernel and initrd of an unpacked Debian tree from /boot to
/// bootc's places and removes the links to them; returns the kernel version.
fn make_bootc_layout(root: &Path) -> String {
    let boot = root.join("boot");
    let version = fs::read_dir(&boot)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .max()
        .expect("base has a kernel in /boot");
    let modules = root.join("usr/lib/modules").join(&version);
    assert!(modules.is_dir(), "{} has no modules", version);
    fs::rename(
        boot.join(format!("vmlinuz-{version}")),
        modules.join("vmlinuz"),
    )
    .unwrap();
    fs::rename(
        boot.join(format!("initrd.img-{version}")),
        modules.join("initramfs.img"),
    )
    .unwrap();
    for link in ["vmlinuz", "initrd.img", "vmlinuz.old", "initrd.img.old"] {
        for dir in [root.to_path_buf(), boot.clone()] {
            let _ = fs::remove_file(dir.join(link));
        }
    }
    version
}

/// base's configured image in bootc's layout, as an oci-archive in a folder
/// of its own (profiles beside it may name it), made once.
struct BootcImage {
    dir: tempfile::TempDir,
    archive: std::path::PathBuf,
    version: String,
}

fn bootc_image() -> &'static BootcImage {
    static IMAGE: std::sync::OnceLock<Result<BootcImage, String>> = std::sync::OnceLock::new();
    once(&IMAGE, "bootc image", || {
        require_root();
        let dir = temp_dir("bootc-image-");
        let w = dir.path();
        build_report(
            Path::new("base"),
            "oci",
            &w.join("base"),
            &["hostname=bootc-base".to_string()],
        );
        let flat = flatten_oci_archive(&w.join("base").join("base.oci.tar"), &w.join("flat"));
        let root = w.join("root");
        fs::create_dir(&root).unwrap();
        run_ok(
            Command::new("tar")
                .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
                .arg(&flat)
                .arg("-C")
                .arg(&root),
        );
        let version = make_bootc_layout(&root);
        let archive = w.join("bootc.oci.tar");
        run_ok(osforge().args(["oci", "create"]).arg(&root).arg(&archive));
        // Only the archive is needed from here on.
        for scratch in ["base", "flat", "root"] {
            let _ = fs::remove_dir_all(w.join(scratch));
        }
        BootcImage {
            archive,
            version,
            dir,
        }
    })
}

#[test]
fn a_bootc_style_image_from_a_registry_becomes_a_live_iso_that_boots() {
    require_tool("skopeo", "skopeo");
    let image = bootc_image();
    let work = temp_dir("bootc-");
    let w = work.path();
    let registry = Registry::start();
    let reference = format!("docker://127.0.0.1:{}/osforge/bootc:1", registry.port);
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", image.archive.display()))
            .arg(&reference),
    );

    let profile = w.join("bootc.yaml");
    fs::write(
        &profile,
        format!(
            "description: a bootc-style image from a registry\ninherits: [base]\n\
             source: {{ref: \"{reference}\", tls_verify: false}}\n"
        ),
    )
    .unwrap();
    let runcmd =
        format!(r#"runcmd=["echo {MARKER} hostname=$(hostname) kernel=$(uname -r) > /dev/ttyS0"]"#);
    let out = w.join("out");
    let report = build_report(
        &profile,
        "iso",
        &out,
        &[format!("hostname={HOSTNAME}"), runcmd],
    );
    let stages: Vec<&str> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(stages.contains(&"source"), "{report}");
    assert!(!stages.contains(&"bootstrap"), "no bootstrap: {report}");

    // The kernel the ISO boots can only have come from /usr/lib/modules.
    let log = boot_until(&Boot::live_cd_bios(&out.join("bootc.iso")), w, |log| {
        has_complete_line(log, MARKER)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        marker_field(&log, MARKER, "hostname").as_deref(),
        Some(HOSTNAME)
    );
    assert_eq!(
        marker_field(&log, MARKER, "kernel").as_deref(),
        Some(image.version.as_str())
    );
}

/// A disk with Airship's layout (/boot a partition of its own) from the
/// same image: the kernel and initramfs are copied into /boot, where GRUB
/// and `osforge inspect` find them.
#[test]
fn a_bootc_style_image_becomes_a_qcow2_whose_boot_partition_holds_its_kernel() {
    let image = bootc_image();
    let profile = image.dir.path().join("bootc-disk.yaml");
    fs::write(
        &profile,
        "description: a bootc-style image as a disk\ninherits: [qcow2-host]\n\
         source: oci-archive:bootc.oci.tar\n",
    )
    .unwrap();
    let out = image.dir.path().join("disk");
    build_report(
        &profile,
        "qcow2",
        &out,
        &["hostname=bootc-disk".to_string()],
    );
    let inspected = run_ok(
        osforge()
            .args(["--json", "inspect"])
            .arg(out.join("bootc-disk.qcow2")),
    );
    let text = String::from_utf8_lossy(&inspected.stdout);
    for file in [
        format!("vmlinuz-{}", image.version),
        format!("initrd.img-{}", image.version),
    ] {
        assert!(text.contains(&file), "{file} not in /boot: {text}");
    }
}
