//! `osforge build --type iso` and `make cut_image`: the live ISO of the
//! default profile is built for real (mmdebstrap, osconfig, squashfs), boots
//! four ways, carries exactly what was staged, and a second build that only
//! changes a variable reuses every cached stage. `--hosts` builds ten hosts'
//! ISOs from the same cached stages, each with its own seed.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::qemu::{
    Boot, Firmware, ImageFormat, Media, boot_all, has_complete_line, marker_field,
};
use support::*;

const HOSTNAME: &str = "osforge-iso-test";
const CMDLINE_EXTRA: &str = "osforge.boot_test=1";
const MARKER: &str = "OSFORGE-BOOT-OK";

/// One cache for every build in this file (and in other test files that
/// build the same profiles): the bootstrap runs once.
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osforge-cache")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A marker line cloud-init prints on the serial console once the host is up:
/// its host name and its kernel command line (spaces made commas).
fn marker_runcmd() -> String {
    format!(
        r#"runcmd=["echo {MARKER} hostname=$(hostname) cmdline=$(tr ' ' , < /proc/cmdline) > /dev/ttyS0"]"#
    )
}

struct Built {
    _out: tempfile::TempDir,
    iso: PathBuf,
    report: serde_json::Value,
}

fn build(out: &Path, hostname: &str) -> serde_json::Value {
    let output = run_ok(
        osforge()
            .current_dir(repo())
            .args([
                "--json",
                "build",
                "--profile",
                "ephemeral",
                "--type",
                "iso",
                "--output",
            ])
            .arg(out)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args([
                "--var",
                &format!("hostname={hostname}"),
                "--var",
                &marker_runcmd(),
            ])
            .args(["--cmdline-append", CMDLINE_EXTRA]),
    );
    serde_json::from_slice(&output.stdout).expect("build --json prints a report")
}

/// The build every test here looks at, made once. A failure is kept, not
/// retried by every waiting test.
fn built() -> &'static Built {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    once(&BUILT, "ISO build", || {
        require_root();
        let out = temp_dir("iso-build-");
        let report = build(out.path(), HOSTNAME);
        Built {
            iso: out.path().join("ephemeral.iso"),
            report,
            _out: out,
        }
    })
}

#[test]
fn the_live_iso_boots_from_cd_and_usb_under_bios_and_uefi_with_its_host_name_and_kernel_arguments()
{
    let iso = &built().iso;
    let work = temp_dir("iso-boot-");
    let modes = [
        (Firmware::Bios, Media::Cd),
        (Firmware::Bios, Media::Usb),
        (Firmware::Uefi, Media::Cd),
        (Firmware::Uefi, Media::Usb),
    ];
    let boots: Vec<Boot> = modes
        .iter()
        .map(|&(firmware, media)| Boot {
            image: iso,
            format: ImageFormat::Raw,
            firmware,
            media,
            memory_mib: 1536,
            extra_cdroms: Vec::new(),
            ovmf_vars: None,
            timeout: Duration::from_secs(900),
        })
        .collect();
    let results = boot_all(&boots, work.path(), |log| has_complete_line(log, MARKER));
    let mut failures = Vec::new();
    for (boot, result) in boots.iter().zip(results) {
        match result {
            Err(e) => failures.push(e),
            Ok(log) => {
                let hostname = marker_field(&log, MARKER, "hostname");
                let cmdline = marker_field(&log, MARKER, "cmdline").unwrap_or_default();
                if hostname.as_deref() != Some(HOSTNAME) {
                    failures.push(format!(
                        "{}: cloud-init set hostname {hostname:?}, not {HOSTNAME}",
                        boot.name()
                    ));
                }
                if !cmdline.split(',').any(|p| p == CMDLINE_EXTRA)
                    || !cmdline.contains("console=ttyS0")
                {
                    failures.push(format!("{}: /proc/cmdline lacks the profile's and --cmdline-append's parameters: {cmdline}", boot.name()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn xorriso_sees_a_bios_and_a_uefi_boot_image_and_the_config_drive_label() {
    let iso = &built().iso;
    let out = run_ok(
        Command::new("xorriso")
            .args(["-indev"])
            .arg(iso)
            .args(["-report_el_torito", "plain"]),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let platforms: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert!(
        platforms.iter().any(|l| l.contains("BIOS")),
        "no BIOS boot image:\n{report}"
    );
    assert!(
        platforms.iter().any(|l| l.contains("UEFI")),
        "no UEFI boot image:\n{report}"
    );
    let blkid = run_ok(
        Command::new("blkid")
            .args(["-o", "value", "-s", "LABEL"])
            .arg(iso),
    );
    assert_eq!(String::from_utf8_lossy(&blkid.stdout).trim(), "config-2");
}

#[test]
fn the_iso_has_a_manifest_and_an_spdx_sbom_listing_its_debian_packages_and_verifies() {
    let built = built();
    let artifact = &built.report["artifacts"][0];
    let manifest_path = PathBuf::from(artifact["manifest"].as_str().unwrap());
    let sbom_path = PathBuf::from(artifact["sbom"].as_str().unwrap());
    assert_eq!(
        manifest_path,
        built.iso.with_file_name("ephemeral.iso.manifest.json")
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["artifact"]["sha256"], artifact["sha256"]);
    assert_eq!(manifest["profile"]["name"], "ephemeral");
    let stages: Vec<&str> = manifest["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["bootstrap", "configure", "squashfs"]);
    let outputs: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            "ephemeral.iso.sha256",
            "ephemeral.iso.md5sum",
            "ephemeral.iso.spdx.json"
        ]
    );

    let sbom: serde_json::Value =
        serde_json::from_slice(&fs::read(&sbom_path).unwrap()).expect("the SBOM is JSON");
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let packages = sbom["packages"].as_array().unwrap();
    for name in ["linux-image-amd64", "systemd"] {
        let p = packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the SBOM"));
        let version = p["versionInfo"].as_str().unwrap();
        assert!(!version.is_empty(), "{name} has no version");
        let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        assert!(
            purl.starts_with(&format!("pkg:deb/debian/{name}@")),
            "{purl}"
        );
    }
    // No secrets: the profile's password hashes are not in either file.
    let text =
        fs::read_to_string(&manifest_path).unwrap() + &fs::read_to_string(&sbom_path).unwrap();
    assert!(
        !text.contains("$6$") && !text.contains("$y$"),
        "a password hash leaked"
    );

    let out = osforge().arg("verify").arg(&built.iso).output().unwrap();
    assert!(
        out.status.success(),
        "osforge verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stage's entry in the cache, as the build report names it.
fn stage_dir(report: &serde_json::Value, stage: &str) -> PathBuf {
    let entry = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap();
    PathBuf::from(report["cache_dir"].as_str().unwrap())
        .join(stage)
        .join(entry["key"].as_str().unwrap())
}

#[test]
fn osirrox_extracts_the_staged_kernel_initrd_squashfs_and_seed() {
    let built = built();
    let dir = temp_dir("iso-extract-");
    let dest = dir.path().join("x");
    run_ok(
        Command::new("osirrox")
            .args(["-indev"])
            .arg(&built.iso)
            .args(["-extract", "/"])
            .arg(&dest),
    );
    let squashfs = &stage_dir(&built.report, "squashfs").join("filesystem.squashfs");
    let root = &stage_dir(&built.report, "configure").join("root");
    assert!(
        fs::read(dest.join("live/filesystem.squashfs")).unwrap() == fs::read(squashfs).unwrap(),
        "squashfs differs from the cached one"
    );
    // /vmlinuz and /initrd.img are the image's links to the booted pair.
    let in_image = |link: &str| -> PathBuf {
        let target = fs::read_link(root.join(link)).unwrap();
        root.join(target.strip_prefix("/").unwrap_or(&target))
    };
    assert_eq!(
        fs::read(dest.join("live/vmlinuz")).unwrap(),
        fs::read(in_image("vmlinuz")).unwrap()
    );
    assert_eq!(
        fs::read(dest.join("live/initrd.img")).unwrap(),
        fs::read(in_image("initrd.img")).unwrap()
    );
    let user_data = fs::read_to_string(dest.join("openstack/latest/user_data")).unwrap();
    assert!(user_data.starts_with("#cloud-config"), "{user_data}");
    assert!(
        user_data.contains(&format!("hostname: \"{HOSTNAME}\"")),
        "{user_data}"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(dest.join("openstack/latest/meta_data.json")).unwrap())
            .unwrap();
    assert_eq!(meta["hostname"], HOSTNAME);
    let grub_cfg = fs::read_to_string(dest.join("boot/grub/grub.cfg")).unwrap();
    assert!(
        grub_cfg.contains("boot=live") && grub_cfg.contains(CMDLINE_EXTRA),
        "{grub_cfg}"
    );
    // The live root finds its seed on the medium it booted from, CD or USB.
    let listed = run_ok(
        Command::new("unsquashfs")
            .args(["-lln"])
            .arg(dest.join("live/filesystem.squashfs"))
            .arg("var/lib/cloud/seed"),
    );
    assert!(
        String::from_utf8_lossy(&listed.stdout)
            .contains("var/lib/cloud/seed/config_drive -> /run/live/medium"),
        "{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    // The squashfs is the configured rootfs: its hostname file is osconfig's.
    let listing = run_ok(
        Command::new("unsquashfs")
            .args(["-cat"])
            .arg(dest.join("live/filesystem.squashfs"))
            .arg("etc/hostname"),
    );
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        fs::read_to_string(root.join("etc/hostname"))
            .unwrap()
            .trim()
    );
}

#[test]
fn a_second_build_that_only_changes_a_variable_reuses_every_cached_stage() {
    let first = &built().report;
    let out = temp_dir("iso-rebuild-");
    let second = build(out.path(), "another-host");
    let cached = |report: &serde_json::Value, stage: &str| -> bool {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == stage)
            .map(|s| s["cached"] == true)
            .unwrap_or(false)
    };
    for stage in ["bootstrap", "configure", "squashfs"] {
        assert!(cached(&second, stage), "{stage} was rebuilt: {second}");
    }
    assert!(
        !cached(&second, "iso"),
        "the per-host ISO is always written"
    );
    assert_eq!(second["hostname"], "another-host");
    assert_ne!(
        second["artifacts"][0]["sha256"], first["artifacts"][0]["sha256"],
        "a different host gets a different ISO"
    );
}

#[test]
fn make_cut_image_writes_the_iso_with_sha256_and_md5sum_files() {
    built(); // warm the shared cache first
    let out = temp_dir("cut-image-");
    let status = Command::new("make")
        .current_dir(repo())
        .args([
            "--no-print-directory",
            "cut_image",
            "IMAGE_TYPE=iso",
            "PROFILE=ephemeral",
        ])
        .arg(format!("OUTPUT_DIR={}", out.path().display()))
        .arg(format!("OSFORGE_CACHE_DIR={}", cache_dir().display()))
        .status()
        .unwrap();
    assert!(status.success());
    let iso = out.path().join("ephemeral.iso");
    assert!(iso.is_file());
    for (tool, ext) in [("sha256sum", "sha256"), ("md5sum", "md5sum")] {
        let check = Command::new(tool)
            .current_dir(out.path())
            .arg("-c")
            .arg(format!("ephemeral.iso.{ext}"))
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{tool} -c: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
}

#[test]
fn bad_profiles_fail_before_building_with_one_line_exit_2_and_no_output() {
    let fixtures = repo().join("tests/fixtures/profiles");
    let mut checked = 0;
    for entry in fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // Fixtures that are parents of others are not bad on their own.
        if path.extension().is_none_or(|e| e != "yaml")
            || name.starts_with("parent")
            || name.starts_with("ok-")
        {
            continue;
        }
        let out = temp_dir("bad-build-");
        let result = osforge()
            .current_dir(&fixtures)
            .env("OSFORGE_PROFILE_PATH", &fixtures)
            .env("OSFORGE_TEMPLATE_PATH", fixtures.join("templates"))
            .args(["build", "--profile"])
            .arg(&path)
            .arg("--output")
            .arg(out.path().join("images"))
            .arg("--cache-dir")
            .arg(out.path().join("cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        if result.status.code() == Some(0) {
            continue; // a fixture that is only bad as a parent of another
        }
        assert_eq!(result.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains(".yaml") || stderr.contains(".tera"),
            "{name}: error names no file: {stderr}"
        );
        assert!(
            !out.path().join("images").exists()
                || fs::read_dir(out.path().join("images"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{name}: output left behind"
        );
        assert!(
            !out.path().join("cache").exists(),
            "{name}: work started before the profile was checked"
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} bad profiles checked");
}

/// The `--hosts` build: ten hosts of the same profile and shared variables
/// as [`built`], so every stage before the ISOs comes from the cache.
struct BuiltHosts {
    out: tempfile::TempDir,
    report: serde_json::Value,
}

const HOSTS: usize = 10;
/// QEMU's default MAC for the first NIC: the hosts that boot get it, so the
/// address in their network_data.json is the one their NIC is given.
const QEMU_MAC: &str = "52:54:00:12:34:56";

fn host_mac(i: usize) -> String {
    if i <= 2 {
        QEMU_MAC.to_string()
    } else {
        format!("52:54:00:00:00:{i:02x}")
    }
}

/// In QEMU's user network, so a host that boots can hold it.
fn host_ip(i: usize) -> String {
    format!("10.0.2.{}", 20 + i)
}

fn hosts_yaml() -> String {
    let mut text = String::from("# ten hosts of the ephemeral profile\nhosts:\n");
    for i in 1..=HOSTS {
        text += &format!(
            "  - name: node-{i}\n    vars:\n      nics: [{{mac: \"{}\", ipv4_address: {}, netmask: 255.255.255.0, gateway: 10.0.2.2}}]\n    ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{i:04} ops@node-{i}\"]\n    cmdline_append: osforge.node={i}\n",
            host_mac(i),
            host_ip(i)
        );
    }
    text
}

fn built_hosts() -> &'static BuiltHosts {
    static BUILT: OnceLock<Result<BuiltHosts, String>> = OnceLock::new();
    once(&BUILT, "--hosts build", || {
        built(); // the stages are in the cache before this build starts
        let out = temp_dir("iso-hosts-");
        let hosts = out.path().join("hosts.yaml");
        fs::write(&hosts, hosts_yaml()).unwrap();
        // The marker also shows the addresses the seed gave the host.
        let runcmd = format!(
            r#"runcmd=["echo {MARKER} hostname=$(hostname) addrs=$(hostname -I | tr ' ' ,) cmdline=$(tr ' ' , < /proc/cmdline) > /dev/ttyS0"]"#
        );
        let started = std::time::Instant::now();
        let output = run_ok(
            osforge()
                .current_dir(repo())
                .args(["--json", "build", "-p", "ephemeral", "-t", "iso", "--hosts"])
                .arg(&hosts)
                .arg("--output")
                .arg(out.path().join("images"))
                .arg("--cache-dir")
                .arg(cache_dir())
                .args(["--var", &runcmd, "--cmdline-append", CMDLINE_EXTRA]),
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let iso_seconds: f64 = stages_named(&report, "iso")
            .iter()
            .map(|s| s["seconds"].as_f64().unwrap())
            .sum();
        eprintln!(
            "--hosts: {HOSTS} ISOs in {:.1} s ({:.2} s per host overall; iso stage {iso_seconds:.1} s summed over the writers)",
            started.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64() / HOSTS as f64
        );
        BuiltHosts { out, report }
    })
}

fn stages_named<'a>(report: &'a serde_json::Value, stage: &str) -> Vec<&'a serde_json::Value> {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"] == stage)
        .collect()
}

#[test]
fn a_hosts_file_of_ten_hosts_gives_ten_isos_from_one_cached_rootfs_and_squashfs() {
    let built = built_hosts();
    let report = &built.report;
    for stage in ["bootstrap", "configure", "squashfs"] {
        let found = stages_named(report, stage);
        assert_eq!(found.len(), 1, "{stage} ran more than once: {report}");
        assert_eq!(found[0]["cached"], true, "{stage} was rebuilt: {report}");
    }
    let isos = stages_named(report, "iso");
    assert_eq!(isos.len(), HOSTS, "{report}");
    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), HOSTS);
    assert!(
        report.get("hostname").is_none(),
        "one hostname for ten hosts"
    );
    let images = built.out.path().join("images");
    let mut digests = std::collections::HashSet::new();
    for (i, host) in (1..=HOSTS).zip(hosts) {
        let name = format!("node-{i}");
        assert_eq!(host["name"], name);
        assert_eq!(host["hostname"], name);
        assert!(
            host["kernel_cmdline"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{CMDLINE_EXTRA} osforge.node={i}")),
            "{host}"
        );
        let artifacts = host["artifacts"].as_array().unwrap();
        assert_eq!(artifacts.len(), 1);
        let iso = images.join(format!("{name}.iso"));
        assert_eq!(artifacts[0]["path"], iso.to_str().unwrap());
        assert!(digests.insert(artifacts[0]["sha256"].as_str().unwrap().to_string()));
        for sidecar in ["sha256", "md5sum", "manifest.json", "spdx.json"] {
            assert!(
                images.join(format!("{name}.iso.{sidecar}")).is_file(),
                "{name}: no .{sidecar}"
            );
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(artifacts[0]["manifest"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(manifest["artifact"]["sha256"], artifacts[0]["sha256"]);
    }
    assert_eq!(report["artifacts"].as_array().unwrap().len(), HOSTS);
    // Ten hosts, five files each, the build's one lock file, and nothing
    // else (no staging folder left).
    assert!(images.join("ephemeral.lock.json").is_file(), "no lock file");
    assert_eq!(fs::read_dir(&images).unwrap().count(), HOSTS * 5 + 1);
}

#[test]
fn osirrox_finds_each_host_s_own_name_address_key_and_kernel_parameter_in_its_iso() {
    let built = built_hosts();
    let work = temp_dir("iso-hosts-seeds-");
    for i in 1..=HOSTS {
        let name = format!("node-{i}");
        let dest = work.path().join(&name);
        run_ok(
            Command::new("osirrox")
                .args(["-indev"])
                .arg(built.out.path().join(format!("images/{name}.iso")))
                .args(["-extract", "/openstack"])
                .arg(dest.join("openstack"))
                .args(["-extract", "/boot/grub/grub.cfg"])
                .arg(dest.join("grub.cfg")),
        );
        let read_json = |file: &str| -> serde_json::Value {
            serde_json::from_slice(&fs::read(dest.join("openstack/latest").join(file)).unwrap())
                .unwrap()
        };
        let meta = read_json("meta_data.json");
        assert_eq!(meta["hostname"], name);
        assert_eq!(
            meta["public_keys"]["key-0"],
            format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{i:04} ops@{name}")
        );
        let net = read_json("network_data.json");
        assert_eq!(net["links"][0]["ethernet_mac_address"], host_mac(i));
        assert_eq!(net["networks"][0]["ip_address"], host_ip(i));
        let user_data = fs::read_to_string(dest.join("openstack/latest/user_data")).unwrap();
        assert!(
            user_data.contains(&format!("hostname: \"{name}\"")),
            "{user_data}"
        );
        let grub_cfg = fs::read_to_string(dest.join("grub.cfg")).unwrap();
        let params: Vec<&str> = grub_cfg
            .split_whitespace()
            .map(|p| p.trim_matches(['\'', '"']))
            .filter(|p| p.starts_with("osforge."))
            .collect();
        assert_eq!(
            params,
            [CMDLINE_EXTRA.to_string(), format!("osforge.node={i}")],
            "{name}: {grub_cfg}"
        );
    }
}

#[test]
fn two_hosts_of_the_hosts_file_boot_with_their_own_name_address_and_kernel_parameter() {
    let built = built_hosts();
    let work = temp_dir("iso-hosts-boot-");
    let isos: Vec<PathBuf> = (1..=2)
        .map(|i| built.out.path().join(format!("images/node-{i}.iso")))
        .collect();
    // boot_all names logs by firmware and media: one work folder per host.
    let results: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = isos
            .iter()
            .enumerate()
            .map(|(i, iso)| {
                let dir = work.path().join(format!("node-{}", i + 1));
                fs::create_dir_all(&dir).unwrap();
                scope.spawn(move || {
                    let boot = Boot::live_cd_bios(iso);
                    support::qemu::boot_until(&boot, &dir, |log| has_complete_line(log, MARKER))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (i, result) in (1..=2).zip(results) {
        let name = format!("node-{i}");
        let log = match result {
            Ok(log) => log,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let field = |key: &str| marker_field(&log, MARKER, key).unwrap_or_default();
        if field("hostname") != name {
            failures.push(format!("{name}: booted as {:?}", field("hostname")));
        }
        if !field("addrs").split(',').any(|a| a == host_ip(i)) {
            failures.push(format!(
                "{name}: addresses {:?}, not {}",
                field("addrs"),
                host_ip(i)
            ));
        }
        if !field("cmdline")
            .split(',')
            .any(|p| p == format!("osforge.node={i}"))
        {
            failures.push(format!("{name}: /proc/cmdline {:?}", field("cmdline")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn when_one_host_s_iso_cannot_be_written_the_build_fails_and_no_host_s_files_appear() {
    built(); // the stages are in the cache: only the ISOs are written
    let work = temp_dir("iso-hosts-full-");
    let hosts = work.path().join("hosts.yaml");
    fs::write(&hosts, "hosts:\n  - name: fits\n  - name: does-not-fit\n").unwrap();
    // Room for one ISO (about 240 MiB), not two: the second host fails.
    let out = work.path().join("images");
    let _mount = support::Mount::tmpfs(&out, "size=400m");
    let result = osforge()
        .current_dir(repo())
        .args([
            "--quiet",
            "build",
            "-p",
            "ephemeral",
            "-t",
            "iso",
            "--jobs",
            "1",
        ])
        .arg("--hosts")
        .arg(&hosts)
        .arg("--output")
        .arg(&out)
        .arg("--cache-dir")
        .arg(cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    // The output folder, what is free, what the ISO needs; then the writer's error.
    assert!(
        stderr.starts_with(&format!(
            "osforge: error: host does-not-fit: no space left on device for the images in {}",
            out.display()
        )) && stderr.contains(" free, the live ISO needs more than its squashfs's ")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the output directory: {left:?}");
}
