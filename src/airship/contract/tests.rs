//! Resolving the contract from an environment and files, without building.

use super::*;

const NETWORK: &str = r#"{"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}], "networks": [{"id": "n0", "link": "eth0", "type": "ipv4_dhcp"}]}"#;

/// A volume with builder-conf.yaml (host side /srv/images) and `files`.
fn volume(builder: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "container:\n  volume: /srv/images:{}\nbuilder:\n{builder}",
        dir.path().display()
    );
    std::fs::write(dir.path().join("builder-conf.yaml"), conf).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let conf = dir.path().join("builder-conf.yaml").display().to_string();
    (dir, conf)
}

#[test]
fn v1_iso_reads_the_files_named_in_the_volume_and_names_the_image_by_its_host_path() {
    let (dir, conf) = volume(
        "  userDataFileName: user-data\n  networkConfigFileName: network-config\n  outputFileName: node.iso\n",
        &[
            ("user-data", "#cloud-config\n{}\n"),
            ("network-config", NETWORK),
        ],
    );
    let env = Env::from_pairs([
        ("BUILDER_CONFIG", conf.as_str()),
        ("HTTPS_PROXY", "http://proxy:3128"),
        ("no_proxy", "localhost"),
    ]);
    let job = resolve_v1(&env).unwrap();
    assert_eq!(job.image_type, ImageType::Iso);
    assert_eq!(job.base_profile, "ephemeral");
    assert_eq!(job.image_path(), dir.path().join("node.iso"));
    assert_eq!(job.metadata_file, dir.path().join("output-metadata.yaml"));
    assert_eq!(
        job.metadata_yaml("abc"),
        "bootImagePath: /srv/images/node.iso\nmd5sum: abc\n"
    );
    assert_eq!(job.user_data.unwrap().1, "#cloud-config\n{}\n");
    assert!(job.network.is_some());
    assert_eq!(job.proxy.as_deref(), Some("http://proxy:3128"));
    assert_eq!(job.no_proxy.as_deref(), Some("localhost"));
}

#[test]
fn v1_qcow_maps_osconfig_and_qcow_vars_onto_control_plane_and_takes_img_name() {
    let (_dir, conf) = volume(
        "  osconfigVarsFileName: osconfig.yaml\n  qcowVarsFileName: qcow.yaml\n",
        &[
            (
                "osconfig.yaml",
                "sysctl:\n  - {name: vm.swappiness, value: '10'}\nsystemd:\n  - name: q.service\n    file_content: \"[Service]\\nExecStart=/bin/true\\n\"\n    enabled: true\n    run_contexts: [qcow]\n",
            ),
            (
                "qcow.yaml",
                "qcow_capacity: 20G\nqcow_compress: false\nimg_name: cp.qcow2\n",
            ),
        ],
    );
    let env = Env::from_pairs([("BUILDER_CONFIG", conf.as_str()), ("IMAGE_TYPE", "qcow")]);
    let job = resolve_v1(&env).unwrap();
    assert_eq!(job.image_type, ImageType::Qcow);
    assert_eq!(job.output_file, "cp.qcow2");
    assert!(job.user_data.is_none() && job.network.is_none());
    let text = &job.profile.text;
    assert!(text.contains("inherits: [control-plane]"), "{text}");
    assert!(text.contains("vm.swappiness"), "{text}");
    assert!(
        text.contains("q.service"),
        "qcow items go to a qcow image: {text}"
    );
    assert!(
        text.contains("size: \"20G\"") && text.contains("compression: none"),
        "{text}"
    );
}

#[test]
fn an_iso_leaves_qcow_only_items_out_and_says_so() {
    let (_dir, conf) = volume(
        "  userDataFileName: user-data\n  networkConfigFileName: network-config\n  osconfigVarsFileName: osconfig.yaml\n",
        &[
            ("user-data", "#cloud-config\n{}\n"),
            ("network-config", NETWORK),
            (
                "osconfig.yaml",
                "directories:\n  - {name: /opt/q, run_contexts: [qcow]}\n  - {name: /opt/all}\n",
            ),
        ],
    );
    let job = resolve_v1(&Env::from_pairs([("BUILDER_CONFIG", conf.as_str())])).unwrap();
    assert!(job.profile.text.contains("/opt/all"));
    assert!(!job.profile.text.contains("/opt/q"));
    assert!(
        job.profile
            .unmapped
            .iter()
            .any(|u| u.reason.contains("qcow images only")),
        "{:?}",
        job.profile.unmapped
    );
}

#[test]
fn environment_overrides_and_missing_names_are_reported_by_variable() {
    let (_dir, conf) = volume(
        "  networkConfigFileName: network-config\n  imageType: iso\n",
        &[("network-config", NETWORK), ("other-ud", "hello\n")],
    );
    let e = resolve_v1(&Env::from_pairs([("BUILDER_CONFIG", conf.as_str())]))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("USER_DATA_FILE is not set and "), "{e}");
    assert!(e.contains("builder.userDataFileName"), "{e}");
    let e = resolve_v1(&Env::from_pairs([
        ("BUILDER_CONFIG", conf.as_str()),
        ("USER_DATA_FILE", "other-ud"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("USER_DATA_FILE /"), "{e}");
    assert!(e.contains("not a cloud-init header"), "{e}");
    let e = resolve_v1(&Env::from_pairs([
        ("BUILDER_CONFIG", conf.as_str()),
        ("IMAGE_TYPE", "raw"),
    ]))
    .unwrap_err()
    .to_string();
    assert_eq!(e, "IMAGE_TYPE=raw: expected iso or qcow");
}

#[test]
fn v2_without_a_builder_config_writes_to_the_output_directory() {
    let out = tempfile::tempdir().unwrap();
    let doc = format!("user_data: |\n  #cloud-config\n  {{}}\nnetwork_config: |\n  {NETWORK}\n");
    let job = resolve_v2(&Env::from_pairs([("VERSION", "v2")]), &doc, out.path()).unwrap();
    assert_eq!(job.output_file, DEFAULT_ISO_FILE);
    assert_eq!(job.volume.container, out.path());
    assert_eq!(
        job.metadata_yaml("x"),
        format!(
            "bootImagePath: {}/ephemeral.iso\nmd5sum: x\n",
            out.path().display()
        )
    );
    let e = resolve_v2(
        &Env::default(),
        "user_data: |\n  #cloud-config\n",
        out.path(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "stdin: network_config: missing (an ISO needs user_data and network_config)"
    );
    // A qcow2 needs neither.
    let job = resolve_v2(
        &Env::from_pairs([("IMAGE_TYPE", "qcow")]),
        "qcow: {qcow_capacity: 10G}\noutputFileName: a.qcow2\n",
        out.path(),
    )
    .unwrap();
    assert!(
        job.profile.text.contains("size: \"10G\""),
        "{}",
        job.profile.text
    );
}
