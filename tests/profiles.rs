//! The profile system through the real binary: `osforge profiles` and
//! `osforge render` in a temporary directory holding copies of the shipped
//! profiles and templates (plus, where a test needs them, its own profiles or the
//! bad ones in `tests/fixtures/profiles`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use osforge::profile::{self, SearchPath};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_osforge");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A working directory with `profiles/` and `templates/` as a checkout has them.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        sandbox.copy_dir(&repo().join("profiles"), "profiles");
        sandbox.copy_dir(&repo().join("templates"), "templates");
        sandbox
    }

    /// Adds the bad profiles and their templates.
    fn with_fixtures() -> Sandbox {
        let sandbox = Sandbox::new();
        let fixtures = repo().join("tests/fixtures/profiles");
        sandbox.copy_dir(&fixtures, "profiles");
        sandbox.copy_dir(&fixtures.join("templates"), "templates");
        sandbox
    }

    fn copy_dir(&self, from: &Path, to: &str) {
        let target = self.dir.path().join(to);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_some_and(|e| e == "yaml" || e == "tera") {
                std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
            }
        }
    }

    fn write(&self, relative: &str, contents: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn osforge(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove(SearchPath::PROFILE_PATH_ENV)
            .env_remove(SearchPath::TEMPLATE_PATH_ENV)
            .output()
            .expect("run osforge")
    }

    /// `osforge render --json` for a profile that must render.
    fn render_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["render", "--json"];
        all.extend_from_slice(args);
        let out = self.osforge(&all);
        assert!(
            out.status.success(),
            "osforge {all:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("render --json prints JSON")
    }

    /// The library view of the same directory, for what the CLI does not print.
    fn load(&self, name: &str, vars: &[(&str, &str)]) -> profile::Profile {
        let search = SearchPath::new(
            vec![self.dir.path().join("profiles")],
            vec![self.dir.path().join("templates")],
        );
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        profile::load(name, &search, &vars).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn cmdline(rendered: &Value) -> &str {
    rendered["host"]["kernel_cmdline"]
        .as_str()
        .expect("a cmdline")
}

fn packages(rendered: &Value) -> Vec<&str> {
    rendered["profile"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect()
}

/// Asserts a failed render: exit code 2 and exactly one line on stderr that
/// names `file:` and `key_path:`.
fn assert_one_line_error(out: &Output, file: &str, key_path: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.contains(file), "names the file {file}: {stderr}");
    assert!(
        stderr.contains(&format!(" {key_path}: ")),
        "names the key path {key_path}: {stderr}"
    );
    stderr
}

const SHIPPED: [&str; 5] = [
    "base",
    "control-plane",
    "data-plane",
    "ephemeral",
    "qcow2-host",
];

#[test]
fn profiles_lists_every_shipped_profile_with_its_description() {
    let sandbox = Sandbox::new();
    let out = sandbox.osforge(&["profiles"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, SHIPPED);
    assert!(
        text.lines().all(|l| l.split_whitespace().count() > 1),
        "descriptions: {text}"
    );

    let out = sandbox.osforge(&["profiles", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), SHIPPED.len());
    assert_eq!(list[2]["name"], "data-plane");
    assert!(
        list[2]["description"]
            .as_str()
            .unwrap()
            .contains("huge pages")
    );
}

#[test]
fn every_shipped_profile_renders_files_that_parse_and_a_serial_console() {
    let sandbox = Sandbox::new();
    for name in SHIPPED {
        let rendered = sandbox.render_json(&["--profile", name]);
        let line = cmdline(&rendered);
        assert!(line.contains("console=ttyS0,115200n8"), "{name}: {line}");
        let host = &rendered["host"];
        let seed = host
            .get("nocloud")
            .or_else(|| host.get("configdrive"))
            .unwrap_or_else(|| panic!("{name} has a seed"));
        let user_data = seed["user_data"].as_str().unwrap();
        assert!(user_data.starts_with("#cloud-config\n"), "{name}");
        let parsed: Value = serde_saphyr::from_str(user_data).unwrap();
        assert_eq!(parsed["hostname"], host["hostname"], "{name}");
        if let Some(meta) = seed.get("meta_data").and_then(Value::as_str) {
            let meta: Value = serde_saphyr::from_str(meta).unwrap();
            assert_eq!(meta["instance-id"], host["instance_id"], "{name}");
            let net: Value =
                serde_saphyr::from_str(seed["network_config"].as_str().unwrap()).unwrap();
            assert_eq!(net["version"], 2, "{name}");
        } else {
            let meta: Value =
                serde_json::from_str(seed["meta_data_json"].as_str().unwrap()).unwrap();
            assert_eq!(meta["uuid"], host["uuid"], "{name}");
        }
        let sources = rendered["profile"]["source_files"].as_array().unwrap();
        assert_eq!(
            sources[0], "profiles/base.yaml",
            "{name}: base is merged first"
        );
    }
}

#[test]
fn the_data_plane_cmdline_takes_its_hugepages_from_variables() {
    let sandbox = Sandbox::new();
    let line = cmdline(&sandbox.render_json(&["--profile", "data-plane"])).to_string();
    for param in [
        "hugepagesz=1G",
        "hugepages=16",
        "default_hugepagesz=1G",
        "isolcpus=2-7",
        "rcu_nocbs=2-7",
        "transparent_hugepage=never",
    ] {
        assert!(line.split(' ').any(|p| p == param), "{param} in {line}");
    }

    let changed = sandbox.render_json(&["--profile", "data-plane", "--var", "hugepages=64"]);
    assert!(cmdline(&changed).split(' ').any(|p| p == "hugepages=64"));
    assert!(!cmdline(&changed).contains("hugepages=16"));

    let no_isolation = sandbox.render_json(&["--profile", "data-plane", "--var", "isolcpus="]);
    assert!(
        !cmdline(&no_isolation).contains("isolcpus"),
        "empty params are dropped"
    );
    assert!(!cmdline(&no_isolation).contains("rcu_nocbs"));
}

#[test]
fn the_ephemeral_host_is_its_own_config_drive() {
    let sandbox = Sandbox::new();
    let rendered = sandbox.render_json(&["--profile", "ephemeral", "--var", "hostname=eph-1"]);
    assert_eq!(rendered["profile"]["iso"]["volume_id"], "config-2");
    assert!(cmdline(&rendered).split(' ').any(|p| p == "boot=live"));
    let drive = &rendered["host"]["configdrive"];
    assert!(
        drive["network_data_json"].is_null(),
        "no NICs: DHCP fallback, no file"
    );
    let meta: Value = serde_json::from_str(drive["meta_data_json"].as_str().unwrap()).unwrap();
    assert_eq!(meta["hostname"], "eph-1");

    let nics = r#"nics=[{mac: "52:54:00:12:34:56", ipv4_address: 10.0.0.5, gateway: 10.0.0.1}]"#;
    let rendered = sandbox.render_json(&["--profile", "ephemeral", "--var", nics]);
    let net = rendered["host"]["configdrive"]["network_data_json"]
        .as_str()
        .unwrap();
    let net: Value = serde_json::from_str(net).unwrap();
    assert_eq!(net["links"][0]["ethernet_mac_address"], "52:54:00:12:34:56");
    assert_eq!(net["networks"][0]["ip_address"], "10.0.0.5");
}

#[test]
fn ssh_keys_and_commands_reach_user_data_through_variables() {
    let sandbox = Sandbox::new();
    let rendered = sandbox.render_json(&[
        "--profile",
        "base",
        "--var",
        r#"ssh_authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ops@example"]"#,
        "--var",
        r#"runcmd=["echo OSFORGE-MARKER > /dev/ttyS0"]"#,
    ]);
    let user_data: Value =
        serde_saphyr::from_str(rendered["host"]["nocloud"]["user_data"].as_str().unwrap()).unwrap();
    assert_eq!(
        user_data["ssh_authorized_keys"][0],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ops@example"
    );
    assert_eq!(user_data["runcmd"][0], "echo OSFORGE-MARKER > /dev/ttyS0");
    assert_eq!(user_data["ssh_pwauth"], false);
}

#[test]
fn the_text_output_shows_the_profile_the_seed_files_and_the_cmdline() {
    let sandbox = Sandbox::new();
    let out = sandbox.osforge(&[
        "render",
        "--profile",
        "base",
        "--cmdline-append",
        "quiet loglevel=3",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for header in [
        "==> profile <==",
        "==> user-data <==",
        "==> meta-data <==",
        "==> network-config <==",
        "==> kernel cmdline <==",
    ] {
        assert!(text.contains(header), "{header} in {text}");
    }
    assert!(
        text.trim_end()
            .ends_with("console=tty0 console=ttyS0,115200n8 quiet loglevel=3")
    );
    let profile_yaml = text
        .split("==> profile <==\n")
        .nth(1)
        .unwrap()
        .split("==> ")
        .next()
        .unwrap();
    let profile: Value = serde_saphyr::from_str(profile_yaml).unwrap();
    assert_eq!(profile["distro"]["suite"], "bookworm");
}

#[test]
fn parents_merge_left_to_right_and_the_child_lands_on_top() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/left.yaml",
        "inherits: [base]\nhostname: left\nlocale: de_DE.UTF-8\npackages: [left-tool]\nsysctl: {a.b: 1, c.d: left}\n",
    );
    sandbox.write(
        "profiles/right.yaml",
        "hostname: right\npackages: [right-tool, left-tool]\nsysctl: {c.d: right}\n",
    );
    sandbox.write(
        "profiles/child.yaml",
        "inherits: [left, right]\ntimezone: Europe/Berlin\npackages: [child-tool]\n",
    );
    let rendered = sandbox.render_json(&["--profile", "child"]);
    let profile = &rendered["profile"];
    assert_eq!(
        profile["os"]["hostname"], "right",
        "the later parent wins a scalar"
    );
    assert_eq!(
        profile["os"]["locale"], "de_DE.UTF-8",
        "an earlier parent's key survives"
    );
    assert_eq!(profile["os"]["timezone"], "Europe/Berlin");
    assert_eq!(
        profile["os"]["sysctl"],
        serde_json::json!({"a.b": 1, "c.d": "right"})
    );
    let pkgs = packages(&rendered);
    let tail = &pkgs[pkgs.len() - 3..];
    assert_eq!(
        tail,
        ["left-tool", "right-tool", "child-tool"],
        "appended in order, once"
    );
    let sources: Vec<&str> = profile["source_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .take(4)
        .collect();
    assert_eq!(
        sources,
        [
            "profiles/base.yaml",
            "profiles/left.yaml",
            "profiles/right.yaml",
            "profiles/child.yaml"
        ]
    );
}

#[test]
fn a_child_replaces_a_parents_list_only_when_it_says_replace() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/appends.yaml",
        "inherits: [base]\npackages: [extra, sudo]\n",
    );
    sandbox.write(
        "profiles/replaces.yaml",
        "inherits: [base]\npackages: !replace [linux-image-amd64, extra]\n",
    );
    let appended = sandbox.render_json(&["--profile", "appends"]);
    let pkgs = packages(&appended);
    assert_eq!(
        pkgs.iter().filter(|p| **p == "sudo").count(),
        1,
        "scalar duplicates dropped"
    );
    assert_eq!(pkgs.last(), Some(&"extra"));
    assert!(pkgs.contains(&"cloud-init"));

    let replaced = sandbox.render_json(&["--profile", "replaces"]);
    assert_eq!(packages(&replaced), ["linux-image-amd64", "extra"]);
}

#[test]
fn a_child_overrides_scalars_and_resets_a_value_with_null() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/small.yaml",
        "inherits: [control-plane]\ndisk:\n  size: 20G\nvariables:\n  hostname: cp-7\n",
    );
    sandbox.write(
        "profiles/diskless.yaml",
        "inherits: [control-plane]\ndisk: null\n",
    );
    let small = sandbox.render_json(&["--profile", "small"]);
    assert_eq!(small["profile"]["disk"]["size"], "20G");
    assert_eq!(
        small["profile"]["disk"]["partitions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(small["host"]["hostname"], "cp-7");
    let diskless = sandbox.render_json(&["--profile", "diskless"]);
    assert!(diskless["profile"].get("disk").is_none());
}

#[test]
fn a_diamond_merges_its_shared_parent_once() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/both.yaml",
        "inherits: [control-plane, data-plane]\nusers: [{name: ops, groups: [sudo]}]\n",
    );
    let rendered = sandbox.render_json(&["--profile", "both"]);
    let pkgs = packages(&rendered);
    assert_eq!(
        pkgs.iter().filter(|p| **p == "linux-image-amd64").count(),
        1
    );
    assert_eq!(
        rendered["profile"]["disk"]["partitions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(rendered["profile"]["os"]["users"][0]["name"], "ops");
    let line = cmdline(&rendered);
    assert_eq!(line.matches("console=ttyS0").count(), 1, "{line}");
}

#[test]
fn a_profile_can_be_loaded_by_path_with_parents_beside_it() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "site/profiles/edge.yaml",
        "inherits: [edge-base]\nhostname: edge\n",
    );
    sandbox.write(
        "site/profiles/edge-base.yaml",
        "inherits: ../../profiles/base.yaml\nlocale: C.UTF-8\n",
    );
    let rendered = sandbox.render_json(&["--profile", "site/profiles/edge.yaml"]);
    assert_eq!(rendered["profile"]["name"], "edge");
    assert_eq!(rendered["profile"]["os"]["locale"], "C.UTF-8");
}

#[test]
fn a_var_for_cloud_init_leaves_the_rootfs_and_os_cache_inputs_alone() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/keys/site.asc",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nkey\n",
    );
    sandbox.write(
        "profiles/with-repo.yaml",
        "inherits: [data-plane]\nrepos:\n  - {name: site, uri: \"file:///srv/site-repo\", suite: bookworm, components: [main], key_file: keys/site.asc}\n",
    );
    let plain = sandbox.load("with-repo", &[]);
    let varied = sandbox.load("with-repo", &[("hugepages", "64"), ("hostname", "dp-9")]);
    assert_eq!(
        plain.rootfs_inputs().fingerprint(),
        varied.rootfs_inputs().fingerprint()
    );
    assert_eq!(
        plain.os_inputs().fingerprint(),
        varied.os_inputs().fingerprint()
    );
    assert_ne!(
        plain.render_host().unwrap().kernel_cmdline,
        varied.render_host().unwrap().kernel_cmdline
    );
    assert_eq!(plain.repos[0].key.as_ref().unwrap().contents.len(), 41);
    assert!(
        plain
            .source_files
            .iter()
            .any(|p| p.ends_with("keys/site.asc"))
    );

    sandbox.write(
        "profiles/keys/site.asc",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnew\n",
    );
    let rekeyed = sandbox.load("with-repo", &[]);
    assert_ne!(
        plain.rootfs_inputs().fingerprint(),
        rekeyed.rootfs_inputs().fingerprint()
    );
    assert_eq!(
        plain.os_inputs().fingerprint(),
        rekeyed.os_inputs().fingerprint()
    );
}

#[test]
fn cmdline_append_is_checked_like_the_profiles_own_parameters() {
    let sandbox = Sandbox::new();
    let out = sandbox.osforge(&["render", "-p", "base", "--cmdline-append", "a=\"b"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.contains("--cmdline-append: 'a=\"b' has unbalanced quotes"),
        "{stderr}"
    );
}

#[test]
fn a_var_the_profile_does_not_declare_is_refused() {
    let sandbox = Sandbox::new();
    let out = sandbox.osforge(&["render", "-p", "data-plane", "--var", "hugepage=64"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.contains("--var hugepage: profile 'data-plane' has no variable 'hugepage'"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_profile_names_the_directories_searched() {
    let sandbox = Sandbox::new();
    let out = sandbox.osforge(&["render", "-p", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr.trim(),
        "osforge: error: profile 'nope' not found (searched profiles/)"
    );
}

#[test]
fn profiles_and_templates_are_found_through_the_environment() {
    let empty = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(empty.path())
            .env(SearchPath::PROFILE_PATH_ENV, repo().join("profiles"))
            .env_remove(SearchPath::TEMPLATE_PATH_ENV)
            .output()
            .unwrap()
    };
    let listed = run(&["profiles"]);
    assert!(listed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        SHIPPED.len()
    );
    let rendered = run(&["render", "--json", "--profile", "control-plane"]);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
}

#[test]
fn a_template_that_renders_broken_yaml_is_named() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "templates/broken-output.tera",
        "#cloud-config\nhosts: [{{ hostname }}\n",
    );
    sandbox.write(
        "profiles/broken-output.yaml",
        "inherits: [base]\ncloud_init:\n  user_data: broken-output.tera\n",
    );
    let out = sandbox.osforge(&["render", "-p", "broken-output"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.starts_with("osforge: error: templates/broken-output.tera: rendered #cloud-config user-data is not valid YAML: line 2"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_key_names_its_file_line_and_key_path() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "unknown-key"]);
    let line = assert_one_line_error(&out, "profiles/unknown-key.yaml:5:", "users[0].nmae");
    assert!(
        line.contains("unknown key (did you mean 'name'? expected one of name, uid,"),
        "{line}"
    );
}

#[test]
fn a_wrong_type_says_what_was_expected() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "wrong-type"]);
    let line = assert_one_line_error(&out, "profiles/wrong-type.yaml:4:", "sysctl.vm.swappiness");
    assert!(
        line.ends_with("expected a number or string, got a list\n"),
        "{line}"
    );
}

#[test]
fn a_missing_parent_names_the_directories_searched() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "missing-parent"]);
    let line = assert_one_line_error(&out, "profiles/missing-parent.yaml:2:", "inherits[1]");
    assert!(
        line.contains("parent 'nope' not found (searched profiles/)"),
        "{line}"
    );
}

#[test]
fn an_inheritance_cycle_is_shown_whole() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "cycle-a"]);
    let line = assert_one_line_error(&out, "profiles/cycle-b.yaml:2:", "inherits[1]");
    assert!(
        line.contains("cycle cycle-a -> cycle-b -> cycle-a"),
        "{line}"
    );
}

#[test]
fn a_template_syntax_error_names_the_template_and_line() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "template-syntax"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.contains("templates/syntax-error.tera:3: syntax error: expected"),
        "{stderr}"
    );
}

#[test]
fn an_undefined_variable_names_the_template_line_and_variable() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "undefined-variable"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr,
        "osforge: error: templates/undefined-variable.tera:3: undefined variable 'hostnme'\n"
    );
}

#[test]
fn an_invalid_kernel_parameter_is_reported_where_it_is_written() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "invalid-cmdline"]);
    let line = assert_one_line_error(
        &out,
        "profiles/invalid-cmdline.yaml:8:",
        "kernel.cmdline[1]",
    );
    assert!(
        line.contains("'isolcpus= 2' is not a valid kernel parameter (contains whitespace)"),
        "{line}"
    );
}

#[test]
fn a_plain_password_is_refused_without_being_echoed() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "bad-password-hash"]);
    let line = assert_one_line_error(
        &out,
        "profiles/bad-password-hash.yaml:6:",
        "users[0].password_hash",
    );
    assert!(
        line.contains("plain passwords are never accepted"),
        "{line}"
    );
    assert!(!line.contains("changeme"), "{line}");
}

#[test]
fn a_bad_partition_layout_names_the_partition_at_fault() {
    let out = Sandbox::with_fixtures().osforge(&["render", "-p", "bad-partition-layout"]);
    let line = assert_one_line_error(
        &out,
        "profiles/bad-partition-layout.yaml:5:",
        "disk.partitions[0].type",
    );
    assert!(
        line.contains("a second esp partition (at most one is allowed)"),
        "{line}"
    );
}

#[test]
fn a_var_used_in_the_os_configuration_is_part_of_the_configure_key() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/web.yaml",
        "inherits: [base]\nvariables: {swappiness: 10}\nsysctl: {vm.swappiness: \"{{ swappiness }}\"}\nusers: [{name: ops, sudo: true}]\n",
    );
    let plain = sandbox.load("web", &[]);
    let tuned = sandbox.load("web", &[("swappiness", "60")]);
    assert_eq!(
        plain.rootfs_inputs().fingerprint(),
        tuned.rootfs_inputs().fingerprint()
    );
    assert_ne!(
        plain.os_inputs().fingerprint(),
        tuned.os_inputs().fingerprint()
    );
    let vars = [("swappiness".to_string(), "60".to_string())];
    assert_eq!(
        tuned.per_host_os_variables(&vars),
        vec![("swappiness", "sysctl.vm.swappiness")]
    );
    let rendered = sandbox.render_json(&["-p", "web", "--var", "swappiness=60"]);
    assert_eq!(rendered["profile"]["os"]["sysctl"]["vm.swappiness"], "60");
    assert_eq!(rendered["profile"]["os"]["users"][0]["sudo"], true);
}

#[test]
fn an_undefined_variable_in_a_file_content_names_the_file_line_and_key() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/web.yaml",
        "inherits: [base]\nfiles:\n  - path: /etc/web.conf\n    content: \"listen {{ web_port }};\"\n",
    );
    let out = sandbox.osforge(&["render", "-p", "web"]);
    let stderr = assert_one_line_error(&out, "profiles/web.yaml:4", "files[0].content");
    assert!(stderr.contains("undefined variable 'web_port'"), "{stderr}");
}

#[test]
fn an_unclosed_bracket_is_a_yaml_syntax_error_at_its_line() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/broken.yaml",
        "inherits: [base]\npackages: [vim, curl\nhostname: web\n",
    );
    let out = sandbox.osforge(&["render", "-p", "broken"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("profiles/broken.yaml:3: YAML syntax error: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("the '[' on line 2 is not closed"),
        "{stderr}"
    );
}

#[test]
fn sudo_takes_a_boolean_or_a_rule_and_nothing_else() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "profiles/admins.yaml",
        "inherits: [base]\nusers: [{name: a, sudo: true}, {name: b, sudo: false}, {name: c, sudo: \"ALL=(ALL) ALL\"}]\n",
    );
    let p = sandbox.load("admins", &[]);
    let rules: Vec<Option<&str>> =
        p.os.users
            .iter()
            .map(|u| u.sudo.as_ref().and_then(|s| s.rule()))
            .collect();
    assert_eq!(
        rules,
        vec![Some("ALL=(ALL) NOPASSWD:ALL"), None, Some("ALL=(ALL) ALL")]
    );
    sandbox.write(
        "profiles/admins.yaml",
        "inherits: [base]\nusers: [{name: a, sudo: [ALL]}]\n",
    );
    let out = sandbox.osforge(&["render", "-p", "admins"]);
    let stderr = assert_one_line_error(&out, "profiles/admins.yaml:2", "users[0].sudo");
    assert!(stderr.contains("true, false or a sudoers rule"), "{stderr}");
}

#[test]
fn a_hosts_network_data_reaches_the_seed_in_the_form_its_datasource_reads() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "site/node-1/network_data.json",
        r#"{"links": [{"id": "eno1", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"},
                      {"id": "eno1.41", "type": "vlan", "vlan_link": "eno1", "vlan_id": 41}],
            "networks": [{"id": "oam", "link": "eno1.41", "type": "ipv4", "ip_address": "10.23.25.101",
                          "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.23.25.1"}]}],
            "services": [{"type": "dns", "address": "10.23.25.2"}]}"#,
    );
    // The config drive gets the file as written.
    let drive = sandbox.render_json(&[
        "-p",
        "ephemeral",
        "--network-data",
        "site/node-1/network_data.json",
    ]);
    let json = drive["host"]["configdrive"]["network_data_json"]
        .as_str()
        .unwrap();
    assert!(json.contains("\"vlan_id\": 41"), "{json}");
    // A NoCloud host gets the same network as netplan v2.
    let nocloud = sandbox.render_json(&[
        "-p",
        "base",
        "--network-data",
        "site/node-1/network_data.json",
    ]);
    let yaml = nocloud["host"]["nocloud"]["network_config"]
        .as_str()
        .unwrap();
    let plan = osforge::netconfig::Netplan::parse(yaml).unwrap();
    assert_eq!(plan.vlans["eno1.41"].addresses, vec!["10.23.25.101/24"]);
    assert_eq!(plan.vlans["eno1.41"].link.as_deref(), Some("eno1"));

    // A netplan file that names interfaces by glob cannot become a config drive.
    sandbox.write(
        "site/node-2/network-config",
        "version: 2\nethernets:\n  all:\n    match: {name: \"en*\"}\n    dhcp4: true\n",
    );
    let out = sandbox.osforge(&[
        "render",
        "-p",
        "ephemeral",
        "--network-data",
        "site/node-2/network-config",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "--network-data: ethernets.all.match.macaddress: a config drive names interfaces by MAC"
        ),
        "{stderr}"
    );

    sandbox.write(
        "site/node-3/network_data.json",
        r#"{"links": [{"id": "a", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:5"}]}"#,
    );
    let out = sandbox.osforge(&[
        "render",
        "-p",
        "ephemeral",
        "--network-data",
        "site/node-3/network_data.json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("site/node-3/network_data.json: links[0].ethernet_mac_address: '52:54:00:12:34:5' is not a MAC address"), "{stderr}");
}

#[test]
fn a_hosts_own_user_data_replaces_the_template_and_is_checked() {
    let sandbox = Sandbox::new();
    sandbox.write("site/user-data", "#cloud-config\nruncmd: [echo site]\n");
    let rendered = sandbox.render_json(&["-p", "ephemeral", "--user-data", "site/user-data"]);
    assert_eq!(
        rendered["host"]["configdrive"]["user_data"],
        "#cloud-config\nruncmd: [echo site]\n"
    );
    sandbox.write("site/bad-user-data", "runcmd: [echo site]\n");
    let out = sandbox.osforge(&["render", "-p", "base", "--user-data", "site/bad-user-data"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--user-data: site/bad-user-data: user-data starts with 'runcmd: [echo site]', not a cloud-init header"), "{stderr}");
}

#[test]
fn files_a_profile_names_stay_inside_its_folder() {
    let sandbox = Sandbox::new();
    sandbox.write("secret-on-the-build-host", "root:$6$hash\n");
    sandbox.write(
        "profiles/escape.yaml",
        "inherits: [base]\nfiles: [{path: /etc/x, source: ../secret-on-the-build-host}]\n",
    );
    let out = sandbox.osforge(&["render", "-p", "escape"]);
    let stderr = assert_one_line_error(&out, "profiles/escape.yaml:2", "files[0].source");
    assert!(
        stderr.contains("is outside the profile's folder"),
        "{stderr}"
    );

    // A symlink beside the profile that points out is the same escape.
    std::os::unix::fs::symlink(
        sandbox.dir.path().join("secret-on-the-build-host"),
        sandbox.dir.path().join("profiles/innocent"),
    )
    .unwrap();
    sandbox.write(
        "profiles/escape.yaml",
        "inherits: [base]\nrepos: [{name: site, uri: \"http://deb.example/site\", suite: bookworm, components: [main], key_file: innocent}]\n",
    );
    let out = sandbox.osforge(&["render", "-p", "escape"]);
    assert_one_line_error(&out, "profiles/escape.yaml:2", "repos[0].key_file");

    // The site can allow it explicitly.
    let out = Command::new(BIN)
        .args(["render", "-p", "escape"])
        .current_dir(sandbox.dir.path())
        .env(SearchPath::ALLOW_OUTSIDE_ENV, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's own examples: every OS value may be a template, typed ones
/// (`uid`, `sudo`) and checked ones (`hostname`, `timezone`, `password_hash`)
/// included. Each file is checked alone first; a templated value is checked
/// once rendered, and a bad rendered value still names the file, line and key.
#[test]
fn templated_os_values_pass_the_per_file_check_and_are_checked_once_rendered() {
    let sandbox = Sandbox::new();
    let hash = format!("$6$saltsalt${}", "a".repeat(86));
    sandbox.write(
        "profiles/templated.yaml",
        &format!(
            "inherits: [base]\n\
             variables: {{name: edge-1, zone: Europe/Berlin, id: 1500, admin: true, admin_hash: '{hash}', lang: de_DE.UTF-8}}\n\
             hostname: \"{{{{ name }}}}\"\n\
             timezone: \"{{{{ zone }}}}\"\n\
             locale: \"{{{{ lang }}}}\"\n\
             users: [{{name: ops, uid: \"{{{{ id }}}}\", sudo: \"{{{{ admin }}}}\", password_hash: \"{{{{ admin_hash }}}}\"}}]\n"
        ),
    );
    let p = sandbox.load("templated", &[]);
    assert_eq!(p.os.hostname.to_string(), "edge-1");
    assert_eq!(p.os.timezone.to_string(), "Europe/Berlin");
    assert_eq!(p.os.locale.to_string(), "de_DE.UTF-8");
    assert_eq!(p.os.users[0].uid, Some(1500));
    assert_eq!(
        p.os.users[0].password_hash.as_ref().map(|h| h.to_string()),
        Some(hash.clone())
    );
    let renamed = sandbox.load("templated", &[("name", "edge-2")]);
    assert_eq!(renamed.os.hostname.to_string(), "edge-2");

    // Rendered, then checked: the error points at the templated line.
    let out = sandbox.osforge(&[
        "render",
        "--profile",
        "templated",
        "--var",
        "zone=Not/A Zone",
    ]);
    let stderr = assert_one_line_error(&out, "templated.yaml:4", "timezone");
    assert!(stderr.contains("is not a time zone name"), "{stderr}");
    // A typo next to a template is still a typo.
    sandbox.write(
        "profiles/typo.yaml",
        "inherits: [base]\nvariables: {id: 7}\nusers: [{name: ops, uid: \"{{ id }}\", shel: /bin/sh}]\n",
    );
    let out = sandbox.osforge(&["render", "--profile", "typo"]);
    assert_one_line_error(&out, "typo.yaml:3", "users[0].shel");
}
