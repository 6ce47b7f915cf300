//! `osforge oci` checked against the container tools: skopeo reads and copies
//! the archives, umoci and GNU tar unpack them to exactly the source tree, a
//! local registry takes them and gives them back, buildah's multi-layer
//! images flatten to what buildah mounts, archives are reproducible, and bad
//! or hostile input fails with exit 2 and leaves nothing behind.

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use support::registry::Registry;
use support::tree::*;
use support::*;

const MTIME_BASE: i64 = 1_600_000_000;
/// Later than every mtime of the trees: nothing is clamped.
const NO_CLAMP: &str = "4100000000";

/// The odd entries every writer is tested with, and what is special to tar
/// and to the gzip encoder.
fn build_tree(root: &Path) {
    build_odd_entries(root);
    // More than 255 bytes of path: a pax path record.
    let mut deep = root.to_path_buf();
    for level in 0..5 {
        deep = deep.join(format!("{level}-{}", "d".repeat(60)));
    }
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom"), b"bottom\n");
    // Across the gzip encoder's 1 MiB chunks.
    write(&root.join("1m-plus-1"), &noise((1 << 20) + 1, 1));
    write(&root.join("3m-noise"), &noise(3 << 20, 3));
    // Beyond ustar's 7 octal digits: pax uid and gid records.
    write(&root.join("big-ids"), b"ids past 2097151\n");
    lchown(&root.join("big-ids"), 3_000_000, 3_000_001);
    set_mtimes(root, |i, _| MTIME_BASE + (i as i64 * 7919) % 90_000_000);
}

fn odd_tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    shared_tree(&TREE, "oci-odd-tree", build_tree)
}

/// What an unpacked image must hold: the tree but its root (layers do not
/// store it) and its socket (tar cannot).
fn expected_snapshot(root: &Path) -> std::collections::BTreeMap<Vec<u8>, EntryInfo> {
    let mut snap = full_snapshot(root);
    snap.remove(&b""[..]);
    snap.remove(&b"socket"[..]);
    snap
}

fn assert_same_tree(expected_root: &Path, actual_root: &Path) {
    assert_holds(expected_snapshot(expected_root), actual_root);
}

fn assert_holds(expected: std::collections::BTreeMap<Vec<u8>, EntryInfo>, actual_root: &Path) {
    let mut actual = full_snapshot(actual_root);
    actual.remove(&b""[..]);
    let problems = diff_snapshots(&expected, &actual, &[]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `osforge --json oci create SRC OUT EXTRA...`; returns the summary.
fn create(src: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = run_ok(
        osforge()
            .args(["--json", "oci", "create"])
            .arg(src)
            .arg(out)
            .args(extra)
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    serde_json::from_slice(&output.stdout).expect("a JSON summary")
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A directory under the target's temp dir, emptied on the first call of
/// this run (fixtures shared by the tests live there).
fn fixture_dir(name: &str) -> PathBuf {
    let dir = tmp().join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

struct Archive {
    path: PathBuf,
    summary: serde_json::Value,
}

/// The odd tree's archive, made once: labels, a tag, arm64.
fn odd_archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let path = fixture_dir("oci-archive").join("odd.oci.tar");
        let summary = create(
            odd_tree(),
            &path,
            &[
                "--label",
                "org.opencontainers.image.title=odd tree",
                "--label",
                "com.example.empty=",
                "--tag",
                "v1",
                "--arch",
                "arm64",
                "--mtime",
                NO_CLAMP,
            ],
        );
        Archive { path, summary }
    })
}

fn skopeo(args: &[&str]) -> Output {
    require_tool("skopeo", "skopeo");
    run_ok(Command::new("skopeo").args(args))
}

/// The odd archive copied by skopeo into an `oci:` layout, tag `copied`.
fn copied_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let layout = fixture_dir("oci-layout").join("layout");
        skopeo(&[
            "copy",
            &format!("oci-archive:{}", odd_archive().path.display()),
            &format!("oci:{}:copied", layout.display()),
        ]);
        layout
    })
}

/// `osforge oci flatten IMAGE OUT` then GNU tar extracting OUT into `into`.
/// Members keep their layer's order, where a directory's members need not
/// follow it at once (buildah writes `dir/`, `dir-x`, `dir/y`): directory
/// times are set at the end, else tar sets them too early.
fn flatten_and_extract(image: &str, into: &Path) {
    let tar = into.with_extension("tar");
    run_ok(osforge().args(["oci", "flatten", image]).arg(&tar));
    fs::create_dir_all(into).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner"])
            .args(["--delay-directory-restore", "-xpf"])
            .arg(&tar)
            .arg("-C")
            .arg(into),
    );
}

#[test]
fn skopeo_reads_the_labels_architecture_and_digest_of_the_archive() {
    let Archive { path, summary } = odd_archive();
    let out = skopeo(&["inspect", &format!("oci-archive:{}", path.display())]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Architecture"], "arm64", "{info}");
    assert_eq!(info["Os"], "linux", "{info}");
    assert_eq!(info["Labels"]["org.opencontainers.image.title"], "odd tree");
    assert_eq!(info["Labels"]["com.example.empty"], "");
    assert_eq!(info["Digest"], summary["manifest_digest"], "{info}");
    assert_eq!(info["Layers"][0], summary["layer_digest"], "{info}");
    assert_eq!(info["Created"], "2099-12-03T16:53:20Z");
    // The tag names the image in the archive.
    skopeo(&["inspect", &format!("oci-archive:{}:v1", path.display())]);
    let entries = summary["entries"].as_u64().unwrap() as usize;
    assert_eq!(entries, expected_snapshot(odd_tree()).len());
}

#[test]
fn umoci_unpacks_the_copied_image_to_the_source_tree() {
    require_tool("umoci", "umoci");
    let bundle = temp_dir("oci-umoci-");
    let bundle_dir = bundle.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:copied", copied_layout().display()))
            .arg(&bundle_dir),
    );
    let rootfs = bundle_dir.join("rootfs");
    // umoci leaves out overlayfs' own xattrs (an overlay mount of the
    // bundle would obey them); the archive has them, as the flatten test shows.
    let mut expected = expected_snapshot(odd_tree());
    for entry in expected.values_mut() {
        entry
            .xattrs
            .retain(|(name, _)| !name.starts_with(b"trusted.overlay."));
    }
    assert_holds(expected, &rootfs);
    require_tool("getcap", "libcap2-bin");
    let getcap = run_ok(Command::new("getcap").arg(rootfs.join("ping")));
    assert!(
        text(&getcap).contains("cap_net_raw=ep"),
        "{}",
        text(&getcap)
    );
}

#[test]
fn flatten_of_the_copied_image_extracts_to_the_source_tree() {
    let out = temp_dir("oci-flat-");
    let root = out.path().join("root");
    flatten_and_extract(&format!("{}:copied", copied_layout().display()), &root);
    assert_same_tree(odd_tree(), &root);
}

/// A small tree made anew each call, so its mtimes on disk differ.
fn fresh_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    write(&root.join("etc/hostname"), b"node\n");
    write(&root.join("etc/conf.d/big"), &noise(2 << 20, 5));
    fs::hard_link(root.join("etc/hostname"), root.join("hostname-link")).unwrap();
    symlink("etc/hostname", root.join("symlink")).unwrap();
    xattr::set(root.join("etc/hostname"), "user.k", b"v").unwrap();
}

#[test]
fn the_digest_depends_only_on_the_tree_and_the_parameters() {
    let dir = temp_dir("oci-repro-");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fresh_tree(&a);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    fresh_tree(&b);
    set_mtimes(&b, |i, _| 1_700_000_000 + i as i64);
    let (out_a, out_b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let first = create(&a, &out_a, &["--mtime", "1500000000", "--jobs", "1"]);
    let second = run_ok(
        osforge()
            .args(["--json", "oci", "create"])
            .arg(&b)
            .arg(&out_b)
            .args(["--jobs", "3"])
            .env("SOURCE_DATE_EPOCH", "1500000000"),
    );
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    assert_eq!(first["created"], "2017-07-14T02:40:00Z");
    assert!(
        fs::read(&out_a).unwrap() == fs::read(&out_b).unwrap(),
        "same digest but different archives"
    );
    let labelled = create(
        &a,
        &dir.path().join("c.tar"),
        &["--mtime", "1500000000", "--label", "k=v"],
    );
    assert_ne!(first["manifest_digest"], labelled["manifest_digest"]);
    assert_eq!(first["layer_digest"], labelled["layer_digest"]);
}

#[test]
fn a_registry_takes_the_archive_and_gives_back_the_same_tree() {
    let registry = Registry::start();
    let Archive { path, summary } = odd_archive();
    let remote = format!("docker://127.0.0.1:{}/osforge/test:1", registry.port);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", path.display()),
        &remote,
    ]);
    let out = temp_dir("oci-pulled-");
    let layout = out.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:pulled", layout.display()),
    ]);
    let inspect = skopeo(&["inspect", "--tls-verify=false", &remote]);
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], summary["manifest_digest"], "{info}");
    let root = out.path().join("root");
    flatten_and_extract(&format!("{}:pulled", layout.display()), &root);
    assert_same_tree(odd_tree(), &root);
}

/// buildah on a vfs storage of this file's own, removed at the next run.
fn buildah(storage: &Path) -> Command {
    require_root();
    require_tool("buildah", "buildah");
    let mut cmd = Command::new("buildah");
    cmd.env("CONTAINERS_STORAGE_CONF", storage.join("storage.conf"));
    cmd
}

#[test]
fn flatten_applies_the_deletions_of_a_buildah_image() {
    let storage = fixture_dir("oci-buildah");
    fs::write(
        storage.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            storage.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = run_ok(buildah(&storage).args(args));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let base = run(&["from", "scratch"]);
    let m = PathBuf::from(run(&["mount", &base]));
    for dir in ["etc", "dir/sub", "dir-to-file", "setgid"] {
        fs::create_dir_all(m.join(dir)).unwrap();
    }
    for (file, content) in [
        ("etc/keep", "keep\n"),
        ("etc/delete-me", "deleted above\n"),
        ("dir/old", "replaced above\n"),
        ("dir/sub/x", "x\n"),
        ("dir-to-file/child", "child\n"),
        ("file-to-dir", "a file below\n"),
        ("hard-a", "two names\n"),
    ] {
        write(&m.join(file), content.as_bytes());
    }
    fs::hard_link(m.join("hard-a"), m.join("hard-b")).unwrap();
    symlink("etc/keep", m.join("link")).unwrap();
    xattr::set(m.join("hard-a"), "user.k", b"v").unwrap();
    xattr::set(
        m.join("hard-a"),
        "security.capability",
        &net_raw_capability(),
    )
    .unwrap();
    lchown(&m.join("etc/keep"), 1000, 1001);
    fs::set_permissions(m.join("setgid"), fs::Permissions::from_mode(0o2775)).unwrap();
    run(&["commit", "-q", &base, "localhost/osforge-oci-base"]);

    let top = run(&["from", "localhost/osforge-oci-base"]);
    let m = PathBuf::from(run(&["mount", &top]));
    fs::remove_file(m.join("etc/delete-me")).unwrap();
    fs::remove_dir_all(m.join("dir")).unwrap();
    fs::create_dir(m.join("dir")).unwrap();
    write(&m.join("dir/new"), b"new\n");
    fs::remove_file(m.join("file-to-dir")).unwrap();
    fs::create_dir(m.join("file-to-dir")).unwrap();
    write(&m.join("file-to-dir/inside"), b"inside\n");
    fs::remove_dir_all(m.join("dir-to-file")).unwrap();
    write(&m.join("dir-to-file"), b"now a file\n");
    write(&m.join("etc/added"), b"added\n");
    run(&["commit", "-q", &top, "localhost/osforge-oci-final"]);
    let layout = storage.join("layout");
    run(&[
        "push",
        "-q",
        "localhost/osforge-oci-final",
        &format!("oci:{}:final", layout.display()),
    ]);

    let root = storage.join("root");
    flatten_and_extract(&format!("{}:final", layout.display()), &root);
    let mut expected = full_snapshot(&m);
    expected.remove(&b""[..]);
    let mut actual = full_snapshot(&root);
    actual.remove(&b""[..]);
    let problems = diff_snapshots(&expected, &actual, &[]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(expected.contains_key(&b"dir/new"[..]) && !expected.contains_key(&b"dir/old"[..]));
    let _ = buildah(&storage).args(["rm", "--all"]).output();
}

#[test]
fn flatten_reads_plain_gzip_and_zstd_layers_with_opaque_directories() {
    use oci_layout::{Compression, member, tar_of, write_layout};
    use tar::EntryType as T;
    let dir = temp_dir("oci-synthetic-");
    let layout = dir.path().join("layout");
    let bottom = tar_of(&[
        member(b"d/", T::Directory, b"", b""),
        member(b"d/old", T::Regular, b"", b"old"),
        member(b"keep", T::Regular, b"", b"keep"),
        member(b"gone", T::Regular, b"", b"gone"),
        member(b"orig", T::Regular, b"", b"old content"),
        member(b"link-1", T::Link, b"orig", b""),
        member(b"link-2", T::Link, b"./orig", b""),
    ]);
    let middle = tar_of(&[
        member(b"./d/", T::Directory, b"", b""),
        member(b"./d/.wh..wh..opq", T::Regular, b"", b""),
        member(b"./d/new", T::Regular, b"", b"new"),
        member(b"./.wh.gone", T::Regular, b"", b""),
    ]);
    // A new file where the links' target was: they keep the old content.
    let top = tar_of(&[member(b"orig", T::Regular, b"", b"new content")]);
    write_layout(
        &layout,
        "t",
        &[
            (bottom, Compression::Gzip),
            (middle, Compression::Zstd),
            (top, Compression::None),
        ],
    );
    let root = dir.path().join("root");
    flatten_and_extract(&format!("{}:t", layout.display()), &root);
    let snap = full_snapshot(&root);
    let names: Vec<&str> = snap
        .keys()
        .map(|k| std::str::from_utf8(k).unwrap())
        .collect();
    assert_eq!(
        names,
        ["", "d", "d/new", "keep", "link-1", "link-2", "orig"]
    );
    assert_eq!(fs::read(root.join("orig")).unwrap(), b"new content");
    assert_eq!(fs::read(root.join("link-1")).unwrap(), b"old content");
    assert_eq!(
        snap[&b"link-2"[..]].hard_link_group,
        b"link-1",
        "the links stay one file"
    );
}

fn oci(args: &[&str]) -> Output {
    osforge()
        .arg("oci")
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

fn assert_bad_input(out: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{e:?} not in: {stderr}");
    }
}

#[test]
fn hostile_layers_are_refused_with_exit_2_before_anything_is_written() {
    use oci_layout::{Compression, member, tar_of, write_layout};
    use tar::EntryType as T;
    let cases: [(&str, Vec<Vec<u8>>, &str, &str); 4] = [
        (
            "dotdot",
            vec![member(b"../../etc/x", T::Regular, b"", b"x")],
            "../../etc/x",
            "'..' component",
        ),
        (
            "absolute",
            vec![member(b"/etc/x", T::Regular, b"", b"x")],
            "/etc/x",
            "absolute path",
        ),
        (
            "link-out",
            vec![
                member(b"x", T::Regular, b"", b"x"),
                member(b"y", T::Link, b"../../etc/shadow", b""),
            ],
            "'y'",
            "hard link target: '..' component",
        ),
        (
            "through-symlink",
            vec![
                member(b"s", T::Symlink, b"/etc", b""),
                member(b"s/passwd", T::Regular, b"", b"x"),
            ],
            "s/passwd",
            "below 's', which is not a directory",
        ),
    ];
    let dir = temp_dir("oci-hostile-");
    for (name, members, entry, reason) in cases {
        let layout = dir.path().join(name);
        let blobs = write_layout(&layout, "t", &[(tar_of(&members), Compression::Gzip)]);
        let out_tar = dir.path().join(format!("{name}.tar"));
        let image = format!("{}:t", layout.display());
        let out = oci(&["flatten", &image, out_tar.to_str().unwrap()]);
        let blob = blobs[0].display().to_string();
        assert_bad_input(&out, &[&blob, entry, reason]);
        assert!(
            !out_tar.exists(),
            "{name}: {} was written",
            out_tar.display()
        );
        // To stdout too, not one byte: the first pass refuses the layer.
        let out = oci(&["flatten", &image, "-"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty(), "{name}: wrote to stdout");
    }
    assert_eq!(leftover_temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn a_changed_blob_or_a_missing_tag_is_bad_input() {
    use oci_layout::{Compression, member, tar_of, write_layout};
    let dir = temp_dir("oci-tampered-");
    let layout = dir.path().join("layout");
    let data = noise(100_000, 9);
    let layer = tar_of(&[member(b"file", tar::EntryType::Regular, b"", &data)]);
    let blobs = write_layout(&layout, "t", &[(layer, Compression::Zstd)]);
    let out_tar = dir.path().join("out.tar");
    let image = format!("{}:t", layout.display());

    let out = oci(&["flatten", &format!("{}:nope", layout.display()), "x.tar"]);
    assert_bad_input(&out, &["no image tagged 'nope' (tags: t)"]);

    let mut blob = fs::read(&blobs[0]).unwrap();
    let middle = blob.len() / 2;
    blob[middle] ^= 0x55;
    fs::write(&blobs[0], &blob).unwrap();
    let out = oci(&["flatten", &image, out_tar.to_str().unwrap()]);
    assert_bad_input(
        &out,
        &[&blobs[0].display().to_string(), "hashes to sha256:"],
    );
    assert!(!out_tar.exists());
}

#[test]
fn bad_input_to_create_exits_2_and_leaves_nothing() {
    let dir = temp_dir("oci-bad-");
    let out = dir.path().join("out.oci.tar");
    let o = out.to_str().unwrap();
    let missing = dir.path().join("missing");
    let file = dir.path().join("a-file");
    write(&file, b"not a tree");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let s = src.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["create", missing.to_str().unwrap(), o],
            "missing: no such file or directory",
        ),
        (vec!["create", file.to_str().unwrap(), o], "not a directory"),
        (
            vec!["create", s, o, "--arch", "x86_64"],
            "unknown architecture 'x86_64' (expected one of amd64, arm64",
        ),
        (
            vec!["create", s, o, "--tag", "no spaces"],
            "tag 'no spaces'",
        ),
        (
            vec!["create", s, o, "--label", "novalue"],
            "expected KEY=VALUE",
        ),
    ];
    for (args, expected) in cases {
        assert_bad_input(&oci(&args), &[expected]);
        assert!(!out.exists());
    }
    assert_eq!(leftover_temporaries(dir.path()), Vec::<String>::new());
}

#[test]
fn an_interrupted_create_leaves_nothing_at_out() {
    let dir = temp_dir("oci-interrupt-");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    // Incompressible on one thread: seconds of work, time to interrupt it.
    write(&src.join("noise"), &noise(96 << 20, 4));
    let out = dir.path().join("out.oci.tar");
    let mut child = osforge()
        .args(["oci", "create", "--jobs", "1"])
        .arg(&src)
        .arg(&out)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while leftover_temporaries(dir.path()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "finished before the signal?");
    assert!(!out.exists());
    assert_eq!(leftover_temporaries(dir.path()), Vec::<String>::new());
}
