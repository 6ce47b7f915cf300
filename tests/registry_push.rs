//! `osforge build --type oci --push REF` (and `--publish registry=REF`):
//! base's configured rootfs pushed to a real registry started here (Debian's
//! docker-registry), pulled back with skopeo, and flattened: the same root
//! filesystem as the build's own oci.tar, under the same manifest digest.
//! A registry that cannot be reached, a bad reference and TLS verification
//! (on unless turned off) fail with one line naming the reference, and no
//! credential of the auth file.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::registry::Registry;
use support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `osforge build -p base -t oci` with `args`, not checked.
fn build(out: &Path, args: &[&str]) -> Output {
    osforge()
        .current_dir(repo())
        .args(["build", "-p", "base", "-t", "oci", "--output"])
        .arg(out)
        .arg("--cache-dir")
        .arg(shared_cache_dir())
        .args(["--var", "hostname=pushed"])
        .args(args)
        .output()
        .unwrap()
}

/// The manifest digest an oci-archive's index.json names.
fn archive_digest(archive: &Path, work: &Path) -> String {
    let dir = work.join("index");
    fs::create_dir_all(&dir).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&dir)
            .arg("index.json"),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The registry, the build's output and its report: held by the one test,
/// so that the registry is stopped when it ends.
struct Pushed {
    registry: Registry,
    work: tempfile::TempDir,
    report: serde_json::Value,
    archive: PathBuf,
}

fn reference(registry: &Registry, tag: &str) -> String {
    format!("127.0.0.1:{}/osforge/test:{tag}", registry.port)
}

fn push() -> Pushed {
    {
        require_root();
        require_tool("skopeo", "skopeo");
        let registry = Registry::start();
        let work = temp_dir("registry-push-");
        let out = work.path().join("out");
        let output = build(
            &out,
            &[
                "--json",
                "--push",
                &reference(&registry, "1"),
                "--publish",
                &format!("registry={},tls-verify=false", reference(&registry, "2")),
                "--tls-verify=false",
            ],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = serde_json::from_slice(&output.stdout).expect("--json report");
        Pushed {
            registry,
            archive: out.join("base.oci.tar"),
            work,
            report,
        }
    }
}

#[test]
fn a_pushed_image_pulls_back_as_the_build_s_and_bad_pushes_fail_with_one_line() {
    let p = push();
    the_pushed_image_is_the_build_s_oci_image_under_the_same_digest(&p);
    bad_references_unreachable_registries_and_tls_fail_with_one_line_and_no_credentials(&p);
}

fn the_pushed_image_is_the_build_s_oci_image_under_the_same_digest(p: &Pushed) {
    let local = archive_digest(&p.archive, p.work.path());
    let pushed = p.report["pushed"].as_array().expect("pushed in the report");
    assert_eq!(pushed.len(), 2, "{}", p.report);
    for (entry, tag) in pushed.iter().zip(["1", "2"]) {
        eprintln!("pushed: {entry}");
        assert_eq!(entry["reference"], reference(&p.registry, tag));
        assert_eq!(entry["digest"], local.as_str(), "{entry}");
        assert_eq!(entry["local_digest"], local.as_str(), "{entry}");
        // What the registry itself says.
        let inspected = run_ok(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
                .arg(format!("docker://{}", reference(&p.registry, tag))),
        );
        assert_eq!(String::from_utf8_lossy(&inspected.stdout).trim(), local);
    }

    // Pulled back and flattened: the configured rootfs, as the build wrote it.
    let pulled = p.work.path().join("pulled.oci.tar");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}", reference(&p.registry, "1")))
            .arg(format!("oci-archive:{}", pulled.display())),
    );
    let (mine, theirs) = (p.work.path().join("mine"), p.work.path().join("theirs"));
    let flat_mine = flatten_oci_archive(&p.archive, &mine);
    let flat_theirs = flatten_oci_archive(&pulled, &theirs);
    assert!(fs::metadata(&flat_mine).unwrap().len() > 100 << 20);
    assert_eq!(
        digest(&flat_mine),
        digest(&flat_theirs),
        "the pulled image's rootfs differs from the build's"
    );
}

/// The error line of a failed build (`--quiet`: nothing else is printed).
fn failure(output: &Output) -> (Option<i32>, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    (output.status.code(), stderr)
}

fn bad_references_unreachable_registries_and_tls_fail_with_one_line_and_no_credentials(p: &Pushed) {
    let out = p.work.path().join("failing");
    // base64("robot:hunter2-registry-pw")
    let auth_b64 = "cm9ib3Q6aHVudGVyMi1yZWdpc3RyeS1wdw==";
    let authfile = p.work.path().join("auth.json");
    fs::write(
        &authfile,
        format!(r#"{{"auths":{{"127.0.0.1:1":{{"auth":"{auth_b64}"}}}}}}"#),
    )
    .unwrap();
    let auth = authfile.to_str().unwrap();

    // Nothing listens on port 1.
    let (code, line) = failure(&build(
        &out,
        &[
            "--quiet",
            "--push",
            "127.0.0.1:1/osforge/test:1",
            "--tls-verify=false",
            "--authfile",
            auth,
        ],
    ));
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.contains("docker://127.0.0.1:1/osforge/test:1"),
        "{line}"
    );
    for secret in [auth_b64, "hunter2-registry-pw"] {
        assert!(!line.contains(secret), "{line}");
    }

    // TLS verification is on by default: the plain-HTTP registry is refused.
    let (code, line) = failure(&build(
        &out,
        &["--quiet", "--push", &reference(&p.registry, "tls")],
    ));
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.contains(&format!("docker://{}", reference(&p.registry, "tls"))),
        "{line}"
    );

    // Bad input fails before building, exit 2.
    for (args, needle) in [
        (vec!["--push", "Osforge/Test:1"], "Osforge/Test:1"),
        (
            vec!["--publish", "registry=127.0.0.1:5000/a,tls-verify=maybe"],
            "tls-verify=maybe",
        ),
        (
            vec!["--publish", "ftp://x/y"],
            "expected s3://BUCKET/PREFIX or registry=REF",
        ),
        (
            vec![
                "--push",
                "127.0.0.1:5000/a:1",
                "--authfile",
                "/nonexistent/auth.json",
            ],
            "--authfile /nonexistent/auth.json",
        ),
    ] {
        let never = p.work.path().join("never");
        let (code, line) = failure(&build(&never, &args));
        assert_eq!(code, Some(2), "{args:?}: {line}");
        assert!(line.contains(needle), "{args:?}: {line}");
        assert!(!never.exists(), "{args:?}");
    }
    // --push needs the OCI image.
    let output = osforge()
        .current_dir(repo())
        .args([
            "build",
            "-p",
            "base",
            "-t",
            "iso",
            "--push",
            "127.0.0.1:5000/a:1",
        ])
        .output()
        .unwrap();
    let (code, line) = failure(&output);
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains("--type oci"), "{line}");
}
