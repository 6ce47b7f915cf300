//! Layered root filesystems: a profile starts from its parent's built
//! rootfs, and the packages it adds are installed in a working container on
//! top of the cached parent, so `make cut_image IMAGE_TYPE=qcow` (control-plane
//! and data-plane, both children of qcow2-host, itself a child of base) runs
//! mmdebstrap once.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use support::{require_root, temp_dir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `make cut_image IMAGE_TYPE=qcow` with the given cache; returns its log.
fn cut_qcow_bundle(cache: &Path, out: &Path) -> String {
    let output = Command::new("make")
        .current_dir(repo())
        .args(["--no-print-directory", "cut_image", "IMAGE_TYPE=qcow"])
        .arg(format!("OSFORGE={}", env!("CARGO_BIN_EXE_osforge")))
        .arg(format!("OUTPUT_DIR={}", out.display()))
        .arg(format!("OSFORGE_CACHE_DIR={}", cache.display()))
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "make cut_image failed:\n{log}");
    log
}

fn count(log: &str, prefix: &str) -> usize {
    log.lines()
        .filter(|l| l.trim_start_matches("osforge: ").starts_with(prefix))
        .count()
}

/// The entries of a layer's tarball (names without the leading `./`).
fn tar_names(tar: &Path) -> Vec<String> {
    let out = support::run_ok(Command::new("tar").arg("-tf").arg(tar));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

#[test]
fn make_cut_image_qcow_bootstraps_once_and_builds_one_layer_per_profile() {
    require_root();
    let work = temp_dir("layers-");
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    let started = Instant::now();
    let cold = cut_qcow_bundle(&cache, &out);
    let cold_seconds = started.elapsed().as_secs_f64();
    eprintln!("cold make cut_image IMAGE_TYPE=qcow: {cold_seconds:.0} s\n{cold}");
    assert_eq!(count(&cold, "bootstrap base: building"), 1, "{cold}");
    assert_eq!(
        count(&cold, "bootstrap base: reused"),
        1,
        "data-plane's: {cold}"
    );
    assert_eq!(
        count(&cold, "layer qcow2-host: building on bootstrap base"),
        1,
        "{cold}"
    );
    for profile in ["control-plane", "data-plane"] {
        assert_eq!(
            count(
                &cold,
                &format!("layer {profile}: building on layer qcow2-host")
            ),
            1,
            "{cold}"
        );
        assert!(out.join(format!("{profile}.qcow2")).is_file());
    }
    // What the working container sets up for the run is gone from the layer,
    // and so are apt's lists and downloads, as after mmdebstrap.
    let layers: Vec<PathBuf> = std::fs::read_dir(cache.join("layer"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("rootfs.tar").is_file())
        .collect();
    assert_eq!(layers.len(), 3, "{layers:?}");
    let mut with_ethtool = 0;
    for layer in &layers {
        let names = tar_names(&layer.join("rootfs.tar"));
        for gone in ["usr/sbin/policy-rc.d", "etc/resolv.conf"] {
            assert!(
                !names.iter().any(|n| n == gone),
                "{gone} left in {}",
                layer.display()
            );
        }
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("var/lib/apt/lists/") && n.ends_with("_Packages")),
            "apt lists left in {}",
            layer.display()
        );
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("var/cache/apt/archives/") && n.ends_with(".deb")),
            "downloaded packages left in {}",
            layer.display()
        );
        with_ethtool += names.iter().any(|n| n == "usr/sbin/ethtool") as usize;
    }
    // control-plane's and data-plane's own package, not qcow2-host's.
    assert_eq!(with_ethtool, 2);

    // Again: nothing is bootstrapped, installed or configured.
    let started = Instant::now();
    let warm = cut_qcow_bundle(&cache, &out);
    eprintln!(
        "warm make cut_image IMAGE_TYPE=qcow: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for stage in ["bootstrap", "layer", "configure"] {
        assert!(
            !warm.lines().any(|l| l.contains(": building")
                && l.trim_start_matches("osforge: ").starts_with(stage)),
            "{stage} rebuilt:\n{warm}"
        );
    }
}
