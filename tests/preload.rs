//! `images:` (issue 12): container images baked in for containerd, for
//! air-gapped sites, with BOSH import-images' keys (`name`, `auth`,
//! `retagAs`). Two images made here are served by real registries (Debian's
//! docker-registry; one asks for a login), baked into a qcow2 with
//! containerd, and the disk boots in QEMU with no network card: the import
//! unit has put both images, and the retag, into containerd's k8s.io
//! namespace, with the registry's digests, as `ctr images ls` prints on the
//! console.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::qemu::{ImageFormat, VmConfig, has_complete_line, run_until};
use support::registry::Registry;
use support::*;

const USER: &str = "preloader";
const PASSWORD: &str = "Wz7-registry-pass";
const BEGIN: &str = "OSFORGE-PRELOAD-BEGIN";
const END: &str = "OSFORGE-PRELOAD-END";
const RETAG: &str = "registry.k8s.io/osforge/beta:v2";

/// A one-file image as an oci-archive.
fn make_image(dir: &Path, name: &str) -> std::path::PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc").join(name), format!("{name}\n")).unwrap();
    let archive = dir.join(format!("{name}.oci.tar"));
    run_ok(osforge().args(["oci", "create"]).arg(&tree).arg(&archive));
    archive
}

fn push(archive: &Path, reference: &str, creds: Option<&str>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.args(["--dest-creds", creds]);
    }
    run_ok(
        cmd.arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{reference}")),
    );
    let mut inspect = Command::new("skopeo");
    inspect.args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"]);
    if let Some(creds) = creds {
        inspect.args(["--creds", creds]);
    }
    let out = run_ok(inspect.arg(format!("docker://{reference}")));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn auth_value() -> String {
    osforge::util::base64::encode(format!("{USER}:{PASSWORD}").as_bytes())
}

/// The profile: containerd, the two images, and a unit that prints
/// containerd's list on the console once the import unit has run.
fn profile_text(alpha: &str, beta: &str) -> String {
    format!(
        r#"description: preloaded images for an air-gapped node
inherits: [qcow2-host]
packages: [containerd]
variables:
  registry_auth: {{secret: {{env: OSFORGE_SECRET_REGISTRY_AUTH}}}}
images:
  - name: {alpha}
    auth: "{{{{ registry_auth }}}}"
    tls_verify: false
  - name: {beta}
    retagAs: {RETAG}
    tls_verify: false
files:
  - path: /etc/systemd/system/osforge-test-images.service
    content: |
      [Unit]
      Description=osforge test: containerd's images on the console
      After=osforge-import-images.service
      Wants=osforge-import-images.service
      [Service]
      Type=oneshot
      StandardOutput=journal+console
      ExecStart=/bin/sh -c 'echo {BEGIN}; ctr -n k8s.io images ls; echo "{END} import=$(systemctl is-active osforge-import-images.service) nics=$(ls /sys/class/net | tr "\n" ,)"'
      [Install]
      WantedBy=multi-user.target
systemd:
  enable: [osforge-test-images.service]
"#
    )
}

fn build(profile: &Path, kind: &str, out: &Path, env: &[(&str, &str)]) -> std::process::Output {
    try_build(profile, kind, out, &["--var", "hostname=airgap-1"], env)
}

#[test]
fn two_preloaded_images_are_in_containerd_at_first_boot_with_no_network() {
    require_root();
    require_tool("skopeo", "skopeo");
    let work = temp_dir("preload-");
    let w = work.path();
    let private = Registry::start_with_login(USER, PASSWORD);
    let open = Registry::start();
    let alpha = format!("127.0.0.1:{}/osforge/alpha:1", private.port);
    let beta = format!("127.0.0.1:{}/osforge/beta:2", open.port);
    let alpha_digest = push(
        &make_image(w, "alpha"),
        &alpha,
        Some(&format!("{USER}:{PASSWORD}")),
    );
    let beta_digest = push(&make_image(w, "beta"), &beta, None);

    let profile = w.join("airgap.yaml");
    fs::write(&profile, profile_text(&alpha, &beta)).unwrap();
    let auth = auth_value();

    // A wrong password fails before the first stage, in one line that
    // names the profile, the entry and the image, and shows no credential.
    let wrong = osforge::util::base64::encode(format!("{USER}:not-the-password").as_bytes());
    let refused = build(
        &profile,
        "qcow2",
        &w.join("refused"),
        &[("OSFORGE_SECRET_REGISTRY_AUTH", &wrong)],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    for part in ["airgap.yaml", "images[0]", &alpha] {
        assert!(last.contains(part), "{part} not in: {stderr}");
    }
    assert!(
        !stderr.contains("bootstrap") && !stderr.contains("layer"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&wrong) && !stderr.contains("not-the-password"),
        "{stderr}"
    );
    assert!(!w.join("refused").join("airgap.qcow2").exists());

    // An image with no containerd could not import them: refused once the
    // rootfs is known, before anything is pulled. Its image's credentials
    // are an auth.json the profile names (`auth: {file: F}`): accepted, since
    // the refusal is the containerd one, after the registry was asked.
    let bare = w.join("bare.yaml");
    fs::write(
        w.join("auth.json"),
        format!(
            "{{\"auths\": {{\"127.0.0.1:{}\": {{\"auth\": \"{}\"}}}}}}",
            private.port,
            auth_value()
        ),
    )
    .unwrap();
    fs::write(
        &bare,
        format!(
            "description: no containerd\ninherits: [base]\nimages:\n  - {{name: \"{alpha}\", auth: {{file: auth.json}}, tls_verify: false}}\n"
        ),
    )
    .unwrap();
    let refused = build(&bare, "oci", &w.join("bare"), &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("bare.yaml") && last.contains("no containerd") && last.contains("packages"),
        "{stderr}"
    );

    let out = w.join("out");
    let built = build(
        &profile,
        "qcow2",
        &out,
        &[("OSFORGE_SECRET_REGISTRY_AUTH", &auth)],
    );
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&built.stdout);
    for secret in [auth.as_str(), PASSWORD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let images = report["images"].as_array().expect("report lists images");
    assert_eq!(images.len(), 2, "{report}");
    assert_eq!(images[0]["name"], alpha.as_str());
    assert_eq!(images[0]["digest"], alpha_digest.as_str());
    assert_eq!(images[0]["registry_digest"], alpha_digest.as_str());
    assert_eq!(images[1]["tags"], serde_json::json!([beta.as_str(), RETAG]));
    assert_eq!(images[1]["digest"], beta_digest.as_str());
    let stage = report_stage(&report, "images");
    assert!(
        stage["detail"].as_str().unwrap().contains("baked 2 image"),
        "{stage}"
    );

    // Neither the credential nor an auth.json went into the image or the
    // cache entry.
    let entry = shared_cache_dir()
        .join("images")
        .join(stage["key"].as_str().unwrap());
    let found = Command::new("grep")
        .args(["-rlsF", "-e", PASSWORD, "-e", &auth])
        .arg(&entry)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "credential found in {}",
        String::from_utf8_lossy(&found.stdout)
    );
    let listing: serde_json::Value = serde_json::from_slice(
        &fs::read(entry.join("root/var/lib/osforge/images/images.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(listing.as_array().unwrap().len(), 2);

    let qcow2 = out.join("airgap.qcow2");
    let mut config = VmConfig::new(&qcow2, ImageFormat::Qcow2, w);
    config.network = false;
    config.memory_mib = 1536;
    let console = run_until(&config, "airgap", w, Duration::from_secs(900), |log| {
        has_complete_line(log, END)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let listed = &console[console.find(BEGIN).expect("begin marker")..];
    let end_line = listed.lines().find(|l| l.contains(END)).unwrap();
    assert!(end_line.contains("import=active"), "{end_line}");
    // Only the loopback: the images came from the disk.
    assert!(end_line.contains("nics=lo,"), "{end_line}");
    for (name, digest) in [
        (alpha.as_str(), alpha_digest.as_str()),
        (beta.as_str(), beta_digest.as_str()),
        (RETAG, beta_digest.as_str()),
    ] {
        // Lines come through the journal: "[  44.2] sh[317]: REF TYPE DIGEST ...".
        assert!(
            listed.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.contains(&name) && words.contains(&digest)
            }),
            "{name} {digest} not listed:\n{listed}"
        );
    }
}

#[test]
fn an_image_without_containerd_or_with_a_bad_name_is_refused_with_one_line() {
    let work = temp_dir("preload-bad-");
    let w = work.path();
    for (images, expected) in [
        ("images:\n  - {name: \"Bad/Name:1\"}\n", "images[0].name"),
        (
            "images:\n  - {name: \"r.example/a:1\", auth: \"bm8tY29sb24=\"}\n",
            "images[0].auth",
        ),
        (
            "images:\n  - {name: \"r.example/a:1\"}\n  - {name: \"r.example/b:1\", retagAs: \"r.example/a:1\"}\n",
            "images[1].name",
        ),
        (
            "images:\n  - {name: \"r.example/a:1\", auth: {file: nowhere.json}}\n",
            "images[0].auth",
        ),
    ] {
        let profile = w.join("bad.yaml");
        fs::write(
            &profile,
            format!("description: bad\ninherits: [base]\n{images}"),
        )
        .unwrap();
        let refused = build(&profile, "iso", &w.join("out"), &[]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("bad.yaml") && stderr.contains(expected),
            "{stderr}"
        );
        assert!(!stderr.contains("bm8tY29sb24="), "{stderr}");
    }
}
