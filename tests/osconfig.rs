//! The native configuration step on a real Debian root made by mmdebstrap:
//! every setting lands where the system reads it, a second run changes
//! nothing, and a hostile image cannot make it write outside its root.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use osforge::osconfig::{self, DirSpec, FileSpec, LimitSpec, OsSettings, UserSpec};
use support::*;

/// A pristine minbase root with what the settings below need, made once;
/// each test works on its own copy.
fn pristine_root() -> &'static Path {
    static ROOT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = ROOT.get_or_init(|| {
        mmdebstrap_root(
            "osconfig-root",
            "minbase",
            "systemd-sysv,locales,tzdata,sudo,openssh-server",
        )
        .map(|(_, root)| root)
    });
    r.as_ref().unwrap_or_else(|e| panic!("mmdebstrap: {e}"))
}

fn copy_of_root(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = temp_dir(name);
    let root = dir.path().join("root");
    run_ok(
        Command::new("cp")
            .args(["-a"])
            .arg(pristine_root())
            .arg(&root),
    );
    (dir, root)
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOsforgeTestKeyOnlyForTestsAAAAAAAAAAAAAA test@osforge";
// crypt(3) SHA-512 of a throwaway string, only to check where the hash goes.
const HASH: &str = "$6$osforge$Zx2kEdtSf9.1JqgFJ8UpF7VwRLjdnW/H8d9s0Y8hEFtBaa3VT5bUjb6j2J0vCC6v3dG0V6oXQRbSQwWjC5iZ0/";

fn settings() -> OsSettings {
    let motd = b"Welcome to an osforge host\n".to_vec();
    OsSettings {
        hostname: "configured-host".into(),
        locale: "en_US.UTF-8".into(),
        timezone: "Europe/Berlin".into(),
        users: vec![UserSpec {
            name: "ops".into(),
            uid: Some(1500),
            groups: vec!["sudo".into()],
            shell: Some("/bin/bash".into()),
            ssh_authorized_keys: vec![KEY.into()],
            password_hash: Some(HASH.into()),
            sudo: Some("ALL=(ALL) NOPASSWD:ALL".into()),
        }],
        sysctl: vec![
            ("vm.swappiness".into(), "10".into()),
            ("net.ipv4.ip_forward".into(), "1".into()),
        ],
        modules_load: vec!["br_netfilter".into()],
        modules_blacklist: vec!["floppy".into()],
        limits: vec![LimitSpec {
            domain: "*".into(),
            kind: "soft".into(),
            item: "nofile".into(),
            value: "65536".into(),
        }],
        directories: vec![DirSpec {
            path: "/opt/site/data".into(),
            mode: 0o750,
            owner: "ops".into(),
            group: "ops".into(),
        }],
        files: vec![FileSpec {
            path: "/etc/motd".into(),
            contents_digest: String::new(),
            contents: motd,
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        }],
        units_enable: vec!["ssh.service".into()],
        units_disable: vec!["e2scrub_reap.service".into()],
        units_mask: vec!["apt-daily.timer".into()],
    }
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_setting_lands_where_debian_reads_it() {
    let (_dir, root) = copy_of_root("osconfig-apply-");
    osconfig::apply(&root, &settings()).unwrap();
    assert_eq!(read(&root, "/etc/hostname"), "configured-host\n");
    assert!(read(&root, "/etc/hosts").contains("127.0.1.1\tconfigured-host"));
    assert_eq!(read(&root, "/etc/default/locale"), "LANG=en_US.UTF-8\n");
    let archive = fs::metadata(root.join("usr/lib/locale/locale-archive")).expect("locale-gen ran");
    assert!(archive.len() > 0);
    assert_eq!(
        fs::read_link(root.join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    assert_eq!(read(&root, "/etc/timezone"), "Europe/Berlin\n");

    let passwd = read(&root, "/etc/passwd");
    let ops = passwd
        .lines()
        .find(|l| l.starts_with("ops:"))
        .expect("user ops");
    assert_eq!(ops, "ops:x:1500:1500::/home/ops:/bin/bash");
    assert!(
        read(&root, "/etc/shadow")
            .lines()
            .any(|l| l.starts_with(&format!("ops:{HASH}:")))
    );
    assert!(
        read(&root, "/etc/group")
            .lines()
            .any(|l| l.starts_with("sudo:") && l.ends_with("ops"))
    );
    let keys = root.join("home/ops/.ssh/authorized_keys");
    assert_eq!(fs::read_to_string(&keys).unwrap(), format!("{KEY}\n"));
    let md = fs::metadata(&keys).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.permissions().mode() & 0o777),
        (1500, 1500, 0o600)
    );
    assert_eq!(
        read(&root, "/etc/sudoers.d/osforge-ops"),
        "ops ALL=(ALL) NOPASSWD:ALL\n"
    );
    assert_eq!(
        fs::metadata(root.join("etc/sudoers.d/osforge-ops"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o440
    );

    assert!(read(&root, "/etc/sysctl.d/90-osforge.conf").contains("vm.swappiness = 10\n"));
    assert!(read(&root, "/etc/modules-load.d/osforge.conf").contains("br_netfilter\n"));
    assert!(read(&root, "/etc/modprobe.d/osforge-blacklist.conf").contains("blacklist floppy\n"));
    assert!(
        read(&root, "/etc/security/limits.d/90-osforge.conf").contains("*\tsoft\tnofile\t65536\n")
    );
    let data = fs::metadata(root.join("opt/site/data")).unwrap();
    assert_eq!(
        (data.uid(), data.gid(), data.permissions().mode() & 0o7777),
        (1500, 1500, 0o750)
    );
    assert_eq!(read(&root, "/etc/motd"), "Welcome to an osforge host\n");

    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/ssh.service")
            .symlink_metadata()
            .is_ok(),
        "ssh enabled"
    );
    assert_eq!(
        fs::read_link(root.join("etc/systemd/system/apt-daily.timer")).unwrap(),
        Path::new("/dev/null")
    );
    assert_eq!(
        fs::metadata(root.join("etc/machine-id")).unwrap().len(),
        0,
        "machine-id emptied"
    );
}

#[test]
fn applying_the_same_settings_twice_changes_nothing_the_second_time() {
    let (_dir, root) = copy_of_root("osconfig-twice-");
    osconfig::apply(&root, &settings()).unwrap();
    let opts = SnapshotOptions {
        xattrs: true,
        contents: true,
    };
    let first = snapshot(&root, &opts);
    osconfig::apply(&root, &settings()).unwrap();
    let second = snapshot(&root, &opts);
    // Rewritten files get new times; what they hold, who owns them and how
    // they may be used must not change.
    let problems = diff_snapshots(&first, &second, &["mtime"]);
    assert!(
        problems.is_empty(),
        "second run changed:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_symlink_in_the_image_cannot_make_osconfig_write_outside_the_root() {
    let (dir, root) = copy_of_root("osconfig-hostile-");
    let victim = dir.path().join("host-file");
    fs::write(&victim, b"host data\n").unwrap();
    fs::remove_file(root.join("etc/motd")).ok();
    symlink(&victim, root.join("etc/motd")).unwrap();
    fs::remove_dir_all(root.join("etc/sysctl.d")).unwrap();
    symlink(dir.path(), root.join("etc/sysctl.d")).unwrap();
    osconfig::apply(&root, &settings()).unwrap();
    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "host data\n",
        "the host file behind the symlink is untouched"
    );
    assert!(
        !dir.path().join("90-osforge.conf").exists(),
        "nothing written into the host directory the link named"
    );
    assert_eq!(read(&root, "/etc/motd"), "Welcome to an osforge host\n");
}

#[test]
fn settings_naming_what_the_image_lacks_fail_with_the_name() {
    let (_dir, root) = copy_of_root("osconfig-missing-");
    let mut s = settings();
    s.timezone = "Mars/Olympus_Mons".into();
    let err = format!("{:#}", osconfig::apply(&root, &s).unwrap_err());
    assert!(err.contains("Mars/Olympus_Mons"), "{err}");
    let mut s = settings();
    s.users[0].groups = vec!["no-such-group".into()];
    let err = format!("{:#}", osconfig::apply(&root, &s).unwrap_err());
    assert!(err.contains("no-such-group"), "{err}");
}

/// The shipped base, with only the units this minbase root has.
const BASE: &str = "inherits: [base]\nsystemd: !replace {enable: [ssh.service]}\n";

/// A profile written as a user would (on top of [`BASE`]), loaded and
/// translated as `osforge build` does, then applied to a copy of the Debian root.
fn apply_profile(
    name: &str,
    yaml: &str,
    vars: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf, anyhow::Result<osconfig::Report>) {
    let (dir, root) = copy_of_root(name);
    let profiles = dir.path().join("profiles");
    fs::create_dir_all(&profiles).unwrap();
    let file = profiles.join("site.yaml");
    fs::write(&file, format!("{BASE}{yaml}")).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let search = osforge::profile::SearchPath::new(vec![profiles, shipped], vec![]);
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let profile = osforge::profile::load(file.to_str().unwrap(), &search, &vars)
        .unwrap_or_else(|e| panic!("{e}"));
    let result = osconfig::apply(&root, &osforge::pipeline::plan::os_settings(&profile));
    (dir, root, result)
}

/// Runs `sudo -n true` as `user` inside the root, as a login on the host would.
fn sudo_works_for(root: &Path, user: &str) -> Result<(), String> {
    let out = Command::new("chroot")
        .arg(root)
        .args(["runuser", "-u", user, "--", "sudo", "-n", "true"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn sudo_true_gives_the_user_passwordless_sudo_and_a_sudoers_file_visudo_accepts() {
    let (_dir, root, result) = apply_profile(
        "osconfig-sudo-true-",
        "users: [{name: ops, sudo: true}, {name: guest}]\n",
        &[],
    );
    result.unwrap();
    assert_eq!(
        read(&root, "/etc/sudoers.d/osforge-ops"),
        "ops ALL=(ALL) NOPASSWD:ALL\n"
    );
    sudo_works_for(&root, "ops").unwrap();
    // Without sudo: in the profile, sudo still parses its files and says no.
    let refused = sudo_works_for(&root, "guest").unwrap_err();
    assert!(
        refused.contains("password") || refused.contains("not allowed"),
        "{refused}"
    );
}

#[test]
fn a_sudo_rule_that_is_not_sudoers_syntax_fails_the_build_naming_the_user() {
    let (_dir, root, result) = apply_profile(
        "osconfig-sudo-bad-",
        "users: [{name: ops, sudo: \"ALL=(ALL\"}]\n",
        &[],
    );
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("user ops"), "{err}");
    assert!(err.contains("not valid sudoers syntax"), "{err}");
    assert!(
        !root.join("etc/sudoers.d/osforge-ops").exists(),
        "the bad rule is not left behind"
    );
}

#[test]
fn profile_variables_render_in_sysctl_values_and_file_contents() {
    let (_dir, root, result) = apply_profile(
        "osconfig-vars-",
        "variables: {swappiness: 10, web_port: 80}\n\
         sysctl: {vm.swappiness: \"{{ swappiness }}\"}\n\
         files:\n  - path: /etc/web.conf\n    content: \"listen {{ web_port }}; # {% raw %}{{ literal }}{% endraw %}\\n\"\n",
        &[("web_port", "8080")],
    );
    result.unwrap();
    assert!(read(&root, "/etc/sysctl.d/90-osforge.conf").contains("vm.swappiness = 10\n"));
    assert_eq!(
        read(&root, "/etc/web.conf"),
        "listen 8080; # {{ literal }}\n"
    );
}
