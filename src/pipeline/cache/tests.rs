//! The cache's unit tests.

use super::*;

#[test]
fn keys_depend_on_inputs_not_on_key_order() {
    let a = StageKey::new("s", &serde_json::json!({"x": 1, "y": [1, 2]}));
    let b = StageKey::new("s", &serde_json::json!({"y": [1, 2], "x": 1}));
    let c = StageKey::new("s", &serde_json::json!({"x": 2, "y": [1, 2]}));
    assert_eq!(a.key, b.key);
    assert_ne!(a.key, c.key);
}

#[test]
fn a_failed_build_leaves_no_entry_and_a_miss_names_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let first = StageKey::new(
        "rootfs",
        &serde_json::json!({"packages": ["a"], "suite": "bookworm"}),
    );
    assert!(
        cache
            .build(&first, None, |_| -> anyhow::Result<()> {
                anyhow::bail!("mmdebstrap failed")
            })
            .is_err()
    );
    assert!(matches!(cache.lookup(&first), Lookup::Miss { .. }));
    assert_eq!(
        std::fs::read_dir(dir.path().join("rootfs"))
            .unwrap()
            .count(),
        0,
        "no temporary left"
    );

    let (path, ()) = cache
        .build(&first, None, |d| Ok(std::fs::write(d.join("out"), b"x")?))
        .unwrap();
    assert!(path.join("out").is_file());
    assert!(matches!(cache.lookup(&first), Lookup::Hit(_)));

    let second = StageKey::new(
        "rootfs",
        &serde_json::json!({"packages": ["a", "b"], "suite": "bookworm"}),
    );
    match cache.lookup(&second) {
        Lookup::Miss { reason } => assert!(reason.contains("packages"), "{reason}"),
        Lookup::Hit(_) => panic!("different inputs must miss"),
    }
}

fn key(stage: &'static str, n: u32) -> StageKey {
    StageKey::new(stage, &serde_json::json!({ "n": n }))
}

/// Builds an entry holding `bytes` of data in one file.
fn make(cache: &Cache, key: &StageKey, profile: Option<&str>, bytes: usize) -> PathBuf {
    let (dir, ()) = cache
        .build(key, profile, |d| {
            Ok(fs::write(d.join("out"), vec![7u8; bytes])?)
        })
        .unwrap();
    dir
}

fn set_last_used(entry: &Path, seconds_ago: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(seconds_ago);
    fs::File::options()
        .write(true)
        .open(entry.join("last-used"))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn listed(cache: &Cache) -> Vec<(String, String)> {
    let mut v: Vec<_> = cache
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.stage, e.key))
        .collect();
    v.sort();
    v
}

fn pair(k: &StageKey) -> (String, String) {
    (k.stage.to_string(), k.key.clone())
}

#[test]
fn entries_record_their_profile_and_a_hit_marks_them_used() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let k = key("bootstrap", 1);
    let entry = make(&cache, &k, Some("ephemeral"), 10_000);
    set_last_used(&entry, 3600);
    drop(cache);

    let cache = Cache::new(dir.path().to_path_buf());
    let before = cache.list().unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].profile.as_deref(), Some("ephemeral"));
    assert!(before[0].last_used + 3000 < before[0].created);
    assert!(before[0].bytes >= 10_000, "{}", before[0].bytes);
    assert!(matches!(cache.lookup(&k), Lookup::Hit(_)));
    let after = cache.list().unwrap();
    assert!(after[0].last_used >= before[0].created);
    assert!(
        after[0].in_use,
        "the hit holds the entry while the Cache lives"
    );
}

#[test]
fn an_entry_without_its_manifest_is_a_miss_and_old_entries_still_list() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let k = key("configure", 1);
    let entry = make(&cache, &k, None, 100);
    fs::remove_file(entry.join("entry.json")).unwrap();
    fs::remove_file(entry.join("last-used")).unwrap();
    let old = cache.list().unwrap();
    assert_eq!(old[0].profile, None);
    assert_eq!(old[0].last_used, old[0].created);

    fs::remove_file(entry.join(MANIFEST)).unwrap();
    assert!(matches!(cache.lookup(&k), Lookup::Miss { .. }));
    assert!(cache.list().unwrap().is_empty());
}

#[test]
fn sizes_count_hard_linked_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let one = make(&cache, &key("s", 1), None, 1 << 20);
    let two = make(&cache, &key("s", 2), None, 1 << 20);
    fs::hard_link(two.join("out"), two.join("again")).unwrap();
    let sizes: Vec<u64> = cache.list().unwrap().iter().map(|e| e.bytes).collect();
    assert_eq!(sizes[0], sizes[1], "{one:?} and {two:?}");
}

#[test]
fn prune_rules_choose_least_recently_used_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let mut keys = Vec::new();
    // Four bootstrap entries, last used 4, 3, 2 and 1 days ago; one configure.
    for n in 0..4u32 {
        let k = key("bootstrap", n);
        set_last_used(&make(&cache, &k, None, 1 << 20), u64::from(4 - n) * 86_400);
        keys.push(k);
    }
    let configure = key("configure", 0);
    set_last_used(&make(&cache, &configure, None, 1 << 20), 10 * 86_400);
    drop(cache);
    let cache = Cache::new(dir.path().to_path_buf());

    let keep_two = PrunePolicy {
        keep_last: Some(2),
        ..PrunePolicy::default()
    };
    let dry = cache.prune(&keep_two, true).unwrap();
    assert_eq!(dry.removed.len(), 2);
    assert_eq!(listed(&cache).len(), 5, "a dry run removes nothing");

    let report = cache.prune(&keep_two, false).unwrap();
    let removed: Vec<_> = report.removed.iter().map(|r| r.entry.key.clone()).collect();
    assert_eq!(removed, [keys[0].key.clone(), keys[1].key.clone()]);
    assert!(report.removed.iter().all(|r| r.rule == Rule::KeepLast));

    let report = cache
        .prune(
            &PrunePolicy {
                older_than: Some(std::time::Duration::from_secs(5 * 86_400)),
                ..PrunePolicy::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(report.removed.len(), 1);
    assert_eq!(report.removed[0].entry.key, configure.key);
    assert!(report.removed[0].reason.contains("not used for 10d"));

    // Two 1 MiB entries left: a limit between one and two keeps the newer.
    let report = cache
        .prune(
            &PrunePolicy {
                max_size: Some(3 << 19),
                ..PrunePolicy::default()
            },
            false,
        )
        .unwrap();
    assert!(report.remaining_bytes <= 3 << 19);
    assert_eq!(listed(&cache), [pair(&keys[3])]);
    assert_eq!(report.freed_bytes, report.removed[0].entry.bytes);
}

#[test]
fn removal_skips_what_a_build_holds_and_takes_the_lock_files_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let builder = Cache::new(dir.path().to_path_buf());
    let used = key("bootstrap", 1);
    let building = key("bootstrap", 2);
    let free = key("bootstrap", 3);
    for k in [&used, &building, &free] {
        make(&builder, k, None, 4096);
    }
    drop(builder);

    // Another build: one entry read (a hit), one locked to be built anew.
    let other = Cache::new(dir.path().to_path_buf());
    assert!(matches!(other.lookup(&used), Lookup::Hit(_)));
    let lock = other.lock(&building).unwrap();
    let stage_dir = dir.path().join("bootstrap");
    // Leftovers: an interrupted build of a free key, one of the locked key's.
    let stale = stage_dir.join(format!(".{}.tmp-abc", free.key));
    let live = stage_dir.join(format!(".{}.tmp-def", building.key));
    for t in [&stale, &live] {
        fs::create_dir(t).unwrap();
        fs::write(t.join("half"), b"x").unwrap();
    }

    let cache = Cache::new(dir.path().to_path_buf());
    let report = cache.clear(false).unwrap();
    assert_eq!(listed(&cache), {
        let mut v = vec![pair(&used), pair(&building)];
        v.sort();
        v
    });
    assert_eq!(report.in_use.len(), 2);
    assert_eq!(report.stale.len(), 1);
    assert!(!stale.exists() && live.exists());
    let names: Vec<String> = fs::read_dir(&stage_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&free.key))
        .collect();
    assert!(
        names.is_empty(),
        "nothing of the removed key is left: {names:?}"
    );

    drop(lock);
    drop(other);
    let report = cache.clear(false).unwrap();
    assert_eq!(report.removed.len(), 2);
    assert_eq!(report.stale.len(), 1);
    assert!(listed(&cache).is_empty());
    assert_eq!(fs::read_dir(&stage_dir).unwrap().count(), 0);
}

#[test]
fn a_lock_unlinked_by_a_remover_is_taken_again_from_the_file_that_is_there() {
    use lock::{Mode, acquire, try_acquire};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".k.lock");
    let remover = acquire(&path, Mode::Exclusive).unwrap();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || acquire(&path, Mode::Exclusive).unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    remover.unlink();
    let held = waiter.join().unwrap();
    assert!(path.exists(), "the waiter made a new lock file");
    assert!(
        try_acquire(&path, Mode::Exclusive).unwrap().is_none(),
        "and holds it"
    );
    drop(held);
}

#[test]
fn rebuild_evicts_an_entry_this_cache_holds_without_waiting_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path().to_path_buf());
    let k = key("squashfs", 1);
    make(&cache, &k, None, 10);
    let _lock = cache.lock(&k).unwrap();
    cache.evict(&k).unwrap();
    assert!(matches!(cache.lookup(&k), Lookup::Miss { .. }));
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("squashfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| {
            !n.to_string_lossy().ends_with(".lock") && !n.to_string_lossy().ends_with(".use")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Unmounts on drop, so that a failed assertion leaves no mount behind.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_names_the_place_the_space_free_and_what_the_stage_takes() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _mounted = Tmpfs(dir.path().to_path_buf());
    let cache = Cache::new(dir.path().to_path_buf());
    let small = StageKey::new("squashfs", &serde_json::json!({"n": 1}));
    make(&cache, &small, None, 512 * 1024);
    let big = StageKey::new("squashfs", &serde_json::json!({"n": 2}));
    let err = cache
        .build(&big, None, |d| -> anyhow::Result<()> {
            let chunk = vec![7u8; 256 * 1024];
            let mut file = std::fs::File::create(d.join("image"))?;
            for _ in 0..16 {
                std::io::Write::write_all(&mut file, &chunk)?;
            }
            Ok(())
        })
        .unwrap_err();
    let text = format!("{err:#}");
    let stage_dir = dir.path().join("squashfs");
    assert!(
        text.starts_with(&format!(
            "no space left on device for the squashfs stage in {}: ",
            stage_dir.display()
        )) && text.contains(" free, a squashfs entry takes about ")
            && text.contains("No space left on device"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(&stage_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(TEMP_INFIX))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
}
