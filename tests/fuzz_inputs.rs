//! Bounded fuzzing of untrusted input (issue 10): profiles (generated from
//! the schema's keys with values of every YAML shape, and valid profiles with
//! random edits), network data, and OCI layers of hostile tar members. The
//! loaders must never panic and must refuse with one line; flattening and
//! unpacking must never write outside the root they were given.
//! `OSFORGE_FUZZ_CASES` sets the cases of every target (default: each its own).

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use osforge::profile::{self, HostFiles, SearchPath};
use proptest::prelude::*;
use support::fuzz;
use support::oci_layout::{Compression, member, tar_of, write_layout};
use tar::EntryType;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn search(dir: &Path) -> SearchPath {
    SearchPath::new(
        vec![dir.to_path_buf(), repo().join("profiles")],
        vec![repo().join("templates")],
    )
}

/// One line that says something: what every refusal must be.
fn one_line(what: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() || text.trim().contains('\n') {
        return Err(format!("{what}: not one line: {text:?}"));
    }
    Ok(())
}

/// YAML values of every shape, templates and YAML's odd corners included.
fn yaml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("~".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        "[a-z0-9 ._/-]{0,20}".prop_map(|s| format!("\"{s}\"")),
        "[a-z_]{1,8}".prop_map(|v| format!("\"{{{{ {v} }}}}\"")),
        Just("\"{% if x %}a{% endif %}\"".to_string()),
        Just("\"{% raw %}{{ x }}{% endraw %}\"".to_string()),
        Just("\"{{ 1 / 0 }}\"".to_string()),
        Just("\"{% include '/etc/passwd' %}\"".to_string()),
        Just("\"{{ get_env(name='HOME') }}\"".to_string()),
        Just("!!binary aGVsbG8=".to_string()),
        Just("&a [1]".to_string()),
        Just("*a".to_string()),
        Just("\"\\u0000\"".to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

/// The schema's keys (top level and nested), and a few it does not have.
fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "description",
        "inherits",
        "variables",
        "hostname",
        "distro",
        "name",
        "suite",
        "mirror",
        "arch",
        "components",
        "variant",
        "packages",
        "package_groups",
        "repos",
        "users",
        "sudo",
        "groups",
        "ssh_authorized_keys",
        "shell",
        "password_hash",
        "sysctl",
        "kernel",
        "cmdline",
        "modules",
        "files",
        "path",
        "content",
        "mode",
        "owner",
        "source",
        "directories",
        "limits",
        "systemd",
        "units",
        "enable",
        "locale",
        "timezone",
        "disk",
        "size",
        "partitions",
        "filesystem",
        "mountpoint",
        "iso",
        "secure_boot",
        "cloud_init",
        "user_data",
        "network_config",
        "cmds",
        "ansible",
        "playbooks",
        "layers",
        "epoch",
        "snapshot",
        "secret",
        "env",
        "file",
        "vm.swappiness",
        "zz_unknown",
        "",
    ])
    .prop_map(str::to_string)
}

/// A profile as text: generated key/value lines, or a shipped profile with
/// bytes inserted, deleted or replaced.
fn profile_text() -> impl Strategy<Value = String> {
    let generated = (
        prop::option::of(prop::sample::select(vec![
            "base",
            "ephemeral",
            "qcow2-host",
            "nope",
            "fuzz",
        ])),
        prop::collection::vec((key(), yaml_value()), 0..10),
    )
        .prop_map(|(parent, lines)| {
            let mut text = String::new();
            if let Some(parent) = parent {
                text.push_str(&format!("inherits: [{parent}]\n"));
            }
            for (k, v) in lines {
                text.push_str(&format!("{k}: {v}\n"));
            }
            text
        });
    let shipped = [
        "base",
        "ephemeral",
        "qcow2-host",
        "control-plane",
        "data-plane",
    ]
    .map(|name| fs::read_to_string(repo().join(format!("profiles/{name}.yaml"))).unwrap());
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0u8..3,
            prop::sample::select(b"[]{}:-\n\t \"'&*!|>%#@,?{{}}0aZ".to_vec()),
        ),
        1..6,
    );
    let mutated = (prop::sample::select(shipped.to_vec()), edits).prop_map(|(text, edits)| {
        let mut bytes = text.into_bytes();
        for (at, op, b) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len());
            match op {
                0 => bytes.insert(i, b),
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ if i < bytes.len() => bytes[i] = b,
                _ => bytes.push(b),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    });
    prop_oneof![generated, mutated]
}

#[test]
fn the_profile_loader_never_panics_and_refuses_with_one_line() {
    let loaded = std::sync::atomic::AtomicUsize::new(0);
    fuzz::run("profile loader", 5000, profile_text(), |text| {
        let work = fuzz::scratch("fuzz-profile");
        let path = work.path().join("fuzz.yaml");
        fs::write(&path, &text).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            profile::load(path.to_str().unwrap(), &search(work.path()), &[]).and_then(|p| {
                p.render_host_with(Some("quiet"), &HostFiles::default())
                    .map(|_| ())
            })
        });
        match outcome {
            Err(_) => Err("panicked".into()),
            Ok(Ok(())) => {
                loaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => one_line("profile error", &e.to_string()),
        }
    });
    eprintln!(
        "fuzz profile loader: {} generated profiles loaded and rendered",
        loaded.into_inner()
    );
}

#[test]
fn network_data_files_are_read_or_refused_with_one_line() {
    let json_value = prop_oneof![
        Just("null".to_string()),
        any::<i32>().prop_map(|n| n.to_string()),
        "[a-z0-9:./-]{0,18}".prop_map(|s| format!("\"{s}\"")),
    ]
    .prop_recursive(3, 20, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "links",
                        "networks",
                        "services",
                        "id",
                        "type",
                        "ethernet_mac_address",
                        "link",
                        "ip_address",
                        "netmask",
                        "routes",
                        "gateway",
                        "address",
                        "network",
                        "version",
                        "ethernets",
                        "match",
                        "macaddress",
                        "dhcp4",
                        "addresses",
                        "nameservers",
                        "mtu",
                        "vlan_id",
                        "bond_links",
                    ]),
                    inner,
                ),
                0..5,
            )
            .prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    });
    let text = prop_oneof![
        json_value.clone(),
        json_value.prop_map(|v| format!("{{\"links\":[{v}],\"networks\":[{v}]}}")),
        "[ -~\n]{0,80}",
    ];
    fuzz::run("network data", 5000, text, |text| {
        let work = fuzz::scratch("fuzz-net");
        let path = work.path().join("network_data.json");
        fs::write(&path, &text).unwrap();
        match std::panic::catch_unwind(|| HostFiles::load(Some(&path), None)) {
            Err(_) => Err("panicked".into()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => one_line("network data error", &e.to_string()),
        }
    });
}

/// Every path under `dir`, relative.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// Tar member names and link targets that try to leave the root.
fn hostile_name() -> impl Strategy<Value = Vec<u8>> {
    let part = prop::sample::select(vec![
        "a",
        "b",
        "etc",
        "..",
        ".",
        "",
        ".wh.a",
        ".wh..wh..opq",
        ".wh.b",
        "lnk",
        "x y",
        "outside",
        "..a",
        "...",
    ]);
    (any::<bool>(), prop::collection::vec(part, 1..5)).prop_map(|(absolute, parts)| {
        let mut name = if absolute { b"/".to_vec() } else { Vec::new() };
        name.extend_from_slice(parts.join("/").as_bytes());
        name.truncate(99);
        name
    })
}

#[derive(Debug, Clone)]
enum Member {
    File(Vec<u8>, Vec<u8>),
    Dir(Vec<u8>),
    Symlink(Vec<u8>, Vec<u8>),
    HardLink(Vec<u8>, Vec<u8>),
    CharDevice(Vec<u8>),
}

fn hostile_member() -> impl Strategy<Value = Member> {
    let target = prop_oneof![
        hostile_name(),
        Just(b"../../../../outside".to_vec()),
        Just(b"/".to_vec()),
        Just(b"/etc".to_vec()),
    ];
    prop_oneof![
        3 => (hostile_name(), prop::collection::vec(any::<u8>(), 0..600))
            .prop_map(|(n, d)| Member::File(n, d)),
        2 => hostile_name().prop_map(Member::Dir),
        3 => (hostile_name(), target.clone()).prop_map(|(n, t)| Member::Symlink(n, t)),
        2 => (hostile_name(), target).prop_map(|(n, t)| Member::HardLink(n, t)),
        1 => hostile_name().prop_map(Member::CharDevice),
    ]
}

fn layer_tar(members: &[Member]) -> Vec<u8> {
    let raw: Vec<Vec<u8>> = members
        .iter()
        .map(|m| match m {
            Member::File(n, d) => member(n, EntryType::Regular, b"", d),
            Member::Dir(n) => member(n, EntryType::Directory, b"", b""),
            Member::Symlink(n, t) => member(n, EntryType::Symlink, t, b""),
            Member::HardLink(n, t) => member(n, EntryType::Link, t, b""),
            Member::CharDevice(n) => member(n, EntryType::Char, b"", b""),
        })
        .collect();
    tar_of(&raw)
}

/// Unpacks `tar` into `<work>/box/root` and checks that nothing changed
/// outside that root and that no device node came out.
fn unpack_stays_inside(tar: &Path, work: &Path) -> Result<(), String> {
    let root = work.join("box/root");
    fs::create_dir_all(&root).unwrap();
    fs::write(work.join("box/sentinel"), b"keep").unwrap();
    let before = listing(work);
    if let Err(e) = osforge::rootfs::unpack(tar, &root) {
        one_line("unpack error", &format!("{e:#}"))?;
    }
    let after: BTreeSet<PathBuf> = listing(work)
        .into_iter()
        .filter(|p| p == Path::new("box/root") || !p.starts_with("box/root"))
        .collect();
    if after != before {
        let new: Vec<_> = after.difference(&before).collect();
        let gone: Vec<_> = before.difference(&after).collect();
        return Err(format!(
            "changed outside the root: new {new:?}, gone {gone:?}"
        ));
    }
    if fs::read(work.join("box/sentinel")).unwrap() != b"keep" {
        return Err("the file beside the root was overwritten".into());
    }
    use std::os::unix::fs::FileTypeExt;
    for path in listing(&root) {
        let ft = fs::symlink_metadata(root.join(&path)).unwrap().file_type();
        if ft.is_char_device() || ft.is_block_device() {
            return Err(format!("device node unpacked: {path:?}"));
        }
    }
    Ok(())
}

#[test]
fn hostile_layers_are_flattened_and_unpacked_inside_the_root_or_refused() {
    support::require_root();
    let layers = prop::collection::vec(
        (
            prop::collection::vec(hostile_member(), 0..12),
            prop::sample::select(vec![
                Compression::None,
                Compression::Gzip,
                Compression::Zstd,
            ]),
        ),
        1..4,
    );
    fuzz::run("oci layers", 1000, layers, |layers| {
        let work = fuzz::scratch("fuzz-oci");
        let tars: Vec<(Vec<u8>, Compression)> =
            layers.iter().map(|(m, c)| (layer_tar(m), *c)).collect();
        write_layout(&work.path().join("layout"), "t", &tars);
        // The first layer as a plain tarball (`source: tarball:`) too.
        let raw = work.path().join("raw.tar");
        fs::write(&raw, &tars[0].0).unwrap();
        unpack_stays_inside(&raw, &work.path().join("raw"))?;

        let image = osforge::formats::oci::ImageRef {
            dir: work.path().join("layout"),
            tag: Some("t".into()),
        };
        let flat = work.path().join("flat.tar");
        let out = fs::File::create(&flat).unwrap();
        let flattened = std::panic::catch_unwind(|| {
            osforge::formats::oci::flatten(&image, "amd64", out).map(|_| ())
        })
        .map_err(|_| "flatten panicked".to_string())?;
        if let Err(e) = flattened {
            return one_line("flatten error", &e.to_string());
        }
        let mut archive = tar::Archive::new(fs::File::open(&flat).unwrap());
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| format!("flatten wrote a bad tar: {e}"))?;
            let name = entry.path_bytes().into_owned();
            if name.starts_with(b"/") || name.split(|&b| b == b'/').any(|c| c == b"..") {
                return Err(format!("flatten kept {:?}", String::from_utf8_lossy(&name)));
            }
        }
        unpack_stays_inside(&flat, &work.path().join("flat"))
    });
}
