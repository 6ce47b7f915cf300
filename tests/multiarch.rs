//! Multi-arch (issue 12): a profile's `arch:` builds that architecture's
//! root filesystem, through qemu-user when it is not the machine's; each
//! architecture is its own `--type oci` build, and `osforge oci index`
//! joins them into one multi-platform image that a real registry (Debian's
//! docker-registry) takes with `skopeo copy --all` and serves per platform.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::registry::Registry;
use support::*;

/// A small image of either architecture: the essential set and tzdata.
fn profile(dir: &Path, arch: &str) -> PathBuf {
    let path = dir.join(format!("small-{arch}.yaml"));
    fs::write(
        &path,
        format!(
            "description: a small {arch} container image\n\
             arch: {arch}\n\
             distro: {{name: debian, suite: bookworm, arch: amd64, components: [main], variant: essential}}\n\
             packages: [tzdata]\n\
             hostname: small\nlocale: C.UTF-8\ntimezone: Etc/UTC\n\
             variables: {{interface_match: \"e*\", ipv4_address: null, ipv4_gateway: null, dns_servers: [],\n  \
             hostname: small, fqdn: null, ssh_authorized_keys: [], bootcmd: [], runcmd: []}}\n"
        ),
    )
    .unwrap();
    path
}

fn build(profile: &Path, kind: &str, out: &Path) -> std::process::Output {
    try_build(profile, kind, out, &[], &[])
}

/// The ELF machine of `path` (62: x86-64, 183: AArch64).
fn elf_machine(path: &Path) -> u16 {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// `reference` for `arch`, pulled into a layout and flattened; the
/// machine of its /usr/bin/dpkg.
fn pulled_machine(reference: &str, arch: &str, work: &Path) -> u16 {
    let layout = work.join(format!("pulled-{arch}"));
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .args(["--override-arch", arch])
            .arg(reference)
            .arg(format!("oci:{}:pulled", layout.display())),
    );
    let flat = work.join(format!("flat-{arch}.tar"));
    run_ok(
        osforge()
            .args(["oci", "flatten"])
            .arg(format!("{}:pulled", layout.display()))
            .arg(&flat)
            .args(["--arch", arch]),
    );
    let root = work.join(format!("root-{arch}"));
    fs::create_dir_all(&root).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&flat)
            .arg("-C")
            .arg(&root)
            .arg("usr/bin/dpkg"),
    );
    elf_machine(&root.join("usr/bin/dpkg"))
}

#[test]
fn arm64_and_amd64_builds_join_into_one_image_a_registry_serves_per_platform() {
    require_root();
    require_tool("skopeo", "skopeo");
    let work = temp_dir("multiarch-");
    let w = work.path();

    // Boot loaders are x86's: an arm64 ISO is refused before any stage.
    let arm64 = profile(w, "arm64");
    let refused = build(&arm64, "iso", &w.join("refused"));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("for arm64") && stderr.contains("--type oci"),
        "{stderr}"
    );

    let mut archives = Vec::new();
    for arch in ["amd64", "arm64"] {
        let out = w.join(arch);
        let built = build(&profile(w, arch), "oci", &out);
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        archives.push(out.join(format!("small-{arch}.oci.tar")));
    }

    let multi = w.join("multi.oci.tar");
    let joined = run_ok(
        osforge()
            .args(["--json", "oci", "index"])
            .arg(&multi)
            .args(&archives)
            .args(["--tag", "1"]),
    );
    let summary: serde_json::Value = serde_json::from_slice(&joined.stdout).unwrap();
    assert_eq!(
        summary["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );

    // skopeo reads the archive as a multi-platform image and pushes all of it.
    let registry = Registry::start();
    let reference = format!("docker://127.0.0.1:{}/osforge/small:1", registry.port);
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci-archive:{}:1", multi.display()))
            .arg(&reference),
    );
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(&reference),
    );
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let mut platforms: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["amd64", "arm64"], "{index}");
    let digest = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(&reference),
    );
    assert_eq!(
        String::from_utf8_lossy(&digest.stdout).trim(),
        summary["digest"].as_str().unwrap(),
        "the registry keeps the index osforge wrote"
    );

    // Each platform is that architecture's root filesystem.
    assert_eq!(pulled_machine(&reference, "amd64", w), 62);
    assert_eq!(pulled_machine(&reference, "arm64", w), 183);
}
