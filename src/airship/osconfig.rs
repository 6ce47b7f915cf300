//! `osconfig-vars.yaml` (Airship's osconfig role) → profile sections.
//!
//! The role's variables and what osforge makes of them:
//!
//! | Airship | osforge |
//! |---|---|
//! | `grub.GRUB_CMDLINE_LINUX_DEFAULT`, `grub_cmdline_linux_default_append` | `kernel.cmdline` |
//! | `kdump_tools.crashkernel` | `crashkernel=` in `kernel.cmdline`, package kdump-tools |
//! | `kernel.modules.{load,blacklist}` | `kernel_modules` |
//! | `sysctl`, `limits`, `user_management` | `sysctl`, `limits`, `users` |
//! | `directories`, `files`, `file_permissions` | `directories`, `files` |
//! | `systemd` | a unit file under /etc/systemd/system, `systemd.enable` / `mask` |
//! | `banners` | /etc/issue, /etc/issue.net, /etc/motd (or an update-motd.d script) |
//!
//! Items carry `run_contexts`: Airship applied `common` ones to the shared
//! rootfs (ISO and qcow2 alike) and `qcow` ones to qcow2 images only, so the
//! rootfs file's items are routed the same way.

use super::emit::{Limit, Parts, PathEntry, Scalar, User, sourced};
use super::error::ImportError;
use super::vars::{Fields, VarsFile, invalid};
use crate::profile::{
    AbsPath, AccountName, LimitDomain, LimitItem, LimitType, ModuleName, PasswordHash, SysctlKey,
    UnitName, check_param,
};
use crate::profile::{Node, Value};

/// The unit files Airship's `systemd` items carry go here, as the role wrote them.
const UNIT_DIR: &str = "/etc/systemd/system";
const NO_EQUIVALENT: &str = "osforge has no equivalent";

/// Which images an item is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// `rootfs/osconfig-vars.yaml`: items are routed by `run_contexts`.
    Rootfs,
    /// A qcow bundle image's own file: everything is for that image.
    Image,
}

/// Mapped values by where they go.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// The shared rootfs: every image.
    pub common: Parts,
    /// qcow2 images only.
    pub qcow: Parts,
}

pub(crate) fn map(f: &VarsFile, level: Level) -> Result<Routed, ImportError> {
    let mut out = Routed::default();
    for entry in f.entries() {
        let node = &entry.value;
        match entry.key.as_str() {
            "grub" => grub(f, node, &mut out.common)?,
            "grub_cmdline_linux_default_append" => cmdline_list(f, node, &mut out.common)?,
            "kdump_tools" => kdump(f, node, &mut out.common)?,
            "kernel" => kernel_modules(f, node, &mut out.common)?,
            "sysctl" => sysctl(f, node, &mut out.common)?,
            "limits" => limits(f, node, &mut out.common)?,
            "user_management" => routed(f, node, level, &mut out, users)?,
            "directories" => routed(f, node, level, &mut out, |f, n, p| {
                path_entry(f, n, p, false)
            })?,
            "files" => routed(f, node, level, &mut out, |f, n, p| {
                path_entry(f, n, p, true)
            })?,
            "systemd" => routed(f, node, level, &mut out, unit)?,
            "file_permissions" => {}
            "banners" => banners(f, node, &mut out.common)?,
            "user_scripts" | "buildtime_user_scripts" | "runtime_user_scripts" => f.unmapped(
                node,
                "osforge runs no scripts in the image; the configuration is declarative",
            ),
            _ => f.defer_unknown(node, NO_EQUIVALENT),
        }
    }
    // After files and directories, which the permissions may apply to.
    if let Some(node) = f.root.get("file_permissions") {
        file_permissions(f, node, &mut out)?;
    }
    Ok(out)
}

/// Runs `item` on each list item, into the parts its `run_contexts` choose.
fn routed(
    f: &VarsFile,
    node: &Node,
    level: Level,
    out: &mut Routed,
    item: impl Fn(&VarsFile, &Node, &mut Parts) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    for it in f.list(node)? {
        let (common, qcow) = contexts(f, it)?;
        match level {
            Level::Image => item(f, it, &mut out.common)?,
            Level::Rootfs if common => item(f, it, &mut out.common)?,
            Level::Rootfs if qcow => item(f, it, &mut out.qcow)?,
            Level::Rootfs => f.unmapped(it, "run_contexts names neither common nor qcow"),
        }
    }
    Ok(())
}

/// (for the common rootfs, for qcow2 images); no `run_contexts`: common.
fn contexts(f: &VarsFile, item: &Node) -> Result<(bool, bool), ImportError> {
    let Some(node) = item.get("run_contexts") else {
        return Ok((true, false));
    };
    let (mut common, mut qcow) = (false, false);
    for c in f.list(node)? {
        match f.text(c)?.as_deref() {
            Some("common") => common = true,
            Some("qcow") => qcow = true,
            Some(other) => f.unmapped(c, format!("unknown run context '{other}'")),
            None => {}
        }
    }
    Ok((common, qcow))
}

fn grub(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(
        node,
        &["GRUB_CMDLINE_LINUX_DEFAULT"],
        "osforge writes its own GRUB configuration; only the kernel command line is taken",
    )?;
    if let Some(list) = fields.get("GRUB_CMDLINE_LINUX_DEFAULT") {
        cmdline_list(f, list, parts)?;
    }
    Ok(())
}

/// `[{name, value}]` (value empty or absent: the bare name), or a string of
/// parameters as GRUB's variable holds them.
fn cmdline_list(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    if let Value::Str(_) = node.value {
        if let Some(text) = f.text(node)? {
            for param in text.split_whitespace() {
                push_param(f, node, param.to_string(), parts)?;
            }
        }
        return Ok(());
    }
    for item in f.list(node)? {
        let param = match &item.value {
            Value::Map(_) => {
                let fields = f.fields(item, &["name", "value"], NO_EQUIVALENT)?;
                let Some(name) = f.required_text(&fields, &["name"])? else {
                    continue;
                };
                let value = match fields.get("value") {
                    Some(v) => match f.text(v)? {
                        Some(v) => v,
                        None => continue,
                    },
                    None => String::new(),
                };
                if value.is_empty() {
                    name
                } else {
                    format!("{name}={value}")
                }
            }
            _ => match f.text(item)? {
                Some(p) => p,
                None => continue,
            },
        };
        push_param(f, item, param, parts)?;
    }
    Ok(())
}

fn push_param(
    f: &VarsFile,
    node: &Node,
    param: String,
    parts: &mut Parts,
) -> Result<(), ImportError> {
    check_param(&param).map_err(|e| invalid(node, format!("kernel parameter '{param}' {e}")))?;
    // osforge renders kernel parameters with tera; literal braces must not be read as tags.
    if param.contains("{{") || param.contains("{%") || param.contains("{#") {
        f.unmapped(node, format!("'{param}' holds template syntax"));
        return Ok(());
    }
    parts.cmdline.push(sourced(param, f.from(node)));
    Ok(())
}

fn kdump(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(node, &["crashkernel"], NO_EQUIVALENT)?;
    if let Some(size) = fields.get("crashkernel")
        && let Some(size) = f.text(size)?
    {
        let from = f.from(fields.get("crashkernel").expect("read above"));
        push_param(
            f,
            fields.get("crashkernel").expect("read above"),
            format!("crashkernel={size}"),
            parts,
        )?;
        // The reservation is for kdump-tools' capture kernel, which Airship installed.
        parts.packages.push(sourced("kdump-tools".into(), from));
    }
    Ok(())
}

fn kernel_modules(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(node, &["modules"], NO_EQUIVALENT)?;
    let Some(modules) = fields.get("modules") else {
        return Ok(());
    };
    let modules = f.fields(modules, &["load", "blacklist"], NO_EQUIVALENT)?;
    for (key, list) in [
        ("load", &mut parts.modules_load),
        ("blacklist", &mut parts.modules_blacklist),
    ] {
        let Some(node) = modules.get(key) else {
            continue;
        };
        for item in f.list(node)? {
            // A name, or Airship's {name: ...}.
            let name = match &item.value {
                Value::Map(_) => {
                    let fields = f.fields(item, &["name"], NO_EQUIVALENT)?;
                    f.required_text(&fields, &["name"])?
                }
                _ => f.text(item)?,
            };
            let Some(name) = name else { continue };
            ModuleName::try_from(name.clone()).map_err(|e| invalid(item, e))?;
            list.push(sourced(name, f.from(item)));
        }
    }
    Ok(())
}

/// `[{name, value}]` as Airship writes it, or a map of key → value.
fn sysctl(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let mut pairs: Vec<(&Node, String, String)> = Vec::new();
    match &node.value {
        Value::Map(entries) => {
            for e in entries {
                if let Some(v) = f.text(&e.value)? {
                    pairs.push((&e.value, e.key.clone(), v));
                }
            }
        }
        _ => {
            for item in f.list(node)? {
                let fields = f.fields(item, &["name", "value"], NO_EQUIVALENT)?;
                let (Some(k), Some(v)) = (
                    f.required_text(&fields, &["name"])?,
                    f.required_text(&fields, &["value"])?,
                ) else {
                    continue;
                };
                pairs.push((item, k, v));
            }
        }
    }
    for (node, key, value) in pairs {
        SysctlKey::try_from(key.clone()).map_err(|e| invalid(node, e))?;
        parts
            .sysctl
            .push(sourced((key, Scalar::from_text(&value)), f.from(node)));
    }
    Ok(())
}

fn limits(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    for item in f.list(node)? {
        // With a domain, `name` only labels the item in Airship's task output;
        // without one, it is the domain.
        let fields = f.fields(
            item,
            &["name", "domain", "type", "item", "value"],
            NO_EQUIVALENT,
        )?;
        let text = |key: &str| f.required_text(&fields, &[key]);
        let (Some(domain), Some(kind), Some(it), Some(value)) = (
            f.required_text(&fields, &["domain", "name"])?,
            text("type")?,
            text("item")?,
            text("value")?,
        ) else {
            continue;
        };
        let at = |key: &str| fields.get(key).unwrap_or(item);
        let domain_at = fields.get_any(&["domain", "name"]).unwrap_or(item);
        LimitDomain::try_from(domain.clone()).map_err(|e| invalid(domain_at, e))?;
        let kind = if kind == "-" {
            "both".to_string()
        } else {
            kind
        };
        serde_json::from_value::<LimitType>(serde_json::json!(kind))
            .map_err(|_| invalid(at("type"), format!("'{kind}' is not soft, hard or -")))?;
        serde_json::from_value::<LimitItem>(serde_json::json!(it))
            .map_err(|_| invalid(at("item"), format!("'{it}' is not a limits.conf item")))?;
        let value = match value.as_str() {
            "unlimited" | "infinity" => Scalar::Text("unlimited".into()),
            v => match v.parse::<i64>() {
                Ok(n) => Scalar::Int(n),
                Err(_) => {
                    return Err(invalid(
                        at("value"),
                        format!("'{v}' is not a number or unlimited"),
                    ));
                }
            },
        };
        parts.limits.push(sourced(
            Limit {
                domain,
                kind,
                item: it,
                value,
            },
            f.from(item),
        ));
    }
    Ok(())
}

fn users(f: &VarsFile, item: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(
        item,
        &[
            "name",
            "shell",
            "password",
            "password_lock",
            "uid",
            "groups",
            "run_contexts",
        ],
        NO_EQUIVALENT,
    )?;
    let Some(name) = f.required_text(&fields, &["name"])? else {
        return Ok(());
    };
    AccountName::try_from(name.clone())
        .map_err(|e| invalid(fields.get("name").unwrap_or(item), e))?;
    let mut user = User {
        name,
        shell: None,
        uid: None,
        groups: Vec::new(),
        password_hash: None,
    };
    if let Some(node) = fields.get("shell")
        && let Some(shell) = f.text(node)?
    {
        AbsPath::try_from(shell.clone()).map_err(|e| invalid(node, e))?;
        user.shell = Some(shell);
    }
    if let Some(node) = fields.get("uid")
        && let Some(uid) = f.text(node)?
    {
        user.uid = Some(
            uid.parse()
                .map_err(|_| invalid(node, format!("'{uid}' is not a uid")))?,
        );
    }
    if let Some(node) = fields.get("groups") {
        for g in f.list(node)? {
            if let Some(group) = f.text(g)? {
                AccountName::try_from(group.clone()).map_err(|e| invalid(g, e))?;
                user.groups.push(group);
            }
        }
    }
    let locked = match fields.get("password_lock") {
        Some(node) => f.bool(node)?,
        None => false,
    };
    let password = match fields.get("password") {
        Some(node) => f.text(node)?.unwrap_or_default(),
        None => String::new(),
    };
    if password.starts_with('$') {
        match PasswordHash::try_from(password) {
            Ok(_) if locked => f.unmapped(
                fields.get("password").expect("read above"),
                "a hash together with password_lock: osforge sets the hash or leaves the account locked, not both",
            ),
            Ok(hash) => user.password_hash = Some(hash.to_string()),
            // The reason names the hash kind only; the value is never echoed.
            Err(e) => f.unmapped(fields.get("password").expect("read above"), e),
        }
    } else if !password.is_empty() {
        f.unmapped(
            fields.get("password").expect("read above"),
            "not a crypt(3) hash; osforge takes hashes only and never a plain password",
        );
    } else if !locked && fields.get("password").is_some() {
        f.unmapped(
            fields.get("password").expect("read above"),
            "an empty password without password_lock would allow logins without one; osforge leaves accounts without a hash locked",
        );
    }
    parts.users.push(sourced(user, f.from(item)));
    Ok(())
}

/// A file (`content: true`) or directory item: `name` or `path`,
/// `file_content` or `content`, `permissions` or `mode`, owner, group.
fn path_entry(f: &VarsFile, item: &Node, parts: &mut Parts, file: bool) -> Result<(), ImportError> {
    let mut known = vec![
        "name",
        "path",
        "permissions",
        "mode",
        "owner",
        "group",
        "run_contexts",
    ];
    if file {
        known.extend(["file_content", "content"]);
    }
    let fields = f.fields(item, &known, NO_EQUIVALENT)?;
    let Some(path) = f.required_text(&fields, &["name", "path"])? else {
        return Ok(());
    };
    AbsPath::try_from(path.clone())
        .map_err(|e| invalid(fields.get_any(&["name", "path"]).unwrap_or(item), e))?;
    let content = if file {
        match f.required_text(&fields, &["file_content", "content"])? {
            Some(c) => Some(c),
            None => return Ok(()),
        }
    } else {
        None
    };
    let (mode, owner, group) = attributes(f, &fields)?;
    let entry = PathEntry {
        path,
        content,
        mode,
        owner,
        group,
    };
    let target = if file {
        &mut parts.files
    } else {
        &mut parts.directories
    };
    target.push(sourced(entry, f.from(item)));
    Ok(())
}

type Attributes = (Option<String>, Option<String>, Option<String>);

fn attributes(f: &VarsFile, fields: &Fields) -> Result<Attributes, ImportError> {
    let mode = match fields.get_any(&["permissions", "mode"]) {
        Some(node) => match f.text(node)? {
            Some(m) if crate::profile::Mode::try_from(m.clone()).is_ok() => Some(m),
            Some(m) => {
                f.unmapped(
                    node,
                    format!("'{m}' is not an octal mode; osforge's default applies"),
                );
                None
            }
            None => None,
        },
        None => None,
    };
    let account = |key: &str| -> Result<Option<String>, ImportError> {
        let Some(node) = fields.get(key) else {
            return Ok(None);
        };
        Ok(match f.text(node)? {
            Some(name) if AccountName::try_from(name.clone()).is_ok() => Some(name),
            Some(name) => {
                f.unmapped(
                    node,
                    format!("'{name}' is not an account name; root applies"),
                );
                None
            }
            None => None,
        })
    };
    Ok((mode, account("owner")?, account("group")?))
}

fn unit(f: &VarsFile, item: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(
        item,
        &[
            "name",
            "file_content",
            "enabled",
            "mask",
            "masked",
            "force",
            "run_contexts",
        ],
        NO_EQUIVALENT,
    )?;
    let Some(name) = f.required_text(&fields, &["name"])? else {
        return Ok(());
    };
    UnitName::try_from(name.clone()).map_err(|e| invalid(fields.get("name").unwrap_or(item), e))?;
    let from = f.from(item);
    if let Some(node) = fields.get("file_content")
        && let Some(content) = f.text(node)?
    {
        // `force` let Ansible replace an existing unit; osforge always writes the file.
        parts.files.push(sourced(
            PathEntry {
                path: format!("{UNIT_DIR}/{name}"),
                content: Some(content),
                mode: Some("0644".into()),
                owner: None,
                group: None,
            },
            f.from(node),
        ));
    }
    if let Some(node) = fields.get("enabled")
        && f.bool(node)?
    {
        parts.enable.push(sourced(name.clone(), from.clone()));
    }
    if let Some(node) = fields.get_any(&["mask", "masked"])
        && f.bool(node)?
    {
        parts.mask.push(sourced(name, from));
    }
    Ok(())
}

/// `login` → /etc/issue (getty) and /etc/issue.net (remote logins); `motd`
/// → /etc/motd, or, when it is a script as in Airship's default, the
/// update-motd.d script Airship installed it as (pam_motd runs those on Debian too).
fn banners(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(node, &["login", "motd"], NO_EQUIVALENT)?;
    if let Some(login) = fields.get("login")
        && let Some(text) = f.text(login)?
    {
        let text = with_newline(text);
        for path in ["/etc/issue", "/etc/issue.net"] {
            parts
                .files
                .push(sourced(file(path, &text, "0644"), f.from(login)));
        }
    }
    if let Some(motd) = fields.get("motd")
        && let Some(text) = f.text(motd)?
    {
        let entry = if text.starts_with("#!") {
            file("/etc/update-motd.d/00-motd", &text, "0755")
        } else {
            file("/etc/motd", &with_newline(text), "0644")
        };
        parts.files.push(sourced(entry, f.from(motd)));
    }
    Ok(())
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn file(path: &str, content: &str, mode: &str) -> PathEntry {
    PathEntry {
        path: path.into(),
        content: Some(content.into()),
        mode: Some(mode.into()),
        owner: None,
        group: None,
    }
}

/// Changes to files that already exist: osforge cannot chmod what it does
/// not write, so a permission lands on the file or directory item of the same
/// path from this same file (the pattern of Airship's own defaults).
fn file_permissions(f: &VarsFile, node: &Node, out: &mut Routed) -> Result<(), ImportError> {
    for item in f.list(node)? {
        let fields = f.fields(
            item,
            &[
                "name",
                "path",
                "permissions",
                "mode",
                "owner",
                "group",
                "run_contexts",
            ],
            NO_EQUIVALENT,
        )?;
        let Some(path) = f.required_text(&fields, &["name", "path"])? else {
            continue;
        };
        let (mode, owner, group) = attributes(f, &fields)?;
        let prefix = format!("{}: ", f.rel);
        let mut applied = false;
        for parts in [&mut out.common, &mut out.qcow] {
            for entry in parts.files.iter_mut().chain(parts.directories.iter_mut()) {
                // Only items written by this file: their origin starts with its name.
                if entry.value.path == path && entry.from.starts_with(&prefix) {
                    if mode.is_some() {
                        entry.value.mode.clone_from(&mode);
                    }
                    if owner.is_some() {
                        entry.value.owner.clone_from(&owner);
                    }
                    if group.is_some() {
                        entry.value.group.clone_from(&group);
                    }
                    entry.from = format!(
                        "{}, {}",
                        entry.from,
                        f.from(item).trim_start_matches(&prefix)
                    );
                    applied = true;
                }
            }
        }
        if !applied {
            f.unmapped(
                item,
                format!("osforge sets modes and owners only on files and directories it writes; {path} is not among this file's"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn map_text(text: &str, level: Level) -> (Routed, Vec<super::super::Unmapped>) {
        let f = VarsFile::parse(text, Path::new("m/o.yaml"), "o.yaml".into()).unwrap();
        let routed = map(&f, level).unwrap();
        (routed, f.take_unmapped())
    }

    #[test]
    fn rootfs_items_go_where_their_run_contexts_say() {
        let text = "directories:\n  - {name: /a, run_contexts: ['{{ default_run_context }}']}\n  - {name: /b, run_contexts: [qcow]}\n  - {name: /c, run_contexts: [elsewhere]}\n  - {name: /d}\n";
        let (r, unmapped) = map_text(text, Level::Rootfs);
        let paths = |p: &Parts| -> Vec<String> {
            p.directories.iter().map(|d| d.value.path.clone()).collect()
        };
        assert_eq!(paths(&r.common), ["/a", "/d"]);
        assert_eq!(paths(&r.qcow), ["/b"]);
        let keys: Vec<&str> = unmapped.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["directories[2].run_contexts[0]", "directories[2]"]);
        // In an image's own file every item is that image's.
        let (r, _) = map_text(text, Level::Image);
        assert_eq!(r.common.directories.len(), 4);
    }

    #[test]
    fn limits_take_the_name_as_domain_when_there_is_none() {
        let text = "limits:\n  - {name: core_dump, domain: '0:', type: hard, item: core, value: 0}\n  - {name: '@ops', type: '-', item: nofile, value: unlimited}\n";
        let (r, unmapped) = map_text(text, Level::Image);
        assert!(unmapped.is_empty(), "{unmapped:?}");
        let l: Vec<(&str, &str)> = r
            .common
            .limits
            .iter()
            .map(|l| (l.value.domain.as_str(), l.value.kind.as_str()))
            .collect();
        assert_eq!(l, [("0:", "hard"), ("@ops", "both")]);
        assert_eq!(
            r.common.limits[1].value.value,
            Scalar::Text("unlimited".into())
        );
    }

    #[test]
    fn module_lists_take_names_or_name_maps_and_check_them() {
        let (r, _) = map_text(
            "kernel:\n  modules:\n    load: [{name: bonding}, 8021q]\n",
            Level::Image,
        );
        let names: Vec<&str> = r
            .common
            .modules_load
            .iter()
            .map(|m| m.value.as_str())
            .collect();
        assert_eq!(names, ["bonding", "8021q"]);
        let f = VarsFile::parse(
            "kernel:\n  modules:\n    load: ['a b']\n",
            Path::new("m/o.yaml"),
            "o.yaml".into(),
        )
        .unwrap();
        let e = map(&f, Level::Image).unwrap_err().to_string();
        assert!(e.starts_with("m/o.yaml:3: kernel.modules.load[0]: "), "{e}");
    }
}
