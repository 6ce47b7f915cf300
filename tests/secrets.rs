//! Secret variables (`{secret: {env: ...}}`, `{secret: {file: ...}}`): the
//! value lands in the image where the profile puts it, and nowhere osforge
//! writes for people or caches: not in the log, the `--json` report, the
//! cache's manifests and logs, the build manifest, the SBOM or the lock. A
//! secret that would reach the log fails the build and publishes nothing.
//!
//! Cheap: the small Debian tree tests/ansible.rs makes, as a `source:
//! tarball:`, configured and written as an OCI archive.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{flatten_oci_archive, osforge, require_root, run_ok, small_debian_tar, temp_dir};

const TOKEN: &str = "tok-8d41c3b0e2a95f17";
const MOTD: &str = "motd-secret-5e0a9c77";
/// The cloud-init templates of a profile without a base to inherit them.
const CLOUD_INIT: &str = "cloud_init: {user_data: ./user-data.tera, meta_data: ./meta-data.tera, network_config: null}\n";

fn profile_dir(yaml: &str) -> tempfile::TempDir {
    let tar = small_debian_tar().unwrap_or_else(|e| panic!("the test tree: {e}"));
    let dir = temp_dir("secrets-");
    if fs::hard_link(&tar, dir.path().join("rootfs.tar")).is_err() {
        fs::copy(&tar, dir.path().join("rootfs.tar")).unwrap();
    }
    fs::write(dir.path().join("motd.secret"), format!("{MOTD}\n")).unwrap();
    fs::write(dir.path().join("user-data.tera"), "#cloud-config\n").unwrap();
    fs::write(
        dir.path().join("meta-data.tera"),
        "instance-id: {{ instance_id }}\n",
    )
    .unwrap();
    fs::write(dir.path().join("image.yaml"), yaml).unwrap();
    dir
}

fn build(dir: &Path) -> Output {
    osforge()
        .args(["--json", "build", "--type", "oci", "--profile"])
        .arg(dir.join("image.yaml"))
        .arg("--output")
        .arg(dir.join("out"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("OSFORGE_SECRET_TEST_TOKEN", TOKEN)
        .env_remove("OSFORGE_PROFILE_PATH")
        .env(
            "OSFORGE_TEMPLATE_PATH",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates"),
        )
        .output()
        .unwrap()
}

/// Every file under `dir` whose bytes hold `needle`, except the image
/// trees and archives, where the secret belongs.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if name != "root" {
                found.extend(files_holding(&path, needle));
            }
        } else if kind.is_file()
            && !name.ends_with(".tar")
            && fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn secrets_reach_the_image_and_nothing_else() {
    require_root();
    let dir = profile_dir(
        &("description: secrets (tests/secrets.rs)\n\
         source: tarball:rootfs.tar\n\
         distro: {name: debian, suite: bookworm, arch: amd64}\n\
         hostname: secrets\n\
         variables:\n  \
           token: {secret: {env: OSFORGE_SECRET_TEST_TOKEN}}\n  \
           motd: {secret: {file: motd.secret}}\n\
         files:\n  \
           - {path: /etc/osforge/token, content: \"token={{ token }}\\n\", mode: \"0600\"}\n  \
           - {path: /etc/motd, content: \"{{ motd }}\\n\"}\n"
            .to_string()
            + CLOUD_INIT),
    );
    let out = build(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the build failed:\n{stderr}");
    for secret in [TOKEN, MOTD] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} in the output"
        );
        let leaked: Vec<PathBuf> = [dir.path().join("cache"), dir.path().join("out")]
            .iter()
            .flat_map(|d| files_holding(d, secret))
            .collect();
        assert!(leaked.is_empty(), "{secret} written to {leaked:?}");
    }
    // It is in the image, as the profile says.
    let image = dir.path().join("out/image.oci.tar");
    let flat = flatten_oci_archive(&image, dir.path());
    let read = |name: &str| {
        let out = run_ok(Command::new("tar").arg("-xOf").arg(&flat).arg(name));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(read("etc/osforge/token"), format!("token={TOKEN}\n"));
    assert_eq!(read("etc/motd"), format!("{MOTD}\n"));
}

#[test]
fn a_secret_that_would_be_logged_fails_the_build_and_publishes_nothing() {
    require_root();
    // A command of the profile's prints the value (as `cat` of a file holding
    // it would): the log shows ***, and the build stops before publishing.
    let dir = profile_dir(&format!(
        "description: a secret printed (tests/secrets.rs)\n\
         source: tarball:rootfs.tar\n\
         distro: {{name: debian, suite: bookworm, arch: amd64}}\n\
         hostname: secrets\n\
         variables: {{token: {{secret: {{env: OSFORGE_SECRET_TEST_TOKEN}}}}}}\n\
         files: [{{path: /etc/osforge/token, content: \"{{{{ token }}}}\"}}]\n\
         cmds: [{{cmd: \"echo the token is {TOKEN}\", loglevel: INFO}}]\n{CLOUD_INIT}"
    ));
    let out = build(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the build logged a secret and succeeded:\n{stderr}"
    );
    assert!(
        stderr.contains("a secret's value was about to be written to the build's log"),
        "{stderr}"
    );
    let layer_logs: Vec<String> = fs::read_dir(dir.path().join("cache/layer"))
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("layer.log")).ok())
        .collect();
    assert!(
        layer_logs.iter().any(|l| l.contains("the token is ***")),
        "the layer's log shows the line, hidden: {layer_logs:?}"
    );
    assert!(
        !stderr.contains(TOKEN),
        "the secret is in the log:\n{stderr}"
    );
    let published: Vec<_> = fs::read_dir(dir.path().join("out"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(published.is_empty(), "published {published:?}");
    let leaked = files_holding(&dir.path().join("cache"), TOKEN);
    assert!(leaked.is_empty(), "written to {leaked:?}");
}
