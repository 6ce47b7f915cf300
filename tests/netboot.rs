//! `osforge build --type netboot`: base's netboot set is built for real, served
//! by an HTTP server the test starts on localhost, and booted in QEMU the way
//! the set's iPXE script boots it (its kernel and initrd, its command line):
//! live-boot fetches the squashfs over HTTP, cloud-init its NoCloud seed, and
//! the host prints the marker. The set's squashfs is the ISO's squashfs
//! stage, byte for byte.
//!
//! The same set, published with `--publish s3://` to a Garage bucket served
//! by Garage's web endpoint, boots from the bucket alone: squashfs and seed.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::garage::{GUEST_BUCKET, Garage};
use support::qemu::{has_complete_line, marker_field};
use support::*;

const MARKER: &str = "OSFORGE-NETBOOT-OK";
const HOST: &str = "netboot-1";
const CMDLINE_EXTRA: &str = "osforge.netboot_test=1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The set's base URL as QEMU's user-mode network shows the host to the guest.
fn guest_url(port: u16) -> String {
    format!("http://10.0.2.2:{port}/")
}

/// `python3 -m http.server` serving `dir` on a loopback port, killed on drop
/// (so it is held by the test that boots, never by a static); its request
/// log shows what the guest fetched.
struct HttpServer {
    child: Child,
    log: PathBuf,
}

impl HttpServer {
    fn start(dir: &Path, port: u16, log: PathBuf) -> HttpServer {
        require_tool("python3", "python3");
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start python3 -m http.server");
        wait_listening(
            std::net::Ipv4Addr::LOCALHOST,
            port,
            "python3 -m http.server",
            || fs::read_to_string(&log).unwrap_or_default(),
        );
        HttpServer { child, log }
    }

    fn requests(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// base's netboot set for `HOST`, written to `out` for `base_url`; with
/// `garage`, also published to its bucket under `netboot/`.
fn build_set(out: &Path, base_url: &str, garage: Option<&Garage>) -> serde_json::Value {
    let runcmd = format!(
        r#"runcmd=["echo {MARKER} hostname=$(hostname) cmdline=$(tr ' ' , < /proc/cmdline) > /dev/ttyS0"]"#
    );
    let mut cmd = osforge();
    cmd.current_dir(repo())
        .args(["--json", "build", "--profile", "base", "--type", "netboot"])
        .args(["--name", HOST, "--netboot-url", base_url, "--output"])
        .arg(out)
        .arg("--cache-dir")
        .arg(shared_cache_dir())
        .args(["--var", &format!("hostname={HOST}"), "--var", &runcmd])
        .args(["--cmdline-append", CMDLINE_EXTRA]);
    if let Some(garage) = garage {
        garage.s3_flags(&mut cmd);
        cmd.args(["--publish", &format!("s3://{}/netboot", garage.bucket)]);
    }
    let output = run_ok(&mut cmd);
    serde_json::from_slice(&output.stdout).expect("build --json prints a report")
}

/// The iPXE script's kernel and initrd lines, checked against the set: a
/// `#!ipxe` script whose kernel, initrd and `boot` lines name files of
/// the set under `base_url`. Returns the kernel's file, the initrd's and
/// the kernel command line (what follows the kernel's URL).
fn read_ipxe(script: &Path, set: &Path, base_url: &str) -> (PathBuf, PathBuf, String) {
    let text = fs::read_to_string(script).unwrap();
    assert!(text.starts_with("#!ipxe\n"), "{text}");
    let commands: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands.len(), 3, "kernel, initrd, boot: {text}");
    assert_eq!(commands[2], "boot", "{text}");
    let file_of = |url: &str| -> PathBuf {
        let name = url
            .strip_prefix(base_url)
            .unwrap_or_else(|| panic!("{url} is not under {base_url}"));
        let path = set.join(name);
        assert!(path.is_file(), "the script names {url}, not in the set");
        path
    };
    let words: Vec<&str> = commands[0].split(' ').collect();
    assert_eq!(&words[..3], ["kernel", "--name", "vmlinuz"], "{text}");
    let kernel = file_of(words[3]);
    let cmdline = words[4..].join(" ");
    assert!(
        cmdline.starts_with("initrd=initrd.img "),
        "UEFI's initrd= names the initrd: {cmdline}"
    );
    let words: Vec<&str> = commands[1].split(' ').collect();
    assert_eq!(words.len(), 4, "{text}");
    assert_eq!(&words[..3], ["initrd", "--name", "initrd.img"], "{text}");
    let initrd = file_of(words[3]);
    // What Linux fetches is in the set too.
    let param = |key: &str| {
        cmdline
            .split(' ')
            .find_map(|p| p.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {cmdline}"))
            .to_string()
    };
    file_of(&param("fetch="));
    let seed = param("ds=nocloud-net;s=");
    let seed = seed
        .strip_prefix(base_url)
        .expect("the seed is under the base");
    for file in ["user-data", "meta-data"] {
        assert!(set.join(seed).join(file).is_file(), "{seed}{file}");
    }
    (kernel, initrd, cmdline)
}

/// Boots the set's kernel and initrd with the iPXE script's command line,
/// as iPXE would, until the marker; the set is served at `base_url`.
fn boot_set(script: &Path, set: &Path, base_url: &str, work: &Path) -> Result<String, String> {
    let (kernel, initrd, append) = read_ipxe(script, set, base_url);
    let mut config = support::qemu::VmConfig::new(&kernel, support::qemu::ImageFormat::Raw, work);
    // The squashfs lands in RAM (ramfs) beside the running system.
    config.memory_mib = 2048;
    config.direct_kernel = Some(osforge::vm::DirectKernel {
        kernel,
        initrd,
        append,
    });
    support::qemu::run_until(&config, "netboot", work, Duration::from_secs(900), |log| {
        has_complete_line(log, MARKER)
    })
}

struct Built {
    out: tempfile::TempDir,
    set: PathBuf,
    report: serde_json::Value,
    /// The port the set's URLs name; its server runs during the boot.
    port: u16,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    once(&BUILT, "netboot build", || {
        require_root();
        let out = temp_dir("netboot-");
        let set = out.path().join("set");
        fs::create_dir(&set).unwrap();
        let port = free_port();
        let report = build_set(&set, &guest_url(port), None);
        Built {
            set,
            report,
            port,
            out,
        }
    })
}

#[test]
fn the_netboot_set_boots_over_http_to_cloud_init_with_its_host_name_and_command_line() {
    let b = built();
    let base = guest_url(b.port);
    let server = HttpServer::start(&b.set, b.port, b.out.path().join("http.log"));
    let work = temp_dir("netboot-boot-");
    let started = Instant::now();
    let log = boot_set(
        &b.set.join(format!("{HOST}.ipxe")),
        &b.set,
        &base,
        work.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "netboot: marker after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        marker_field(&log, MARKER, "hostname").as_deref(),
        Some(HOST)
    );
    let cmdline = marker_field(&log, MARKER, "cmdline").unwrap_or_default();
    for param in [
        CMDLINE_EXTRA,
        "boot=live",
        &format!("fetch={base}{HOST}.squashfs"),
    ] {
        assert!(cmdline.split(',').any(|p| p == param), "{param}: {cmdline}");
    }
    // Over HTTP, from this server: the squashfs (live-boot) and the seed (cloud-init).
    let requests = server.requests();
    for path in [
        format!("GET /{HOST}.squashfs "),
        format!("GET /{HOST}.seed/user-data "),
        format!("GET /{HOST}.seed/meta-data "),
    ] {
        assert!(requests.contains(&path), "{path}: {requests}");
    }
    assert!(
        !requests.contains(" 404 "),
        "the seed has every file cloud-init asks for: {requests}"
    );
    // The host's network config reached the kernel command line.
    assert!(
        cmdline.split(',').any(|p| p.starts_with("network-config=")),
        "{cmdline}"
    );
}

#[test]
fn the_set_has_checksums_and_manifests_and_the_iso_s_squashfs() {
    let b = built();
    let artifacts = b.report["artifacts"].as_array().unwrap();
    let names: Vec<&str> = artifacts
        .iter()
        .map(|a| {
            assert_eq!(a["type"], "netboot", "{a}");
            Path::new(a["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        })
        .collect();
    let expected = ["vmlinuz", "initrd.img", "squashfs", "ipxe", "grub.cfg"]
        .map(|ext| format!("{HOST}.{ext}"));
    let mut sorted = names.clone();
    sorted.sort();
    let mut want: Vec<String> = expected.to_vec();
    want.sort();
    assert_eq!(sorted, want);
    for a in artifacts {
        let path = PathBuf::from(a["path"].as_str().unwrap());
        let name = path.file_name().unwrap().to_str().unwrap();
        let sha = fs::read_to_string(path.with_file_name(format!("{name}.sha256"))).unwrap();
        assert_eq!(sha, format!("{}  {name}\n", a["sha256"].as_str().unwrap()));
        assert!(
            path.with_file_name(format!("{name}.manifest.json"))
                .is_file()
        );
        assert!(path.with_file_name(format!("{name}.spdx.json")).is_file());
    }
    // The same squashfs stage as the live ISO's.
    let key = report_stage(&b.report, "squashfs")["key"].as_str().unwrap();
    let staged = shared_cache_dir()
        .join("squashfs")
        .join(key)
        .join("filesystem.squashfs");
    assert_eq!(
        digest(&staged),
        digest(&b.set.join(format!("{HOST}.squashfs")))
    );
    let grub = fs::read_to_string(b.set.join(format!("{HOST}.grub.cfg"))).unwrap();
    let device = format!(
        "(http,{})",
        guest_url(b.port)
            .trim_start_matches("http://")
            .trim_end_matches('/')
    );
    assert!(
        grub.contains(&format!("linux {device}/{HOST}.vmlinuz ")),
        "{grub}"
    );
    assert!(
        grub.contains(&format!("initrd {device}/{HOST}.initrd.img")),
        "{grub}"
    );
    // No staging folders or temporaries are left behind.
    assert_eq!(leftover_temporaries(&b.set), Vec::<String>::new());
}

#[test]
fn a_netboot_build_without_a_usable_url_fails_before_building_with_one_line() {
    let out = temp_dir("netboot-bad-");
    for (args, needle) in [
        (vec![], "--netboot-url"),
        (
            vec!["--netboot-url", "https://server/boot/"],
            "--netboot-url https://server/boot/: expected http://",
        ),
        (
            vec!["--netboot-url", "http://user:secret@server/"],
            "credentials",
        ),
    ] {
        let output = osforge()
            .current_dir(repo())
            .args(["build", "-p", "base", "-t", "netboot", "--output"])
            .arg(out.path().join("never"))
            .arg("--cache-dir")
            .arg(out.path().join("cache"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("secret"), "{stderr}");
        assert!(!out.path().join("never").exists());
    }
}

/// The network config a host's iPXE script passes (`network-config=`,
/// gzip and base64), decoded with gzip itself.
fn network_config_of(script: &Path) -> String {
    let text = fs::read_to_string(script).unwrap();
    let payload = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("network-config="))
        .unwrap_or_else(|| panic!("no network-config= in {text}"));
    let gz = osforge::util::base64::decode(payload).expect("base64");
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_hosts_file_gives_one_shared_kernel_and_squashfs_and_each_host_its_script_and_seed() {
    built(); // the stages are in the cache first
    let work = temp_dir("netboot-hosts-");
    let hosts = work.path().join("hosts.yaml");
    fs::write(
        &hosts,
        "hosts:\n  - name: node-1\n    vars: {ipv4_address: 10.0.2.21/24, ipv4_gateway: 10.0.2.2}\n  - name: node-2\n",
    )
    .unwrap();
    let out = work.path().join("set");
    let build = |runcmd: &str| {
        run_ok(
            osforge()
                .current_dir(repo())
                .args(["--quiet", "build", "-p", "base", "-t", "netboot", "--hosts"])
                .arg(&hosts)
                .args(["--netboot-url", "http://boot.example/nb/", "--output"])
                .arg(&out)
                .arg("--cache-dir")
                .arg(shared_cache_dir())
                .args(["--var", &format!(r#"runcmd=["{runcmd}"]"#)]),
        )
    };
    build("echo first");
    // Again into the same folder: the seed folders are replaced, not refused.
    build("echo second");
    for shared in ["base.vmlinuz", "base.initrd.img", "base.squashfs"] {
        assert!(out.join(shared).is_file(), "{shared}");
    }
    for host in ["node-1", "node-2"] {
        let script = out.join(format!("{host}.ipxe"));
        let text = fs::read_to_string(&script).unwrap();
        assert!(
            text.contains(&format!("s=http://boot.example/nb/{host}.seed/")),
            "{text}"
        );
        assert!(
            text.contains("fetch=http://boot.example/nb/base.squashfs"),
            "{text}"
        );
        let meta = fs::read_to_string(out.join(format!("{host}.seed/meta-data"))).unwrap();
        assert!(meta.contains(host), "{meta}");
        let user = fs::read_to_string(out.join(format!("{host}.seed/user-data"))).unwrap();
        assert!(
            user.contains("echo second") && !user.contains("echo first"),
            "{user}"
        );
    }
    let static_host = network_config_of(&out.join("node-1.ipxe"));
    assert!(static_host.contains("10.0.2.21/24"), "{static_host}");
    let dhcp_host = network_config_of(&out.join("node-2.ipxe"));
    assert!(dhcp_host.contains("dhcp4: true"), "{dhcp_host}");
    assert_eq!(leftover_temporaries(&out), Vec::<String>::new());
}

/// The set published to a Garage bucket boots from it: live-boot fetches the
/// squashfs and cloud-init the seed from Garage's web endpoint (public read),
/// with no other server running.
#[test]
fn the_netboot_set_published_to_garage_boots_from_the_bucket() {
    require_root();
    let garage = Garage::single(GUEST_BUCKET);
    let web_port = garage.serve_website();
    let base = format!("http://10.0.2.2:{web_port}/netboot/");
    let out = temp_dir("netboot-s3-");
    let report = build_set(out.path(), &base, Some(&garage));
    let published = report["published"].as_array().cloned().unwrap_or_default();
    for name in [
        format!("{HOST}.squashfs"),
        format!("{HOST}.ipxe"),
        format!("{HOST}.seed/user-data"),
    ] {
        assert!(
            published
                .iter()
                .any(|p| p["url"].as_str().is_some_and(|u| u.ends_with(&name))),
            "{name} not published: {report}"
        );
    }
    // What the guest will ask for, asked of the web endpoint as the guest asks.
    let served = out.path().join("served.squashfs");
    run_ok(
        Command::new("curl")
            .args(["-sSf", "-H", "Host: 10.0.2.2", "-o"])
            .arg(&served)
            .arg(format!(
                "http://127.0.0.1:{web_port}/netboot/{HOST}.squashfs"
            )),
    );
    assert_eq!(
        digest(&served),
        digest(&out.path().join(format!("{HOST}.squashfs"))),
        "the bucket serves another squashfs"
    );
    fs::remove_file(&served).unwrap();

    let work = temp_dir("netboot-s3-boot-");
    let started = Instant::now();
    let log = boot_set(
        &out.path().join(format!("{HOST}.ipxe")),
        out.path(),
        &base,
        work.path(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "netboot from Garage: marker after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        marker_field(&log, MARKER, "hostname").as_deref(),
        Some(HOST)
    );
    let cmdline = marker_field(&log, MARKER, "cmdline").unwrap_or_default();
    assert!(
        cmdline
            .split(',')
            .any(|p| p == format!("fetch={base}{HOST}.squashfs")),
        "{cmdline}"
    );
}
