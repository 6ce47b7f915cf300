//! The `ansible:` key end to end, with the real ansible-playbook and its
//! chroot connection: `osforge build` runs playbooks against a small Debian
//! tree, and the tests look at the trees in the cache entries the `--json`
//! report names.
//!
//! The tree is `mmdebstrap --variant=minbase` with python3 (what Ansible's
//! modules need) and a placeholder kernel and initrd, so that an ISO can be
//! written without a real kernel. It is made once (about a minute) and kept
//! in the target's tmp folder; each test's profile takes it as
//! `source: tarball:`. The stage cache is emptied once per run and shared by
//! the tests, so the source and configure stages are built once.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use support::{osforge, require_root, run_ok, small_debian_tar, temp_dir};

/// The image's hostname: the inventory name of the image host.
const HOST: &str = "imagehost";

struct Fixture {
    tar: PathBuf,
    cache: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
    let made = FIXTURE.get_or_init(|| {
        require_root();
        let tar = small_debian_tar()?;
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ansible-cache");
        let _ = fs::remove_dir_all(&cache);
        fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
        Ok(Fixture { tar, cache })
    });
    made.as_ref()
        .unwrap_or_else(|e| panic!("the test tree: {e}"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder with `image.yaml` (the tree as its source, an lz4 squashfs, the
/// given `ansible:` section and other keys), its cloud-init templates and
/// the tree's tarball.
fn profile_dir(name: &str, extra: &str) -> tempfile::TempDir {
    let dir = temp_dir(name);
    let tar = dir.path().join("rootfs.tar");
    if fs::hard_link(&fixture().tar, &tar).is_err() {
        fs::copy(&fixture().tar, &tar).unwrap();
    }
    fs::write(dir.path().join("user-data.tera"), "#cloud-config\n").unwrap();
    fs::write(
        dir.path().join("meta-data.tera"),
        "instance-id: {{ instance_id }}\n",
    )
    .unwrap();
    let profile = format!(
        "description: minbase with python3 (tests/ansible.rs)\n\
         source: tarball:rootfs.tar\n\
         distro: {{name: debian, suite: bookworm, arch: amd64}}\n\
         hostname: {HOST}\n\
         cloud_init: {{user_data: ./user-data.tera, meta_data: ./meta-data.tera, network_config: null}}\n\
         iso: {{squashfs: {{compression: lz4, level: null}}}}\n\
         {extra}"
    );
    fs::write(dir.path().join("image.yaml"), profile).unwrap();
    dir
}

/// `osforge --json build` of the folder's profile as an ISO.
fn build(dir: &Path, extra_args: &[&str]) -> Output {
    osforge()
        .args(["--json", "build", "--type", "iso", "--profile"])
        .arg(dir.join("image.yaml"))
        .arg("--output")
        .arg(dir.join("out"))
        .arg("--cache-dir")
        .arg(&fixture().cache)
        .args(extra_args)
        .env("OSFORGE_PLAYBOOK_PATH", repo().join("playbooks"))
        .env("OSFORGE_TEMPLATE_PATH", repo().join("templates"))
        .env_remove("OSFORGE_PROFILE_PATH")
        .output()
        .expect("run osforge")
}

fn build_ok(dir: &Path, extra_args: &[&str]) -> serde_json::Value {
    let out = build(dir, extra_args);
    assert!(
        out.status.success(),
        "osforge build failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("build --json prints a report")
}

/// The report's stages as (label, cached), in order.
fn stages(report: &serde_json::Value) -> Vec<(String, bool)> {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let label = s["label"].as_str().unwrap_or(s["stage"].as_str().unwrap());
            (label.to_string(), s["cached"].as_bool().unwrap())
        })
        .collect()
}

/// The root tree of the stage labelled `label` in the report.
fn stage_root(report: &serde_json::Value, label: &str) -> PathBuf {
    let stage = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == label)
        .unwrap_or_else(|| panic!("no stage {label} in {report}"));
    let dir = fixture()
        .cache
        .join(stage["stage"].as_str().unwrap())
        .join(stage["key"].as_str().unwrap());
    dir.join("root")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A playbook with a nonce, so that its stage is new in every run.
fn playbook(tasks: &str) -> String {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "# nonce {nonce}\n- name: Test play\n  hosts: all\n  gather_facts: false\n  tasks:\n{tasks}"
    )
}

#[test]
fn a_playbook_of_the_repository_adds_a_file_a_package_and_a_user() {
    let dir = profile_dir(
        "ansible-example",
        "variables: {example_user: fromprofile}\n\
         ansible:\n  playbooks: example\n  inventory: inventory.ini\n  groups: [osforge_example]\n  \
         extra_vars: {example_user: builder}\n",
    );
    let report = build_ok(dir.path(), &[]);
    let labels = stages(&report);
    assert!(
        labels.contains(&("ansible example.yml".to_string(), false)),
        "{labels:?}"
    );
    let root = stage_root(&report, "ansible example.yml");
    // The host is in the group the profile named, so the inventory's
    // group_vars reach the play.
    assert_eq!(
        read(&root.join("etc/osforge-example")),
        "from group_vars/osforge_example.yml\n"
    );
    let status = read(&root.join("var/lib/dpkg/status"));
    assert!(
        status.contains("Package: hello\nStatus: install ok installed\n"),
        "hello is not installed"
    );
    // extra_vars win over the profile's variables.
    let passwd = read(&root.join("etc/passwd"));
    assert!(passwd.contains("\nbuilder:x:"), "{passwd}");
    assert!(!passwd.contains("fromprofile"), "{passwd}");
    // What the working container set up for the run is gone.
    assert!(!root.join("usr/sbin/policy-rc.d").exists());
    assert!(fs::read_dir(root.join("tmp")).unwrap().next().is_none());
    // The log is kept in the entry; the image goes out as an ISO.
    assert!(read(&root.with_file_name("ansible.log")).contains("TASK [Install a package]"));
    assert!(dir.path().join("out/image.iso").is_file());
}

#[test]
fn a_failing_task_fails_the_build_naming_it_and_leaves_no_cache_entry() {
    let dir = profile_dir("ansible-fail", "ansible:\n  playbooks: [./broken.yml]\n");
    fs::write(
        dir.path().join("broken.yml"),
        playbook(
            "    - name: Write a file first\n      ansible.builtin.copy: {dest: /etc/before, content: \"x\\n\"}\n\
             \x20   - name: This task fails on purpose\n      ansible.builtin.shell: echo 'no such widget' >&2; exit 3\n",
        ),
    )
    .unwrap();
    let out = build(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("osforge: error:"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    for expected in [
        "playbook broken.yml",
        "task 'This task fails on purpose'",
        &format!("failed on {HOST}"),
        "rc 3",
        "no such widget",
    ] {
        assert!(line.contains(expected), "{expected:?} not in {line}");
    }
    // The log the error names holds the whole run; the stage has no entry.
    let log = PathBuf::from(line.rsplit_once("full log in ").unwrap().1.trim());
    assert!(read(&log).contains("TASK [Write a file first]"));
    let key = log
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("ansible-")
        .to_string();
    let ansible = fixture().cache.join("ansible");
    let leftovers: Vec<_> = fs::read_dir(&ansible)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&key) && !n.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!dir.path().join("out/image.iso").exists());
}

#[test]
fn changing_only_a_playbook_rebuilds_its_stage_and_those_after_it() {
    let dir = profile_dir(
        "ansible-rerun",
        "ansible:\n  playbooks: [osconfig-extras.yml, ./second.yml]\n",
    );
    let second = dir.path().join("second.yml");
    let task =
        "    - name: Mark\n      ansible.builtin.copy: {dest: /etc/mark, content: \"one\\n\"}\n";
    fs::write(&second, playbook(task)).unwrap();
    let first = build_ok(dir.path(), &[]);
    let labels = stages(&first);
    let ansible: Vec<_> = labels
        .iter()
        .filter(|(l, _)| l.starts_with("ansible"))
        .collect();
    assert_eq!(
        ansible,
        [
            &("ansible osconfig-extras.yml".to_string(), false),
            &("ansible second.yml".to_string(), false)
        ]
    );
    // Without variables, osconfig-extras.yml changes nothing.
    let extras = first["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "ansible osconfig-extras.yml")
        .unwrap();
    let detail = extras["detail"].as_str().unwrap();
    assert!(!detail.contains("changed="), "{detail}");
    assert_eq!(
        read(&stage_root(&first, "ansible second.yml").join("etc/mark")),
        "one\n"
    );

    fs::write(&second, read(&second).replace("one", "two")).unwrap();
    let again = build_ok(dir.path(), &[]);
    let cached: Vec<(String, bool)> = stages(&again);
    let expect = |label: &str, was_cached: bool| {
        assert!(
            cached.contains(&(label.to_string(), was_cached)),
            "{label} cached={was_cached} expected in {cached:?}"
        );
    };
    expect("source image", true);
    expect("configure", true);
    expect("ansible osconfig-extras.yml", true);
    expect("ansible second.yml", false);
    expect("squashfs", false);
    assert_eq!(
        read(&stage_root(&again, "ansible second.yml").join("etc/mark")),
        "two\n"
    );

    // The ISO is written for each build; every cached stage is reused.
    let unchanged = stages(&build_ok(dir.path(), &[]));
    assert!(
        unchanged.iter().all(|(label, c)| *c || label == "iso"),
        "{unchanged:?}"
    );
}

#[test]
fn osconfig_extras_sets_banners_kdump_downloads_and_user_scripts() {
    let hostname_sha256 = {
        let out = run_ok(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '{HOST}\\n' | sha256sum")),
        );
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    };
    let dir = profile_dir(
        "ansible-extras",
        &format!(
            "ansible:\n  playbooks: osconfig-extras\n  extra_vars:\n    \
             banners: {{login: Authorized use only, motd: Welcome}}\n    \
             kdump_tools: {{install: false, crashkernel: 256M, config: {{USE_KDUMP: 1}}}}\n    \
             fetch_from_url: [{{url: 'file:///etc/hostname', checksum: 'sha256:{hostname_sha256}', dest: /opt/fetched/hostname}}]\n    \
             user_scripts:\n      - {{name: now, file_content: echo built > /etc/built}}\n      \
             - {{name: later on, file_content: echo booted > /etc/booted, run_context: first_boot}}\n"
        ),
    );
    let report = build_ok(dir.path(), &[]);
    let root = stage_root(&report, "ansible osconfig-extras.yml");
    assert_eq!(read(&root.join("etc/issue")), "Authorized use only\n");
    assert_eq!(read(&root.join("etc/issue.net")), "Authorized use only\n");
    assert_eq!(read(&root.join("etc/motd")), "Welcome\n");
    assert!(read(&root.join("etc/default/grub.d/kdump-tools.cfg")).contains("crashkernel=256M"));
    assert_eq!(read(&root.join("etc/default/kdump-tools")), "USE_KDUMP=1\n");
    assert_eq!(
        read(&root.join("opt/fetched/hostname")),
        format!("{HOST}\n")
    );
    assert_eq!(read(&root.join("etc/built")), "built\n");
    // The first-boot script waits for the first boot.
    assert!(!root.join("etc/booted").exists());
    assert!(
        read(&root.join("usr/local/lib/osforge/first-boot/01-later-on")).contains("echo booted")
    );
    let wants = root.join("etc/systemd/system/multi-user.target.wants/osforge-first-boot.service");
    assert_eq!(
        fs::read_link(wants).unwrap(),
        Path::new("/etc/systemd/system/osforge-first-boot.service")
    );
}

#[test]
fn the_build_proxy_reaches_modules_and_is_not_written_into_the_image() {
    // A name found nowhere else in a Debian tree (192.0.2.1 is, in docs).
    let proxy = "http://osforge-test-proxy.invalid:3128";
    let dir = profile_dir("ansible-proxy", "ansible:\n  playbooks: [./proxy.yml]\n");
    fs::write(
        dir.path().join("proxy.yml"),
        playbook(
            "    - name: What a module's environment says\n      ansible.builtin.command: printenv http_proxy https_proxy\n      register: seen\n\
             \x20   - name: Keep it for the test\n      ansible.builtin.copy: {dest: /root/proxy-seen, content: \"{{ seen.stdout }}\\n\"}\n",
        ),
    )
    .unwrap();
    let report = build_ok(dir.path(), &["--proxy", proxy]);
    let root = stage_root(&report, "ansible proxy.yml");
    assert_eq!(
        read(&root.join("root/proxy-seen")),
        format!("{proxy}\n{proxy}\n")
    );
    let found = std::process::Command::new("grep")
        .args(["-rlF", "--exclude=proxy-seen", "osforge-test-proxy"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "the proxy is in {}",
        String::from_utf8_lossy(&found.stdout)
    );
}

#[test]
fn an_image_without_python3_is_refused_naming_what_to_add() {
    let dir = profile_dir(
        "ansible-nopython",
        "cmds: ['rm -f /usr/bin/python3 /usr/bin/python3.11']\nansible:\n  playbooks: [example.yml]\n",
    );
    let out = build(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the image has no /usr/bin/python3")
            && stderr.contains("add python3 to the profile's packages"),
        "{stderr}"
    );
}

#[test]
fn ansible_key_mistakes_are_reported_at_their_line_before_anything_runs() {
    let cases = [
        (
            "verbosity",
            "ansible:\n  playbooks: example\n  verbosity: 7\n",
            "image.yaml:9: ansible.verbosity: 7 is not a verbosity (0 to 4",
        ),
        (
            "missing",
            "ansible:\n  playbooks: [example, nope]\n",
            "image.yaml:8: ansible.playbooks[1]: playbook 'nope' not found (searched",
        ),
        (
            "group",
            "ansible:\n  playbooks: example\n  groups: [web-servers]\n",
            "image.yaml:9: ansible.groups[0]: 'web-servers' is not an Ansible group name",
        ),
        (
            "outside",
            "ansible:\n  playbooks: ../elsewhere.yml\n",
            "image.yaml:8: ansible.playbooks: '../elsewhere.yml' is outside the profile's folder",
        ),
        (
            "syntax",
            "ansible:\n  playbooks: ./bad.yml\n",
            "image.yaml:8: ansible.playbooks: ",
        ),
    ];
    for (name, yaml, expected) in cases {
        let dir = profile_dir(&format!("ansible-key-{name}"), yaml);
        fs::write(dir.path().join("bad.yml"), "- hosts: all\n  tasks: [\n").unwrap();
        let out = build(dir.path(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: {expected:?} not in {stderr}"
        );
        if name == "syntax" {
            assert!(stderr.contains("bad.yml: YAML syntax error"), "{stderr}");
        }
    }
}
