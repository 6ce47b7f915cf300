//! `osforge qcow2` end to end: the real binary converts raw images, and
//! qemu-img (the reference reader) checks the result: `qemu-img check` finds no
//! errors, `qemu-img compare` finds the same disk, and `qemu-img info` reports
//! the virtual size and compression type. Bad inputs fail with one line and
//! leave no output behind. Tests that mount tmpfs expect to run as root.

mod support;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use support::noise;

const MIB: u64 = 1 << 20;

fn osforge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_osforge"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the command starts")
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn qemu_img(args: &[&str]) -> Command {
    let mut cmd = Command::new("qemu-img");
    cmd.args(args);
    cmd
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Deterministic noise that no compressor can shrink.
fn text(len: usize) -> Vec<u8> {
    (0..)
        .flat_map(|i: u32| {
            format!("{i:08}: all work and no play makes a dull disk image\n").into_bytes()
        })
        .take(len)
        .collect()
}

/// A raw disk of `6 MiB + 777` bytes (not a whole number of clusters or
/// sectors): text, noise, written zeros, a hole, sparse blips, and a mixed tail.
fn mixed_raw(dir: &Path) -> PathBuf {
    let raw = dir.join("mixed.raw");
    let mut f = File::create(&raw).unwrap();
    f.set_len(6 * MIB + 777).unwrap();
    let mut put = |offset: u64, bytes: &[u8]| {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(bytes).unwrap();
    };
    put(0, &text(MIB as usize));
    put(MIB, &noise(MIB as usize, 1));
    put(2 * MIB, &vec![0; MIB as usize]); // zeros that are really written
    // 3 MiB..4 MiB stays a hole
    for blip in (4 * MIB..5 * MIB).step_by(8192) {
        put(blip, &[0xee; 3]);
    }
    put(5 * MIB, &noise(MIB as usize / 2, 2));
    put(5 * MIB + MIB / 2, &text(MIB as usize / 2 + 777));
    raw
}

fn convert(raw: &Path, out: &Path, extra: &[&str]) -> Output {
    run_ok(
        osforge()
            .args(["--quiet", "qcow2", path(raw), path(out)])
            .args(extra),
    )
}

/// The checks every converted image must pass. Returns `qemu-img check`'s report.
fn assert_qemu_reads(raw: &Path, qcow2: &Path, compression_type: &str) -> String {
    let check = run(&mut qemu_img(&["check", "-f", "qcow2", path(qcow2)]));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("No errors were found"),
        "qemu-img check {}: {report}{}",
        qcow2.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    let compare = run(&mut qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        path(raw),
        path(qcow2),
    ]));
    assert!(
        compare.status.success(),
        "qemu-img compare {}: {}{}",
        qcow2.display(),
        String::from_utf8_lossy(&compare.stdout),
        String::from_utf8_lossy(&compare.stderr)
    );
    let info = run_ok(&mut qemu_img(&["info", "--output=json", path(qcow2)]));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let raw_len = fs::metadata(raw).unwrap().len();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(
        info["virtual-size"].as_u64(),
        Some(raw_len.next_multiple_of(512)),
        "virtual size is the raw size in whole sectors"
    );
    let data = &info["format-specific"]["data"];
    assert_eq!(data["compat"], "1.1", "qcow2 version 3");
    assert_eq!(data["compression-type"], compression_type);
    report.into_owned()
}

/// Guest bytes that `qemu-img map` reports as stored data.
fn allocated_bytes(qcow2: &Path) -> u64 {
    let map = run_ok(&mut qemu_img(&["map", "--output=json", path(qcow2)]));
    let map: serde_json::Value = serde_json::from_slice(&map.stdout).unwrap();
    map.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| e["length"].as_u64().unwrap())
        .sum()
}

/// Bytes of the virtual disk in clusters that hold anything but zeros: what a
/// writer that skips zero clusters must allocate.
fn nonzero_cluster_bytes(raw: &Path, cluster_bytes: usize) -> u64 {
    let bytes = fs::read(raw).unwrap();
    let virtual_len = bytes.len().next_multiple_of(512);
    bytes
        .chunks(cluster_bytes)
        .enumerate()
        .filter(|(_, c)| c.iter().any(|&b| b != 0))
        .map(|(i, _)| cluster_bytes.min(virtual_len - i * cluster_bytes) as u64)
        .sum()
}

/// The "N% compressed clusters" figure of a `qemu-img check` report.
fn compressed_percent(report: &str) -> f64 {
    let before = report
        .split("% compressed clusters")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no compressed figure in {report}"));
    before.parse().unwrap()
}

#[test]
fn every_compression_and_cluster_size_converts_a_mixed_raw_that_qemu_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    for compress in ["none", "zlib", "zstd"] {
        for cluster in ["4K", "64K", "2M"] {
            let out = dir.path().join(format!("{compress}-{cluster}.qcow2"));
            convert(
                &raw,
                &out,
                &["--compress", compress, "--cluster-size", cluster],
            );
            let compression_type = if compress == "zstd" { "zstd" } else { "zlib" };
            let report = assert_qemu_reads(&raw, &out, compression_type);
            let info = run_ok(&mut qemu_img(&["info", "--output=json", path(&out)]));
            let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
            let cluster_bytes = parse_cluster(cluster);
            assert_eq!(info["cluster-size"].as_u64(), Some(cluster_bytes as u64));
            // Exactly the clusters with data are stored: the hole and the
            // written zeros are not, whatever the compression.
            assert_eq!(
                allocated_bytes(&out),
                nonzero_cluster_bytes(&raw, cluster_bytes),
                "{compress} {cluster}"
            );
            let compressed = compressed_percent(&report);
            if compress == "none" {
                assert_eq!(compressed, 0.0, "{report}");
            } else {
                // Text and blips shrink. Clusters of pure noise (there are some
                // unless clusters are as large as the noise runs) cannot, and are
                // stored as they are.
                assert!(compressed > 0.0, "{compress} {cluster}: {report}");
                if cluster_bytes < 2 << 20 {
                    assert!(compressed < 100.0, "{compress} {cluster}: {report}");
                }
                let out_len = fs::metadata(&out).unwrap().len();
                let uncompressed = dir.path().join(format!("none-{cluster}.qcow2"));
                let plain_len = fs::metadata(uncompressed).unwrap().len();
                assert!(
                    out_len < plain_len,
                    "{compress} {cluster}: {out_len} vs {plain_len}"
                );
            }
        }
    }
}

fn parse_cluster(text: &str) -> usize {
    match text {
        "4K" => 4096,
        "64K" => 65536,
        "2M" => 2 << 20,
        other => panic!("no such cluster size in these tests: {other}"),
    }
}

#[test]
fn a_sparse_raw_larger_than_4_gib_converts_without_allocating_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    let len = 5 * 1024 * MIB + 3 * 512;
    let mut f = File::create(&raw).unwrap();
    f.set_len(len).unwrap();
    for (offset, bytes) in [
        (0, text(70_000)),
        (4 * 1024 * MIB - 1000, noise(5000, 3)), // straddles the 4 GiB mark
        (len - 1500, text(1500)),
    ] {
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(&bytes).unwrap();
    }
    drop(f);
    for compress in ["none", "zstd"] {
        let out = dir.path().join(format!("big-{compress}.qcow2"));
        convert(&raw, &out, &["--compress", compress]);
        assert_qemu_reads(&raw, &out, if compress == "zstd" { "zstd" } else { "zlib" });
        let out_len = fs::metadata(&out).unwrap().len();
        assert!(
            out_len < 2 * MIB,
            "only the data clusters are stored: {out_len}"
        );
    }
}

#[test]
fn stdin_input_gives_the_same_image_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let from_file = dir.path().join("file.qcow2");
    convert(&raw, &from_file, &["--compress", "zlib"]);
    let from_stdin = dir.path().join("stdin.qcow2");
    let out = run_ok(
        osforge()
            .args([
                "--quiet",
                "qcow2",
                "-",
                path(&from_stdin),
                "--compress",
                "zlib",
            ])
            .stdin(File::open(&raw).unwrap()),
    );
    assert!(out.stderr.is_empty());
    assert_qemu_reads(&raw, &from_stdin, "zlib");
    assert!(
        fs::read(&from_stdin).unwrap() == fs::read(&from_file).unwrap(),
        "stdin and file images are bit-identical"
    );
}

#[test]
fn a_pipe_is_read_as_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let out = dir.path().join("piped.qcow2");
    let mut child = osforge()
        .args(["--quiet", "qcow2", "-", path(&out), "--compress", "zstd"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    // Written in odd-sized pieces, so reads return partial clusters.
    let bytes = fs::read(&raw).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for piece in bytes.chunks(10_007) {
        stdin.write_all(piece).unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_qemu_reads(&raw, &out, "zstd");
}

#[test]
fn jobs_1_and_jobs_2_write_bit_identical_images() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    for compress in ["zlib", "zstd"] {
        let one = dir.path().join(format!("{compress}-1.qcow2"));
        let two = dir.path().join(format!("{compress}-2.qcow2"));
        convert(
            &raw,
            &one,
            &[
                "--compress",
                compress,
                "--cluster-size",
                "4K",
                "--jobs",
                "1",
            ],
        );
        convert(
            &raw,
            &two,
            &[
                "--compress",
                compress,
                "--cluster-size",
                "4K",
                "--jobs",
                "2",
            ],
        );
        assert!(
            fs::read(&one).unwrap() == fs::read(&two).unwrap(),
            "{compress}: --jobs 1 and --jobs 2 differ"
        );
    }
}

#[test]
fn json_output_is_one_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let out = dir.path().join("json.qcow2");
    let done = run_ok(osforge().args([
        "--json",
        "qcow2",
        path(&raw),
        path(&out),
        "--compress",
        "zstd",
    ]));
    let stdout = String::from_utf8(done.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["virtual_size_bytes"], 6 * MIB + 1024);
    assert_eq!(summary["input_bytes"], 6 * MIB + 777);
    assert_eq!(
        summary["file_size_bytes"],
        fs::metadata(&out).unwrap().len()
    );
    assert_eq!(summary["compression"], "zstd");
    assert_eq!(summary["cluster_size_bytes"], 65536);
    let allocated = summary["allocated_clusters"].as_u64().unwrap();
    let zero = summary["zero_clusters"].as_u64().unwrap();
    assert_eq!(allocated + zero, 97, "6 MiB + 1024 bytes is 97 clusters");
    assert!(
        zero >= 32,
        "the written zeros and the hole are not stored: {zero}"
    );
    assert!(summary["compressed_clusters"].as_u64().unwrap() > 0);
    assert_eq!(summary["path"], path(&out));
}

/// Runs osforge expecting failure; returns (exit code, the one stderr line).
fn fails(cmd: &mut Command) -> (i32, String) {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    (out.status.code().unwrap(), stderr.trim_end().to_string())
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

#[test]
fn a_missing_input_exits_2_naming_it_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.raw");
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let (code, line) =
        fails(osforge().args(["qcow2", path(&missing), path(&out_dir.join("x.qcow2"))]));
    assert_eq!(code, 2);
    assert!(
        line.contains("missing.raw") && line.contains("no such file"),
        "{line}"
    );
    assert_empty(&out_dir);
}

#[test]
fn an_unknown_compression_exits_2_listing_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let out = dir.path().join("x.qcow2");
    let (code, line) =
        fails(osforge().args(["qcow2", path(&raw), path(&out), "--compress", "lzma"]));
    assert_eq!(code, 2);
    assert!(
        line.contains("--compress") && line.contains("none, zlib or zstd"),
        "{line}"
    );
    assert!(!out.exists());
}

#[test]
fn cluster_sizes_that_are_not_powers_of_two_from_4k_to_2m_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let out = dir.path().join("x.qcow2");
    for bad in ["3000", "2K", "4M", "lots"] {
        let (code, line) =
            fails(osforge().args(["qcow2", path(&raw), path(&out), "--cluster-size", bad]));
        assert_eq!(code, 2, "{bad}");
        assert!(line.contains("--cluster-size"), "{bad}: {line}");
        assert!(!out.exists());
    }
}

#[test]
fn a_level_without_compression_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let out = dir.path().join("x.qcow2");
    let (code, line) = fails(osforge().args(["qcow2", path(&raw), path(&out), "--level", "5"]));
    assert_eq!(code, 2);
    assert!(line.contains("has no levels"), "{line}");
    assert!(!out.exists());
}

/// A tmpfs mounted for one test and unmounted when dropped, even on failure.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs", path(dir)]));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_output_directory_fails_with_one_line_and_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let raw = mixed_raw(dir.path());
    let mount = Tmpfs::mount(&dir.path().join("ro"), "ro,size=1m");
    let out = mount.0.join("x.qcow2");
    let (code, line) = fails(osforge().args(["qcow2", path(&raw), path(&out)]));
    assert_ne!(code, 0);
    assert!(
        line.contains("x.qcow2") && line.contains("Read-only file system"),
        "{line}"
    );
    assert_empty(&mount.0);
}

#[test]
fn a_full_output_filesystem_fails_with_one_line_and_leaves_no_partial_image() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("noise.raw");
    fs::write(&raw, noise(4 * MIB as usize, 4)).unwrap();
    let mount = Tmpfs::mount(&dir.path().join("full"), "size=1m");
    let out = mount.0.join("x.qcow2");
    let (code, line) =
        fails(osforge().args(["qcow2", path(&raw), path(&out), "--compress", "zstd"]));
    assert_eq!(code, 1);
    assert!(
        line.contains("x.qcow2") && line.contains("No space left on device"),
        "{line}"
    );
    assert_empty(&mount.0);
}
