//! `osforge build --hosts FILE` with hosts files that are wrong: each fails
//! before any stage runs, on one line naming the file, line and key, with
//! exit code 2, and writes nothing (no image folder, no cache). A small
//! profile of its own (`web`, with a variable in its sysctl) is enough, as
//! nothing is built. The ten-host build itself is in `build_iso.rs`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::{osforge, temp_dir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `web.yaml` inherits the shipped `base`; its `swappiness` variable is used
/// in the OS configuration, so it is part of the configure stage's key.
const WEB_PROFILE: &str = "inherits: [base]\nvariables: {swappiness: 10}\nsysctl: {vm.swappiness: \"{{ swappiness }}\"}\n";

/// Runs `osforge build` of `web` with `hosts` as the hosts file, in `dir`.
fn build_with_hosts(dir: &Path, hosts: &str, extra: &[&str]) -> Output {
    fs::write(dir.join("web.yaml"), WEB_PROFILE).unwrap();
    fs::write(dir.join("hosts.yaml"), hosts).unwrap();
    osforge()
        .current_dir(dir)
        .env("OSFORGE_PROFILE_PATH", repo().join("profiles"))
        .env("OSFORGE_TEMPLATE_PATH", repo().join("templates"))
        .args(["build", "--profile", "web.yaml", "--type", "iso", "--hosts"])
        .arg("hosts.yaml")
        .args(["--output", "images", "--cache-dir", "cache"])
        .args(extra)
        .output()
        .unwrap()
}

/// Exit code 2, and nothing made: no image folder, no cache.
fn assert_refused_before_any_work(dir: &Path, out: &Output, case: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
    assert!(!dir.join("images").exists(), "{case}: images written");
    assert!(!dir.join("cache").exists(), "{case}: a stage started");
    stderr
}

#[test]
fn bad_hosts_files_fail_before_any_stage_on_one_line_with_exit_2_and_write_nothing() {
    let cases = [
        (
            "unknown key",
            "hosts:\n  - name: node-1\n    varz: {fqdn: a.example}\n",
            "hosts.yaml:3: hosts[0].varz: unknown key (did you mean 'vars'? expected one of name, vars, ssh_authorized_keys, cmdline_append, network_data, user_data)",
        ),
        (
            "duplicate name",
            "hosts:\n  - name: node-1\n  - name: node-2\n  - name: NODE-1\n",
            "hosts.yaml:4: hosts[2].name: host name 'NODE-1' is given twice (first at hosts[0], line 2)",
        ),
        (
            "undeclared variable",
            "hosts:\n  - name: node-1\n    vars:\n      fqdn: node-1.example\n      ipv4_adress: 10.0.0.11/24\n",
            "hosts.yaml:5: hosts[0].vars.ipv4_adress: profile 'web' has no variable 'ipv4_adress' (it has ",
        ),
        (
            "variable of the OS configuration",
            "hosts:\n  - name: node-1\n  - name: node-2\n    vars: {swappiness: 60}\n",
            "hosts.yaml:4: hosts[1].vars.swappiness: host node-2: variable 'swappiness' is used in the OS configuration (sysctl.vm.swappiness), but --hosts builds one configured rootfs for all hosts",
        ),
        (
            "a value its templates cannot render",
            "hosts:\n  - name: node-1\n  - name: node-2\n    vars: {ssh_authorized_keys: 5}\n",
            "hosts.yaml:3: hosts[1]: host node-2: ",
        ),
        (
            "no hosts",
            "hosts: []\n",
            "hosts.yaml:1: hosts: expected at least one host",
        ),
        (
            "YAML syntax",
            "hosts:\n  - {name: node-1\n  - name: node-2\n",
            "hosts.yaml:2: YAML syntax error: ",
        ),
    ];
    for (case, hosts, expected) in cases {
        let dir = temp_dir("hosts-bad-");
        let out = build_with_hosts(dir.path(), hosts, &[]);
        let stderr = assert_refused_before_any_work(dir.path(), &out, case);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{case}: {stderr}");
        let message = stderr
            .trim_end()
            .strip_prefix("osforge: error: ")
            .unwrap_or(&stderr);
        assert!(
            message.starts_with(expected),
            "{case}: {stderr}\nexpected: {expected}"
        );
    }
}

#[test]
fn files_a_host_names_are_read_beside_the_hosts_file_and_checked() {
    let dir = temp_dir("hosts-files-");
    fs::create_dir_all(dir.path().join("node-1")).unwrap();
    fs::write(dir.path().join("node-1/user-data"), "hostname: no-header\n").unwrap();
    let cases = [
        (
            "hosts:\n  - name: node-1\n    user_data: node-1/user-data\n",
            "hosts.yaml:3: hosts[0].user_data: node-1/user-data: ",
            "not a cloud-init header",
        ),
        (
            "hosts:\n  - name: node-1\n    network_data: /etc/hostname\n",
            "hosts.yaml:3: hosts[0].network_data: '/etc/hostname' is outside the hosts file's folder",
            "OSFORGE_ALLOW_FILES_OUTSIDE=1",
        ),
    ];
    for (hosts, at, why) in cases {
        let out = build_with_hosts(dir.path(), hosts, &[]);
        let stderr = assert_refused_before_any_work(dir.path(), &out, hosts);
        assert!(stderr.contains(at) && stderr.contains(why), "{stderr}");
    }
}

#[test]
fn hosts_name_their_own_images_so_name_is_refused_with_them() {
    let dir = temp_dir("hosts-name-");
    let out = build_with_hosts(dir.path(), "hosts:\n  - name: node-1\n", &["--name", "x"]);
    let stderr = assert_refused_before_any_work(dir.path(), &out, "--name");
    assert!(stderr.contains("--name"), "{stderr}");
}
