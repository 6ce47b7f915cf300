//! `osforge boot`: a tiny Linux guest (Debian's kernel, a busybox initramfs;
//! see support::guest) boots from an ISO made by `osforge iso`, under TCG.
//! `--expect` passes on the good image, fails with the console's last lines
//! on one broken on purpose, reads a `--seed DIR` from the second CD, and
//! QEMU never outlives osforge.

mod support;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::guest::{self, Kernel};
use support::osforge;

/// What init prints first: `OSFORGE-INIT-<osforge.greeting= from the kernel command line>`.
const GOOD_GREETING: &str = "OSFORGE-INIT-HELLO";
/// Bounds each boot: a boot takes 10 to 25 s under TCG here.
const BOOT_TIMEOUT_SECS: &str = "240";

/// The guest's /init: greets with the kernel command line's word, loads the
/// CD-ROM drivers, prints each CD's label and any seed token on it, powers off.
const INIT: &str = r#"export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
greeting=$(sed -n 's/.*osforge\.greeting=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "OSFORGE-INIT-$greeting"
for m in scsi_common scsi_mod libata libahci ahci cdrom sr_mod; do insmod /modules/$m.ko; done
# AHCI probes its ports in the background: wait for the second CD.
i=0
while [ ! -b /dev/sr1 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
# The primary volume descriptor (sector 16): its identifier and volume id.
for d in /dev/sr*; do
    id=$(dd if=$d bs=1 skip=32769 count=5 2>/dev/null)
    label=$(dd if=$d bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ')
    echo "OSFORGE-CD $d id=$id label=$label"
done
for d in /dev/sr*; do grep -a -o 'osforge-seed-[0-9a-f]\{16\}' $d; done | sed 's/^/OSFORGE-SEED=/'
echo OSFORGE-INIT-DONE
poweroff -f
"#;

struct Fixture {
    dir: PathBuf,
    good_iso: PathBuf,
    /// The same guest with `osforge.greeting=BROKEN`: it boots, prints
    /// something else, and powers off.
    broken_iso: PathBuf,
}

/// Made once per run; a failure is kept, not retried by every test.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
    let made = FIXTURE.get_or_init(|| {
        std::panic::catch_unwind(make_fixture)
            .unwrap_or_else(|_| Err("panicked (see the first test's output)".into()))
    });
    match made {
        Ok(f) => f,
        Err(e) => panic!("the guest fixture failed: {e}"),
    }
}

fn make_fixture() -> Result<Fixture, String> {
    let kernel: Kernel = guest::debian_kernel()?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("boot-test");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let initrd = guest::initramfs(INIT, &kernel.modules);
    let good_iso = dir.join("good.iso");
    let broken_iso = dir.join("broken.iso");
    guest::live_iso(
        &kernel,
        &initrd,
        "quiet panic=-1 osforge.greeting=HELLO",
        &good_iso,
    );
    guest::live_iso(
        &kernel,
        &initrd,
        "quiet panic=-1 osforge.greeting=BROKEN",
        &broken_iso,
    );
    Ok(Fixture {
        dir,
        good_iso,
        broken_iso,
    })
}

/// A scratch directory for one test, inside the fixture's.
fn scratch(name: &str) -> PathBuf {
    let dir = fixture().dir.join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The good ISO under a name no other test boots, to find its QEMU by.
fn private_copy(iso: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("private-guest.iso");
    fs::hard_link(iso, &copy).unwrap();
    copy
}

fn boot(args: &[&str], image: &Path) -> (Output, f64) {
    let started = Instant::now();
    let mut cmd = osforge();
    cmd.arg("boot").arg(image).args(["--memory", "256"]);
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", BOOT_TIMEOUT_SECS]);
    }
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
    (out, started.elapsed().as_secs_f64())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// QEMU processes whose command line mentions `needle`.
fn qemus_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = text(&cmdline).replace('\0', " ");
        if cmdline.starts_with("qemu-system") && cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

fn assert_no_qemu_left(needle: &str) {
    // The kernel kills QEMU as osforge exits; reaping it takes a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !qemus_with(needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        qemus_with(needle),
        Vec::<String>::new(),
        "QEMU outlived osforge"
    );
}

#[test]
fn the_good_image_passes_with_its_seed_dir_read_from_the_second_cd() {
    let f = fixture();
    let work = scratch("seed");
    let seed = work.join("seed");
    fs::create_dir_all(&seed).unwrap();
    // A token of this run only, so no earlier seed or image can supply it.
    let token = format!(
        "osforge-seed-{:016x}",
        std::process::id() as u64 * 0x9E37_79B9 + 1
    );
    fs::write(
        seed.join("user-data"),
        format!("#cloud-config\n# {token}\n"),
    )
    .unwrap();
    fs::write(seed.join("meta-data"), "instance-id: boot-test\n").unwrap();
    let log = work.join("console.log");
    let (out, seconds) = boot(
        &[
            "--seed",
            seed.to_str().unwrap(),
            "--expect",
            &format!("OSFORGE-SEED={token}"),
            "--log",
            log.to_str().unwrap(),
        ],
        &f.good_iso,
    );
    eprintln!("boot with seed: {seconds:.1} s");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        stderr.contains("osforge boot: accelerator tcg (auto:"),
        "the accelerator and why: {stderr}"
    );
    // The console is copied to stdout as it arrives, and to --log.
    assert!(stdout.contains(GOOD_GREETING), "{stdout}");
    assert!(
        stdout.contains(&format!("OSFORGE-SEED={token}")),
        "{stdout}"
    );
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains(GOOD_GREETING), "{logged}");
    // The seed CD is osforge's NoCloud ISO, behind the boot CD.
    let seed_cd = stdout
        .lines()
        .find(|l| l.starts_with("OSFORGE-CD /dev/sr1"))
        .unwrap_or_else(|| panic!("no second CD:\n{stdout}"));
    assert!(seed_cd.ends_with(" id=CD001 label=cidata"), "{seed_cd}");
}

#[test]
fn a_broken_image_fails_with_the_consoles_last_lines_and_one_line_reason() {
    let f = fixture();
    let (out, seconds) = boot(&["--json", "--expect", GOOD_GREETING], &f.broken_iso);
    eprintln!("broken boot: {seconds:.1} s");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // init's own line, as the console's tail, then the reason on the last line.
    assert!(
        stderr.contains("osforge boot: the console's last "),
        "{stderr}"
    );
    assert!(stderr.contains("  | OSFORGE-INIT-BROKEN"), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with(&format!("osforge: error: no match for '{GOOD_GREETING}'"))
            && last.contains("powered off"),
        "{last}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints only the summary on stdout ({e}): {}",
            text(&out.stdout)
        )
    });
    assert_eq!(summary["matched"], false);
    assert_eq!(summary["ending"], "powered_off");
    assert_eq!(summary["accel"], "tcg");
    assert_eq!(summary["firmware"], "bios");
    assert_eq!(summary["media"], "cd");
    assert_eq!(summary["format"], "iso");
    assert!(summary["seconds"].as_f64().unwrap() > 1.0, "{summary}");
}

#[test]
fn a_timeout_fails_with_its_reason_and_leaves_no_qemu_behind() {
    let f = fixture();
    let work = scratch("timeout");
    let iso = private_copy(&f.good_iso, &work);
    // Secure Boot OVMF from a USB stick: QEMU must accept that setup (flash,
    // SMM, XHCI) for the run to end by the timeout rather than QEMU failing.
    let (out, seconds) = boot(
        &[
            "--firmware",
            "uefi-secure",
            "--media",
            "usb",
            "--expect",
            "never printed",
            "--timeout",
            "4",
        ],
        &iso,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .trim_end()
            .ends_with("no match for 'never printed': timed out after 4 s"),
        "{stderr}"
    );
    assert!(seconds < 30.0, "took {seconds:.1} s for a 4 s timeout");
    assert_no_qemu_left(iso.to_str().unwrap());
}

#[test]
fn sigterm_stops_a_boot_without_expect_and_kills_qemu() {
    let f = fixture();
    let work = scratch("sigterm");
    let iso = private_copy(&f.good_iso, &work);
    let mut child = osforge()
        .arg("boot")
        .arg(&iso)
        .args(["--memory", "256"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the console's first bytes (GRUB clearing the screen): QEMU is up.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    assert!(
        !qemus_with(iso.to_str().unwrap()).is_empty(),
        "QEMU is not running"
    );
    // SAFETY: kill on a child we have not reaped.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status after SIGTERM");
    assert_no_qemu_left(iso.to_str().unwrap());
}

#[test]
fn bad_input_exits_2_with_one_line_before_starting_qemu() {
    let dir = support::temp_dir("boot-input-");
    let not_iso = dir.path().join("seed.txt");
    fs::write(&not_iso, "not an ISO").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["boot", "/nonexistent/image.iso"], "cannot read the image"),
        (
            &["boot", "/etc/hostname", "--seed", not_iso.to_str().unwrap()],
            "neither a directory nor an ISO",
        ),
        (
            &["boot", "/etc/hostname", "--expect", "(unclosed"],
            "--expect",
        ),
        (
            &["boot", "/etc/hostname", "--accel", "hvf"],
            "expected one of auto, kvm, tcg",
        ),
        (
            &[
                "boot",
                "/etc/hostname",
                "--log",
                "/nonexistent/dir/console.log",
            ],
            "--log",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_osforge"))
            .args(args)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
