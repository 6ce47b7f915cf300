//! The builder image and the Airship make targets around it: `make build`
//! (Containerfile, buildah bud) with the host-built osforge on a local Debian
//! base, `make cut_image CONTAINER=1` writing a live ISO from inside it, and
//! `make package_qcow` pushing qcow2 files to a local registry.
//!
//! No container registry is reachable from CI, so the base image is made here:
//! `mmdebstrap --variant=minbase` imported with buildah. Everything is kept
//! between runs under `CARGO_TARGET_TMPDIR`: the tarball, a buildah storage of
//! this file's own (CONTAINERS_STORAGE_CONF, so the host's images are never
//! touched), the image layers (`bud --layers`: the package layer is reused while
//! the base and deps/packages.tsv are unchanged) and the osforge cache of the
//! in-container build. A first run takes minutes, later ones seconds.

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use support::registry::Registry;
use support::*;

/// The base the test images start from: made here, never pulled.
const BASE_IMAGE: &str = "localhost/osforge-test/debian:bookworm-minbase";
const IMAGE_PREFIX: &str = "osforge-test";
const IMAGE_TAG: &str = "test";
/// Given to the image build as a build argument; it must not end up in the image.
const NO_PROXY_MARKER: &str = "no-proxy-marker.invalid";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// A storage.conf for this file's own buildah storage, kept between runs.
fn storage_conf() -> PathBuf {
    let dir = tmp().join("container-storage");
    let conf = dir.join("storage.conf");
    if !conf.is_file() {
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("graph").display(),
                dir.join("run").display()
            ),
        )
        .unwrap();
    }
    conf
}

fn buildah() -> Command {
    require_root();
    require_tool("buildah", "buildah");
    let mut cmd = Command::new("buildah");
    cmd.env("CONTAINERS_STORAGE_CONF", storage_conf());
    cmd
}

/// `make -C repo`, with buildah on this file's storage. The caller's make
/// variables (a `make test VARS=...`) must not leak into this one.
fn make() -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(repo())
        .arg("--no-print-directory")
        .env("CONTAINERS_STORAGE_CONF", storage_conf())
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn image_exists(name: &str) -> bool {
    buildah()
        .args(["inspect", "--type", "image", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// BASE_IMAGE in this file's storage: the cached minbase tarball unpacked into
/// an empty image (buildah add unpacks a tar, owners and device nodes included).
fn base_image() {
    if image_exists(BASE_IMAGE) {
        return;
    }
    let tar = mmdebstrap_tar_cached("container-base", "minbase")
        .unwrap_or_else(|e| panic!("base image: {e}"));
    let ctr = String::from_utf8(run_ok(buildah().args(["from", "-q", "scratch"])).stdout)
        .unwrap()
        .trim()
        .to_string();
    run_ok(buildah().args(["add", "-q", &ctr]).arg(&tar).arg("/"));
    run_ok(buildah().args(["commit", "-q", &ctr, BASE_IMAGE]));
    let _ = buildah().args(["rm", &ctr]).output();
}

fn builder_image_name() -> String {
    format!("localhost/{IMAGE_PREFIX}/osforge:{IMAGE_TAG}")
}

fn build_make_args(tag: &str) -> Vec<String> {
    vec![
        "build".into(),
        format!("OSFORGE_BINARY={}", env!("CARGO_BIN_EXE_osforge")),
        format!("BASE_IMAGE={BASE_IMAGE}"),
        "DOCKER_REGISTRY=localhost".into(),
        format!("IMAGE_PREFIX={IMAGE_PREFIX}"),
        format!("IMAGE_TAG={tag}"),
    ]
}

/// `make build` with the host-built osforge, once per run. A failure is kept,
/// not retried by every waiting test.
fn builder_image() -> String {
    static BUILT: OnceLock<Result<f64, String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        base_image();
        let start = Instant::now();
        let out = make()
            .args(build_make_args(IMAGE_TAG))
            .arg(format!(
                "BUD_FLAGS=--layers --build-arg NO_PROXY={NO_PROXY_MARKER}"
            ))
            .output()
            .map_err(|e| format!("cannot run make: {e}"))?;
        if !out.status.success() {
            return Err(format!("make build failed:\n{}", text(&out)));
        }
        Ok(start.elapsed().as_secs_f64())
    });
    match result {
        Ok(seconds) => {
            eprintln!("make build: {seconds:.1} s");
            builder_image_name()
        }
        Err(message) => panic!("the builder image: {message}"),
    }
}

/// A working container of `image`, removed on drop.
struct Container(String);

impl Container {
    fn from(image: &str) -> Container {
        let out = run_ok(buildah().args(["from", "-q", image]));
        Container(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
    fn run(&self, args: &[&str]) -> Output {
        run_ok(
            buildah()
                .args(["run", "--isolation", "chroot", &self.0, "--"])
                .args(args),
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = buildah().args(["rm", &self.0]).output();
    }
}

#[test]
fn the_builder_image_runs_the_host_built_osforge_with_its_profiles_and_keeps_no_proxy() {
    let image = builder_image();
    let ctr = Container::from(&image);

    let host_version = run_ok(osforge().arg("--version")).stdout;
    assert_eq!(ctr.run(&["osforge", "--version"]).stdout, host_version);
    // The very binary this test run built, not a stale one from an earlier run.
    let digest = |out: Output| String::from_utf8(out.stdout).unwrap()[..64].to_string();
    assert_eq!(
        digest(ctr.run(&["sha256sum", "/usr/local/bin/osforge"])),
        digest(run_ok(
            Command::new("sha256sum").arg(env!("CARGO_BIN_EXE_osforge"))
        ))
    );

    // From /work, which has no profiles/: found through OSFORGE_PROFILE_PATH.
    let profiles = String::from_utf8(ctr.run(&["osforge", "profiles"]).stdout).unwrap();
    for name in ["base", "ephemeral", "control-plane", "data-plane"] {
        assert!(
            profiles
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "profile {name} not listed in the image:\n{profiles}"
        );
    }
    let rendered = ctr.run(&["osforge", "render", "--profile", "data-plane"]);
    assert!(
        String::from_utf8_lossy(&rendered.stdout).contains("hugepages"),
        "templates not found in the image"
    );
    // The tools the image promises.
    for tool in [
        "mmdebstrap",
        "newuidmap",
        "grub-mkimage",
        "mke2fs",
        "qemu-img",
        "ansible-playbook",
        "buildah",
    ] {
        ctr.run(&["sh", "-c", &format!("command -v {tool}")]);
    }

    let inspect = run_ok(buildah().args(["inspect", "--type", "image", &image]));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &info["OCIv1"]["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["osforge"]));
    assert_eq!(config["Cmd"], serde_json::json!(["airship-builder"]));
    assert_eq!(config["WorkingDir"], "/work");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"OSFORGE_PROFILE_PATH=/usr/share/osforge/profiles"),
        "{env:?}"
    );
    assert!(
        env.contains(&"OSFORGE_TEMPLATE_PATH=/usr/share/osforge/templates"),
        "{env:?}"
    );
    // A proxy given at build time is neither in the environment nor in the history.
    let whole = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        !whole.contains(NO_PROXY_MARKER),
        "the NO_PROXY build argument was kept in the image"
    );
    assert!(
        !env.iter().any(|e| e.to_ascii_lowercase().contains("proxy")),
        "{env:?}"
    );
}

#[test]
fn make_build_hands_its_proxy_to_apt() {
    builder_image(); // the base image, and no two image builds at once
    // A port nothing listens on: apt must try it, and fail on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = make()
        .args(build_make_args("proxy-test"))
        .arg(format!("PROXY=http://127.0.0.1:{port}"))
        // Without the layer cache the package step runs again.
        .arg("BUD_FLAGS=--no-cache")
        .output()
        .unwrap();
    let log = text(&out);
    assert!(
        !out.status.success(),
        "a build through a dead proxy succeeded:\n{log}"
    );
    assert!(
        log.contains(&format!("127.0.0.1:{port}")),
        "apt did not go through the proxy:\n{log}"
    );
}

#[test]
fn cut_image_in_the_builder_image_writes_a_live_iso_for_bios_and_uefi() {
    builder_image();
    require_tool("xorriso", "xorriso");
    let out = temp_dir("container-iso-");
    // The in-container build has its own cache, so its first run bootstraps with
    // mmdebstrap inside the container rather than reusing the host tests' rootfs.
    let cache = tmp().join("container-osforge-cache");
    let start = Instant::now();
    let made = make()
        .args([
            "cut_image",
            "CONTAINER=1",
            "IMAGE_TYPE=iso",
            "PROFILE=tests/fixtures/container/ephemeral-lz4.yaml",
        ])
        .arg(format!("IMAGE_PREFIX={IMAGE_PREFIX}"))
        .arg(format!("IMAGE_TAG={IMAGE_TAG}"))
        .arg(format!("OUTPUT_DIR={}", out.path().display()))
        .arg(format!("OSFORGE_CACHE_DIR={}", cache.display()))
        .arg("VARS=hostname=container-iso")
        .output()
        .unwrap();
    let log = text(&made);
    assert!(
        made.status.success(),
        "make cut_image CONTAINER=1 failed:\n{log}"
    );
    eprintln!(
        "cut_image CONTAINER=1: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(log.contains("buildah run --isolation chroot"), "{log}");
    // The inner make ran the image's osforge, not the host's target/release one.
    assert!(
        log.lines().any(|l| l.starts_with(
            "osforge build --profile tests/fixtures/container/ephemeral-lz4.yaml --type iso"
        )),
        "{log}"
    );

    let iso = out.path().join("ephemeral-lz4.iso");
    assert!(iso.is_file(), "no {}:\n{log}", iso.display());
    for (tool, ext) in [("sha256sum", "sha256"), ("md5sum", "md5sum")] {
        run_ok(
            Command::new(tool)
                .current_dir(out.path())
                .arg("-c")
                .arg(format!("ephemeral-lz4.iso.{ext}")),
        );
    }
    let report = run_ok(
        Command::new("xorriso")
            .args(["-indev"])
            .arg(&iso)
            .args(["-report_el_torito", "plain"]),
    );
    let report = text(&report);
    assert!(report.contains("Volume id    : 'config-2'"), "{report}");
    assert!(report.contains("El Torito catalog"), "{report}");
    // "El Torito boot img :   1  BIOS  y   none ...": platform and bootable flag.
    let boot_images: Vec<(String, String)> = report
        .lines()
        .filter_map(|l| l.strip_prefix("El Torito boot img :"))
        .map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields[1].to_string(), fields[2].to_string())
        })
        .collect();
    assert_eq!(
        boot_images,
        [
            ("BIOS".to_string(), "y".to_string()),
            ("UEFI".to_string(), "y".to_string())
        ],
        "{report}"
    );
}

/// Two different small qcow2 files, with checksum files as cut_image writes them.
fn qcow_dir(with_checksums: bool) -> tempfile::TempDir {
    require_tool("qemu-img", "qemu-utils");
    let dir = temp_dir("qcows-");
    for (name, size) in [("control-plane", "64M"), ("data-plane", "96M")] {
        let file = format!("{name}.qcow2");
        run_ok(
            Command::new("qemu-img")
                .current_dir(dir.path())
                .args(["create", "-q", "-f", "qcow2", &file, size]),
        );
        if with_checksums {
            for (tool, ext) in [("sha256sum", "sha256"), ("md5sum", "md5sum")] {
                let sum = run_ok(Command::new(tool).current_dir(dir.path()).arg(&file));
                fs::write(dir.path().join(format!("{file}.{ext}")), sum.stdout).unwrap();
            }
        }
    }
    dir
}

/// The files of an image pulled with skopeo into a `dir:` copy, layers unpacked.
fn unpack_pulled(pulled: &Path, into: &Path) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(pulled.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    fs::create_dir_all(into).unwrap();
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap();
        let blob = pulled.join(digest.strip_prefix("sha256:").unwrap());
        run_ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(&blob)
                .arg("-C")
                .arg(into),
        );
    }
}

struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = buildah().args(["rmi", &self.0]).output();
    }
}

#[test]
fn package_qcow_pushes_the_qcow2_files_and_their_checksums_under_qcows() {
    require_tool("skopeo", "skopeo");
    let qcows = qcow_dir(true);
    let registry = Registry::start();
    // The local copy is named after the registry's port, new on every run: removed.
    let _local = RemoveImage(format!(
        "127.0.0.1:{}/{IMAGE_PREFIX}/qcow-bundle-test:{IMAGE_TAG}",
        registry.port
    ));
    let start = Instant::now();
    let made = make()
        .arg("package_qcow")
        .arg(format!("QCOW_DIR={}", qcows.path().display()))
        .arg(format!("DOCKER_REGISTRY=127.0.0.1:{}", registry.port))
        .arg(format!("IMAGE_PREFIX={IMAGE_PREFIX}"))
        .arg("QCOW_BUNDLE_NAME=qcow-bundle-test")
        .arg(format!("IMAGE_TAG={IMAGE_TAG}"))
        .args(["PUSH_IMAGE=true", "TLS_VERIFY=false"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "make package_qcow failed:\n{}",
        text(&made)
    );
    eprintln!(
        "package_qcow with push: {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let work = temp_dir("pulled-");
    let pulled = work.path().join("image");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!(
                "docker://127.0.0.1:{}/{IMAGE_PREFIX}/qcow-bundle-test:{IMAGE_TAG}",
                registry.port
            ))
            .arg(format!("dir:{}", pulled.display())),
    );
    let root = work.path().join("root");
    unpack_pulled(&pulled, &root);

    // FROM scratch: /qcows and nothing else.
    let top: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["qcows"]);
    let mut names: Vec<String> = fs::read_dir(root.join("qcows"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = ["control-plane", "data-plane"]
        .iter()
        .flat_map(|n| {
            ["", ".md5sum", ".sha256"]
                .iter()
                .map(move |ext| format!("{n}.qcow2{ext}"))
        })
        .collect();
    assert_eq!(names, expected);
    for name in ["control-plane.qcow2", "data-plane.qcow2"] {
        assert_eq!(
            fs::read(root.join("qcows").join(name)).unwrap(),
            fs::read(qcows.path().join(name)).unwrap(),
            "{name} changed on its way through the registry"
        );
        for tool in ["sha256sum", "md5sum"] {
            let ext = if tool == "sha256sum" {
                "sha256"
            } else {
                "md5sum"
            };
            run_ok(
                Command::new(tool)
                    .current_dir(root.join("qcows"))
                    .arg("-c")
                    .arg(format!("{name}.{ext}")),
            );
        }
    }
    drop(registry);
}

#[test]
fn package_qcow_refuses_a_qcow2_without_its_checksum_files() {
    let qcows = qcow_dir(false);
    let made = make()
        .arg("package_qcow")
        .arg(format!("QCOW_DIR={}", qcows.path().display()))
        .arg(format!("IMAGE_PREFIX={IMAGE_PREFIX}"))
        .output()
        .unwrap();
    let log = text(&made);
    assert!(!made.status.success(), "{log}");
    assert!(log.contains("control-plane.qcow2 has no"), "{log}");

    let empty = temp_dir("no-qcows-");
    let made = make()
        .arg("package_qcow")
        .arg(format!("QCOW_DIR={}", empty.path().display()))
        .output()
        .unwrap();
    assert!(!made.status.success());
    assert!(text(&made).contains("no *.qcow2 in"), "{}", text(&made));
}
