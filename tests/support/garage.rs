//! Garage (a real S3-compatible object store) started by a test: one node,
//! or a 3-node cluster with `replication_factor = 3` as it runs in
//! production, each node on free loopback ports in a temporary folder,
//! killed on drop. Objects are read and written from the test with curl's
//! own SigV4 signing (`--aws-sigv4`), a client independent of osforge's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Garage's own default region; osforge is told with --s3-region.
pub const REGION: &str = "garage";

/// The web endpoint's root domain. It takes the bucket from the Host
/// header (`BUCKET.ROOT`); a QEMU guest reaches the host as 10.0.2.2 and
/// sends that, so with this root a bucket named [`GUEST_BUCKET`] is what the
/// guest's `http://10.0.2.2:PORT/...` reads (no DNS needed in the guest).
const WEB_ROOT_DOMAIN: &str = ".2.2";
/// The bucket a QEMU guest reads through the web endpoint; see [`WEB_ROOT_DOMAIN`].
pub const GUEST_BUCKET: &str = "10.0";

pub struct Garage {
    nodes: Vec<Node>,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
    _dir: tempfile::TempDir,
}

struct Node {
    child: Child,
    config: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    web_port: u16,
    dir: PathBuf,
}

/// The garage binary: on PATH, else where `cargo install` puts it.
pub fn garage_bin() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "command -v garage"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .or_else(|| {
            cargo_home
                .map(|c| c.join("bin/garage"))
                .filter(|p| p.is_file())
        })
        .expect("garage is missing: deps/setup test installs it (cargo install garage)")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Garage {
    /// One node, `replication_factor = 1`, with a bucket and a key that may
    /// read and write it.
    pub fn single(bucket: &str) -> Garage {
        Garage::start(1, bucket)
    }

    /// Three nodes in three zones, every object on all of them.
    pub fn cluster(bucket: &str) -> Garage {
        Garage::start(3, bucket)
    }

    fn start(count: usize, bucket: &str) -> Garage {
        let bin = garage_bin();
        let dir = super::temp_dir("garage-");
        let secret: String = super::noise(32, 0x6a52_9e11)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut nodes = Vec::new();
        for n in 0..count {
            let node_dir = dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let (s3_port, rpc_port, web_port, admin_port) = (
                super::free_port(),
                super::free_port(),
                super::free_port(),
                super::free_port(),
            );
            let config = node_dir.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    "metadata_dir = \"{d}/meta\"\n\
                     data_dir = \"{d}/data\"\n\
                     db_engine = \"lmdb\"\n\
                     replication_factor = {count}\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret}\"\n\
                     [s3_api]\n\
                     s3_region = \"{REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n\
                     [s3_web]\n\
                     bind_addr = \"127.0.0.1:{web_port}\"\n\
                     root_domain = \"{WEB_ROOT_DOMAIN}\"\n\
                     [admin]\n\
                     api_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                    d = node_dir.display()
                ),
            )
            .unwrap();
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&config)
                .arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdout(std::fs::File::create(node_dir.join("log")).unwrap())
                .stderr(std::fs::File::create(node_dir.join("stderr")).unwrap())
                .spawn()
                .expect("cannot start garage");
            nodes.push(Node {
                child,
                config,
                s3_port,
                rpc_port,
                web_port,
                dir: node_dir,
            });
        }
        let mut garage = Garage {
            nodes,
            key_id: String::new(),
            secret: String::new(),
            bucket: bucket.to_string(),
            _dir: dir,
        };
        let ids: Vec<String> = (0..count).map(|n| garage.node_id(n)).collect();
        for id in &ids[1..] {
            garage.cli_ok(&["node", "connect", id]);
        }
        for (n, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap();
            garage.cli_ok(&[
                "layout",
                "assign",
                "-z",
                &format!("dc{n}"),
                "-c",
                "1G",
                short,
            ]);
        }
        garage.cli_ok(&["layout", "apply", "--version", "1"]);
        let (key_id, secret) = garage.create_key("osforge-test");
        garage.key_id = key_id;
        garage.secret = secret;
        garage.cli_ok(&["bucket", "create", bucket]);
        garage.cli_ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "osforge-test",
        ]);
        garage
    }

    /// `garage -c <node 0's config> ARGS`, retried while the cluster
    /// settles (a new layout takes a moment to reach every node).
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(garage_bin())
                .arg("-c")
                .arg(&self.nodes[0].config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "garage {args:?} failed:\n{}\nnode log:\n{}",
                text(&out),
                self.node_log(0)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn node_log(&self, n: usize) -> String {
        let read = |f: &str| std::fs::read_to_string(self.nodes[n].dir.join(f)).unwrap_or_default();
        format!("{}{}", read("log"), read("stderr"))
    }

    /// `<id>@127.0.0.1:<rpc port>` of node `n`, once it answers.
    fn node_id(&self, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(garage_bin())
                .arg("-c")
                .arg(&self.nodes[n].config)
                .args(["node", "id", "-q"])
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && said.contains('@') {
                return said;
            }
            assert!(
                Instant::now() < deadline,
                "garage node {n} did not start (rpc port {}):\n{}\n{}",
                self.nodes[n].rpc_port,
                text(&out),
                self.node_log(n)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A new key (no permissions yet): its id and secret.
    pub fn create_key(&self, name: &str) -> (String, String) {
        let said = self.cli_ok(&["key", "create", name]);
        let field = |label: &str| {
            said.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no '{label}' in garage key create's output:\n{said}"))
        };
        (field("Key ID:"), field("Secret key:"))
    }

    /// Serves the bucket read-only over plain HTTP (Garage's website
    /// endpoint, no credentials); returns node 0's web port.
    pub fn serve_website(&self) -> u16 {
        self.cli_ok(&["bucket", "website", "--allow", &self.bucket]);
        self.nodes[0].web_port
    }

    /// The S3 API of node `n`.
    pub fn endpoint_of(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[n].s3_port)
    }

    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// The S3 flags and credentials of this Garage on an osforge command.
    pub fn s3_flags<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.args(["--s3-endpoint", &self.endpoint(), "--s3-region", REGION])
            .env("S3_ACCESS", &self.key_id)
            .env("S3_SECRET", &self.secret)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
    }

    /// curl signing its request with the test key; `path` is `/bucket/key...`.
    fn curl(&self, method: &str, path: &str) -> Command {
        let mut cmd = Command::new("curl");
        // Garage wants the payload hash header, which curl only signs.
        cmd.args([
            "-sS",
            "-X",
            method,
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{REGION}:s3"))
        .arg("--user")
        .arg(format!("{}:{}", self.key_id, self.secret))
        .arg(format!("{}{path}", self.endpoint()));
        cmd
    }

    /// Keys and sizes under `prefix` (ListObjectsV2, up to 1000).
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        // Encoded as SigV4's canonical query has it: curl signs the query
        // as written, and Garage checks the encoded form.
        let path = format!(
            "/{}?list-type=2&prefix={}",
            self.bucket,
            prefix.replace('/', "%2F")
        );
        let out = self.curl("GET", &path).output().unwrap();
        let xml = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && xml.contains("ListBucketResult"),
            "GET {path}: {}",
            text(&out)
        );
        let tag = |s: &str, t: &str| {
            let open = format!("<{t}>");
            let start = s.find(&open)? + open.len();
            Some(s[start..start + s[start..].find(&format!("</{t}>"))?].to_string())
        };
        xml.split("<Contents>")
            .skip(1)
            .map(|c| {
                (
                    tag(c, "Key").unwrap(),
                    tag(c, "Size").unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// An object's bytes, or None on 404.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut cmd = self.curl("GET", &format!("/{}/{key}", self.bucket));
        let out = cmd.args(["-w", "\n%{http_code}"]).output().unwrap();
        let body = out.stdout;
        let split = body.iter().rposition(|b| *b == b'\n').unwrap();
        let code = String::from_utf8_lossy(&body[split + 1..]).to_string();
        match code.as_str() {
            "200" => Some(body[..split].to_vec()),
            "404" => None,
            other => panic!(
                "GET {key}: HTTP {other}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// The HTTP status of a HEAD of `key`.
    pub fn head_status(&self, key: &str) -> u16 {
        let mut cmd = self.curl("HEAD", &format!("/{}/{key}", self.bucket));
        let out = cmd
            .args(["-I", "-o", "/dev/null", "-w", "%{http_code}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Writes `bytes` at `key` (as a corrupting neighbour would).
    pub fn put(&self, key: &str, file: &Path) {
        let mut cmd = self.curl("PUT", &format!("/{}/{key}", self.bucket));
        let out = cmd
            .arg("-T")
            .arg(file)
            .args(["-w", "%{http_code}"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "200",
            "{}",
            text(&out)
        );
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}
