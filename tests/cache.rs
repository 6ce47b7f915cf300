//! `osforge cache ls|prune|clear` through the real binary, on entries made
//! with the library's own cache (a real build takes minutes), with a lock
//! held by another process the way a running build holds it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant, SystemTime};

use osforge::pipeline::cache::{Cache, StageKey};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_osforge");
const MIB: u64 = 1 << 20;

struct Fixture {
    dir: tempfile::TempDir,
}

/// An entry made by the fixture: its key and directory.
struct Made {
    key: String,
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// An entry of `mib` MiB, last used `days_ago` days ago. The Cache is
    /// dropped at once: while it lives, it holds what it built.
    fn entry(&self, stage: &'static str, n: u32, profile: &str, mib: u64, days_ago: u64) -> Made {
        let key = StageKey::new(stage, &serde_json::json!({ "n": n }));
        let cache = Cache::new(self.root().to_path_buf());
        let (dir, ()) = cache
            .build(&key, Some(profile), |d| {
                Ok(std::fs::write(
                    d.join("out"),
                    vec![1u8; (mib * MIB) as usize],
                )?)
            })
            .expect("build an entry");
        set_last_used(&dir, days_ago * 86_400);
        Made { key: key.key, dir }
    }

    fn osforge(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--cache-dir")
            .arg(self.root())
            .output()
            .expect("run osforge")
    }

    /// Runs a command that must succeed; its stdout and stderr.
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.osforge(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "osforge {args:?}: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// The JSON a command that must succeed prints.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all).0).expect("JSON on stdout")
    }

    /// Full keys in the listing, sorted.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.json(&["cache", "ls"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }
}

fn set_last_used(entry: &Path, seconds_ago: u64) {
    let when = SystemTime::now() - Duration::from_secs(seconds_ago);
    std::fs::File::options()
        .write(true)
        .open(entry.join("last-used"))
        .expect("the entry's last-used marker")
        .set_modified(when)
        .unwrap();
}

fn sorted(keys: &[&Made]) -> Vec<String> {
    let mut v: Vec<String> = keys.iter().map(|m| m.key.clone()).collect();
    v.sort();
    v
}

fn removed_keys(report: &Value) -> Vec<String> {
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

/// `flock FILE` holding the lock, as a build holds it; killed with its
/// process group on drop.
struct Holder(Child);

impl Holder {
    fn hold(lock: &Path, shared: bool) -> Holder {
        let ready = lock.with_extension("ready");
        let mut cmd = Command::new("flock");
        if shared {
            cmd.arg("--shared");
        }
        let child = cmd
            .arg(lock)
            .arg("-c")
            .arg(format!("touch '{}'; exec sleep 60", ready.display()))
            .process_group(0)
            .spawn()
            .expect("run flock (util-linux)");
        let started = Instant::now();
        while !ready.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "flock never took {lock:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::remove_file(&ready).unwrap();
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test started.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn ls_lists_each_entry_with_its_profile_size_and_age() {
    let f = Fixture::new();
    let boot = f.entry("bootstrap", 1, "base", 2, 3);
    let conf = f.entry("configure", 2, "ephemeral", 1, 0);
    // An entry from before entries recorded their profile.
    std::fs::remove_file(conf.dir.join("entry.json")).unwrap();

    let (table, summary) = f.ok(&["cache", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("stage"), "{table}");
    let row = |key: &str| *lines.iter().find(|l| l.contains(&key[..12])).unwrap();
    assert!(
        !table.contains(&boot.key),
        "the table shows 12 characters of a key"
    );
    assert!(row(&boot.key).contains("base"), "{table}");
    assert!(row(&boot.key).contains("2.0 MiB"), "{table}");
    assert!(row(&boot.key).contains("3d ago"), "{table}");
    assert!(
        row(&conf.key).contains(" - "),
        "no profile recorded: {table}"
    );
    assert!(summary.contains("2 entries, 3.0 MiB"), "{summary}");

    let listing = f.json(&["cache", "ls"]);
    let entries = listing["entries"].as_array().unwrap();
    let boot_json = entries
        .iter()
        .find(|e| e["key"] == boot.key.as_str())
        .unwrap();
    assert_eq!(boot_json["stage"], "bootstrap");
    assert_eq!(boot_json["profile"], "base");
    assert!(boot_json["bytes"].as_u64().unwrap() >= 2 * MIB);
    assert_eq!(boot_json["in_use"], false);
    let conf_json = entries
        .iter()
        .find(|e| e["key"] == conf.key.as_str())
        .unwrap();
    assert_eq!(conf_json["profile"], Value::Null);

    // The default is the build's: $OSFORGE_CACHE_DIR.
    let out = Command::new(BIN)
        .args(["--json", "cache", "ls"])
        .env("OSFORGE_CACHE_DIR", f.root())
        .output()
        .unwrap();
    let listing: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listing["entries"].as_array().unwrap().len(), 2);
}

#[test]
fn max_size_removes_least_recently_used_entries_until_the_cache_fits() {
    let f = Fixture::new();
    let oldest = f.entry("bootstrap", 1, "base", 2, 9);
    let older = f.entry("configure", 1, "base", 2, 5);
    let recent = f.entry("bootstrap", 2, "base", 2, 1);
    let newest = f.entry("configure", 2, "base", 2, 0);

    let dry = f.json(&["cache", "prune", "--max-size", "5M", "--dry-run"]);
    assert_eq!(removed_keys(&dry), [oldest.key.clone(), older.key.clone()]);
    assert_eq!(f.keys().len(), 4, "a dry run removes nothing");

    let (text, _) = f.ok(&["cache", "prune", "--max-size", "5M"]);
    assert!(
        text.contains(&format!("removed  bootstrap  {}", &oldest.key[..12])),
        "{text}"
    );
    assert!(text.contains("freed 4."), "{text}");
    assert_eq!(f.keys(), sorted(&[&recent, &newest]));
    let total = f.json(&["cache", "ls"])["total_bytes"].as_u64().unwrap();
    assert!(total <= 5 * MIB, "{total}");
}

#[test]
fn keep_last_keeps_the_most_recently_used_of_each_stage() {
    let f = Fixture::new();
    let b: Vec<Made> = (0..3)
        .map(|n| f.entry("bootstrap", n, "base", 1, 3 - u64::from(n)))
        .collect();
    let c = f.entry("configure", 0, "base", 1, 30);

    let report = f.json(&["cache", "prune", "--keep-last", "1"]);
    let mut removed = removed_keys(&report);
    removed.sort();
    assert_eq!(removed, sorted(&[&b[0], &b[1]]));
    assert_eq!(f.keys(), sorted(&[&b[2], &c]));
}

#[test]
fn older_than_removes_entries_not_used_for_that_long() {
    let f = Fixture::new();
    let stale = f.entry("bootstrap", 1, "base", 1, 0);
    let fresh = f.entry("bootstrap", 2, "base", 1, 0);
    // As another tool would set it.
    let status = Command::new("touch")
        .args(["-d", "13 hours ago"])
        .arg(stale.dir.join("last-used"))
        .status()
        .unwrap();
    assert!(status.success());

    let report = f.json(&["cache", "prune", "--older-than", "12h"]);
    assert_eq!(removed_keys(&report), sorted(&[&stale]));
    assert_eq!(report["removed"][0]["rule"], "older-than");
    assert_eq!(f.keys(), sorted(&[&fresh]));
}

#[test]
fn entries_a_running_build_holds_are_kept() {
    let f = Fixture::new();
    let building = f.entry("bootstrap", 1, "base", 1, 9);
    let reading = f.entry("configure", 1, "base", 1, 9);
    let free = f.entry("configure", 2, "base", 1, 9);
    let _build = Holder::hold(
        &f.root().join(format!("bootstrap/.{}.lock", building.key)),
        false,
    );
    let _read = Holder::hold(
        &f.root().join(format!("configure/.{}.use", reading.key)),
        true,
    );
    // A build killed half-way, and one still making its entry.
    let killed = f.root().join(format!("configure/.{}.tmp-x1", free.key));
    let live = f.root().join(format!("bootstrap/.{}.tmp-x2", building.key));
    for t in [&killed, &live] {
        std::fs::create_dir(t).unwrap();
        std::fs::write(t.join("part"), vec![0u8; MIB as usize]).unwrap();
    }

    let ls = f.json(&["cache", "ls"]);
    let in_use: Vec<bool> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["in_use"].as_bool().unwrap())
        .collect();
    assert_eq!(in_use.iter().filter(|u| **u).count(), 2);

    let (_, notes) = f.ok(&["cache", "prune", "--max-size", "0"]);
    assert!(
        notes.contains(&format!("kept bootstrap {}", &building.key[..12])),
        "{notes}"
    );
    assert!(notes.contains("in use by a running build"), "{notes}");
    assert!(notes.contains("still over --max-size"), "{notes}");
    assert_eq!(f.keys(), sorted(&[&building, &reading]));
    assert!(!killed.exists(), "a dead build's temporary goes");
    assert!(live.exists(), "a live build's temporary stays");

    let report = f.json(&["cache", "clear"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 0);
    assert_eq!(report["in_use"].as_array().unwrap().len(), 2);
}

#[test]
fn clear_removes_every_entry_and_leftover() {
    let f = Fixture::new();
    let a = f.entry("bootstrap", 1, "base", 1, 0);
    f.entry("configure", 1, "base", 1, 0);
    let killed = f.root().join(format!("bootstrap/.{}.del-99-1", a.key));
    std::fs::create_dir(&killed).unwrap();

    let report = f.json(&["cache", "clear", "--dry-run"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 2);
    assert_eq!(f.keys().len(), 2);

    let (text, _) = f.ok(&["cache", "clear"]);
    assert!(text.contains("0 entries, 0 B left"), "{text}");
    assert!(f.keys().is_empty());
    for stage in ["bootstrap", "configure"] {
        let left: Vec<_> = std::fs::read_dir(f.root().join(stage)).unwrap().collect();
        assert!(left.is_empty(), "{stage}: {left:?}");
    }
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    let f = Fixture::new();
    for (args, wanted) in [
        (
            &["cache", "prune", "--max-size", "banana"][..],
            "'banana' is not a size",
        ),
        (
            &["cache", "prune", "--older-than", "7x"][..],
            "unknown unit 'x'",
        ),
        (
            &["cache", "prune", "--keep-last", "many"][..],
            "'--keep-last <N>'",
        ),
        (&["cache", "shrink"][..], "shrink"),
    ] {
        let out = f.osforge(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("osforge: error: "), "{stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    }
}
