//! deps/setup, the install step behind `make cut_image` and `make test`, and
//! `osforge doctor`, which reads the same package list.
//!
//! The fresh-machine case (qemu-utils 10.0 from bookworm-backports installed,
//! which Breaks bookworm's qemu-system-common) is reproduced with a copy of
//! dpkg's status database holding that qemu-utils, and resolved against apt's
//! own simulation (`apt-get -s`), so the test changes nothing on the machine.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deps/setup")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The backports qemu-utils a fresh machine comes with, as dpkg records it.
const BACKPORTS_QEMU_UTILS: &str = "Package: qemu-utils
Status: install ok installed
Priority: optional
Section: otherosfs
Installed-Size: 12118
Maintainer: Debian QEMU Team <pkg-qemu-devel@lists.alioth.debian.org>
Architecture: amd64
Multi-Arch: foreign
Source: qemu
Version: 1:10.0.2+ds-2+deb13u1~bpo12+1
Replaces: qemu-system-common (<< 1:8.0+dfsg-5~)
Depends: libc6 (>= 2.34)
Breaks: qemu-system-common (<< 1:8.0+dfsg-5~)
Description: QEMU utilities
";

/// A dpkg admin dir: this machine's status minus every QEMU package, plus the
/// backports qemu-utils; everything else stays as installed.
fn fresh_machine_admindir(dir: &Path) -> PathBuf {
    let admin = dir.join("dpkg");
    fs::create_dir_all(admin.join("info")).unwrap();
    let status = fs::read_to_string("/var/lib/dpkg/status").expect("dpkg status");
    let mut kept: Vec<&str> = status
        .split("\n\n")
        .filter(|stanza| {
            let package = stanza
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .unwrap_or("");
            !package.starts_with("qemu-") && !stanza.trim().is_empty()
        })
        .collect();
    kept.push(BACKPORTS_QEMU_UTILS);
    fs::write(admin.join("status"), kept.join("\n\n") + "\n").unwrap();
    admin
}

#[test]
fn the_backports_qemu_utils_conflict_is_resolved_in_one_transaction() {
    require_root();
    let dir = temp_dir("setup-qemu");
    let admin = fresh_machine_admindir(dir.path());
    let status_opt = format!("Dir::State::status={}", admin.join("status").display());

    // The failure the issue reports, reproduced: installing what the tests
    // need the plain way is refused by apt.
    let plain = Command::new("apt-get")
        .args([
            "-s",
            "-o",
            &status_opt,
            "install",
            "--no-install-recommends",
        ])
        .args(["qemu-system-x86", "qemu-utils"])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "{}", text(&plain));
    assert!(
        text(&plain).contains("Breaks: qemu-system-common"),
        "{}",
        text(&plain)
    );

    // deps/setup moves qemu-utils to qemu-system-x86's version in the same
    // transaction, and apt accepts it.
    let out = Command::new(setup_script())
        .args(["--simulate", "--admindir"])
        .arg(&admin)
        .arg("test")
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("--allow-downgrades"), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("Inst qemu-utils [1:10.0")),
        "qemu-utils is not moved to bookworm's version:\n{said}"
    );
    assert!(
        said.lines().any(|l| l.starts_with("Inst qemu-system-x86 ")),
        "{said}"
    );
}

#[test]
fn with_everything_installed_setup_touches_neither_apt_nor_the_network() {
    require_root();
    // make test ran deps/setup first, so everything is installed; an apt-get
    // that leaves a mark proves it is not called.
    let dir = temp_dir("setup-offline");
    let bin = dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let mark = dir.path().join("apt-get-was-called");
    for tool in ["apt-get", "apt-cache"] {
        let fake = bin.join(tool);
        fs::write(
            &fake,
            format!("#!/bin/sh\ntouch {}\nexit 1\n", mark.display()),
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new(setup_script())
        .arg("test")
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("are installed"), "{}", text(&out));
    assert!(!mark.exists(), "apt was called with everything installed");
}

#[test]
fn a_user_who_is_not_root_is_told_exactly_what_to_install() {
    require_root();
    let dir = temp_dir("setup-user");
    let admin = fresh_machine_admindir(dir.path());
    // A directory the unprivileged user can read.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(setup_script())
        .arg("--admindir")
        .arg(&admin)
        .arg("test")
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("missing packages: qemu-system-x86"), "{said}");
    assert!(
        said.contains("apt-get install --no-install-recommends qemu-system-x86"),
        "{said}"
    );
}

#[test]
fn doctor_lists_every_tool_of_the_package_list_with_its_version() {
    let out = osforge().args(["--json", "doctor"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let list = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deps/packages.tsv"))
        .unwrap();
    let rows = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    assert_eq!(findings.len(), rows);
    let mmdebstrap = findings
        .iter()
        .find(|f| f["tool"] == "mmdebstrap")
        .expect("mmdebstrap listed");
    assert_eq!(mmdebstrap["package"], "mmdebstrap");
    assert!(mmdebstrap["path"].is_string(), "{mmdebstrap}");
    assert!(
        mmdebstrap["version"]
            .as_str()
            .is_some_and(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())),
        "{mmdebstrap}"
    );

    // The text form: one line per tool, missing ones marked, and a build tool
    // that is missing makes it fail with the package to install.
    let out = osforge()
        .arg("doctor")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("mmdebstrap") && l.contains("MISSING")),
        "{said}"
    );
    assert!(said.contains("apt-get install mmdebstrap"), "{said}");
}
