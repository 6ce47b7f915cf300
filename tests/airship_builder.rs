//! `osforge airship-builder`, run as airshipctl runs the image-builder
//! container: v1 with environment variables and builder-conf.yaml on a
//! volume whose host and container paths differ, v2 with a document on
//! stdin, and bad input of both. The ISO builds share the stage cache of
//! tests/build_iso.rs (same profile, empty osconfig vars: same cache keys), so
//! the rootfs is bootstrapped once per `make test`; the v1 image is booted.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use support::qemu::{Boot, boot_until};
use support::*;

const MARKER: &str = "OSFORGE-AIRSHIP-BUILDER-OK";
const MARKER_END: &str = "OSFORGE-AIRSHIP-BUILDER-END";
/// Not QEMU's DHCP address (10.0.2.15): seeing it proves the network file was used.
const STATIC_ADDRESS: &str = "10.0.2.50";
/// What `ip -4 -o addr` prints for it.
const STATIC_CIDR: &str = "inet 10.0.2.50/24";

/// The cache tests/build_iso.rs builds the ephemeral stages into.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osforge-cache")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// network_data.json as airshipctl writes it from a BareMetalHost's
/// networkData: a static address on QEMU's first NIC, whose MAC QEMU gives
/// by default (tests/support/qemu.rs sets none).
fn network_data() -> String {
    format!(
        r#"{{
  "links": [{{"id": "oam0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56", "mtu": 1500}}],
  "networks": [{{"id": "oam-ipv4", "link": "oam0", "type": "ipv4", "ip_address": "{STATIC_ADDRESS}",
    "netmask": "255.255.255.0",
    "routes": [{{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"}}]}}],
  "services": [{{"type": "dns", "address": "10.0.2.3"}}]
}}
"#
    )
}

/// Prints the marker, the host's IPv4 addresses and an end line on the
/// serial console once cloud-init has configured the network.
fn user_data() -> String {
    format!(
        "#cloud-config\nruncmd:\n  - sh -c 'echo {MARKER}; ip -4 -o addr; echo {MARKER_END}' > /dev/ttyS0\n"
    )
}

/// Contract variables of the caller's environment would change the test.
const CONTRACT_VARS: [&str; 9] = [
    "VERSION",
    "IMAGE_TYPE",
    "BUILDER_CONFIG",
    "USER_DATA_FILE",
    "NET_CONFIG_FILE",
    "OUTPUT_METADATA_FILE_NAME",
    "OSCONFIG_FILE",
    "QCOW_CONFIG_FILE",
    "OSFORGE_PROFILE",
];

fn builder(env: &[(&str, &str)], stdin: Option<&str>, cwd: &Path) -> Output {
    let mut cmd = osforge();
    cmd.current_dir(cwd)
        .arg("airship-builder")
        .env("OSFORGE_CACHE_DIR", cache_dir())
        .env("OSFORGE_PROFILE_PATH", repo().join("profiles"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in CONTRACT_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("osforge runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "airship-builder failed with {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn md5(path: &Path) -> String {
    let out = run_ok(Command::new("md5sum").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn metadata(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// A file of the ISO, extracted with osirrox.
fn extract(iso: &Path, inner: &str, work: &Path) -> String {
    let dest = work.join(inner.trim_start_matches('/').replace('/', "_"));
    run_ok(
        Command::new("osirrox")
            .arg("-indev")
            .arg(iso)
            .arg("-extract")
            .arg(inner)
            .arg(&dest),
    );
    fs::read_to_string(&dest).unwrap()
}

#[test]
fn v1_builds_the_iso_airshipctl_asks_for_and_it_boots_with_the_given_user_data_and_address() {
    require_root();
    let tmp = temp_dir("airship-v1-");
    // The volume as airshipctl mounts it: one directory, two names.
    let host = tmp.path().join("host");
    let ctr = tmp.path().join("ctr");
    fs::create_dir(&host).unwrap();
    symlink(&host, &ctr).unwrap();
    let conf = format!(
        "container:\n  volume: {}:{}\n  image: quay.io/airshipit/image-builder:latest\n  containerRuntime: docker\nbuilder:\n  userDataFileName: user-data\n  networkConfigFileName: network-config\n  outputFileName: ephemeral-node.iso\n  outputMetadataFileName: output-metadata.yaml\n  osconfigVarsFileName: osconfig-vars.yaml\n",
        host.display(),
        ctr.display()
    );
    fs::write(host.join("builder-conf.yaml"), conf).unwrap();
    fs::write(host.join("user-data"), user_data()).unwrap();
    fs::write(host.join("network-config"), network_data()).unwrap();
    // Empty: the ISO keeps the ephemeral profile's cache keys.
    fs::write(host.join("osconfig-vars.yaml"), "").unwrap();

    let started = Instant::now();
    let conf_in_ctr = ctr.join("builder-conf.yaml");
    let out = builder(
        &[
            ("IMAGE_TYPE", "iso"),
            ("BUILDER_CONFIG", conf_in_ctr.to_str().unwrap()),
        ],
        None,
        &repo(),
    );
    assert_success(&out);
    eprintln!("v1 ISO build: {:.1} s", started.elapsed().as_secs_f64());

    let iso = host.join("ephemeral-node.iso");
    let meta = metadata(&host.join("output-metadata.yaml"));
    assert_eq!(
        meta["bootImagePath"],
        format!("{}/ephemeral-node.iso", host.display()),
        "the metadata names the image by the host's path"
    );
    assert_eq!(meta["md5sum"], md5(&iso));
    assert!(
        leftover_temporaries(&host).is_empty(),
        "{:?}",
        leftover_temporaries(&host)
    );

    let boot = Boot::live_cd_bios(&iso);
    let started = Instant::now();
    let log = boot_until(&boot, tmp.path(), |log| log.contains(MARKER_END))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("v1 ISO boot: {:.1} s", started.elapsed().as_secs_f64());
    let printed: String = log
        .lines()
        .skip_while(|l| !l.contains(MARKER))
        .take_while(|l| !l.contains(MARKER_END))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        printed.contains(STATIC_CIDR),
        "the address of network-config is not on the host:\n{printed}"
    );
}

#[test]
fn v1_qcow_writes_the_disk_its_qcow_vars_describe_under_the_configured_name() {
    require_root();
    let tmp = temp_dir("airship-qcow-");
    let vol = tmp.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let conf = format!(
        "container:\n  volume: /srv/images:{}\nbuilder:\n  qcowVarsFileName: qcow-vars.yaml\n  osconfigVarsFileName: osconfig-vars.yaml\n  outputFileName: cp.qcow2\n  imageType: qcow\n",
        vol.display()
    );
    fs::write(vol.join("builder-conf.yaml"), conf).unwrap();
    // Empty osconfig vars: control-plane's stages, shared with tests/build_qcow2.rs.
    fs::write(vol.join("osconfig-vars.yaml"), "").unwrap();
    fs::write(
        vol.join("qcow-vars.yaml"),
        "qcow_capacity: 10G\nqcow_compress: false\n",
    )
    .unwrap();
    let started = Instant::now();
    let conf_path = vol.join("builder-conf.yaml");
    let out = builder(
        &[("BUILDER_CONFIG", conf_path.to_str().unwrap())],
        None,
        &repo(),
    );
    assert_success(&out);
    eprintln!("v1 qcow2 build: {:.1} s", started.elapsed().as_secs_f64());
    let image = vol.join("cp.qcow2");
    let meta = metadata(&vol.join("output-metadata.yaml"));
    assert_eq!(meta["bootImagePath"], "/srv/images/cp.qcow2");
    assert_eq!(meta["md5sum"], md5(&image));
    let check = run_ok(Command::new("qemu-img").arg("check").arg(&image));
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.contains(" 0.00% compressed clusters"),
        "qcow_compress: false, yet:\n{check}"
    );
    let info = run_ok(
        Command::new("qemu-img")
            .args(["info", "--output", "json"])
            .arg(&image),
    );
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 10u64 << 30, "qcow_capacity: 10G");
}

#[test]
fn v2_reads_the_bodies_from_stdin_and_writes_the_image_to_the_current_directory() {
    require_root();
    let out_dir = temp_dir("airship-v2-");
    let indent = |text: &str| text.lines().map(|l| format!("  {l}\n")).collect::<String>();
    let doc = format!(
        "user_data: |\n{}network_config: |\n{}osconfig: {{}}\noutputFileName: second.iso\n",
        indent(&user_data()),
        indent(&network_data())
    );
    let started = Instant::now();
    let out = builder(&[("VERSION", "v2")], Some(&doc), out_dir.path());
    assert_success(&out);
    eprintln!("v2 ISO build: {:.1} s", started.elapsed().as_secs_f64());

    let iso = out_dir.path().join("second.iso");
    let meta = metadata(&out_dir.path().join("output-metadata.yaml"));
    assert_eq!(
        meta["bootImagePath"],
        format!("{}/second.iso", out_dir.path().display())
    );
    assert_eq!(meta["md5sum"], md5(&iso));
    let work = temp_dir("airship-v2-extract-");
    assert_eq!(
        extract(&iso, "/openstack/latest/user_data", work.path()),
        user_data()
    );
    let on_iso: serde_json::Value = serde_json::from_str(&extract(
        &iso,
        "/openstack/latest/network_data.json",
        work.path(),
    ))
    .unwrap();
    let given: serde_json::Value = serde_json::from_str(&network_data()).unwrap();
    assert_eq!(on_iso, given);
}

#[test]
fn bad_environment_and_documents_fail_with_one_line_naming_the_variable_or_key() {
    let tmp = temp_dir("airship-bad-");
    let vol = tmp.path().join("vol");
    fs::create_dir(&vol).unwrap();
    let w = |name: &str, text: &str| {
        let path = vol.join(name);
        fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let good_conf = w(
        "good.yaml",
        &format!(
            "container: {{volume: '/srv/images:{}'}}\nbuilder: {{userDataFileName: user-data, networkConfigFileName: network-config}}\n",
            vol.display()
        ),
    );
    let no_volume = w("no-volume.yaml", "builder: {outputFileName: x.iso}\n");
    let bad_net_conf = w(
        "bad-net.yaml",
        &format!(
            "container: {{volume: '/srv/images:{}'}}\nbuilder: {{userDataFileName: user-data, networkConfigFileName: bad-network}}\n",
            vol.display()
        ),
    );
    w("user-data", &user_data());
    w("network-config", &network_data());
    w(
        "bad-network",
        &network_data().replace("52:54:00:12:34:56", "52:54:00:12:34"),
    );
    let v2_iso = |doc: &str| (vec![("VERSION", "v2")], Some(doc.to_string()));
    /// (what, (environment, stdin), what the error line must contain)
    type Case<'a> = (&'a str, (Vec<(&'a str, &'a str)>, Option<String>), &'a str);
    let cases: Vec<Case> = vec![
        (
            "no BUILDER_CONFIG",
            (vec![], None),
            "BUILDER_CONFIG is not set",
        ),
        (
            "no container.volume",
            (vec![("BUILDER_CONFIG", no_volume.as_str())], None),
            "container.volume: missing",
        ),
        (
            "unknown IMAGE_TYPE",
            (
                vec![
                    ("BUILDER_CONFIG", good_conf.as_str()),
                    ("IMAGE_TYPE", "vmdk"),
                ],
                None,
            ),
            "IMAGE_TYPE=vmdk: expected iso or qcow",
        ),
        (
            "a network file that fails the checks",
            (vec![("BUILDER_CONFIG", bad_net_conf.as_str())], None),
            "builder.networkConfigFileName",
        ),
        (
            "a missing user-data file",
            (
                vec![
                    ("BUILDER_CONFIG", good_conf.as_str()),
                    ("USER_DATA_FILE", "nope"),
                ],
                None,
            ),
            "USER_DATA_FILE",
        ),
        (
            "an unknown VERSION",
            (vec![("VERSION", "v3")], None),
            "VERSION=v3",
        ),
        (
            "v2: user_data a list",
            v2_iso("user_data: [a]\n"),
            "stdin: user_data: expected user-data text",
        ),
        (
            "v2: no network_config for an ISO",
            v2_iso("user_data: |\n  #cloud-config\n  {}\n"),
            "stdin: network_config: missing",
        ),
        (
            "v2: a misspelt key",
            v2_iso("user-data: x\n"),
            "stdin: user-data: unknown key",
        ),
    ];
    for (what, (env, stdin), expected) in &cases {
        let out = builder(env, stdin.as_deref(), &vol);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{what}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{what}: expected '{expected}' in: {stderr}"
        );
    }
    let mut left: Vec<String> = fs::read_dir(&vol)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".iso") || n.contains("metadata") || n.contains("osforge-tmp"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "bad input left {left:?}");
}

#[test]
fn make_cut_image_iso_with_an_airship_workdir_builds_the_imported_ephemeral_profile() {
    require_root();
    let tmp = temp_dir("airship-make-iso-");
    let manifests = tmp.path().join("manifests");
    fs::create_dir_all(manifests.join("iso")).unwrap();
    fs::create_dir_all(manifests.join("rootfs")).unwrap();
    // Empty rootfs vars: the import adds nothing, so the cached stages serve.
    fs::write(manifests.join("rootfs/osconfig-vars.yaml"), "").unwrap();
    fs::write(manifests.join("iso/user_data"), user_data()).unwrap();
    fs::write(manifests.join("iso/network_data.json"), network_data()).unwrap();
    let out = tmp.path().join("out");
    let started = Instant::now();
    // CARGO=true: the binary under test is already built.
    run_ok(
        Command::new("make")
            .current_dir(repo())
            .args([
                "--no-print-directory",
                "cut_image",
                "IMAGE_TYPE=iso",
                "CARGO=true",
            ])
            .arg(format!("OSFORGE={}", env!("CARGO_BIN_EXE_osforge")))
            .arg(format!("WORKDIR={}", manifests.display()))
            .arg(format!("OUTPUT_DIR={}", out.display()))
            .arg(format!("OSFORGE_CACHE_DIR={}", cache_dir().display())),
    );
    eprintln!(
        "make cut_image (iso, imported): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let iso = out.join("airship-ephemeral.iso");
    assert!(
        out.join("airship-profiles/airship-ephemeral.yaml")
            .is_file()
    );
    assert_eq!(
        extract(&iso, "/openstack/latest/user_data", tmp.path()),
        user_data(),
        "the ISO carries the manifests' iso/user_data"
    );
}
