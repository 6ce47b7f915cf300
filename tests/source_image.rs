//! A profile whose root filesystem is a container image (`source:`): base,
//! built by osforge as an OCI image, pushed to a real registry started here
//! (Debian's docker-registry), then taken as the source of a live ISO host,
//! once from the registry and once from the oci-archive file. The registry
//! image's ISO boots in QEMU to a cloud-init marker; the archive's flattened
//! rootfs is byte for byte the registry's.
//!
//! The lock file pins the source: after the tag moves to another image, a
//! `--lock` build still pulls the locked one (by digest), and a changed
//! archive is refused with one line.
//!
//! The builds share build_iso's cache, so base's bootstrap is reused when
//! that test ran first (cargo runs test binaries in name order).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use support::report_stage as stage;

use support::qemu::{Boot, boot_until, has_complete_line, marker_field};
use support::registry::Registry;
use support::{build_report, osforge, require_root, run_ok, shared_cache_dir, temp_dir};

const MARKER: &str = "OSFORGE-IMAGE-SOURCE-OK";
const HOSTNAME: &str = "from-registry-1";

/// The flattened image a `source` stage holds.
fn source_tar(report: &serde_json::Value) -> PathBuf {
    let key = stage(report, "source")["key"].as_str().unwrap();
    PathBuf::from(report["cache_dir"].as_str().unwrap())
        .join("source")
        .join(key)
        .join("rootfs.tar")
}

#[test]
fn an_image_from_a_registry_or_an_oci_archive_is_the_rootfs_of_a_live_iso_that_boots() {
    require_root();
    let work = temp_dir("image-source-");
    let profiles = work.path().join("profiles");
    fs::create_dir_all(&profiles).unwrap();

    // base, configured, as an OCI image.
    let base = build_report(
        Path::new("base"),
        "oci",
        &work.path().join("base"),
        &["hostname=image-base".to_string()],
    );
    let archive = work.path().join("base").join("base.oci.tar");
    assert_eq!(base["artifacts"][0]["type"], "oci", "{base}");
    let registry = Registry::start();
    let reference = format!("docker://127.0.0.1:{}/osforge/base:1", registry.port);
    run_ok(
        std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(&reference),
    );
    fs::copy(&archive, profiles.join("base.oci.tar")).unwrap();
    // ephemeral's cloud-init and kernel command line, base's packages
    // (already in the image: the layer installs nothing new) on the image.
    fs::write(
        profiles.join("from-registry.yaml"),
        format!(
            "description: ephemeral on base's image from a registry\ninherits: [ephemeral]\n\
             source: {{ref: \"{reference}\", tls_verify: false}}\n"
        ),
    )
    .unwrap();
    fs::write(
        profiles.join("from-archive.yaml"),
        "description: ephemeral on base's image from its oci-archive\ninherits: [ephemeral]\n\
         source: oci-archive:base.oci.tar\n",
    )
    .unwrap();

    let runcmd = format!(r#"runcmd=["echo {MARKER} hostname=$(hostname) > /dev/ttyS0"]"#);
    let out = work.path().join("out");
    let from_registry = build_report(
        &profiles.join("from-registry.yaml"),
        "iso",
        &out,
        &[format!("hostname={HOSTNAME}"), runcmd],
    );
    let source = stage(&from_registry, "source");
    assert_eq!(source["label"], "source from-registry", "{from_registry}");
    // The registry's manifest digest is the stage's identity; a build that
    // pulled the image (not a rerun on a warm cache) also says it.
    let identity =
        fs::read_to_string(source_tar(&from_registry).with_file_name("manifest.json")).unwrap();
    assert!(
        identity.contains("\"image\": \"sha256:"),
        "the source's key holds the manifest digest: {identity}"
    );
    if source["cached"] == false {
        assert!(
            source["detail"].as_str().unwrap().contains("sha256:"),
            "the source names the manifest digest: {source}"
        );
    }
    assert!(
        from_registry["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["stage"] != "bootstrap"),
        "an image source needs no bootstrap: {from_registry}"
    );
    let from_archive = build_report(
        &profiles.join("from-archive.yaml"),
        "oci",
        &work.path().join("out-archive"),
        &[],
    );
    assert_eq!(
        support::digest(&source_tar(&from_registry)),
        support::digest(&source_tar(&from_archive)),
        "the registry's and the archive's image flatten differently"
    );

    lock_pins_the_source(
        &work.path().join("profiles"),
        &out,
        &from_registry,
        &reference,
    );

    let iso = out.join("from-registry.iso");
    let log = boot_until(&Boot::live_cd_bios(&iso), work.path(), |log| {
        has_complete_line(log, MARKER)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        marker_field(&log, MARKER, "hostname").as_deref(),
        Some(HOSTNAME)
    );
}

/// The lock holds the registry image's manifest digest; with the tag moved to
/// another image, `--lock` pulls the locked one by digest (the same source
/// stage), and the archive source, changed under the lock, is refused.
fn lock_pins_the_source(profiles: &Path, out: &Path, first: &serde_json::Value, reference: &str) {
    let lock_path = out.join("from-registry.lock.json");
    let lock: serde_json::Value = serde_json::from_slice(&fs::read(&lock_path).unwrap()).unwrap();
    assert_eq!(lock["source"]["reference"], reference, "{lock}");
    let digest = lock["source"]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{lock}");

    // Another image under the same tag, and in place of the archive.
    let other = profiles.join("other");
    fs::create_dir_all(other.join("etc")).unwrap();
    fs::write(other.join("etc/os-release"), "ID=other\n").unwrap();
    let other_archive = profiles.join("other.oci.tar");
    run_ok(
        osforge()
            .args(["oci", "create", "-q"])
            .arg(&other)
            .arg(&other_archive),
    );
    run_ok(
        std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", other_archive.display()))
            .arg(reference),
    );

    let mut cmd = osforge();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "build", "--type", "oci", "--profile"])
        .arg(profiles.join("from-registry.yaml"))
        .arg("--output")
        .arg(out.join("locked"))
        .arg("--cache-dir")
        .arg(shared_cache_dir())
        .arg("--lock")
        .arg(&lock_path)
        .args(["--var", &format!("hostname={HOSTNAME}")]);
    let locked: serde_json::Value = serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap();
    assert_eq!(
        stage(&locked, "source")["key"],
        stage(first, "source")["key"],
        "the locked build took another image: {locked}"
    );
    let relocked: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("locked/from-registry.lock.json")).unwrap())
            .unwrap();
    assert_eq!(relocked["source"]["digest"], digest.as_str());

    // The archive's lock, then the archive replaced.
    let archive_lock = profiles
        .parent()
        .unwrap()
        .join("out-archive/from-archive.lock.json");
    fs::copy(&other_archive, profiles.join("base.oci.tar")).unwrap();
    let output = osforge()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--type", "oci", "--profile"])
        .arg(profiles.join("from-archive.yaml"))
        .arg("--output")
        .arg(out.join("refused"))
        .arg("--cache-dir")
        .arg(shared_cache_dir())
        .arg("--lock")
        .arg(&archive_lock)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or("");
    assert!(!output.status.success(), "{stderr}");
    assert!(
        last.contains("is not the one the lock file was written from"),
        "{stderr}"
    );
    assert!(!out.join("refused").join("from-archive.oci.tar").exists());
}
