//! Users, groups and owners as the image defines them.
//!
//! Owner names in a profile mean the image's accounts, not the build host's:
//! they are looked up in the image's /etc/passwd and /etc/group. Accounts are
//! created with the image's own useradd (chrooted), so its login.defs decides
//! UID ranges, home modes and skeleton files exactly as on a running system.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};

use super::{UserSpec, rootpath, run_in_root, write_file};

/// name → id, from an /etc/passwd- or /etc/group-style file.
pub fn read_ids(root: &Path, file: &str) -> anyhow::Result<HashMap<String, u32>> {
    let path = rootpath::resolve(root, Path::new(file), true)?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading the image's {file}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((name.to_string(), id))
        })
        .collect())
}

/// Resolves an owner given by name or number against the image's accounts.
pub fn resolve_id(
    ids: &HashMap<String, u32>,
    name: &str,
    what: &str,
    file: &str,
) -> anyhow::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    ids.get(name)
        .copied()
        .with_context(|| format!("{what} '{name}' does not exist in the image's {file}"))
}

pub fn ensure_user(root: &Path, user: &UserSpec) -> anyhow::Result<String> {
    let users = read_ids(root, "/etc/passwd")?;
    let groups = read_ids(root, "/etc/group")?;
    for g in &user.groups {
        if !groups.contains_key(g) {
            bail!(
                "user {}: group '{g}' does not exist in the image",
                user.name
            );
        }
    }
    let exists = users.contains_key(&user.name);
    let mut args: Vec<String> = Vec::new();
    if let Some(shell) = &user.shell {
        args.extend(["--shell".into(), shell.clone()]);
    }
    if !user.groups.is_empty() {
        args.extend(["--groups".into(), user.groups.join(",")]);
    }
    let action = if exists {
        if !user.groups.is_empty() {
            args.push("--append".into());
        }
        if !args.is_empty() {
            args.push(user.name.clone());
            run_in_root(root, "usermod", &args)?;
        }
        format!("user {} updated", user.name)
    } else {
        args.extend(["--create-home".into(), "--user-group".into()]);
        if let Some(uid) = user.uid {
            args.extend(["--uid".into(), uid.to_string()]);
        }
        args.push(user.name.clone());
        run_in_root(root, "useradd", &args)?;
        format!("user {} created", user.name)
    };
    // A hash only ever: the profile rejects plain passwords. Without one the
    // account stays locked and only SSH keys let anyone in.
    if let Some(hash) = &user.password_hash {
        run_in_root(
            root,
            "usermod",
            &["--password".into(), hash.clone(), user.name.clone()],
        )?;
    }
    let (uid, gid, home) = passwd_entry(root, &user.name)?;
    if !user.ssh_authorized_keys.is_empty() {
        let ssh_dir = Path::new(&home).join(".ssh");
        let mut keys = user.ssh_authorized_keys.join("\n");
        keys.push('\n');
        super::ensure_dir(root, &ssh_dir, 0o700, uid, gid)?;
        write_file(
            root,
            &ssh_dir.join("authorized_keys"),
            keys.as_bytes(),
            0o600,
            uid,
            gid,
        )?;
    }
    if let Some(rule) = &user.sudo {
        let file = format!("/etc/sudoers.d/osforge-{}", user.name);
        write_file(
            root,
            Path::new(&file),
            format!("{} {rule}\n", user.name).as_bytes(),
            0o440,
            0,
            0,
        )?;
    }
    Ok(action)
}

/// (uid, gid, home) of a user in the image.
fn passwd_entry(root: &Path, name: &str) -> anyhow::Result<(u32, u32, String)> {
    let path = rootpath::resolve(root, Path::new("/etc/passwd"), true)?;
    let text = std::fs::read_to_string(path)?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 6 && f[0] == name {
            return Ok((f[2].parse()?, f[3].parse()?, f[5].to_string()));
        }
    }
    bail!("user {name} is missing from the image's /etc/passwd after useradd")
}
