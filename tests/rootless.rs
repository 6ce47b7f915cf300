//! Rootless and reproducible builds. An unprivileged user with subordinate
//! ids (set up here) builds qcow2-host as an ISO and a qcow2 with a fixed
//! SOURCE_DATE_EPOCH: osforge runs itself in a user namespace, nothing needs
//! sudo, loop or nbd devices. Root then builds the same profile from its own
//! empty cache with the lock file the first build wrote (`--lock`), its
//! epoch from a copy of the profile with `epoch:`. The two
//! builds share nothing but the mirror, and must give the same bytes: the
//! ISO (squashfs inside), the qcow2 and the lock. The rootless qcow2 boots.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::qemu::{Boot, Firmware, ImageFormat, Media, boot_until};
use support::{require_root, run_ok, temp_dir};

const USER: &str = "osforge-rootless";
const EPOCH: &str = "1796000000";
const PROFILE: &str = "qcow2-host";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test's unprivileged user, with 65536 subordinate uids and gids past
/// every range already given out.
fn rootless_user() {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        run_ok(Command::new("useradd").args(["--system", "--no-create-home", USER]));
    }
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            continue;
        }
        let end = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
            })
            .max()
            .unwrap_or(100_000)
            .max(100_000);
        run_ok(Command::new("usermod").args([flag, &format!("{end}-{}", end + 65535), USER]));
    }
}

struct Built {
    out: PathBuf,
    log: String,
}

/// The locked build (no `as_user`) takes its epoch from the profile's
/// `epoch:` key, the rootless one from `--source-date-epoch`: both must give
/// the same bytes.
fn build(work: &Path, name: &str, as_user: bool, lock: Option<&Path>) -> Built {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let profile = if as_user {
        PathBuf::from(PROFILE)
    } else {
        let text =
            std::fs::read_to_string(repo().join(format!("profiles/{PROFILE}.yaml"))).unwrap();
        let copy = dir.join(format!("{PROFILE}.yaml"));
        std::fs::write(&copy, format!("{text}\nepoch: {EPOCH}\n")).unwrap();
        copy
    };
    let (cache, out) = (dir.join("cache"), dir.join("out"));
    let mut cmd = if as_user {
        run_ok(Command::new("chown").arg(USER).arg(&dir));
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--"])
            .arg(env!("CARGO_BIN_EXE_osforge"));
        c
    } else {
        support::osforge()
    };
    cmd.current_dir(repo())
        .args(["build", "-t", "iso,qcow2", "-j", "2", "-p"])
        .arg(&profile)
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("--cache-dir")
        .arg(&cache)
        .arg("-o")
        .arg(&out)
        .env_remove("OSFORGE_USERNS");
    if as_user {
        cmd.args(["--source-date-epoch", EPOCH]);
    }
    if let Some(lock) = lock {
        cmd.arg("--lock").arg(lock);
    }
    let started = Instant::now();
    let output = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{name} build failed:\n{log}");
    eprintln!("{name} build: {:.0} s", started.elapsed().as_secs_f64());
    Built { out, log }
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn a_rootless_build_boots_and_a_locked_root_build_gives_the_same_bytes() {
    require_root();
    rootless_user();
    let work = temp_dir("rootless-");
    // The unprivileged user has to reach its folder inside the test's.
    run_ok(Command::new("chmod").arg("0755").arg(work.path()));

    let rootless = build(work.path(), "rootless", true, None);
    for kind in ["iso", "qcow2"] {
        let image = rootless.out.join(format!("{PROFILE}.{kind}"));
        let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&image).unwrap());
        assert_ne!(
            owner,
            0,
            "{} is root's: the build ran as root",
            image.display()
        );
    }
    let lock_path = rootless.out.join(format!("{PROFILE}.lock.json"));
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    let packages = lock["packages"].as_array().unwrap();
    let kernel = packages
        .iter()
        .find(|p| p["name"] == "linux-image-amd64")
        .expect("the lock lists the kernel");
    assert!(
        kernel["url"].as_str().is_some_and(|u| u.ends_with(".deb"))
            && kernel["sha256"].as_str().is_some_and(|s| s.len() == 64),
        "the lock names the kernel's archive: {kernel}"
    );
    assert!(
        rootless.log.contains("lock: "),
        "the build says it wrote a lock:\n{}",
        rootless.log
    );

    // Root replays the lock from an empty cache while the rootless qcow2 boots.
    let (locked, boot) = std::thread::scope(|s| {
        let locked = s.spawn(|| build(work.path(), "locked", false, Some(&lock_path)));
        let boot = s.spawn(|| {
            let image = rootless.out.join(format!("{PROFILE}.qcow2"));
            let b = Boot {
                image: &image,
                format: ImageFormat::Qcow2,
                firmware: Firmware::Bios,
                media: Media::Disk,
                memory_mib: 1024,
                extra_cdroms: Vec::new(),
                ovmf_vars: None,
                timeout: Duration::from_secs(900),
            };
            let dir = work.path().join("boot");
            std::fs::create_dir_all(&dir).unwrap();
            boot_until(&b, &dir, |log| log.contains("login:"))
        });
        (locked.join().unwrap(), boot.join().unwrap())
    });
    let console = boot.unwrap_or_else(|e| panic!("the rootless qcow2 does not boot: {e}"));
    assert!(console.contains("login:"));

    let mut differ = Vec::new();
    for file in [
        format!("{PROFILE}.iso"),
        format!("{PROFILE}.qcow2"),
        format!("{PROFILE}.lock.json"),
    ] {
        let (a, b) = (rootless.out.join(&file), locked.out.join(&file));
        if sha256(&a) != sha256(&b) {
            differ.push(file);
        }
    }
    assert!(
        differ.is_empty(),
        "a rootless build and a locked root build of the same profile differ in {differ:?}; kept in {}",
        work.keep().display()
    );
}
