//! `osforge build --type qcow2` end to end: the control-plane and data-plane
//! profiles built from one cache directory, then booted in QEMU (TCG) under
//! SeaBIOS and OVMF as metal3 would deploy them: the image as the backing
//! file of a larger disk, a NoCloud seed (`cidata`) on a CD beside it. The
//! seed's runcmd prints one marker line with what the host ended up as.
//!
//! The first run bootstraps one Debian tree with mmdebstrap (base's; a few
//! minutes) and installs qcow2-host's, control-plane's and data-plane's
//! packages as layers on it; the cache under `CARGO_TARGET_TMPDIR/osforge-cache`
//! makes later runs reuse them.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::report_stage as stage;

use support::qemu::{Boot, Firmware, ImageFormat, Media, boot_all};
use support::{SnapshotOptions, diff_snapshots, require_root, run_ok, snapshot};

const MARKER: &str = "OSFORGE-MARKER";
const MARKER_END: &str = "OSFORGE-END";
/// The virtual size metal3 gives the host: more than the image's 8 GiB, so
/// cloud-init's growpart has room to grow root into.
const DISK_SIZE: &str = "12G";
const IMAGE_BYTES: u64 = 8 << 30;
/// cloud-init's final stage under TCG takes 60 to 150 s; two boots share
/// the two cores at a time.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const BOOTS_AT_ONCE: usize = 2;
const MEMORY_MIB: u32 = 1024;

/// A profile, the host name it is built for, kernel parameters its
/// /proc/cmdline must show, and the firmware it is booted with.
struct Host {
    profile: &'static str,
    /// A profile written for the test (else one of ./profiles).
    yaml: Option<&'static str>,
    hostname: &'static str,
    params: &'static [&'static str],
    firmware: &'static [Firmware],
}

const DATA_PLANE_PARAMS: &[&str] = &[
    "console=ttyS0,115200n8",
    "intel_iommu=on",
    "iommu=pt",
    "hugepagesz=1G",
    "hugepages=16",
    "default_hugepagesz=1G",
    "isolcpus=2-7",
    "rcu_nocbs=2-7",
    "transparent_hugepage=never",
];

// Every firmware path and every profile boots once: the boot chain does not
// depend on the profile (same layout, same GRUB), so the full cross product
// would add two 3-minute TCG boots to CI and no coverage.
const HOSTS: [Host; 3] = [
    Host {
        profile: "control-plane",
        yaml: None,
        hostname: "cp-1",
        params: &["console=ttyS0,115200n8"],
        firmware: &[Firmware::Bios],
    },
    Host {
        profile: "data-plane",
        yaml: None,
        hostname: "dp-1",
        params: DATA_PLANE_PARAMS,
        firmware: &[Firmware::Uefi],
    },
    // control-plane with Secure Boot: the same packages, so the same cached
    // rootfs; only the ESP differs (Debian's signed shim and GRUB).
    Host {
        profile: "control-plane-sb",
        yaml: Some(
            "description: control-plane, UEFI through the signed shim\ninherits: [control-plane]\ndisk:\n  secure_boot: true\n",
        ),
        hostname: "cp-sb-1",
        params: &["console=ttyS0,115200n8"],
        firmware: &[Firmware::UefiSecure],
    },
];

/// `--profile`'s value: a name, or the test's own profile file.
fn profile_arg(host: &Host) -> String {
    match host.yaml {
        None => host.profile.to_string(),
        Some(yaml) => {
            let path = work_dir().join(format!("{}.yaml", host.profile));
            if !path.exists() {
                fs::write(&path, yaml).unwrap();
            }
            path.display().to_string()
        }
    }
}

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osforge-cache")
}

fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("build-qcow2")
}

/// An ed25519 public key line (valid encoding; nobody holds its private key).
fn test_key() -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &[0x5a; 32][..]] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {} osforge-boot-test",
        osforge::util::base64::encode(&blob)
    )
}

/// What the host prints once cloud-init ran its runcmd.
fn runcmd() -> String {
    let line = [
        format!("echo {MARKER}"),
        "host=$(hostname)".into(),
        "rootsrc=$(findmnt -no SOURCE /)".into(),
        "rootopts=$(findmnt -no OPTIONS / | cut -d, -f1)".into(),
        "efi=$(test -d /sys/firmware/efi && echo yes || echo no)".into(),
        "key=$(grep -c osforge-boot-test /home/debian/.ssh/authorized_keys)".into(),
        "rootbytes=$(df -B1 --output=size / | tail -n 1 | tr -d ' ')".into(),
        "cmdline=$(tr ' ' '|' < /proc/cmdline)".into(),
        // The SecureBoot variable's value byte: 1 when Secure Boot is on.
        "sb=$(od -An -tu1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c 2>/dev/null | awk '{print $NF}')".into(),
        format!("{MARKER_END} > /dev/ttyS0"),
    ]
    .join(" ");
    format!("runcmd=[\"{line}\"]")
}

fn host_vars(host: &Host) -> Vec<String> {
    vec![
        format!("hostname={}", host.hostname),
        format!("ssh_authorized_keys=[\"{}\"]", test_key()),
        runcmd(),
    ]
}

struct Built {
    images: BTreeMap<&'static str, PathBuf>,
    reports: BTreeMap<&'static str, serde_json::Value>,
    seconds: BTreeMap<&'static str, f64>,
}

fn build(host: &Host, out: &Path, types: &str) -> (serde_json::Value, f64) {
    let started = Instant::now();
    let mut cmd = support::osforge();
    cmd.args([
        "--json",
        "build",
        "--profile",
        &profile_arg(host),
        "--type",
        types,
    ])
    .arg("--output")
    .arg(out)
    .arg("--cache-dir")
    .arg(cache_dir());
    for var in host_vars(host) {
        cmd.arg("--var").arg(var);
    }
    let output = run_ok(&mut cmd);
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("build report JSON");
    (report, started.elapsed().as_secs_f64())
}

/// The profiles built from the one cache directory: control-plane and
/// data-plane side by side (one waits for the other's bootstrap and
/// qcow2-host layer, then each builds its own layer), then the Secure Boot
/// variant, which reuses control-plane's.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_root();
        let work = work_dir();
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        let mut results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = HOSTS[..2]
                .iter()
                .map(|h| s.spawn(move || build(h, &work_dir().join(h.profile), "qcow2")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("build thread"))
                .collect()
        });
        // After control-plane: two builds of one cache entry at once would
        // both make it.
        results.push(build(
            &HOSTS[2],
            &work_dir().join(HOSTS[2].profile),
            "qcow2",
        ));
        let mut b = Built {
            images: BTreeMap::new(),
            reports: BTreeMap::new(),
            seconds: BTreeMap::new(),
        };
        for (host, (report, seconds)) in HOSTS.iter().zip(results) {
            eprintln!(
                "built {} in {seconds:.0} s: {}",
                host.profile, report["stages"]
            );
            b.images.insert(
                host.profile,
                work.join(host.profile)
                    .join(format!("{}.qcow2", host.profile)),
            );
            b.reports.insert(host.profile, report);
            b.seconds.insert(host.profile, seconds);
        }
        b
    })
}

#[test]
fn control_plane_and_data_plane_build_as_checksummed_qcow2_images() {
    let b = built();
    for host in &HOSTS {
        let image = &b.images[host.profile];
        let check = run_ok(Command::new("qemu-img").arg("check").arg(image));
        assert!(String::from_utf8_lossy(&check.stdout).contains("No errors were found"));
        let info = String::from_utf8(
            run_ok(
                Command::new("qemu-img")
                    .args(["info", "--output=json"])
                    .arg(image),
            )
            .stdout,
        )
        .unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["virtual-size"], IMAGE_BYTES);
        assert_eq!(info["format-specific"]["data"]["compression-type"], "zlib");
        let dir = image.parent().unwrap();
        let name = image.file_name().unwrap().to_str().unwrap();
        for (ext, tool) in [("sha256", "sha256sum"), ("md5sum", "md5sum")] {
            let listed = fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap();
            let computed =
                String::from_utf8(run_ok(Command::new(tool).arg(name).current_dir(dir)).stdout)
                    .unwrap();
            assert_eq!(listed, computed, "{ext} of {name}");
        }
        let report = &b.reports[host.profile];
        assert_eq!(report["hostname"], host.hostname);
        // One bootstrap (base's) under every profile; each profile's own
        // packages are a layer on qcow2-host's.
        assert_eq!(
            stage(report, "bootstrap")["label"],
            "bootstrap base",
            "{report}"
        );
        let layers: Vec<&serde_json::Value> = report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["stage"] == "layer")
            .collect();
        assert_eq!(layers[0]["label"], "layer qcow2-host", "{report}");
        assert_eq!(layers[0]["from"], "bootstrap base", "{report}");
        assert_eq!(
            stage(report, "configure")["from"],
            layers.last().unwrap()["label"],
            "{report}"
        );
        for param in host.params {
            assert!(
                report["kernel_cmdline"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .any(|p| p == *param),
                "{param} in {}",
                report["kernel_cmdline"]
            );
        }
        eprintln!(
            "{}: {} bytes of qcow2 for {} virtual, built in {:.0} s (disk stage {:.1} s)",
            host.profile,
            fs::metadata(image).unwrap().len(),
            IMAGE_BYTES,
            b.seconds[host.profile],
            stage(report, "disk")["seconds"].as_f64().unwrap()
        );
    }
}

#[test]
fn a_second_build_reuses_the_cache_never_changes_it_and_writes_qcow2_and_raw_of_one_disk() {
    let _ = built();
    let host = &HOSTS[0];
    // The configured rootfs the cache holds for this profile.
    let configure = cache_dir().join("configure");
    let roots: Vec<PathBuf> = fs::read_dir(&configure)
        .unwrap()
        .map(|e| e.unwrap().path().join("root"))
        .filter(|p| p.join("etc/hostname").is_file())
        .collect();
    let options = SnapshotOptions {
        xattrs: true,
        contents: false,
    };
    let before: Vec<_> = roots.iter().map(|r| snapshot(r, &options)).collect();
    let out = work_dir().join("again");
    let (report, seconds) = build(host, &out, "qcow2,raw");
    for name in ["bootstrap", "configure"] {
        assert_eq!(
            stage(&report, name)["cached"],
            true,
            "{name} reused: {report}"
        );
    }
    let (qcow2, raw) = (
        out.join("control-plane.qcow2"),
        out.join("control-plane.raw"),
    );
    let compare = run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    );
    assert!(String::from_utf8_lossy(&compare.stdout).contains("Images are identical"));
    for (root, before) in roots.iter().zip(&before) {
        let problems = diff_snapshots(before, &snapshot(root, &options), &[]);
        assert!(
            problems.is_empty(),
            "the cached rootfs {} changed: {problems:#?}",
            root.display()
        );
    }
    let leftovers: Vec<_> = fs::read_dir(cache_dir().join("tmp"))
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "scratch left in the cache: {leftovers:?}"
    );
    let verify = run_ok(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("No problems found"));
    eprintln!("rebuild from the cache with qcow2 and raw: {seconds:.0} s");
    let _ = fs::remove_dir_all(&out);
}

/// A `cidata` ISO with the host's rendered NoCloud seed, made by osforge.
fn seed_iso(host: &Host, dir: &Path) -> PathBuf {
    let mut cmd = support::osforge();
    cmd.args(["--json", "render", "--profile", &profile_arg(host)]);
    for var in host_vars(host) {
        cmd.arg("--var").arg(var);
    }
    let rendered: serde_json::Value = serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap();
    let nocloud = &rendered["host"]["nocloud"];
    let staging = dir.join(format!("{}-seed", host.profile));
    fs::create_dir_all(&staging).unwrap();
    fs::write(
        staging.join("user-data"),
        nocloud["user_data"].as_str().unwrap(),
    )
    .unwrap();
    fs::write(
        staging.join("meta-data"),
        nocloud["meta_data"].as_str().unwrap(),
    )
    .unwrap();
    if let Some(net) = nocloud["network_config"].as_str() {
        fs::write(staging.join("network-config"), net).unwrap();
    }
    let iso = dir.join(format!("{}-seed.iso", host.profile));
    run_ok(
        support::osforge()
            .arg("iso")
            .arg(&staging)
            .arg(&iso)
            .args(["--volume-id", "cidata"]),
    );
    iso
}

/// A qcow2 overlay of `DISK_SIZE` on the built image, as a bigger disk.
fn overlay(image: &Path, at: &Path) -> PathBuf {
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image)
            .arg(at)
            .arg(DISK_SIZE),
    );
    at.to_path_buf()
}

fn field(log: &str, key: &str) -> String {
    support::qemu::marker_field(log, MARKER, key)
        .unwrap_or_else(|| panic!("no {key}= in the marker line"))
}

#[test]
fn the_hosts_boot_under_seabios_ovmf_and_secure_boot_with_their_seed_and_grow_root() {
    let b = built();
    let work = support::temp_dir("build-qcow2-boot-");
    let mut boots = Vec::new();
    let mut expect = Vec::new();
    for host in &HOSTS {
        let seed = seed_iso(host, work.path());
        for &firmware in host.firmware {
            let disk = overlay(
                &b.images[host.profile],
                &work
                    .path()
                    .join(format!("{}-{firmware:?}.qcow2", host.profile)),
            );
            boots.push((disk, seed.clone(), firmware));
            expect.push(host);
        }
    }
    let done = |log: &str| {
        log.lines()
            .any(|l| l.contains(MARKER) && l.contains(MARKER_END))
    };
    let mut results = Vec::new();
    for pair in boots.chunks(BOOTS_AT_ONCE) {
        let runs: Vec<Boot> = pair
            .iter()
            .map(|(disk, seed, firmware)| Boot {
                image: disk,
                format: ImageFormat::Qcow2,
                firmware: *firmware,
                media: Media::Disk,
                memory_mib: MEMORY_MIB,
                extra_cdroms: vec![seed.clone()],
                ovmf_vars: None,
                timeout: BOOT_TIMEOUT,
            })
            .collect();
        let started = Instant::now();
        // Each boot writes its own serial log, named by firmware; one
        // directory per profile keeps them apart.
        let dir = work.path().join(format!("logs-{}", results.len()));
        fs::create_dir_all(&dir).unwrap();
        let logs = boot_all(&runs, &dir, done);
        eprintln!(
            "{} boots in {:.0} s",
            runs.len(),
            started.elapsed().as_secs_f64()
        );
        results.extend(logs);
    }
    let mut failures = Vec::new();
    for ((log, host), (_, _, firmware)) in results.into_iter().zip(&expect).zip(&boots) {
        let what = format!("{} under {firmware:?}", host.profile);
        let log = match log {
            Ok(log) => log,
            Err(e) => {
                failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        assert_eq!(
            field(&log, "host"),
            host.hostname,
            "{what}: hostname from the seed"
        );
        assert_eq!(
            field(&log, "rootsrc"),
            "/dev/vda1",
            "{what}: root is partition 1 of the disk"
        );
        assert_eq!(
            field(&log, "rootopts"),
            "rw",
            "{what}: root mounted read-write"
        );
        assert_eq!(
            field(&log, "efi"),
            if *firmware == Firmware::Bios {
                "no"
            } else {
                "yes"
            },
            "{what}: booted by that firmware"
        );
        assert_eq!(
            field(&log, "sb") == "1",
            *firmware == Firmware::UefiSecure,
            "{what}: Secure Boot state {:?}",
            field(&log, "sb")
        );
        assert_eq!(
            field(&log, "key"),
            "1",
            "{what}: the SSH key in ~debian/.ssh/authorized_keys"
        );
        let root_bytes: u64 = field(&log, "rootbytes").parse().unwrap();
        assert!(
            root_bytes > IMAGE_BYTES,
            "{what}: root grew past the image's 8 GiB ({root_bytes} bytes)"
        );
        let cmdline = field(&log, "cmdline");
        let params: Vec<&str> = cmdline.split('|').collect();
        for p in host.params {
            assert!(
                params.contains(p),
                "{what}: {p} missing from /proc/cmdline: {cmdline}"
            );
        }
        assert!(
            params.iter().any(|p| p.starts_with("root=UUID=")),
            "{what}: {cmdline}"
        );
        eprintln!("{what}: ok, root {root_bytes} bytes");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
