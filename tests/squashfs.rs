//! `osforge squashfs` checked against the reference tools: unsquashfs lists and
//! extracts exactly the source tree, the kernel mounts it, builds are
//! reproducible, and bad input fails cleanly.

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use support::tree::*;
use support::*;

const MTIME_BASE: i64 = 1_600_000_000;
/// More than 2^32 bytes, so the extended inode and 64-bit offsets are used.
const SPARSE_SIZE: u64 = 5 << 30;

/// A tree with every kind of entry a root filesystem has, and the odd ones.
fn build_odd_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    let p = |rel: &str| root.join(rel);
    build_odd_entries(root);
    for (name, len) in [
        ("4k", 4096usize),
        ("128k", 131072),
        ("1m", 1 << 20),
        ("1m-plus-1", (1 << 20) + 1),
        ("odd", 3 * 131072 + 17),
    ] {
        write(&p(name), &noise(len, len as u64));
    }
    write(&p("zeros"), &vec![0u8; 3 << 20]);
    write(&p("dup-a"), &noise(200_000, 7));
    write(&p("dup-b"), &noise(200_000, 7));
    write(&p("dup-small-a"), b"same tiny content");
    write(&p("dup-small-b"), b"same tiny content");
    write(&p("big-random"), &noise(6 << 20, 99));
    write(&p("big-random-copy"), &noise(6 << 20, 99));
    // Same size, same blocks, different tails: blocks shared, tails not.
    let blocks_then = |name: &str, len: usize, seed: u64, tail: &[u8]| {
        let mut v = noise(len - tail.len(), seed);
        v.extend_from_slice(tail);
        write(&p(name), &v);
    };
    blocks_then("shared-blocks-a", 300_000, 11, b"tail A");
    blocks_then("shared-blocks-b", 300_000, 11, b"tail B");
    blocks_then("shared-big-blocks-a", (5 << 20) + 77, 12, b"big tail A");
    blocks_then("shared-big-blocks-b", (5 << 20) + 77, 12, b"big tail B");

    let sparse = File::create(p("sparse-5g")).unwrap();
    sparse.set_len(SPARSE_SIZE).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"head of the sparse file", 0).unwrap();
    sparse
        .write_all_at(&noise(70_000, 3), (2 << 30) + 12_345)
        .unwrap();
    sparse.write_all_at(b"tail", SPARSE_SIZE - 4).unwrap();
    drop(sparse);

    let big = p("big-dir");
    fs::create_dir(&big).unwrap();
    for i in 0..20_000 {
        let name = big.join(format!("entry-{i:05}"));
        if i % 1000 == 0 {
            write(&name, format!("file {i}\n").as_bytes())
        } else {
            File::create(&name).unwrap();
        }
    }
    let mut deep = p("deep");
    for level in 0..40 {
        deep = deep.join(format!("level-{level}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom"), b"bottom\n");

    set_mtimes(root, |i, rel| {
        if rel == b"owned" {
            4_000_000_000
        } else {
            MTIME_BASE + (i as i64 * 7919) % 90_000_000
        }
    });
}

fn odd_tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    shared_tree(&TREE, "odd-tree", build_odd_tree)
}

fn build(src: &Path, out: &Path, extra: &[&str]) {
    run_ok(
        osforge()
            .arg("squashfs")
            .arg(src)
            .arg(out)
            .args(["--quiet", "--mtime", "4100000000"])
            .args(extra),
    );
}

fn assert_same_listing(expected: &[Listed], actual: &[Listed], what: &str) {
    if expected != actual {
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !actual.contains(e))
            .take(5)
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|e| !expected.contains(e))
            .take(5)
            .collect();
        panic!(
            "{what}: listings differ\nexpected but not listed: {missing:#?}\nlisted but not expected: {extra:#?}"
        );
    }
}

fn listing(image: &Path) -> Vec<Listed> {
    let out = run_ok(
        Command::new("unsquashfs")
            .env("TZ", "UTC")
            .arg("-lln")
            .arg(image),
    );
    let mut l = parse_listing(&out.stdout);
    l.sort();
    l
}

/// unsquashfs lists the source exactly and extracts it byte for byte.
fn assert_round_trip(src: &Path, image: &Path) {
    assert_image_holds(&full_snapshot(src), image);
}

fn assert_image_holds(
    expected_snapshot: &std::collections::BTreeMap<Vec<u8>, EntryInfo>,
    image: &Path,
) {
    let mut expected = expected_listing(expected_snapshot);
    expected.sort();
    assert_same_listing(&expected, &listing(image), "unsquashfs -lln vs the source");
    let scratch = temp_dir("extract-");
    let dest = scratch.path().join("root");
    run_ok(
        Command::new("unsquashfs")
            .args(["-no-progress", "-quiet", "-d"])
            .arg(&dest)
            .arg(image),
    );
    let problems = diff_snapshots(expected_snapshot, &full_snapshot(&dest), &[]);
    assert!(
        problems.is_empty(),
        "unsquashfs -d differs from the source:\n{}",
        problems[..problems.len().min(20)].join("\n")
    );
}

#[test]
fn odd_tree_round_trips_through_unsquashfs_with_every_compressor_and_block_size() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-matrix-");
    for comp in ["gzip", "xz", "zstd", "lz4"] {
        for block in ["4K", "128K", "1M"] {
            let image = dir.path().join(format!("{comp}-{block}.sqfs"));
            build(src, &image, &["--comp", comp, "--block-size", block]);
            assert_round_trip(src, &image);
            fs::remove_file(&image).unwrap();
        }
    }
}

/// Found by tests/fuzz_formats.rs: a sparse file whose tail lies in a hole
/// had its tail packed as nothing, so the reader took the next file's bytes.
#[test]
fn a_tail_in_a_hole_reads_back_as_zeros_beside_other_tails() {
    let dir = temp_dir("sqfs-hole-tail-");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // 4 MiB + 4: the 4-byte tail is in the hole; the tail of "b" (another
    // file larger than a block) follows it in the same fragment block.
    File::create(src.join("a"))
        .unwrap()
        .set_len((4 << 20) + 4)
        .unwrap();
    fs::write(src.join("b"), noise(20_000, 5)).unwrap();
    let image = dir.path().join("out.sqfs");
    build(&src, &image, &["--block-size", "16K"]);
    assert_round_trip(&src, &image);
}

#[test]
fn the_kernel_mounts_the_image_and_reads_back_the_tree() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-mount-");
    let image = dir.path().join("odd.sqfs");
    build(src, &image, &[]);
    let mount = Mount::loop_ro(&image, "squashfs", &dir.path().join("mnt"));
    let problems = diff_snapshots(&full_snapshot(src), &full_snapshot(&mount.0), &[]);
    assert!(
        problems.is_empty(),
        "mounted image differs from the source:\n{}",
        problems[..problems.len().min(20)].join("\n")
    );
}

#[test]
fn tail_packing_fragments_and_dedup_can_each_be_turned_off() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-options-");
    let default = dir.path().join("default.sqfs");
    build(src, &default, &[]);
    for flags in [
        &["--no-fragments"][..],
        &["--no-tailends"],
        &["--no-dedup"],
        &["--no-exports", "--no-xattrs"],
    ] {
        let image = dir.path().join("variant.sqfs");
        build(src, &image, flags);
        if flags.contains(&"--no-xattrs") {
            let listed = listing(&image);
            let mut expected = expected_listing(&full_snapshot(src));
            expected.sort();
            assert_same_listing(&expected, &listed, &format!("{flags:?}"));
        } else {
            assert_round_trip(src, &image);
        }
        if flags == ["--no-dedup"] {
            let (with, without) = (
                fs::metadata(&default).unwrap().len(),
                fs::metadata(&image).unwrap().len(),
            );
            assert!(
                without >= with + (6 << 20),
                "dedup saves the duplicated 6 MiB of noise: {with} vs {without}"
            );
        }
    }
}

#[test]
fn duplicates_and_files_sharing_only_their_blocks_are_stored_once() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-dedup-");
    let image = dir.path().join("dedup.sqfs");
    let out = run_ok(
        osforge()
            .args(["squashfs", "--json", "--mtime", "4100000000"])
            .arg(src)
            .arg(&image),
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // dup-b, dup-small-b, big-random-copy; and a 20,000-entry directory of empty files does not count
    assert_eq!(summary["duplicate_files"], 3, "{summary}");
    assert_eq!(summary["partial_duplicate_files"], 2, "{summary}");
    assert_round_trip(src, &image);
}

#[test]
fn builds_with_different_job_counts_are_bit_identical() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-repro-");
    let images: Vec<PathBuf> = ["1", "2", "5"]
        .iter()
        .map(|jobs| {
            let image = dir.path().join(format!("jobs-{jobs}.sqfs"));
            build(src, &image, &["--jobs", jobs, "--comp", "gzip"]);
            image
        })
        .collect();
    let first = fs::read(&images[0]).unwrap();
    for other in &images[1..] {
        assert!(
            fs::read(other).unwrap() == first,
            "{} differs from {}",
            other.display(),
            images[0].display()
        );
    }
}

#[test]
fn source_date_epoch_fixes_the_image_time_and_clamps_newer_mtimes() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-sde-");
    let (a, b) = (dir.path().join("a.sqfs"), dir.path().join("b.sqfs"));
    for image in [&a, &b] {
        run_ok(
            osforge()
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["squashfs", "--quiet", "--comp", "lz4"])
                .arg(src)
                .arg(image),
        );
    }
    assert!(
        fs::read(&a).unwrap() == fs::read(&b).unwrap(),
        "same input and SOURCE_DATE_EPOCH give the same bytes"
    );
    let superblock = fs::read(&a).unwrap();
    assert_eq!(
        u32::from_le_bytes(superblock[8..12].try_into().unwrap()),
        1_700_000_000
    );
    let owned = listing(&a)
        .into_iter()
        .find(|l| l.path == b"owned")
        .unwrap();
    assert_eq!(
        owned.minute,
        utc_minute(1_700_000_000),
        "the 2096 mtime is clamped"
    );
}

#[test]
fn a_tar_stream_on_stdin_gives_the_same_listing_as_the_directory() {
    let src = odd_tree();
    let dir = temp_dir("sqfs-tar-");
    let from_dir = dir.path().join("dir.sqfs");
    build(src, &from_dir, &[]);
    let from_tar = dir.path().join("tar.sqfs");
    let mut tar = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--sparse",
            "--numeric-owner",
            "-C",
        ])
        .arg(src)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = osforge()
        .args([
            "squashfs",
            "--quiet",
            "--mtime",
            "4100000000",
            "-",
            from_tar.to_str().unwrap(),
        ])
        .stdin(tar.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(status.success());
    // GNU tar cannot archive sockets ("socket ignored"); everything else must match.
    let mut expected = listing(&from_dir);
    expected.retain(|l| l.path != b"socket");
    assert_same_listing(&expected, &listing(&from_tar), "tar vs directory");
    let mut snapshot = full_snapshot(src);
    snapshot.remove(&b"socket"[..]);
    assert_image_holds(&snapshot, &from_tar);
}

fn stderr_of(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_failure(code: i32, stderr: &str, expected_code: Option<i32>, mentions: &[&str]) {
    assert_ne!(code, 0, "must fail: {stderr}");
    if let Some(c) = expected_code {
        assert_eq!(code, c, "exit code for: {stderr}");
    }
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected, got:\n{stderr}"
    );
    for m in mentions {
        assert!(stderr.contains(m), "error should mention {m:?}: {stderr}");
    }
}

#[test]
fn bad_arguments_fail_with_one_line_and_exit_code_2_and_leave_no_output() {
    let dir = temp_dir("sqfs-bad-");
    let out = dir.path().join("out.sqfs");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    write(&src.join("f"), b"data");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["squashfs", "/nonexistent/source", out.to_str().unwrap()],
            "/nonexistent/source",
        ),
        (
            vec![
                "squashfs",
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                "--comp",
                "lzo",
            ],
            "lzo",
        ),
        (
            vec![
                "squashfs",
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                "--block-size",
                "3K",
            ],
            "power of two",
        ),
        (
            vec![
                "squashfs",
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                "--block-size",
                "2M",
            ],
            "power of two",
        ),
        (
            vec![
                "squashfs",
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                "--comp",
                "zstd",
                "--level",
                "30",
            ],
            "1..=22",
        ),
    ];
    for (args, mention) in cases {
        let (code, stderr) = stderr_of(osforge().args(&args));
        assert_one_line_failure(code, &stderr, Some(2), &[mention]);
        assert!(!out.exists(), "{args:?} left {}", out.display());
        assert!(leftover_temporaries(dir.path()).is_empty());
    }
}

#[test]
fn an_unreadable_source_file_is_named_and_leaves_no_output() {
    require_root();
    let dir = temp_dir("sqfs-unreadable-");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    write(&src.join("readable"), b"ok");
    write(&src.join("secret"), b"no");
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = dir.path().join("out.sqfs");
    // Root reads everything; drop to nobody so the permission check applies.
    let (code, stderr) = stderr_of(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_osforge"),
                "squashfs",
            ])
            .arg(&src)
            .arg(&out),
    );
    assert_one_line_failure(code, &stderr, None, &["secret", "ermission denied"]);
    assert!(!out.exists());
    assert!(
        leftover_temporaries(dir.path()).is_empty(),
        "{:?}",
        leftover_temporaries(dir.path())
    );
}

#[test]
fn a_full_or_read_only_output_disk_fails_cleanly() {
    require_root();
    let dir = temp_dir("sqfs-disk-");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    write(&src.join("noise"), &noise(4 << 20, 5));

    let full = Mount::tmpfs(&dir.path().join("full"), "size=1m");
    let out = full.0.join("out.sqfs");
    let (code, stderr) = stderr_of(
        osforge()
            .args(["squashfs", "--comp", "lz4"])
            .arg(&src)
            .arg(&out),
    );
    assert_one_line_failure(
        code,
        &stderr,
        Some(1),
        &["No space left on device", "out.sqfs"],
    );
    assert!(!out.exists());
    assert!(
        leftover_temporaries(&full.0).is_empty(),
        "{:?}",
        leftover_temporaries(&full.0)
    );

    let ro = Mount::tmpfs(&dir.path().join("ro"), "ro,size=1m");
    let out = ro.0.join("out.sqfs");
    let (code, stderr) = stderr_of(osforge().arg("squashfs").arg(&src).arg(&out));
    assert_one_line_failure(
        code,
        &stderr,
        Some(1),
        &["Read-only file system", "out.sqfs"],
    );
    assert!(!out.exists());
}

#[test]
fn an_interrupted_build_leaves_neither_the_output_nor_a_temporary() {
    let dir = temp_dir("sqfs-interrupt-");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let mut f = File::create(src.join("noise")).unwrap();
    for i in 0..64 {
        f.write_all(&noise(1 << 20, i + 1)).unwrap();
    }
    drop(f);
    let out = dir.path().join("out.sqfs");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut child = osforge()
            .args([
                "squashfs", "--quiet", "--comp", "xz", "--level", "9", "--jobs", "1",
            ])
            .arg(&src)
            .arg(&out)
            .spawn()
            .unwrap();
        // wait until the temporary exists, so the build is under way
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while leftover_temporaries(dir.path()).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !leftover_temporaries(dir.path()).is_empty(),
            "build started"
        );
        // SAFETY: sending a signal to our child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(!out.exists());
        assert!(
            leftover_temporaries(dir.path()).is_empty(),
            "signal {signal}: {:?}",
            leftover_temporaries(dir.path())
        );
    }
}

/// A minimal Debian made by mmdebstrap (unshare mode, so the tarball has the
/// real owners), unpacked too; built once per test run.
fn debian_rootfs() -> &'static (PathBuf, PathBuf) {
    static ROOTFS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    let result = ROOTFS
        .get_or_init(|| mmdebstrap_root("debian-minbase", "minbase", "libcap2-bin,iputils-ping"));
    result.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_debian_rootfs_from_mmdebstrap_round_trips_from_its_directory_and_from_its_tarball() {
    let (tar, root) = debian_rootfs();
    let dir = temp_dir("sqfs-debian-");
    let from_dir = dir.path().join("dir.sqfs");
    let from_tar = dir.path().join("tar.sqfs");
    build(root, &from_dir, &["--comp", "zstd", "--block-size", "1M"]);
    build(tar, &from_tar, &["--comp", "zstd", "--block-size", "1M"]);
    // mmdebstrap's tar lists /dev nodes and the directory has them too: both
    // routes must give the same tree, entry for entry.
    assert_same_listing(
        &listing(&from_dir),
        &listing(&from_tar),
        "tarball vs directory",
    );
    assert_round_trip(root, &from_dir);
    let mounted = Mount::loop_ro(&from_tar, "squashfs", &dir.path().join("mnt"));
    let problems = diff_snapshots(&full_snapshot(root), &full_snapshot(&mounted.0), &[]);
    assert!(
        problems.is_empty(),
        "the kernel reads the tarball's image differently:\n{}",
        problems[..problems.len().min(20)].join("\n")
    );
}
