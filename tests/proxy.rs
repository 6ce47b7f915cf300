//! Builds behind a proxy, with a real one: tinyproxy started by the test on
//! localhost, with basic authentication, so a request that does not go
//! through it with the credentials fails. A cold build of a small profile
//! with `--proxy http://user:password@…` must bootstrap through it
//! (mmdebstrap's apt), install its child layer's package through it (apt in
//! the working container), pull its container-image source through it
//! (skopeo, from a registry on this machine's own address), leave no proxy
//! setting in the image, and never show the
//! password: not on the console, not in the `--json` report, not in any file
//! of the cache or the output.

mod support;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use support::registry::Registry;
use support::{free_port, osforge, require_root, run_ok, temp_dir, wait_listening};

const USER: &str = "osforge";
/// Unlikely to occur in any file by chance.
const PASSWORD: &str = "pr0xy-s3cret-7f3a9c";

/// tinyproxy in the foreground on a free loopback port, killed on drop.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start() -> Proxy {
        assert!(
            Path::new("/usr/bin/tinyproxy").exists(),
            "tinyproxy is missing: apt-get install tinyproxy (make test installs it)"
        );
        let dir = temp_dir("tinyproxy-");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let config = dir.path().join("tinyproxy.conf");
        fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients 200\nLogLevel Info\n\
                 LogFile \"{}\"\nBasicAuth {USER} {PASSWORD}\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config)
            .stdout(fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("cannot start tinyproxy");
        wait_listening(std::net::Ipv4Addr::LOCALHOST, port, "tinyproxy", || {
            fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
        });
        Proxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{USER}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `root` whose bytes contain `needle` (symlinks not followed).
fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && contains(&path, needle) {
                found.push(path);
            }
        }
    }
    found
}

/// Streams the file, so GiB-sized tarballs are searched in constant memory.
fn contains(path: &Path, needle: &[u8]) -> bool {
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        if carry.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        let keep = carry.len().saturating_sub(needle.len());
        carry.drain(..keep);
    }
}

/// `osforge --json build --type oci` of `profile` with `--proxy`.
fn build_oci_through(proxy: &Proxy, profile: &Path, out_dir: &Path, cache: &Path) -> Output {
    osforge()
        .args(["--json", "build", "--type", "oci", "--profile"])
        .arg(profile)
        .arg("--output")
        .arg(out_dir)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--proxy")
        .arg(proxy.url())
        // The loopback default of many setups would send nothing through it.
        .args(["--no-proxy", ""])
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_cold_build_goes_through_an_authenticating_proxy_and_keeps_its_password_out_of_everything() {
    require_root();
    let proxy = Proxy::start();
    let work = temp_dir("proxy-build-");
    let profiles = work.path().join("profiles");
    fs::create_dir_all(&profiles).unwrap();
    // A bootstrap of its own (minbase), and a child adding a package: the
    // bootstrap's apt and the working container's apt both need the proxy.
    fs::write(
        profiles.join("tiny.yaml"),
        "description: minbase (tests/proxy.rs)\n\
         distro: {name: debian, suite: bookworm, arch: amd64, variant: minbase}\n\
         hostname: tiny\n\
         cloud_init: {user_data: ./user-data.tera, meta_data: ./meta-data.tera, network_config: null}\n",
    )
    .unwrap();
    fs::write(
        profiles.join("tiny-hello.yaml"),
        "description: minbase and hello\ninherits: [tiny]\npackages: [hello]\n",
    )
    .unwrap();
    fs::write(profiles.join("user-data.tera"), "#cloud-config\n").unwrap();
    fs::write(
        profiles.join("meta-data.tera"),
        "instance-id: {{ instance_id }}\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let out_dir = work.path().join("out");
    let out = build_oci_through(&proxy, &profiles.join("tiny-hello.yaml"), &out_dir, &cache);
    let console = text(&out);
    assert!(out.status.success(), "the build failed:\n{console}");
    let proxy_log = proxy.log();
    // mmdebstrap's downloads, then the layer's package.
    assert!(
        proxy_log.contains("GET http://") && proxy_log.contains("/pool/main/"),
        "no package download went through the proxy:\n{proxy_log}"
    );
    assert!(
        proxy_log.contains("/hello_"),
        "the layer's package did not go through the proxy:\n{proxy_log}"
    );
    assert!(
        !console.contains(PASSWORD),
        "password on the console:\n{console}"
    );
    let leaks = files_containing(&cache, PASSWORD.as_bytes());
    assert!(leaks.is_empty(), "password in cache files: {leaks:?}");
    let leaks = files_containing(&out_dir, PASSWORD.as_bytes());
    assert!(leaks.is_empty(), "password in output files: {leaks:?}");

    // The image itself: flattened back to a tarball, nothing of the proxy.
    let image = out_dir.join("tiny-hello.oci.tar");
    assert!(image.is_file(), "{console}");
    let flat = support::flatten_oci_archive(&image, work.path());
    let address = format!("127.0.0.1:{}", proxy.port);
    assert!(
        !contains(&flat, PASSWORD.as_bytes()),
        "password in the image"
    );
    assert!(
        !contains(&flat, address.as_bytes()),
        "proxy address in the image"
    );
    let listing =
        String::from_utf8(run_ok(Command::new("tar").arg("-tf").arg(&flat)).stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "usr/bin/hello")
    );

    // The image as the source of another profile, pulled (skopeo) through
    // the proxy. The registry listens on this machine's own address: Go's
    // HTTP client, skopeo's, never sends loopback traffic through a proxy.
    let Some(address) = host_address() else {
        panic!("this machine has no non-loopback IPv4 address to serve the registry on");
    };
    let registry = Registry::start_on(address);
    let reference = format!("docker://{address}:{}/osforge/tiny:1", registry.port);
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}", image.display()))
            .arg(&reference)
            .env_remove("http_proxy")
            .env_remove("https_proxy"),
    );
    fs::write(
        profiles.join("tiny-image.yaml"),
        format!(
            "description: tiny-hello's image from a registry\ninherits: [tiny]\n\
             source: {{ref: \"{reference}\", tls_verify: false}}\n"
        ),
    )
    .unwrap();
    let out = build_oci_through(&proxy, &profiles.join("tiny-image.yaml"), &out_dir, &cache);
    let console = text(&out);
    assert!(
        out.status.success(),
        "the build from the registry failed:\n{console}"
    );
    assert!(
        !console.contains(PASSWORD),
        "password on the console:\n{console}"
    );
    let pulled = format!("{address}:{}/v2/", registry.port);
    assert!(
        proxy.log().contains(&pulled),
        "the image was not pulled through the proxy (no {pulled} in its log):\n{}",
        proxy.log()
    );
    let leaks = files_containing(&cache, PASSWORD.as_bytes());
    assert!(leaks.is_empty(), "password in cache files: {leaks:?}");
}

/// This machine's first non-loopback IPv4 address.
fn host_address() -> Option<std::net::Ipv4Addr> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
}
