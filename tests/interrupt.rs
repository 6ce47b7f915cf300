//! Interrupting a build in the middle of a stage, with SIGINT and with
//! SIGKILL: the cache keeps no half entry (every entry a build could find
//! is complete), no child of the build survives it, nothing is left at the
//! output path, and the next build succeeds.
//!
//! The profile is cheap and slow where it matters: a small Debian tree as a
//! `source: tarball:` (the same tree tests/ansible.rs makes), a layer whose
//! command sleeps (so the test can catch it running), the configure stage,
//! and an lz4 squashfs for an ISO.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::{osforge, require_root, small_debian_tar, temp_dir};

/// The layer's command: long enough to be caught, and left as a marker.
const SLOW_CMD: &str = "sleep 6; echo layered > /etc/osforge-layered";

fn profile_dir() -> tempfile::TempDir {
    let tar = small_debian_tar().unwrap_or_else(|e| panic!("the test tree: {e}"));
    let dir = temp_dir("interrupt-");
    if fs::hard_link(&tar, dir.path().join("rootfs.tar")).is_err() {
        fs::copy(&tar, dir.path().join("rootfs.tar")).unwrap();
    }
    fs::write(dir.path().join("user-data.tera"), "#cloud-config\n").unwrap();
    fs::write(
        dir.path().join("meta-data.tera"),
        "instance-id: {{ instance_id }}\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("image.yaml"),
        format!(
            "description: interrupted (tests/interrupt.rs)\n\
             source: tarball:rootfs.tar\n\
             distro: {{name: debian, suite: bookworm, arch: amd64}}\n\
             hostname: interrupted\n\
             cmds: [{SLOW_CMD:?}]\n\
             cloud_init: {{user_data: ./user-data.tera, meta_data: ./meta-data.tera, network_config: null}}\n\
             iso: {{squashfs: {{compression: lz4, level: null}}}}\n"
        ),
    )
    .unwrap();
    dir
}

fn command(dir: &Path, cache: &Path) -> Command {
    support::build_command(
        &["--quiet", "build", "--type", "iso"],
        &dir.join("image.yaml"),
        &dir.join("out"),
        cache,
    )
}

/// Whether `<cache>/<stage>/` holds a stage being built (a `.KEY.tmp-` dir).
fn building(cache: &Path, stage: &str) -> bool {
    fs::read_dir(cache.join(stage))
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        })
        .unwrap_or(false)
}

/// Starts a build, waits until `stage` is being built, sends `signal`.
fn interrupt(dir: &Path, cache: &Path, stage: &str, signal: libc::c_int) -> ExitStatus {
    let mut child = command(dir, cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !building(cache, stage) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the build ended ({status}) before its {stage} stage was caught");
        }
        assert!(Instant::now() < deadline, "{stage} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // In the middle of the stage, not at its first instant.
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: a plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    child.wait().unwrap()
}

/// Entries a build would trust that lack their manifest (none may exist).
fn broken_entries(cache: &Path) -> Vec<PathBuf> {
    let mut broken = Vec::new();
    for stage in fs::read_dir(cache).unwrap().flatten() {
        let Ok(entries) = fs::read_dir(stage.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir()
                && !name.starts_with('.')
                && stage.file_name() != "tmp"
                // The block cache: entries of its own, no manifests.
                && stage.file_name() != "blocks"
                && !entry.path().join("manifest.json").is_file()
            {
                broken.push(entry.path());
            }
        }
    }
    broken
}

/// Processes whose command line names `dir` (the build's children would).
fn survivors(dir: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f"])
        .arg(dir.to_string_lossy().as_ref())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn interrupted_builds_leave_a_cache_the_next_build_trusts(signal: libc::c_int) {
    require_root();
    let dir = profile_dir();
    let cache = dir.path().join("cache");
    for stage in ["layer", "configure", "squashfs"] {
        let status = interrupt(dir.path(), &cache, stage, signal);
        use std::os::unix::process::ExitStatusExt;
        match signal {
            libc::SIGKILL => assert_eq!(status.signal(), Some(libc::SIGKILL), "{stage}"),
            _ => assert_eq!(status.code(), Some(130), "{stage}: {status}"),
        }
        assert!(
            broken_entries(&cache).is_empty(),
            "{stage}: {:?}",
            broken_entries(&cache)
        );
        // The children die with the build: the container's sleep, tar.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !survivors(dir.path()).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{stage}: still running after the build was killed:\n{}",
                survivors(dir.path())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = dir.path().join("out");
        assert!(!out.join("image.iso").exists(), "{stage}");
        if signal == libc::SIGINT {
            assert!(support::leftover_temporaries(&out).is_empty(), "{stage}");
            // The handler removed what the stage had begun.
            assert!(!building(&cache, stage), "{stage}: its temporary is left");
        }
    }
    let done = command(dir.path(), &cache).output().unwrap();
    assert!(
        done.status.success(),
        "the build after the interruptions failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(dir.path().join("out/image.iso").is_file());
    // A killed build's staging folder is removed by the next build.
    assert!(
        support::leftover_temporaries(&dir.path().join("out")).is_empty(),
        "{:?}",
        support::leftover_temporaries(&dir.path().join("out"))
    );
    if signal == libc::SIGKILL {
        // What killed builds left, prune removes.
        let pruned = osforge()
            .args(["cache", "prune", "--cache-dir"])
            .arg(&cache)
            .output()
            .unwrap();
        assert!(pruned.status.success());
        for stage in ["layer", "configure", "squashfs"] {
            assert!(!building(&cache, stage), "{stage}: prune left a temporary");
        }
    }
}

#[test]
fn sigint_in_the_middle_of_each_stage() {
    interrupted_builds_leave_a_cache_the_next_build_trusts(libc::SIGINT);
}

#[test]
fn sigkill_in_the_middle_of_each_stage() {
    interrupted_builds_leave_a_cache_the_next_build_trusts(libc::SIGKILL);
}
