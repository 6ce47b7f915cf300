//! From the frozen profile to each stage's own small input: what mmdebstrap
//! gets, what the configuration step applies. The stages know nothing of
//! profiles; this is the one place that translates.

use serde::Serialize;

use crate::osconfig::{DirSpec, FileSpec, LimitSpec, OsSettings, UserSpec};
use crate::profile::Profile;
use crate::rootfs::{BootstrapSpec, ExtraRepo};

/// How a serialisable enum names itself in the profile (`important`, `soft`).
fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

pub fn bootstrap_spec(
    profile: &Profile,
    mirror_override: Option<&str>,
    source_date_epoch: Option<u64>,
) -> BootstrapSpec {
    let d = &profile.distro;
    BootstrapSpec {
        suite: d.suite.to_string(),
        arch: d.arch.to_string(),
        variant: name_of(&d.variant),
        components: d.components.iter().map(|c| c.to_string()).collect(),
        mirror: mirror_override
            .map(str::to_string)
            .or_else(|| d.mirror.as_ref().map(|m| m.to_string())),
        snapshot: d.snapshot,
        pins: None,
        repos: profile
            .repos
            .iter()
            .map(|r| ExtraRepo {
                name: r.name.to_string(),
                uri: r.uri.to_string(),
                suite: r.suite.to_string(),
                components: r.components.iter().map(|c| c.to_string()).collect(),
                key: r.key.as_ref().map(|k| k.contents.clone()),
                key_digest: r.key.as_ref().map(|k| k.xxh3_128.clone()),
            })
            .collect(),
        packages: profile.packages.iter().map(|p| p.to_string()).collect(),
        source_date_epoch,
    }
}

pub fn os_settings(profile: &Profile) -> OsSettings {
    let os = &profile.os;
    OsSettings {
        hostname: os.hostname.to_string(),
        locale: os.locale.to_string(),
        timezone: os.timezone.to_string(),
        users: os
            .users
            .iter()
            .map(|u| UserSpec {
                name: u.name.to_string(),
                uid: u.uid,
                groups: u.groups.iter().map(|g| g.to_string()).collect(),
                shell: u.shell.as_ref().map(|s| s.to_string()),
                ssh_authorized_keys: u
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect(),
                password_hash: u.password_hash.as_ref().map(|h| h.to_string()),
                sudo: u.sudo.as_ref().and_then(|s| s.rule()).map(str::to_string),
            })
            .collect(),
        sysctl: os
            .sysctl
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        modules_load: os
            .kernel_modules
            .load
            .iter()
            .map(|m| m.to_string())
            .collect(),
        modules_blacklist: os
            .kernel_modules
            .blacklist
            .iter()
            .map(|m| m.to_string())
            .collect(),
        limits: os
            .limits
            .iter()
            .map(|l| LimitSpec {
                domain: l.domain.to_string(),
                kind: match name_of(&l.kind).as_str() {
                    "both" => "-".to_string(),
                    other => other.to_string(),
                },
                item: name_of(&l.item),
                value: name_of(&l.value).trim_matches('"').to_string(),
            })
            .collect(),
        directories: os
            .directories
            .iter()
            .map(|d| DirSpec {
                path: d.path.to_string(),
                mode: d.mode.0,
                owner: d.owner.to_string(),
                group: d.group.to_string(),
            })
            .collect(),
        files: os
            .files
            .iter()
            .map(|f| {
                let bytes = f.contents.bytes().to_vec();
                FileSpec {
                    path: f.path.to_string(),
                    contents_digest: format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes)),
                    contents: bytes,
                    mode: f.mode.0,
                    owner: f.owner.to_string(),
                    group: f.group.to_string(),
                }
            })
            .collect(),
        units_enable: os.systemd.enable.iter().map(|u| u.to_string()).collect(),
        units_disable: os.systemd.disable.iter().map(|u| u.to_string()).collect(),
        units_mask: os.systemd.mask.iter().map(|u| u.to_string()).collect(),
    }
}
