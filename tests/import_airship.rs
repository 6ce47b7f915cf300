//! `osforge import-airship` end to end: an Airship image-builder `manifests/`
//! tree written from the keys Airship documents, imported with the built
//! binary; the profiles are then rendered by `osforge render` and one is made
//! into a disk by `osforge disk`, which sgdisk must find laid out as
//! Airship's partition table says.

mod disk_fixture;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use disk_fixture::{SECTOR, make_rootfs, partitions, text};
use support::{osforge, require_root, run_ok, temp_dir};

const MIB: u64 = 1 << 20;

/// Airship's default partition table (the qcow role's defaults), with root
/// listed first so that it is partition 1.
const DEFAULT_PARTITIONS: &str = r#"partitions:
  - mount: /
    mount_order: 0
    part_start: 1284MiB
    part_end: '100%'
    filesystem:
      type: ext4
      fstab:
        options: "defaults,errors=remount-ro,noatime"
        dump: 0
        fsck: 1
  - mount: none
    mount_order: 99
    part_start: 1MiB
    part_end: 5MiB
    flags:
      - bios_grub
  - mount: /boot/efi
    mount_order: 2
    part_start: 5MiB
    part_end: 516MiB
    flags:
      - esp
    filesystem:
      type: vfat
      fstab:
        options: "defaults,errors=remount-ro,noatime"
        dump: 0
        fsck: 1
  - mount: /boot
    mount_order: 1
    part_start: 516MiB
    part_end: 1284MiB
    filesystem:
      type: ext4
      fstab:
        options: "defaults,errors=remount-ro,noatime"
        dump: "0"
        fsck: "2"
"#;

const ROOTFS_OSCONFIG: &str = r#"kernel:
  modules:
    load:
      - name: 8021q
      - name: br_netfilter
    blacklist:
      - krbd
grub:
  GRUB_TIMEOUT: 10
  GRUB_CMDLINE_LINUX_DEFAULT:
    - name: console
      value: 'ttyS0,115200n8'
    - name: iommu
      value: 'pt'
kdump_tools:
  crashkernel: '768M'
sysctl:
  - name: net.ipv4.tcp_keepalive_time
    value: '30'
  - name: kernel.pid_max
    value: 4194303
limits:
  - name: nofile-all-soft
    domain: '*'
    type: 'soft'
    item: 'nofile'
    value: '65536'
  - name: core_dump
    domain: '0:'
    type: 'hard'
    item: 'core'
    value: 0
user_management:
  - name: ops
    shell: /bin/bash
    password: ''
    password_lock: yes
    run_contexts:
      - "{{ default_run_context }}"
directories:
  - name: /opt/site
    permissions: '0750'
    owner: root
    group: root
    run_contexts:
      - "{{ default_run_context }}"
files:
  - name: /opt/site/hello.sh
    file_content: |
      #!/bin/bash
      echo hello world
    permissions: '0755'
    owner: root
    group: root
    run_contexts:
      - "{{ default_run_context }}"
  - name: /etc/qcow-only.conf
    file_content: "only on disks\n"
    run_contexts:
      - qcow
file_permissions:
  - name: /opt/site/hello.sh
    permissions: '0700'
  - name: /etc/shadow
    permissions: '0640'
systemd:
  - name: sample.service
    file_content: |
      [Unit]
      Description=sample service

      [Service]
      ExecStart=/bin/sleep infinity

      [Install]
      WantedBy=multi-user.target
    enabled: yes
    force: no
banners:
  login: |
    Airship Node \l: \n.\o
  motd: |
    #!/bin/sh
    echo "Airship Node"
kubelet:
  extra_systemd_args: []
"#;

const MULTISTRAP: &str = r#"k8s_version: 1.21.2-00
kernel_base_pkg: linux-image-generic
ubuntu_packages_append:
  - jq
  - "kubectl={{ k8s_version }}"
unapproved_packages:
  - unattended-upgrades
repos:
  - register_repo_with_rootfs: true
    name: Ubuntu
    packages:
      - vim
    source: http://archive.ubuntu.com/ubuntu/
    keyring_pkg: ubuntu-keyring
    suite: focal
    components: main restricted universe
  - register_repo_with_rootfs: true
    name: Site Tools
    packages:
      - site-agent
    source: https://apt.example.com/debian
    keyring_url: https://apt.example.com/key.gpg
    suite: bookworm
    omitdebsrc: "true"
    components: main contrib
"#;

const DATA_PLANE_OSCONFIG: &str = r#"grub_cmdline_linux_default_append:
  - name: hugepagesz
    value: 1G
  - name: hugepages
    value: 100
  - name: default_hugepagesz
    value: 1G
  - name: isolcpus
    value: ''
  - name: rcu_nocbs
  - name: transparent_hugepage
    value: never
kdump_tools:
  crashkernel: '512M'
  foo: bar
sysctl:
  vm.nr_hugepages: 100
"#;

/// A storage host: 200 GiB with /var and /var/log on their own partitions,
/// sizes written the ways real files write them.
const STORAGE_QCOW_VARS: &str = r##"qcow_capacity: 200GiB
qcow_compress: false
img_name: storage.qcow2
partitions:
  - mount: /
    mount_order: 0
    part_start: 97GiB
    part_end: '100%'
    filesystem: {type: ext4, fstab: {options: "defaults,errors=remount-ro", dump: 0, fsck: 1}}
  - mount: none
    mount_order: 99
    part_start: 1MiB
    part_end: 5MiB
    flags: [bios_grub]
  - mount: /boot/efi
    mount_order: 2
    part_start: 5MiB
    part_end: 516MiB
    flags: [esp]
    filesystem: {type: vfat, fstab: {options: "umask=0077", dump: 0, fsck: 2}}
  - mount: /boot
    mount_order: 1
    part_start: 516MiB
    part_end: 1284MiB
    filesystem: {type: ext4, fstab: {options: defaults, dump: 0, fsck: 2}}
  - mount: /var
    mount_order: 3
    part_start: 1284MiB
    part_end: 65GiB
    filesystem: {type: xfs, fstab: {options: "defaults,noatime", dump: 0, fsck: 2}}
  - mount: /var/log
    mount_order: 4
    part_start: 65GiB
    part_end: 97GiB
    filesystem: {type: ext4, fstab: {options: "defaults,nodev", dump: 0, fsck: 2}}
qcow_container_runtime_scripts:
  - file_content: "#!/bin/bash\necho custom\n"
"##;

/// Root listed first but not last on the disk: osforge cannot place that.
const MISORDERED_QCOW_VARS: &str = r#"qcow_capacity: 40G
partitions:
  - {mount: /, part_start: 1284MiB, part_end: 20GiB, filesystem: {type: ext4}}
  - {mount: none, part_start: 1MiB, part_end: 5MiB, flags: [bios_grub]}
  - {mount: /boot/efi, mount_order: 1, part_start: 5MiB, part_end: 516MiB, flags: [esp], filesystem: {type: vfat}}
  - {mount: /boot, mount_order: 2, part_start: 516MiB, part_end: 1284MiB, filesystem: {type: ext4}}
  - {mount: /srv, part_start: 20GiB, part_end: '100%', filesystem: {type: ext4}}
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The manifests tree: two bundle images as in Airship's k8s bundle, a
/// storage image in a second bundle folder, the rootfs and the ISO inputs.
fn manifests(root: &Path) -> PathBuf {
    let m = root.join("manifests");
    write(&m, "rootfs/osconfig-vars.yaml", ROOTFS_OSCONFIG);
    write(&m, "rootfs/multistrap-vars.yaml", MULTISTRAP);
    write(
        &m,
        "rootfs/livecdcontent-vars.yaml",
        "mksquashfs_compression: lz4\nmksquashfs_threads: 4\n",
    );
    write(
        &m,
        "qcow-bundle-k8s/control-plane/qcow-vars.yaml",
        &format!(
            "qcow_capacity: 19G\nqcow_compress: true\nimg_name: control-plane.qcow2\n{DEFAULT_PARTITIONS}"
        ),
    );
    write(
        &m,
        "qcow-bundle-k8s/control-plane/osconfig-vars.yaml",
        "sysctl:\n  - name: net.ipv4.ip_forward\n    value: '1'\n",
    );
    write(
        &m,
        "qcow-bundle-k8s/data-plane/qcow-vars.yaml",
        &format!("qcow_capacity: 19G\n{DEFAULT_PARTITIONS}"),
    );
    write(
        &m,
        "qcow-bundle-k8s/data-plane/osconfig-vars.yaml",
        DATA_PLANE_OSCONFIG,
    );
    write(
        &m,
        "qcow-bundle-storage/storage/qcow-vars.yaml",
        STORAGE_QCOW_VARS,
    );
    write(
        &m,
        "qcow-bundle-storage/misordered/qcow-vars.yaml",
        MISORDERED_QCOW_VARS,
    );
    write(
        &m,
        "iso/network_data.json",
        r#"{"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}], "networks": [{"id": "n0", "link": "eth0", "type": "ipv4_dhcp"}], "services": []}"#,
    );
    write(
        &m,
        "iso/user_data",
        "#cloud-config\nruncmd:\n  - echo '{{ not a template }}'\n",
    );
    write(&m, "scripts/qcow/10-tune.sh", "#!/bin/sh\ntrue\n");
    m
}

fn import(manifests: &Path, out: &Path, json: bool) -> Output {
    let mut cmd = osforge();
    if json {
        cmd.arg("--json");
    }
    cmd.arg("import-airship")
        .arg(manifests)
        .arg(out)
        .output()
        .unwrap()
}

fn render(profile: &Path) -> serde_json::Value {
    let out = run_ok(
        osforge()
            .args(["--json", "render", "--profile"])
            .arg(profile),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (file, key) of each unmapped entry of a `--json` import.
fn unmapped(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["unmapped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["file"].as_str().unwrap().to_string(),
                u["key"].as_str().unwrap().to_string(),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_key_osforge_cannot_map_is_listed_with_its_file_and_key_path() {
    let work = temp_dir("airship-unmapped-");
    let m = manifests(work.path());
    let out = work.path().join("profiles");
    let result = import(&m, &out, true);
    assert!(result.status.success(), "{}", text(&result));
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let names: Vec<&str> = report["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "airship-rootfs",
            "control-plane",
            "data-plane",
            "misordered",
            "storage",
            "airship-ephemeral"
        ]
    );
    let list = unmapped(&report);
    let has = |file: &str, key: &str, reason: &str| {
        list.iter()
            .any(|(f, k, r)| f == file && k == key && r.contains(reason))
    };
    for (file, key, reason) in [
        (
            "qcow-bundle-k8s/data-plane/osconfig-vars.yaml",
            "kdump_tools.foo",
            "no equivalent",
        ),
        (
            "rootfs/osconfig-vars.yaml",
            "grub.GRUB_TIMEOUT",
            "own GRUB configuration",
        ),
        ("rootfs/osconfig-vars.yaml", "kubelet", "no equivalent"),
        (
            "rootfs/osconfig-vars.yaml",
            "file_permissions[1]",
            "/etc/shadow",
        ),
        (
            "rootfs/multistrap-vars.yaml",
            "repos[0]",
            "Ubuntu and cannot build a Debian image; its packages are not installed: vim",
        ),
        (
            "rootfs/multistrap-vars.yaml",
            "repos[1].keyring_url",
            "key_file",
        ),
        (
            "rootfs/livecdcontent-vars.yaml",
            "mksquashfs_threads",
            "--jobs",
        ),
        (
            "qcow-bundle-k8s/control-plane/qcow-vars.yaml",
            "partitions[2].filesystem.fstab.fsck",
            "osforge writes 2",
        ),
        (
            "qcow-bundle-storage/misordered/qcow-vars.yaml",
            "partitions[2].mount_order",
            "parents first",
        ),
        (
            "qcow-bundle-storage/storage/qcow-vars.yaml",
            "partitions[4].filesystem.type",
            "xfs",
        ),
        (
            "qcow-bundle-storage/storage/qcow-vars.yaml",
            "qcow_container_runtime_scripts",
            "no scripts",
        ),
        ("scripts/qcow/10-tune.sh", "", "no scripts"),
        (
            "qcow-bundle-storage/misordered/qcow-vars.yaml",
            "partitions[0].part_start",
            "this one starts at 1MiB, not 1284MiB",
        ),
    ] {
        assert!(
            has(file, key, reason),
            "{file}: {key} ({reason}) missing from {list:#?}"
        );
    }
    assert!(
        !list.iter().any(|(f, k, _)| k.contains("k8s_version")
            || (k.contains("part_start") && !f.contains("misordered"))),
        "k8s_version is used by a package; Airship's table is placed as it is: {list:#?}"
    );

    // Without --json: one line per key, as the issue asks for them.
    let plain = import(&m, &work.path().join("again"), false);
    assert!(plain.status.success());
    let stdout = String::from_utf8(plain.stdout).unwrap();
    assert!(
        stdout.lines().any(|l| l.starts_with(
            "qcow-bundle-k8s/data-plane/osconfig-vars.yaml: kdump_tools.foo: not mapped"
        )),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), list.len());
}

#[test]
fn the_data_plane_renders_airships_kernel_parameters_and_its_settings() {
    let work = temp_dir("airship-render-");
    let m = manifests(work.path());
    let out = work.path().join("profiles");
    assert!(import(&m, &out, false).status.success());
    let r = render(&out.join("data-plane.yaml"));
    let cmdline = r["host"]["kernel_cmdline"].as_str().unwrap();
    let params: Vec<&str> = cmdline.split_whitespace().collect();
    for p in [
        "hugepagesz=1G",
        "hugepages=100",
        "default_hugepagesz=1G",
        "isolcpus",
        "rcu_nocbs",
        "transparent_hugepage=never",
        "console=ttyS0,115200n8",
        "iommu=pt",
        "crashkernel=768M",
        "crashkernel=512M",
    ] {
        assert!(params.contains(&p), "{p} missing from {cmdline}");
    }
    // The image's own parameters come after the rootfs-level ones, as GRUB reads the last one.
    let pos = |p: &str| params.iter().position(|x| *x == p).unwrap();
    assert!(pos("crashkernel=768M") < pos("crashkernel=512M"));

    let profile = &r["profile"];
    assert_eq!(profile["disk"]["size"], "19G");
    assert_eq!(profile["os"]["sysctl"]["vm.nr_hugepages"], 100);
    assert_eq!(profile["os"]["sysctl"]["net.ipv4.tcp_keepalive_time"], 30);
    let packages: Vec<&str> = profile["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [
        "jq",
        "kubectl=1.21.2-00",
        "linux-image-amd64",
        "kdump-tools",
        "site-agent",
        "unattended-upgrades-",
    ] {
        assert!(packages.contains(&p), "{p} missing from {packages:?}");
    }
    assert!(
        !packages.contains(&"vim"),
        "the Ubuntu repository's packages are reported, not installed"
    );
    let serialized = profile.to_string();
    for needle in [
        "/opt/site/hello.sh",
        "/etc/systemd/system/sample.service",
        "/etc/issue",
        "/etc/issue.net",
        "/etc/update-motd.d/00-motd",
        "/etc/qcow-only.conf",
        "sample.service",
        "br_netfilter",
        "krbd",
        "nofile",
    ] {
        assert!(
            serialized.contains(needle),
            "{needle} missing from the rendered profile"
        );
    }
    // file_permissions landed on the file written by the same Airship file.
    let hello = profile["os"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/opt/site/hello.sh")
        .expect("hello.sh");
    assert_eq!(hello["mode"], "0700", "{hello}");

    // The ISO gets the rootfs settings but not the qcow-only file, and Airship's
    // cloud-init files as they are.
    let iso = render(&out.join("airship-ephemeral.yaml"));
    let iso_profile = iso["profile"].to_string();
    assert!(iso_profile.contains("/opt/site/hello.sh"));
    assert!(!iso_profile.contains("/etc/qcow-only.conf"));
    assert_eq!(iso["profile"]["iso"]["squashfs"]["compression"], "lz4");
    let seed = iso["host"].to_string();
    assert!(
        seed.contains("{{ not a template }}"),
        "user_data carried verbatim: {seed}"
    );
    assert!(seed.contains("52:54:00:12:34:56"), "{seed}");
}

#[test]
fn a_200g_layout_keeps_its_data_partitions_sizes_and_order() {
    let work = temp_dir("airship-storage-");
    let m = manifests(work.path());
    let out = work.path().join("profiles");
    assert!(import(&m, &out, false).status.success());
    let r = render(&out.join("storage.yaml"));
    let disk = &r["profile"]["disk"];
    assert_eq!(disk["size"], "200G");
    assert_eq!(disk["compression"], "none");
    let parts: Vec<(String, String, String, Option<String>)> = disk["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["size"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
                p["mount"].as_str().map(str::to_string),
            )
        })
        .collect();
    let expected = [
        ("root", "rest", "linux", Some("/")),
        ("bios", "4M", "bios_grub", None),
        ("esp", "511M", "esp", Some("/boot/efi")),
        ("boot", "768M", "linux", Some("/boot")),
        ("var", "65276M", "linux", Some("/var")),
        ("var-log", "32G", "linux", Some("/var/log")),
    ];
    assert_eq!(
        parts,
        expected.map(|(n, s, t, m)| (
            n.to_string(),
            s.to_string(),
            t.to_string(),
            m.map(str::to_string)
        ))
    );
}

#[test]
fn a_disk_from_the_imported_control_plane_has_airships_partition_table() {
    require_root();
    let work = temp_dir("airship-disk-");
    let m = manifests(work.path());
    let out = work.path().join("profiles");
    assert!(import(&m, &out, false).status.success());
    let rootfs = work.path().join("rootfs");
    make_rootfs(&rootfs);
    let raw = work.path().join("control-plane.raw");
    let qcow2 = work.path().join("control-plane.qcow2");
    // 19G as the profile says would only make the test slower: the root
    // partition takes the rest whatever the size, so 3G shows the same table.
    let built = osforge()
        .args(["disk", "--size", "3G", "--profile"])
        .arg(out.join("control-plane.yaml"))
        .arg("--root")
        .arg(&rootfs)
        .arg(&qcow2)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    let mib = MIB / SECTOR;
    let table: Vec<(u32, u64, u64, String)> = partitions(&raw)
        .into_iter()
        .map(|(n, first, last, code, _)| (n, first / mib, (last + 1) / mib, code))
        .collect();
    // Airship: root 1284MiB-100%, bios_grub 1-5MiB, ESP 5-516MiB, /boot 516-1284MiB.
    assert_eq!(
        table,
        [
            (1, 1284, 3 * 1024 - 1, "8300".to_string()),
            (2, 1, 5, "EF02".to_string()),
            (3, 5, 516, "EF00".to_string()),
            (4, 516, 1284, "8300".to_string()),
        ]
    );
    for (n, guid) in [
        (1, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        (2, "21686148-6449-6E6F-744E-656564454649"),
        (3, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        (4, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ] {
        let info = String::from_utf8(
            run_ok(
                Command::new("sgdisk")
                    .arg("-i")
                    .arg(n.to_string())
                    .arg(&raw),
            )
            .stdout,
        )
        .unwrap();
        assert!(
            info.contains(&format!("Partition GUID code: {guid}")),
            "partition {n}: {info}"
        );
    }
    let verify = run_ok(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("No problems found"));
}

#[test]
fn bad_input_is_one_line_naming_the_file_and_key_with_exit_code_2() {
    for (rel, body, expected) in [
        (
            "qcow-bundle/cp/qcow-vars.yaml",
            "qcow_capacity: 19G\npartitions: [1\n",
            "qcow-bundle/cp/qcow-vars.yaml:2",
        ),
        (
            "qcow-bundle/cp/qcow-vars.yaml",
            "partitions:\n  mount: /\n",
            "qcow-bundle/cp/qcow-vars.yaml:2: partitions: expected a list, got a map",
        ),
        (
            "qcow-bundle/cp/qcow-vars.yaml",
            "qcow_capacity: 12XB\n",
            "qcow-bundle/cp/qcow-vars.yaml:1: qcow_capacity: '12XB' has an unknown size suffix",
        ),
        (
            "qcow-bundle/cp/qcow-vars.yaml",
            "partitions:\n  - mount: /\n    part_start: 1MiB\n    part_end: 12XB\n    filesystem: {type: ext4}\n",
            "qcow-bundle/cp/qcow-vars.yaml:4: partitions[0].part_end: '12XB' has an unknown unit 'XB'",
        ),
        (
            "rootfs/osconfig-vars.yaml",
            "sysctl:\n  - name: 'bad key'\n    value: 1\n",
            "rootfs/osconfig-vars.yaml:2: sysctl[0]",
        ),
    ] {
        let work = temp_dir("airship-bad-");
        let m = work.path().join("manifests");
        write(&m, "qcow-bundle/cp/qcow-vars.yaml", "qcow_capacity: 19G\n");
        write(&m, rel, body);
        let out = import(&m, &work.path().join("out"), false);
        assert_eq!(out.status.code(), Some(2), "{rel}: {body}\n{}", text(&out));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let line = stderr.trim_end();
        let at = line
            .find("manifests/")
            .map(|i| &line[i + "manifests/".len()..]);
        assert!(
            at.is_some_and(|rest| rest.starts_with(expected)),
            "expected '{expected}' in: {line}"
        );
    }
}
