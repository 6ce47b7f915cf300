//! S3: `--publish`, `osforge publish` and `--cache-remote`, against a real
//! Garage started by the test (tests/support/garage.rs), read back with curl.
//!
//! - One node: a build's artifact set is published, listed, downloaded and
//!   checked against its .sha256; wrong credentials, a missing bucket and
//!   a dead endpoint each give one line naming endpoint and bucket, without
//!   the secret; an upload killed midway leaves nothing at its key.
//! - A 3-node cluster (replication 3): a second build with an empty local
//!   cache downloads the bootstrap, layer and configure stages the first one
//!   built; a third, after the configure stage's object is overwritten
//!   through the S3 API, finds the hash wrong, rebuilds it and uploads it anew.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};
use support::garage::Garage;
use support::{osforge, require_root, small_debian_tar, temp_dir};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(files_holding(&entry.path(), needle));
        } else if kind.is_file()
            && fs::read(entry.path())
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        {
            found.push(entry.path());
        }
    }
    found
}

const CLOUD_INIT: &str = "cloud_init: {user_data: ./user-data.tera, meta_data: ./meta-data.tera, network_config: null}\n";

fn write_templates(dir: &Path) {
    fs::write(dir.join("user-data.tera"), "#cloud-config\n").unwrap();
    fs::write(
        dir.join("meta-data.tera"),
        "instance-id: {{ instance_id }}\n",
    )
    .unwrap();
}

fn build_cmd(profile: &Path, out: &Path, cache: &Path) -> Command {
    support::build_command(&["--json", "build", "--type", "oci"], profile, out, cache)
}

/// The one line osforge printed on stderr for a failed command.
fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "it succeeded:\n{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    lines[0].to_string()
}

#[test]
fn a_published_set_lists_downloads_and_matches_its_checksums_and_failures_are_one_line() {
    require_root();
    let garage = Garage::single("images");
    let work = temp_dir("s3-publish-");
    let tar = small_debian_tar().unwrap_or_else(|e| panic!("the test tree: {e}"));
    fs::copy(&tar, work.path().join("rootfs.tar")).unwrap();
    write_templates(work.path());
    let profile = work.path().join("small.yaml");
    fs::write(
        &profile,
        "description: published (tests/s3.rs)\nsource: tarball:rootfs.tar\n\
         distro: {name: debian, suite: bookworm, arch: amd64}\nhostname: small\n"
            .to_string()
            + CLOUD_INIT,
    )
    .unwrap();
    let out_dir = work.path().join("out");
    let started = Instant::now();
    let mut cmd = build_cmd(&profile, &out_dir, &work.path().join("cache"));
    cmd.args(["--publish", "s3://images/site-a/builds"]);
    let out = garage.s3_flags(&mut cmd).output().unwrap();
    assert!(out.status.success(), "the build failed:\n{}", text(&out));
    eprintln!(
        "build and publish: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!text(&out).contains(&garage.secret) && !text(&out).contains(&garage.key_id));

    // Nothing osforge wrote holds the credentials: not the images, the
    // manifests, the lock file or the cache.
    for needle in [&garage.secret, &garage.key_id] {
        let found = files_holding(work.path(), needle.as_bytes());
        assert!(found.is_empty(), "a credential in {found:?}");
    }

    // Every file of the output directory is in the bucket, same size.
    let mut local: Vec<(String, u64)> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                format!("site-a/builds/{}", e.file_name().to_string_lossy()),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    local.sort();
    let listed = garage.list("site-a/builds/");
    assert_eq!(
        listed, local,
        "the bucket does not hold the output directory"
    );
    let published = report["published"]
        .as_array()
        .expect("published in the report");
    assert_eq!(published.len(), local.len(), "{report}");
    let last = published.last().unwrap()["url"].as_str().unwrap();
    assert!(
        last.ends_with(".sha256"),
        "the checksum was not uploaded last: {last}"
    );
    for p in published {
        eprintln!(
            "published {} ({} bytes in {:.2} s)",
            p["url"],
            p["bytes"],
            p["seconds"].as_f64().unwrap()
        );
    }

    // Downloaded, the image matches its published checksum and the local file.
    let image = garage
        .get("site-a/builds/small.oci.tar")
        .expect("the image");
    let sums =
        String::from_utf8(garage.get("site-a/builds/small.oci.tar.sha256").unwrap()).unwrap();
    assert_eq!(sums, format!("{}  small.oci.tar\n", sha256_hex(&image)));
    assert_eq!(image, fs::read(out_dir.join("small.oci.tar")).unwrap());
    let manifest: serde_json::Value = serde_json::from_slice(
        &garage
            .get("site-a/builds/small.oci.tar.manifest.json")
            .unwrap(),
    )
    .unwrap();
    assert!(
        manifest.to_string().contains(&sha256_hex(&image)),
        "{manifest}"
    );

    // The standalone command: wrong secret, a missing bucket, a dead endpoint.
    let file = out_dir.join("small.oci.tar.sha256");
    let publish = |to: &str, endpoint: &str, secret: &str| {
        osforge()
            .arg("publish")
            .arg(&file)
            .args([
                "--to",
                to,
                "--s3-endpoint",
                endpoint,
                "--s3-region",
                "garage",
            ])
            .env("S3_ACCESS", &garage.key_id)
            .env("S3_SECRET", secret)
            .output()
            .unwrap()
    };
    let endpoint = garage.endpoint();
    let wrong = "wr0ng-secret-5f0c9d2e7a";
    let line = one_error_line(&publish("s3://images/x", &endpoint, wrong));
    eprintln!("wrong secret: {line}");
    assert!(
        line.contains(&endpoint) && line.contains("s3://images"),
        "{line}"
    );
    assert!(line.contains("access denied"), "{line}");
    assert!(
        !line.contains(wrong) && !line.contains(&garage.key_id),
        "{line}"
    );
    let line = one_error_line(&publish("s3://no-such-bucket/x", &endpoint, &garage.secret));
    eprintln!("missing bucket: {line}");
    assert!(
        line.contains(&endpoint) && line.contains("s3://no-such-bucket"),
        "{line}"
    );
    assert!(!line.contains(&garage.secret), "{line}");
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let started = Instant::now();
    let line = one_error_line(&publish("s3://images/x", &dead, &garage.secret));
    eprintln!(
        "dead endpoint ({:.1} s): {line}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        line.contains(&dead) && line.contains("cannot connect"),
        "{line}"
    );
    // A build with wrong credentials stops before its first stage.
    let mut cmd = build_cmd(
        &profile,
        &work.path().join("out2"),
        &work.path().join("cache2"),
    );
    cmd.args(["--cache-remote", "s3://images/cache"]);
    garage.s3_flags(&mut cmd).env("S3_SECRET", wrong);
    let line = one_error_line(&cmd.output().unwrap());
    assert!(
        line.contains("--cache-remote s3://images/cache") && line.contains(&endpoint),
        "{line}"
    );
    assert!(
        !work.path().join("cache2/bootstrap").exists()
            && !work.path().join("cache2/import").exists()
    );

    killed_upload_leaves_nothing(&garage, work.path());
}

/// `osforge publish` of a large file in 5 MiB parts, SIGKILLed once a
/// quarter is up: no object at the key, nothing under the prefix.
fn killed_upload_leaves_nothing(garage: &Garage, dir: &Path) {
    let big = dir.join("big.img");
    let mut data = support::noise(96 << 20, 0x5eed);
    data.extend(std::iter::repeat_n(0u8, 32 << 20));
    fs::write(&big, &data).unwrap();
    drop(data);
    let mut cmd = osforge();
    cmd.arg("publish")
        .arg(&big)
        .args(["--to", "s3://images/killed", "--s3-part-size", "5"])
        .stderr(Stdio::piped());
    let mut child = garage.s3_flags(&mut cmd).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("25% uploaded") {
            break;
        }
    }
    assert!(
        seen.contains("25% uploaded"),
        "no progress before the end:\n{seen}"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "it finished before the kill:\n{seen}"
    );
    assert_eq!(garage.head_status("killed/big.img"), 404);
    assert_eq!(garage.list("killed/"), Vec::<(String, u64)>::new());

    // The same upload, not interrupted, is whole.
    let mut cmd = osforge();
    cmd.arg("publish")
        .arg(&big)
        .args(["--to", "s3://images/killed", "--s3-part-size", "5"]);
    let started = Instant::now();
    let out = garage.s3_flags(&mut cmd).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "128 MiB in 5 MiB parts: {seconds:.1} s ({:.0} MiB/s)",
        128.0 / seconds
    );
    assert_eq!(
        garage.list("killed/"),
        vec![("killed/big.img".to_string(), 128 << 20)]
    );
}

/// A minbase bootstrap, a layer adding `hello`, and its configure stage.
fn cluster_profiles(dir: &Path) -> PathBuf {
    write_templates(dir);
    fs::write(
        dir.join("tiny.yaml"),
        "description: minbase (tests/s3.rs)\n\
         distro: {name: debian, suite: bookworm, arch: amd64, variant: minbase}\n\
         hostname: tiny\n"
            .to_string()
            + CLOUD_INIT,
    )
    .unwrap();
    fs::write(
        dir.join("tiny-hello.yaml"),
        "description: minbase and hello\ninherits: [tiny]\npackages: [hello]\n\
         files: [{path: /etc/osforge-s3-test, content: \"shared\\n\"}]\n",
    )
    .unwrap();
    dir.join("tiny-hello.yaml")
}

fn stage<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    support::report_stage(report, name)
}

fn timings(report: &serde_json::Value) -> String {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let how = match s["remote"]["action"].as_str() {
                Some("downloaded") => "downloaded",
                _ if s["cached"] == true => "local",
                _ => "built",
            };
            let moved = s["remote"]["bytes"].as_u64().map_or(String::new(), |b| {
                format!(
                    " ({:.1} MiB {})",
                    b as f64 / 1048576.0,
                    s["remote"]["action"].as_str().unwrap()
                )
            });
            format!(
                "{} {how} {:.1} s{moved}",
                s["stage"].as_str().unwrap(),
                s["seconds"].as_f64().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn a_second_machine_downloads_the_stages_and_a_corrupt_one_is_rebuilt() {
    require_root();
    let garage = Garage::cluster("stage-cache");
    let work = temp_dir("s3-cache-");
    let profile = cluster_profiles(work.path());
    let build = |name: &str| {
        let mut cmd = build_cmd(
            &profile,
            &work.path().join(format!("out-{name}")),
            &work.path().join(format!("cache-{name}")),
        );
        cmd.args(["--cache-remote", "s3://stage-cache/osforge"]);
        let started = Instant::now();
        let out = garage.s3_flags(&mut cmd).output().unwrap();
        assert!(out.status.success(), "build {name} failed:\n{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!(
            "build {name}: {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            timings(&report)
        );
        report
    };
    let first = build("a");
    for name in ["bootstrap", "layer", "configure"] {
        let s = stage(&first, name);
        assert_eq!(s["cached"], false, "{s}");
        assert_eq!(s["remote"]["action"], "uploaded", "{s}");
    }
    let objects = garage.list("osforge/");
    for name in ["bootstrap", "layer", "configure"] {
        let key = stage(&first, name)["key"].as_str().unwrap();
        assert!(
            objects
                .iter()
                .any(|(k, _)| *k == format!("osforge/{name}/{key}.json")),
            "no descriptor of {name}: {objects:?}"
        );
    }

    // Another machine: empty local cache, everything comes from the store.
    // The log line of a stage is "<label>: <detail> [...]"; with --json the
    // detail is in the report.
    let second = build("b");
    for name in ["bootstrap", "layer", "configure"] {
        let s = stage(&second, name);
        assert_eq!(s["remote"]["action"], "downloaded", "{s}");
        assert_eq!(s["cached"], true, "{s}");
        assert_eq!(s["key"], stage(&first, name)["key"]);
        let detail = s["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("downloaded from s3://stage-cache/osforge/{name}/")),
            "{detail}"
        );
        assert!(detail.contains("sha256 verified"), "{detail}");
    }
    let image = |name: &str| {
        support::flatten_oci_archive(
            &work.path().join(format!("out-{name}/tiny-hello.oci.tar")),
            &work.path().join(format!("flat-{name}")),
        )
    };
    let read = |flat: &Path, member: &str| {
        let out = support::run_ok(Command::new("tar").arg("-xOf").arg(flat).arg(member));
        out.stdout
    };
    // The downloaded stages are the built ones, owners, modes and xattrs
    // included: the image layer made from them is the same blob.
    let layer = |name: &str| {
        let archive = work.path().join(format!("out-{name}/tiny-hello.oci.tar"));
        let out = support::run_ok(Command::new("tar").arg("-tvf").arg(&archive));
        let listing = String::from_utf8(out.stdout).unwrap();
        listing
            .lines()
            .filter(|l| l.contains("blobs/sha256/"))
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields[2].parse::<u64>().unwrap(), fields[5].to_string())
            })
            .max()
            .expect("a layer blob")
            .1
    };
    assert_eq!(layer("a"), layer("b"));
    let flat_b = image("b");
    assert_eq!(read(&flat_b, "etc/osforge-s3-test"), b"shared\n");
    assert!(!read(&flat_b, "usr/bin/hello").is_empty());

    // A neighbour overwrites the configure stage's data: the next machine
    // finds the hash wrong, rebuilds that stage only, and uploads it anew.
    let configure = stage(&first, "configure");
    let object = configure["remote"]["url"].as_str().unwrap();
    let object_key = object.strip_prefix("s3://stage-cache/").unwrap();
    let junk = work.path().join("junk");
    fs::write(&junk, support::noise(1 << 20, 7)).unwrap();
    garage.put(object_key, &junk);
    let third = build("c");
    let s = stage(&third, "configure");
    assert_eq!(s["cached"], false, "{s}");
    assert!(
        s["remote"]["corrupt"].as_str().unwrap().contains("sha256"),
        "{s}"
    );
    assert_eq!(s["remote"]["action"], "uploaded", "{s}");
    assert!(
        s["remote"]["corrupt"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{object}: sha256 ")),
        "{s}"
    );
    for name in ["bootstrap", "layer"] {
        assert_eq!(stage(&third, name)["remote"]["action"], "downloaded");
    }
    // What the descriptor names now is whole; the corrupt object is gone
    // (unless the rebuilt entry packed to the very same bytes and name).
    let key = s["key"].as_str().unwrap();
    let descriptor: serde_json::Value = serde_json::from_slice(
        &garage
            .get(&format!("osforge/configure/{key}.json"))
            .unwrap(),
    )
    .unwrap();
    let data = garage
        .get(&format!(
            "osforge/{}",
            descriptor["object"].as_str().unwrap()
        ))
        .unwrap();
    assert_eq!(sha256_hex(&data), descriptor["sha256"].as_str().unwrap());
    if !object.ends_with(descriptor["object"].as_str().unwrap()) {
        assert_eq!(
            garage.head_status(object_key),
            404,
            "the corrupt object is left"
        );
    }
    let flat_c = image("c");
    assert_eq!(read(&flat_c, "etc/osforge-s3-test"), b"shared\n");

    // A descriptor that is not one: the same, and the new descriptor stays.
    let descriptor_key = format!("osforge/configure/{key}.json");
    fs::write(&junk, b"{\"format\": 1, \"object\": ").unwrap();
    garage.put(&descriptor_key, &junk);
    let fourth = build("d");
    let s = stage(&fourth, "configure");
    assert!(
        s["remote"]["corrupt"]
            .as_str()
            .unwrap()
            .contains("not a stage descriptor"),
        "{s}"
    );
    assert_eq!(s["remote"]["action"], "uploaded", "{s}");
    let descriptor: serde_json::Value =
        serde_json::from_slice(&garage.get(&descriptor_key).expect("the new descriptor")).unwrap();
    assert_eq!(descriptor["format"], 1);
}
