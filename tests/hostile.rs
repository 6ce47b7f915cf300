//! Malformed and hostile input: profiles, templates, network data, host files
//! and tar streams are untrusted. Each case must fail with one line that says
//! what is wrong and where, with its exit code, before any work starts, and
//! nothing may be written outside the work folder.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

struct Case {
    name: &'static str,
    /// Files written into the work folder first (path, contents).
    files: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    code: i32,
    /// What the one line on stderr must say.
    says: &'static str,
}

const BASE: &str = "inherits: [base]\n";

/// Profile cases: `profiles/<name>.yaml` holds BASE + the text, rendered.
const PROFILES: &[(&str, &str, &str)] = &[
    ("unknown-key", "hostnme: x\n", "hostnme"),
    ("epoch-not-a-number", "epoch: soon\n", "epoch"),
    ("wrong-type", "packages: {a: 1}\n", "packages: expected"),
    (
        "unclosed-bracket",
        "packages: [a, b\nhostname: x\n",
        "YAML syntax error",
    ),
    ("tabs", "users:\n\t- name: x\n", "YAML syntax error: tabs"),
    (
        "duplicate-key",
        "hostname: a\nhostname: b\n",
        "duplicate mapping key",
    ),
    ("unknown-tag", "packages: !append [a]\n", "!append"),
    (
        "alias-bomb",
        "variables:\n  a: &a [x,x,x,x,x,x,x,x,x]\n  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
        "too large or too complex",
    ),
    (
        "source-dotdot",
        "files: [{path: /etc/x, source: ../../../../etc/shadow}]\n",
        "outside the profile's folder",
    ),
    (
        "source-absolute",
        "files: [{path: /etc/x, source: /etc/shadow}]\n",
        "outside the profile's folder",
    ),
    (
        "key-file-dotdot",
        "repos: [{name: site, uri: \"http://deb.example/x\", suite: bookworm, components: [main], key_file: ../../etc/hostname}]\n",
        "repos[0].key_file",
    ),
    (
        "relative-path",
        "files: [{path: etc/x, content: a}]\n",
        "is not an absolute path",
    ),
    (
        "path-dotdot",
        "files: [{path: /etc/../../x, content: a}]\n",
        "is not normalised",
    ),
    (
        "directory-dotdot",
        "directories: [{path: /srv/../../x}]\n",
        "is not normalised",
    ),
    (
        "plain-password",
        "users: [{name: ops, password_hash: hunter2}]\n",
        "users[0].password_hash",
    ),
    (
        "bad-user-name",
        "users: [{name: \"Root!\"}]\n",
        "is not a valid name",
    ),
    (
        "bad-owner",
        "files: [{path: /x, content: a, owner: \"r:oot\"}]\n",
        "files[0].owner",
    ),
    (
        "bad-mode",
        "files: [{path: /x, content: a, mode: \"9999\"}]\n",
        "is not an octal mode",
    ),
    (
        "unit-escape",
        "systemd: {enable: [\"../../x.service\"]}\n",
        "not a valid systemd unit name",
    ),
    (
        "module-name",
        "kernel_modules: {load: [\"a b\"]}\n",
        "not a valid kernel module name",
    ),
    (
        "repo-name-escape",
        "repos: [{name: \"../x\", uri: \"http://a/b\", suite: bookworm, components: [main]}]\n",
        "not a valid repository name",
    ),
    (
        "package-injection",
        "packages: [\"vim; rm -rf /\"]\n",
        "is not a Debian package name",
    ),
    (
        "timezone-escape",
        "timezone: \"../../etc/passwd\"\n",
        "is not a time zone name",
    ),
    (
        "locale-newline",
        "locale: \"en_US.UTF-8\\nX\"\n",
        "is not a valid locale",
    ),
    (
        "ssh-key",
        "users: [{name: ops, ssh_authorized_keys: [\"not a key\"]}]\n",
        "not an SSH public key",
    ),
    (
        "limit-value",
        "limits: [{domain: \"*\", type: soft, item: nofile, value: lots}]\n",
        "limits[0].value",
    ),
    (
        "cmdline-quote",
        "kernel: {cmdline: [\"a=\\\"b\"]}\n",
        "unbalanced quotes",
    ),
    (
        "template-get-env",
        "files: [{path: /x, content: \"{{ get_env(name=\\\"HOME\\\") }}\"}]\n",
        "get_env is disabled",
    ),
    (
        "template-include",
        "files: [{path: /x, content: \"{% include \\\"/etc/passwd\\\" %}\"}]\n",
        "not supported",
    ),
    (
        "template-undefined",
        "files: [{path: /x, content: \"{{ nope }}\"}]\n",
        "undefined variable 'nope'",
    ),
    (
        "sudo-list",
        "users: [{name: ops, sudo: [ALL]}]\n",
        "true, false or a sudoers rule",
    ),
    (
        "partition-too-big",
        "inherits: [qcow2-host]\ndisk: {size: 1G}\n",
        "need",
    ),
    (
        "missing-parent",
        "inherits: [no-such-profile]\n",
        "no-such-profile",
    ),
];

const OTHER: &[Case] = &[
    Case {
        name: "undeclared-var",
        files: &[],
        args: &["render", "-p", "base", "--var", "nosuch=1"],
        code: 2,
        says: "has no variable 'nosuch'",
    },
    Case {
        name: "cmdline-append-quote",
        files: &[],
        args: &["render", "-p", "base", "--cmdline-append", "a=\"b"],
        code: 2,
        says: "--cmdline-append",
    },
    Case {
        name: "network-bad-mac",
        files: &[(
            "net.json",
            r#"{"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:12:34"}]}"#,
        )],
        args: &["render", "-p", "ephemeral", "--network-data", "net.json"],
        code: 2,
        says: "links[0].ethernet_mac_address: '52:54:00:12:34' is not a MAC address",
    },
    Case {
        name: "network-vlan-id",
        files: &[(
            "net.json",
            r#"{"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}, {"id": "v", "type": "vlan", "vlan_link": "a", "vlan_id": 5000}]}"#,
        )],
        args: &["render", "-p", "ephemeral", "--network-data", "net.json"],
        code: 2,
        says: "links[1].vlan_id: 5000 is not a VLAN id",
    },
    Case {
        name: "network-dangling-link",
        files: &[(
            "net.json",
            r#"{"links": [], "networks": [{"id": "n", "link": "bond9", "type": "ipv4_dhcp"}]}"#,
        )],
        args: &["render", "-p", "ephemeral", "--network-data", "net.json"],
        code: 2,
        says: "networks[0].link: no link 'bond9'",
    },
    Case {
        name: "network-bad-address",
        files: &[(
            "net.json",
            r#"{"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}], "networks": [{"id": "n", "link": "a", "type": "ipv4", "ip_address": "10.0.0.300", "netmask": "255.255.255.0"}]}"#,
        )],
        args: &["render", "-p", "ephemeral", "--network-data", "net.json"],
        code: 2,
        says: "is not an IP address",
    },
    Case {
        name: "network-garbage",
        files: &[("net.json", "{\"links\": [}")],
        args: &["render", "-p", "ephemeral", "--network-data", "net.json"],
        code: 2,
        says: "not valid network_data.json",
    },
    Case {
        name: "netplan-version-1",
        files: &[("network-config", "version: 1\nconfig: []\n")],
        args: &["render", "-p", "base", "--network-data", "network-config"],
        code: 2,
        says: "version 1 is not supported",
    },
    Case {
        name: "netplan-unknown-key",
        files: &[(
            "network-config",
            "version: 2\nethernets:\n  a: {dhcp4: true, rm-rf: /}\n",
        )],
        args: &["render", "-p", "base", "--network-data", "network-config"],
        code: 2,
        says: "rm-rf",
    },
    Case {
        name: "network-missing-file",
        files: &[],
        args: &["render", "-p", "base", "--network-data", "no-such-file"],
        code: 2,
        says: "--network-data: no-such-file",
    },
    Case {
        name: "user-data-no-header",
        files: &[("user-data", "runcmd: [reboot]\n")],
        args: &["render", "-p", "base", "--user-data", "user-data"],
        code: 2,
        says: "not a cloud-init header",
    },
    Case {
        name: "user-data-broken-yaml",
        files: &[("user-data", "#cloud-config\nruncmd: [reboot\n")],
        args: &["render", "-p", "base", "--user-data", "user-data"],
        code: 2,
        says: "--user-data",
    },
    Case {
        name: "tar-dotdot",
        files: &[],
        args: &["squashfs", "dotdot.tar", "out.sqfs"],
        code: 2,
        says: "'..' is not allowed in paths",
    },
    Case {
        name: "tar-through-symlink",
        files: &[],
        args: &["squashfs", "symlink.tar", "out.sqfs"],
        code: 2,
        says: "a parent component is not a directory",
    },
    Case {
        name: "tar-hardlink-out",
        files: &[],
        args: &["squashfs", "hardlink.tar", "out.sqfs"],
        code: 2,
        says: "'..' is not allowed in paths",
    },
];

/// A tar archive with hand-made headers (ustar), so entries can say what a
/// well-behaved tar would never write.
fn tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn write_tars(work: &Path) {
    fs::write(work.join("dotdot.tar"), tar(&[("../evil", b'0', "", b"x")])).unwrap();
    fs::write(
        work.join("symlink.tar"),
        tar(&[("link", b'2', "/etc", b""), ("link/evil", b'0', "", b"x")]),
    )
    .unwrap();
    fs::write(
        work.join("hardlink.tar"),
        tar(&[("a", b'1', "../../etc/shadow", b"")]),
    )
    .unwrap();
}

/// Every path under `root` except those under `except`.
fn listing(root: &Path, except: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.starts_with(except) {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            found.insert(path);
        }
    }
    found
}

fn run_case(top: &Path, case: &Case, profile_text: Option<&str>) -> Result<(), String> {
    let work = top.join("work").join(case.name);
    fs::create_dir_all(work.join("profiles")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["profiles", "templates"] {
        fs::create_dir_all(work.join(dir)).unwrap();
        for entry in fs::read_dir(repo.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            fs::copy(&path, work.join(dir).join(path.file_name().unwrap())).unwrap();
        }
    }
    if let Some(text) = profile_text {
        fs::write(work.join(format!("profiles/{}.yaml", case.name)), text).unwrap();
    }
    for (path, contents) in case.files {
        fs::write(work.join(path), contents).unwrap();
    }
    write_tars(&work);
    let out = Command::new(env!("CARGO_BIN_EXE_osforge"))
        .args(case.args)
        .current_dir(&work)
        .env_remove("OSFORGE_PROFILE_PATH")
        .env_remove("OSFORGE_TEMPLATE_PATH")
        .env_remove("OSFORGE_ALLOW_FILES_OUTSIDE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<String> = [
        (out.status.code() != Some(case.code))
            .then(|| format!("exit {:?}, expected {}", out.status.code(), case.code)),
        (stderr.lines().count() != 1).then(|| "not one line on stderr".to_string()),
        (!stderr.contains(case.says)).then(|| format!("does not say {:?}", case.says)),
        work.join("out.sqfs")
            .exists()
            .then(|| "left an image at the output path".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}: {stderr}", case.name, problems.join("; ")))
    }
}

#[test]
fn hostile_and_malformed_inputs_fail_with_one_line_and_write_nothing_outside_the_work_folder() {
    let top = temp_dir("hostile-");
    // What lies around the work folder, which no case may touch.
    fs::write(top.path().join("canary"), "untouched\n").unwrap();
    let before = listing(top.path(), &top.path().join("work"));

    let profile_cases: Vec<(Case, String)> = PROFILES
        .iter()
        .map(|(name, text, says)| {
            let text = if text.starts_with("inherits:") {
                text.to_string()
            } else {
                format!("{BASE}{text}")
            };
            let args: &'static [&'static str] =
                Box::leak(vec!["render", "-p", *name].into_boxed_slice());
            (
                Case {
                    name,
                    files: &[],
                    args,
                    code: 2,
                    says,
                },
                text,
            )
        })
        .collect();
    let mut failures = Vec::new();
    for (case, text) in &profile_cases {
        if let Err(e) = run_case(top.path(), case, Some(text)) {
            failures.push(e);
        }
    }
    for case in OTHER {
        if let Err(e) = run_case(top.path(), case, None) {
            failures.push(e);
        }
    }
    assert!(
        PROFILES.len() + OTHER.len() >= 40,
        "the issue asks for at least 30 cases"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(before, listing(top.path(), &top.path().join("work")));
    assert_eq!(
        fs::read_to_string(top.path().join("canary")).unwrap(),
        "untouched\n"
    );
    for escaped in ["/etc/evil", "/tmp/evil", "/evil"] {
        assert!(!Path::new(escaped).exists(), "{escaped} was written");
    }
}
