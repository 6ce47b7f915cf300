//! Helpers shared by the integration tests: running the binary, comparing trees
//! (with holes skipped, so a 5 GiB sparse file compares in milliseconds), and
//! reading `unsquashfs -lln` listings.
#![allow(dead_code)]

pub mod fuzz;
pub mod garage;
pub mod guest;
pub mod oci_layout;
pub mod ovmf_vars;
pub mod qemu;
pub mod registry;
pub mod tree;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn osforge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_osforge"))
}

/// `osforge build ARGS --profile PROFILE --output OUT --cache-dir CACHE`
/// with this repository's templates and no profile path from the caller's
/// environment.
pub fn build_command(args: &[&str], profile: &Path, out: &Path, cache: &Path) -> Command {
    let mut cmd = osforge();
    cmd.args(args)
        .arg("--profile")
        .arg(profile)
        .arg("--output")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("OSFORGE_PROFILE_PATH")
        .env(
            "OSFORGE_TEMPLATE_PATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates"),
        );
    cmd
}

/// Names the Debian package of a missing tool, as deps/setup would.
pub fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is missing: apt-get install {package} (deps/setup test installs it)"
    );
}

/// The tests mount images, create device nodes and set trusted.* xattrs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (they loop-mount images and create device nodes); run `sudo make test`"
    );
}

/// A fresh directory under cargo's per-target temp dir, removed on drop.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// The stage called `name` in a `build --json` report.
pub fn report_stage<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == name)
        .unwrap_or_else(|| panic!("no {name} stage in {report}"))
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Incompressible bytes, the same for the same seed (the library's xorshift64).
pub use osforge::formats::incompressible::noise;

/// Waits up to 20 s for a server just started to listen on `address:port`;
/// fails naming `what` and what `log` says.
pub fn wait_listening(
    address: std::net::Ipv4Addr,
    port: u16,
    what: &str,
    log: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect((address, port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {address}:{port}: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A loopback port free right now, for a server started later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The stage cache the build tests share (build_iso's), so that base's
/// bootstrap runs once for all of them.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osforge-cache")
}

/// `osforge --json build --type KIND --profile PROFILE --var ...` from the
/// repository, on the shared cache; the report, parsed.
pub fn build_report(profile: &Path, kind: &str, out: &Path, vars: &[String]) -> serde_json::Value {
    let mut cmd = osforge();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "build", "--type", kind, "--profile"])
        .arg(profile)
        .arg("--output")
        .arg(out)
        .arg("--cache-dir")
        .arg(shared_cache_dir());
    for v in vars {
        cmd.arg("--var").arg(v);
    }
    let output = run_ok(&mut cmd);
    serde_json::from_slice(&output.stdout).expect("--json report")
}

/// `osforge --json build --type KIND --profile PROFILE` from the repository,
/// on the shared cache with a fixed SOURCE_DATE_EPOCH, `extra` arguments and
/// `env` added; its output, whatever the exit.
pub fn try_build(
    profile: &Path,
    kind: &str,
    out: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Output {
    osforge()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--json", "build", "--type", kind, "--profile"])
        .arg(profile)
        .arg("--output")
        .arg(out)
        .arg("--cache-dir")
        .arg(shared_cache_dir())
        .args(["--source-date-epoch", "1700000000"])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("running osforge")
}

/// A Debian root made by mmdebstrap in unshare mode (so the tarball records
/// the real owners) and unpacked beside it: `<target tmp>/<name>/{rootfs.tar,root}`.
/// Rebuilt on every call; callers keep it in a OnceLock.
pub fn mmdebstrap_root(
    name: &str,
    variant: &str,
    include: &str,
) -> Result<(PathBuf, PathBuf), String> {
    require_root();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tar = dir.join("rootfs.tar");
    let out = Command::new("mmdebstrap")
        .args([
            "--mode=unshare",
            &format!("--variant={variant}"),
            &format!("--include={include}"),
            "bookworm",
        ])
        .arg(&tar)
        .output()
        .map_err(|e| format!("cannot run mmdebstrap: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mmdebstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let root = dir.join("root");
    std::fs::create_dir(&root).map_err(|e| e.to_string())?;
    run_ok(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(&tar)
            .arg("-C")
            .arg(&root),
    );
    Ok((tar, root))
}

/// A Debian tarball made by mmdebstrap (unshare mode) once and kept between
/// runs at `<target tmp>/<name>/rootfs.tar`: for fixtures whose exact package
/// versions do not matter, so later runs skip the download. Written under a
/// temporary name and renamed, so an interrupted run leaves no half tarball.
pub fn mmdebstrap_tar_cached(name: &str, variant: &str) -> Result<PathBuf, String> {
    mmdebstrap_tar_cached_with(name, variant, &[])
}

/// A small Debian tree (minbase with python3, and files where a kernel and
/// initrd would be) as a tarball, made once and shared by the tests that
/// need a cheap `source: tarball:` (ansible, interrupt, secrets).
pub fn small_debian_tar() -> Result<PathBuf, String> {
    // Tests of one binary start at once; the tree is made by one of them.
    static TREE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _made = TREE.lock().unwrap_or_else(|e| e.into_inner());
    mmdebstrap_tar_cached_with(
        "ansible-base",
        "minbase",
        &[
            "--include=python3",
            r#"--customize-hook=for f in vmlinuz initrd.img; do echo "not a kernel (tests/ansible.rs)" > "$1/boot/$f-0.0.0-test"; done"#,
        ],
    )
}

/// The root filesystem of an oci-archive (an OCI layout in a tar) as one
/// tar, through `osforge oci flatten`; `work` holds the layout.
pub fn flatten_oci_archive(archive: &Path, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&layout),
    );
    let flat = work.join("flat.tar");
    run_ok(osforge().args(["oci", "flatten"]).arg(&layout).arg(&flat));
    flat
}

/// [`mmdebstrap_tar_cached`] with more mmdebstrap options (`--include=...`,
/// hooks); the name must change when they do.
pub fn mmdebstrap_tar_cached_with(
    name: &str,
    variant: &str,
    options: &[&str],
) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let tar = dir.join("rootfs.tar");
    if tar.is_file() {
        return Ok(tar);
    }
    require_root();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let partial = dir.join("rootfs.tar.partial");
    let out = Command::new("mmdebstrap")
        .args([
            "--mode=unshare",
            "--format=tar",
            &format!("--variant={variant}"),
        ])
        .args(options)
        .arg("bookworm")
        .arg(&partial)
        .output()
        .map_err(|e| format!("cannot run mmdebstrap (apt-get install mmdebstrap uidmap): {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(format!(
            "mmdebstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&partial, &tar).map_err(|e| e.to_string())?;
    Ok(tar)
}

/// Unmounts on drop, so a failed assertion does not leave mounts behind.
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn loop_ro(image: &Path, fstype: &str, at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", fstype, "-o", "loop,ro"])
                .arg(image)
                .arg(at),
        );
        Mount(at.to_path_buf())
    }
    pub fn tmpfs(at: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(at),
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub rdev: (u32, u32),
    pub link_target: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub content: u128,
    /// The first path (sorted) sharing this inode: equal for hard links.
    pub hard_link_group: Vec<u8>,
}

pub struct SnapshotOptions {
    pub xattrs: bool,
    pub contents: bool,
}

/// Every entry under `root` (the root itself as the empty path), by path.
pub fn snapshot(root: &Path, opts: &SnapshotOptions) -> BTreeMap<Vec<u8>, EntryInfo> {
    let mut out = BTreeMap::new();
    let mut first_by_inode: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(OsStr::from_bytes(&rel))
        };
        let md =
            std::fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            '-'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        if kind == 'd' {
            let mut names: Vec<Vec<u8>> = std::fs::read_dir(&full)
                .unwrap()
                .map(|e| e.unwrap().file_name().as_bytes().to_vec())
                .collect();
            names.sort();
            for n in names.into_iter().rev() {
                stack.push(if rel.is_empty() {
                    n
                } else {
                    [&rel[..], b"/", &n].concat()
                });
            }
        }
        let group = if kind != 'd' && md.nlink() > 1 {
            first_by_inode
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        } else {
            rel.clone()
        };
        let mut xattrs = Vec::new();
        if opts.xattrs {
            if let Ok(names) = xattr::list(&full) {
                for n in names {
                    if let Ok(Some(v)) = xattr::get(&full, &n) {
                        xattrs.push((n.as_bytes().to_vec(), v));
                    }
                }
            }
            xattrs.sort();
        }
        let info = EntryInfo {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            size: if kind == 'd' { 0 } else { md.len() },
            rdev: if matches!(kind, 'c' | 'b') {
                (libc::major(md.rdev()), libc::minor(md.rdev()))
            } else {
                (0, 0)
            },
            link_target: if kind == 'l' {
                std::fs::read_link(&full)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else {
                Vec::new()
            },
            xattrs,
            content: if kind == '-' && opts.contents {
                digest(&full)
            } else {
                0
            },
            hard_link_group: group,
        };
        out.insert(rel, info);
    }
    out
}

/// Everything of every entry: attributes, xattrs and contents.
pub fn full_snapshot(root: &Path) -> BTreeMap<Vec<u8>, EntryInfo> {
    snapshot(
        root,
        &SnapshotOptions {
            xattrs: true,
            contents: true,
        },
    )
}

/// A digest of a file's bytes that skips holes and zero chunks without hashing
/// them, so equal contents give equal digests whatever the hole layout.
pub fn digest(path: &Path) -> u128 {
    const CHUNK: u64 = 64 * 1024;
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = f.metadata().unwrap().len();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&len.to_le_bytes());
    let mut buf = vec![0u8; CHUNK as usize];
    let mut pos = 0u64;
    while pos < len {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: the rest is a hole
        }
        let chunk_start = (data as u64 / CHUNK) * CHUNK;
        let n = CHUNK.min(len - chunk_start) as usize;
        f.read_exact_at(&mut buf[..n], chunk_start).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            h.update(&chunk_start.to_le_bytes());
            h.update(&buf[..n]);
        }
        pos = chunk_start + n as u64;
    }
    h.digest128()
}

/// Lists the differences between two snapshots, ignoring fields `ignore` names.
pub fn diff_snapshots(
    expected: &BTreeMap<Vec<u8>, EntryInfo>,
    actual: &BTreeMap<Vec<u8>, EntryInfo>,
    ignore: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, e) in expected {
        let shown = String::from_utf8_lossy(path);
        let Some(a) = actual.get(path) else {
            problems.push(format!("missing: {shown:?}"));
            continue;
        };
        let mut check = |field: &str, same: bool, detail: String| {
            if !same && !ignore.contains(&field) {
                problems.push(format!("{shown:?}: {field} differs: {detail}"));
            }
        };
        check(
            "kind",
            e.kind == a.kind,
            format!("{} vs {}", e.kind, a.kind),
        );
        check(
            "mode",
            e.mode == a.mode,
            format!("{:o} vs {:o}", e.mode, a.mode),
        );
        check(
            "owner",
            (e.uid, e.gid) == (a.uid, a.gid),
            format!("{}:{} vs {}:{}", e.uid, e.gid, a.uid, a.gid),
        );
        check(
            "mtime",
            e.mtime == a.mtime,
            format!("{} vs {}", e.mtime, a.mtime),
        );
        check(
            "size",
            e.size == a.size,
            format!("{} vs {}", e.size, a.size),
        );
        check(
            "rdev",
            e.rdev == a.rdev,
            format!("{:?} vs {:?}", e.rdev, a.rdev),
        );
        check(
            "link_target",
            e.link_target == a.link_target,
            format!("{:?} vs {:?}", e.link_target, a.link_target),
        );
        check(
            "xattrs",
            e.xattrs == a.xattrs,
            format!("{:?} vs {:?}", e.xattrs, a.xattrs),
        );
        check("content", e.content == a.content, "bytes differ".into());
        check(
            "hard_links",
            e.hard_link_group == a.hard_link_group,
            format!("{:?} vs {:?}", e.hard_link_group, a.hard_link_group),
        );
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            problems.push(format!("unexpected: {:?}", String::from_utf8_lossy(path)));
        }
    }
    problems
}

/// One line of `unsquashfs -lln`, with the `squashfs-root` prefix removed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub path: Vec<u8>,
    pub mode: String,
    pub owner: String,
    /// Bytes, or "major,minor" for devices; empty for directories.
    pub size: String,
    pub minute: String,
    pub link_target: Vec<u8>,
}

fn is_entry_start(line: &[u8]) -> bool {
    line.len() > 12
        && b"-dlcbps".contains(&line[0])
        && line[1..10].iter().all(|c| b"rwxsStT-".contains(c))
        && line[10] == b' '
        && line[11].is_ascii_digit()
}

/// Parses unsquashfs's long numeric listing. Names may contain newlines: a line
/// that does not start like an entry continues the previous name.
pub fn parse_listing(text: &[u8]) -> Vec<Listed> {
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        if is_entry_start(line) {
            raw.push(line.to_vec());
        } else if let Some(last) = raw.last_mut() {
            last.push(b'\n');
            last.extend_from_slice(line);
        }
    }
    // the text ends with a newline: drop the empty continuation it made
    if let Some(last) = raw.last_mut()
        && last.ends_with(b"\n")
    {
        last.pop();
    }
    raw.into_iter()
        .map(|line| {
            let text = String::from_utf8_lossy(
                &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())],
            )
            .into_owned();
            let mode = text[..10].to_string();
            let mut rest = text[11..].split_whitespace();
            let owner = rest.next().unwrap().to_string();
            let mut size = rest.next().unwrap().to_string();
            if size.ends_with(',') {
                size.push_str(rest.next().unwrap());
            }
            let date = rest.next().unwrap();
            let time = rest.next().unwrap();
            let minute = format!("{date} {time}");
            let marker = format!("{minute} ");
            let path_start = text.find(&marker).unwrap() + marker.len();
            let mut path = line[path_start..].to_vec();
            let mut link_target = Vec::new();
            if mode.starts_with('l') {
                let arrow = path
                    .windows(4)
                    .rposition(|w| w == b" -> ")
                    .expect("symlink arrow");
                link_target = path[arrow + 4..].to_vec();
                path.truncate(arrow);
            }
            let path = path
                .strip_prefix(b"squashfs-root")
                .unwrap_or(&path)
                .to_vec();
            let path = path.strip_prefix(b"/").unwrap_or(&path).to_vec();
            if mode.starts_with('d') {
                size.clear();
            }
            Listed {
                path,
                mode,
                owner,
                size,
                minute,
                link_target,
            }
        })
        .collect()
}

/// What `unsquashfs -lln` should print for a snapshot (mtimes in UTC).
pub fn expected_listing(snapshot: &BTreeMap<Vec<u8>, EntryInfo>) -> Vec<Listed> {
    snapshot
        .iter()
        .map(|(path, e)| Listed {
            path: path.clone(),
            mode: mode_string(e.kind, e.mode),
            owner: format!("{}/{}", e.uid, e.gid),
            size: match e.kind {
                'd' => String::new(),
                'c' | 'b' => {
                    // unsquashfs 4.5 prints the on-disk word as (word >> 8, word & 0xff),
                    // which differs from major,minor once the minor exceeds 255.
                    let (major, minor) = e.rdev;
                    let word = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
                    format!("{},{}", word >> 8, word & 0xff)
                }
                _ => e.size.to_string(),
            },
            minute: utc_minute(e.mtime),
            link_target: e.link_target.clone(),
        })
        .collect()
}

pub fn mode_string(kind: char, mode: u32) -> String {
    let bit = |m: u32, c: char| if mode & m != 0 { c } else { '-' };
    let special = |x: bool, s: bool, lower: char, upper: char| match (x, s) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    let mut s = String::new();
    s.push(kind);
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'));
    s
}

/// `YYYY-MM-DD HH:MM` in UTC (Howard Hinnant's civil-from-days).
pub fn utc_minute(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Files in `dir` whose names look like osforge temporaries.
pub fn leftover_temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("osforge-tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn utc_minutes_match_known_dates() {
    assert_eq!(utc_minute(0), "1970-01-01 00:00");
    assert_eq!(utc_minute(1_700_000_000), "2023-11-14 22:13");
    assert_eq!(utc_minute(4_000_000_000), "2096-10-02 07:06");
}

/// `make()`'s result, made by the first test that asks; a panic is kept and
/// reported to every test that asks, not retried by each.
pub fn once<T>(
    cell: &'static std::sync::OnceLock<Result<T, String>>,
    what: &str,
    make: impl FnOnce() -> T,
) -> &'static T {
    let result = cell.get_or_init(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match result {
        Ok(built) => built,
        Err(message) => panic!("the shared {what} failed: {message}"),
    }
}
