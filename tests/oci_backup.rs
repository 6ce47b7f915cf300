//! `oci: {backup_paths: [/etc, /var]}`: the `--type oci` image gets a second
//! layer holding those directories (as IBU's seed images carry their /etc
//! and /var backup), on top of the rest; unpacked, it is the same root
//! filesystem as base's one-layer image. Bad paths fail before building.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const VAR: &str = "hostname=pushed";

/// The manifest of an oci-archive unpacked in `dir`.
fn manifest(dir: &Path) -> serde_json::Value {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    };
    let index = read(dir.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    read(dir.join("blobs/sha256").join(&digest["sha256:".len()..]))
}

fn unpack(tar: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(into),
    );
}

#[test]
fn backup_paths_become_a_second_layer_and_the_image_unpacks_the_same() {
    require_root();
    let work = temp_dir("oci-backup-");
    let w = work.path();
    let profile = w.join("with-backup.yaml");
    fs::write(
        &profile,
        "description: base with /etc and /var in a layer of their own\ninherits: [base]\n\
         oci: {backup_paths: [/etc, /var/]}\n",
    )
    .unwrap();
    build_report(&profile, "oci", &w.join("backup"), &[VAR.to_string()]);
    build_report(
        Path::new("base"),
        "oci",
        &w.join("base"),
        &[VAR.to_string()],
    );

    let layout = w.join("layout");
    unpack(&w.join("backup/with-backup.oci.tar"), &layout);
    let layers = manifest(&layout)["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 2, "{layers:?}");
    // The second layer: /etc and /var with their contents, nothing else.
    let top = layers[1]["digest"].as_str().unwrap();
    let listing = run_ok(
        Command::new("tar")
            .arg("-tzf")
            .arg(layout.join("blobs/sha256").join(&top["sha256:".len()..])),
    );
    let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(names.iter().any(|n| n == "etc/passwd"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("var/lib/dpkg/")),
        "{names:?}"
    );
    let stray: Vec<&String> = names
        .iter()
        .filter(|n| !(n.as_str() == "etc" || n.starts_with("etc/")))
        .filter(|n| !(n.as_str() == "var" || n.starts_with("var/")))
        .collect();
    assert!(stray.is_empty(), "outside the backup paths: {stray:?}");

    // Applied in order, the two layers are base's root filesystem.
    let flat_backup = flatten_oci_archive(&w.join("backup/with-backup.oci.tar"), &w.join("fb"));
    let flat_base = flatten_oci_archive(&w.join("base/base.oci.tar"), &w.join("fa"));
    let (a, b) = (w.join("root-base"), w.join("root-backup"));
    unpack(&flat_base, &a);
    unpack(&flat_backup, &b);
    // The folders unpacked into are not part of the image.
    let snapshot = |root: &Path| {
        let mut s = full_snapshot(root);
        s.remove(&b""[..]);
        s
    };
    let problems = diff_snapshots(&snapshot(&a), &snapshot(&b), &[]);
    assert!(snapshot(&a).len() > 10_000, "base unpacked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn bad_backup_paths_fail_before_building_naming_the_file_and_key() {
    let work = temp_dir("oci-backup-bad-");
    for (paths, needle) in [
        ("[etc]", "'etc' is not a directory"),
        ("[/]", "'/' is not a directory"),
        ("[/var/../etc]", "'/var/../etc' is not a directory"),
        ("[/var, /var/lib]", "'/var/lib' overlaps '/var'"),
    ] {
        let profile = work.path().join("bad.yaml");
        fs::write(
            &profile,
            format!("description: bad\ninherits: [base]\noci: {{backup_paths: {paths}}}\n"),
        )
        .unwrap();
        let output = osforge()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-t", "oci", "-p"])
            .arg(&profile)
            .arg("--output")
            .arg(work.path().join("never"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{paths}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("bad.yaml"), "{stderr}");
        assert!(stderr.contains("oci.backup_paths["), "{stderr}");
        assert!(stderr.contains(needle), "{paths}: {stderr}");
        assert!(!work.path().join("never").exists());
    }
}
