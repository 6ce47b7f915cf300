//! Secure Boot of the live ISO, two ways, booted in QEMU under OVMF with
//! Secure Boot enforced (q35, SMM, secure flash):
//!
//! - `iso.secure_boot: true`: Debian's shim (signed by Microsoft) and
//!   signed GRUB from the image; boots as a CD and as a USB stick under
//!   Microsoft's keys, and the kernel says "Secure boot enabled".
//! - `--signing-key`/`--signing-cert`: a unified kernel image signed with a
//!   key this test generates; boots under firmware whose db holds only that
//!   key, and is refused under Microsoft's keys, as is a copy with one byte
//!   of its command line changed (and the shim ISO under the test's keys).
//!
//! Both ISOs come from one profile (ephemeral plus the signed loaders'
//! packages, a layer over the cached bootstrap) and share its stages.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use support::qemu::{Boot, Firmware, ImageFormat, Media, has_complete_line};
use support::*;

const MARKER: &str = "OSFORGE-SB-OK";
const CMDLINE_EXTRA: &str = "osforge.sb_test=1";
const REFUSED: &str = "Access Denied";
const PROFILE: &str = "description: ephemeral, UEFI through the signed shim
inherits: [ephemeral]
packages: [shim-signed, grub-efi-amd64-signed]
iso:
  secure_boot: true
";

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osforge-cache")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Built {
    dir: tempfile::TempDir,
    /// Through shim, under Microsoft's keys.
    shim_iso: PathBuf,
    /// A UKI signed with the test's key.
    own_iso: PathBuf,
    key: PathBuf,
    cert: PathBuf,
    /// The second build's stdout (--json report) and stderr (log).
    own_output: String,
    own_report: serde_json::Value,
}

fn build(dir: &Path, name: &str, extra: &[&std::ffi::OsStr]) -> std::process::Output {
    let profile = dir.join("ephemeral-sb.yaml");
    fs::write(&profile, PROFILE).unwrap();
    run_ok(
        osforge()
            .current_dir(repo())
            .args(["--json", "build", "-t", "iso", "--profile"])
            .arg(&profile)
            .args(["--name", name, "--output"])
            .arg(dir.join("out"))
            .arg("--cache-dir")
            .arg(cache_dir())
            .args([
                "--var",
                &format!(r#"runcmd=["echo {MARKER} > /dev/ttyS0"]"#),
                "--cmdline-append",
                CMDLINE_EXTRA,
            ])
            .args(extra),
    )
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    once(&BUILT, "Secure Boot ISO builds", || {
        require_root();
        require_tool("sbsign", "sbsigntool");
        require_tool("cert-to-efi-sig-list", "efitools");
        let dir = temp_dir("secure-boot-");
        let (key, cert) = (dir.path().join("db.key"), dir.path().join("db.crt"));
        run_ok(
            Command::new("openssl")
                .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
                .args(["-days", "30", "-subj", "/CN=osforge test db key/"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        build(dir.path(), "shim", &[]);
        let own = build(
            dir.path(),
            "own",
            &[
                "--signing-key".as_ref(),
                key.as_os_str(),
                "--signing-cert".as_ref(),
                cert.as_os_str(),
            ],
        );
        let own_report = serde_json::from_slice(&own.stdout).expect("a --json report");
        Built {
            shim_iso: dir.path().join("out/shim.iso"),
            own_iso: dir.path().join("out/own.iso"),
            own_output: String::from_utf8_lossy(&own.stdout).into_owned()
                + &String::from_utf8_lossy(&own.stderr),
            own_report,
            key,
            cert,
            dir,
        }
    })
}

/// OVMF variables whose PK, KEK and db hold only the test's certificate.
fn own_vars(built: &Built) -> PathBuf {
    let out = built.dir.path().join("own-vars.fd");
    if !out.exists() {
        let esl = support::ovmf_vars::signature_list(&built.cert, built.dir.path());
        support::ovmf_vars::enroll(&esl, &out);
    }
    out
}

struct Case<'a> {
    name: &'a str,
    iso: &'a Path,
    media: Media,
    vars: Option<PathBuf>,
    /// Reaches userspace (else: the firmware refuses the loader).
    boots: bool,
}

/// Boots each case in its own work folder, two at a time (the machine has
/// two cores); a refusal ends in seconds, a boot in a few minutes.
fn boot_cases(cases: &[Case], work: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    for pair in cases.chunks(2) {
        let results: Vec<Result<String, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pair
                .iter()
                .map(|case| {
                    let dir = work.join(case.name);
                    fs::create_dir_all(&dir).unwrap();
                    scope.spawn(move || {
                        let boot = Boot {
                            image: case.iso,
                            format: ImageFormat::Raw,
                            firmware: Firmware::UefiSecure,
                            media: case.media,
                            memory_mib: 1536,
                            extra_cdroms: Vec::new(),
                            ovmf_vars: case.vars.clone(),
                            timeout: Duration::from_secs(900),
                        };
                        support::qemu::boot_until(&boot, &dir, |log| {
                            has_complete_line(log, MARKER) || log.contains(REFUSED)
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (case, result) in pair.iter().zip(results) {
            let log = match result {
                Ok(log) => log,
                Err(e) => {
                    failures.push(format!("{}: {e}", case.name));
                    continue;
                }
            };
            let reached = has_complete_line(&log, MARKER);
            if case.boots && !reached {
                let line = log.lines().find(|l| l.contains(REFUSED)).unwrap_or("");
                failures.push(format!("{}: refused: {line}", case.name));
            } else if case.boots && !log.contains("secureboot: Secure boot enabled") {
                failures.push(format!(
                    "{}: booted, but not with Secure Boot on",
                    case.name
                ));
            } else if case.boots && !log.contains(CMDLINE_EXTRA) {
                failures.push(format!(
                    "{}: the kernel did not get the profile's command line",
                    case.name
                ));
            } else if !case.boots && reached {
                failures.push(format!(
                    "{}: booted, but should have been refused",
                    case.name
                ));
            }
        }
    }
    failures
}

#[test]
fn the_live_iso_boots_through_the_signed_shim_from_cd_and_usb_under_microsoft_secure_boot() {
    let built = built();
    let work = temp_dir("secure-boot-shim-");
    let cases = [
        Case {
            name: "shim-cd",
            iso: &built.shim_iso,
            media: Media::Cd,
            vars: None,
            boots: true,
        },
        Case {
            name: "shim-usb",
            iso: &built.shim_iso,
            media: Media::Usb,
            vars: None,
            boots: true,
        },
    ];
    let failures = boot_cases(&cases, work.path());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A copy of `iso` with one byte of the UKI's command line changed: the
/// signature no longer matches.
fn tampered(iso: &Path, out: &Path) -> PathBuf {
    let mut bytes = fs::read(iso).unwrap();
    let needle = format!("{CMDLINE_EXTRA}\0");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the UKI's NUL-terminated command line is in the ISO");
    let digit = at + needle.len() - 2;
    bytes[digit] = b'2';
    let path = out.join("tampered.iso");
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn an_iso_signed_with_the_site_key_boots_only_under_firmware_that_trusts_that_key() {
    let built = built();
    let work = temp_dir("secure-boot-own-");
    let vars = own_vars(built);
    let tampered = tampered(&built.own_iso, work.path());
    let cases = [
        Case {
            name: "own-cd",
            iso: &built.own_iso,
            media: Media::Cd,
            vars: Some(vars.clone()),
            boots: true,
        },
        Case {
            name: "own-under-microsoft-keys",
            iso: &built.own_iso,
            media: Media::Usb,
            vars: None,
            boots: false,
        },
        Case {
            name: "tampered-own",
            iso: &tampered,
            media: Media::Usb,
            vars: Some(vars.clone()),
            boots: false,
        },
        Case {
            name: "shim-under-own-keys",
            iso: &built.shim_iso,
            media: Media::Cd,
            vars: Some(vars),
            boots: false,
        },
    ];
    let failures = boot_cases(&cases, work.path());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The appended ESP of a hybrid ISO (GPT partition 2), copied out.
fn esp_of(iso: &Path, out: &Path) -> PathBuf {
    let table = run_ok(Command::new("sfdisk").arg("--json").arg(iso));
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    let esp = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
        .expect("an EFI system partition");
    let (start, size) = (
        esp["start"].as_u64().unwrap() * 512,
        esp["size"].as_u64().unwrap() * 512,
    );
    let bytes = fs::read(iso).unwrap();
    let path = out.join("esp.img");
    fs::write(&path, &bytes[start as usize..(start + size) as usize]).unwrap();
    path
}

fn mcopy(esp: &Path, file: &str, out: &Path) -> PathBuf {
    let dest = out.join(file.replace('/', "_"));
    run_ok(
        Command::new("mcopy")
            .arg("-n")
            .arg("-i")
            .arg(esp)
            .arg(format!("::/{file}"))
            .arg(&dest),
    );
    dest
}

fn sbverify_list(file: &Path) -> String {
    let out = run_ok(Command::new("sbverify").arg("--list").arg(file));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_esps_hold_microsoft_s_shim_and_debian_s_grub_or_the_uki_signed_with_the_site_key() {
    let built = built();
    let work = temp_dir("secure-boot-esp-");
    let esp = esp_of(&built.shim_iso, work.path());
    let shim = mcopy(&esp, "EFI/BOOT/BOOTX64.EFI", work.path());
    let grub = mcopy(&esp, "EFI/BOOT/grubx64.efi", work.path());
    let stub = mcopy(&esp, "EFI/debian/grub.cfg", work.path());
    assert!(sbverify_list(&shim).contains("Microsoft Corporation UEFI CA 2011"));
    assert!(sbverify_list(&grub).contains("Debian Secure Boot CA"));
    let stub = fs::read_to_string(stub).unwrap();
    assert!(
        stub.starts_with("search --no-floppy --set=root --file /.disk/id/")
            && stub.contains("configfile /boot/grub/grub.cfg"),
        "{stub}"
    );

    let esp = esp_of(&built.own_iso, work.path());
    let uki = mcopy(&esp, "EFI/BOOT/BOOTX64.EFI", work.path());
    let verified = Command::new("sbverify")
        .arg("--cert")
        .arg(&built.cert)
        .arg(&uki)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "sbverify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // binutils reads the sections osforge added to the stub.
    let headers = run_ok(Command::new("objdump").arg("-h").arg(&uki));
    let headers = String::from_utf8_lossy(&headers.stdout);
    for section in [".cmdline", ".linux", ".initrd"] {
        assert!(headers.contains(section), "{section} missing:\n{headers}");
    }
    // Nothing unsigned on the way: no GRUB and no grub.cfg on this ESP.
    let listing = run_ok(
        Command::new("mdir")
            .arg("-/")
            .arg("-b")
            .arg("-i")
            .arg(&esp)
            .arg("::/"),
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    let files: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
    assert_eq!(files, ["::/EFI/BOOT/BOOTX64.EFI"], "{listing}");
}

/// Whether `needle` occurs in `hay`: candidates by their first byte, so a
/// GiB of cache is scanned in about a second.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == needle[0]) {
        if hay[from + i..].starts_with(needle) {
            return true;
        }
        from += i + 1;
    }
    false
}

/// Every file under `dir`, symlinks not followed.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_under(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

#[test]
fn the_signing_key_s_bytes_are_in_no_log_report_cache_entry_or_image() {
    let built = built();
    let pem = fs::read_to_string(&built.key).unwrap();
    // The PEM's base64 lines, and the key's DER (decoded by openssl).
    let der = run_ok(
        Command::new("openssl")
            .args(["pkey", "-outform", "DER", "-in"])
            .arg(&built.key),
    )
    .stdout;
    let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let needles: Vec<Vec<u8>> = vec![
        body[1].as_bytes().to_vec(),
        body[body.len() / 2].as_bytes().to_vec(),
        der[der.len() / 2..der.len() / 2 + 32].to_vec(),
        der[der.len() - 40..der.len() - 8].to_vec(),
    ];
    assert!(!contains(built.own_output.as_bytes(), &needles[0]));
    let mut files = Vec::new();
    files_under(&built.dir.path().join("out"), &mut files);
    // The cache entries this build used or made.
    for stage in built.own_report["stages"].as_array().unwrap() {
        if let Some(key) = stage["key"].as_str() {
            let entry = cache_dir().join(stage["stage"].as_str().unwrap()).join(key);
            if stage["stage"] != "bootstrap" {
                files_under(&entry, &mut files);
            } else {
                files.push(entry.join("entry.json"));
            }
        }
    }
    assert!(files.iter().any(|f| f.ends_with("own.iso")), "{files:?}");
    for file in &files {
        let bytes = fs::read(file).unwrap();
        for needle in &needles {
            assert!(
                !contains(&bytes, needle),
                "the signing key's bytes are in {}",
                file.display()
            );
        }
    }
    // The same scan finds the certificate, which the ISO does carry.
    let cert_der = run_ok(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&built.cert),
    )
    .stdout;
    assert!(contains(
        &fs::read(&built.own_iso).unwrap(),
        &cert_der[..64]
    ));
}

#[test]
fn signing_options_are_checked_before_anything_is_built() {
    let work = temp_dir("secure-boot-args-");
    let key = work.path().join("db.key");
    fs::write(&key, "not used").unwrap();
    let key = key.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "--signing-key",
                "/nonexistent/db.key",
                "--signing-cert",
                key,
            ],
            "--signing-key /nonexistent/db.key: ",
        ),
        (
            vec!["-t", "qcow2", "--signing-key", key, "--signing-cert", key],
            "--signing-key signs the live ISO's UEFI loader",
        ),
        (
            vec!["--signing-key", key],
            "--signing-key needs --signing-cert",
        ),
    ];
    for (args, expected) in cases {
        let out = osforge()
            .current_dir(repo())
            .args(["build", "-p", "ephemeral", "--cache-dir"])
            .arg(work.path().join("cache"))
            .arg("--output")
            .arg(work.path().join("out"))
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !work.path().join("cache").exists(),
            "{args:?}: work started"
        );
    }
}

/// `osforge inspect --json`: the ESP files with their signers.
fn esp_signers(iso: &Path) -> Vec<(String, Option<serde_json::Value>)> {
    let out = run_ok(osforge().args(["--json", "inspect"]).arg(iso));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    let partitions = report["iso"]["partitions"]
        .as_array()
        .unwrap_or_else(|| panic!("no partitions: {text}"));
    let esp = partitions
        .iter()
        .find(|p| p["filesystem"]["type"] == "vfat")
        .unwrap_or_else(|| panic!("no FAT partition: {text}"));
    esp["filesystem"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f.get("efi").cloned(),
            )
        })
        .collect()
}

#[test]
fn inspect_names_the_signer_of_every_efi_binary_as_sbverify_does() {
    let built = built();
    let files = esp_signers(&built.shim_iso);
    let work = temp_dir("secure-boot-inspect-");
    let esp = esp_of(&built.shim_iso, work.path());
    let mut checked = 0;
    for (path, efi) in &files {
        if !path.ends_with(".efi") && !path.ends_with(".EFI") {
            assert!(efi.is_none(), "{path} is not an EFI binary: {efi:?}");
            continue;
        }
        let efi = efi
            .as_ref()
            .unwrap_or_else(|| panic!("{path}: no signature report"));
        assert_eq!(efi["signed"], true, "{path}: {efi}");
        // sbverify --list names the same signing certificates.
        let listed = sbverify_list(&mcopy(&esp, path, work.path()));
        for signer in efi["signers"].as_array().unwrap() {
            let subject = signer["subject"].as_str().unwrap();
            let named = listed
                .lines()
                .any(|l| l.contains("subject: /") && l.ends_with(&format!("/CN={subject}")));
            assert!(named, "{path}: {subject} not in\n{listed}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "{files:?}");
    let own = esp_signers(&built.own_iso);
    assert_eq!(own.len(), 1, "{own:?}");
    let efi = own[0].1.as_ref().unwrap();
    assert_eq!(efi["signers"][0]["subject"], "osforge test db key", "{efi}");
    assert_eq!(efi["signers"].as_array().unwrap().len(), 1, "{efi}");
}

#[test]
fn boot_takes_ovmf_vars_only_for_uefi_and_only_a_file() {
    let built = built();
    let cases = [
        (
            vec![
                "--ovmf-vars",
                "/nonexistent/vars.fd",
                "--firmware",
                "uefi-secure",
            ],
            "--ovmf-vars /nonexistent/vars.fd: no such file",
        ),
        (
            vec!["--ovmf-vars", built.cert.to_str().unwrap()],
            "--ovmf-vars needs --firmware uefi or uefi-secure",
        ),
    ];
    for (args, expected) in cases {
        let out = osforge()
            .arg("boot")
            .arg(&built.shim_iso)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
