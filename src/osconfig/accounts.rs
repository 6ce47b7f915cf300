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
    // Only what differs is changed: shadow-utils rewrites its backup files
    // (/etc/shadow- …) on every call, so calling it needlessly is a change.
    let action = if users.contains_key(&user.name) {
        let (_, _, _, shell) = passwd_entry(root, &user.name)?;
        let members = group_members(root)?;
        let missing: Vec<&String> = user
            .groups
            .iter()
            .filter(|g| {
                !members
                    .get(g.as_str())
                    .is_some_and(|m| m.contains(&user.name))
            })
            .collect();
        let mut args: Vec<String> = Vec::new();
        if let Some(wanted) = user.shell.as_ref().filter(|s| **s != shell) {
            args.extend(["--shell".into(), wanted.clone()]);
        }
        if !missing.is_empty() {
            args.extend([
                "--append".into(),
                "--groups".into(),
                missing
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
        }
        if args.is_empty() {
            format!("user {} already as wanted", user.name)
        } else {
            args.push(user.name.clone());
            run_in_root(root, "usermod", &args)?;
            format!("user {} updated", user.name)
        }
    } else {
        let mut args: Vec<String> = vec!["--create-home".into(), "--user-group".into()];
        if let Some(shell) = &user.shell {
            args.extend(["--shell".into(), shell.clone()]);
        }
        if !user.groups.is_empty() {
            args.extend(["--groups".into(), user.groups.join(",")]);
        }
        if let Some(uid) = user.uid {
            args.extend(["--uid".into(), uid.to_string()]);
        }
        args.push(user.name.clone());
        run_in_root(root, "useradd", &args)?;
        format!("user {} created", user.name)
    };
    // A hash only ever: the profile rejects plain passwords. Without one the
    // account stays locked and only SSH keys let anyone in.
    if let Some(hash) = &user.password_hash
        && shadow_hash(root, &user.name)?.as_deref() != Some(hash.as_str())
    {
        run_in_root(
            root,
            "usermod",
            &["--password".into(), hash.clone(), user.name.clone()],
        )?;
    }
    let (uid, gid, home, _) = passwd_entry(root, &user.name)?;
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
        check_sudoers(root, &user.name, &file)?;
    }
    Ok(action)
}

/// Checks a sudoers file with the image's own visudo. sudo refuses to run for
/// every user when any file under /etc/sudoers.d fails to parse, so a bad rule
/// must fail the build, not leave a host without sudo.
fn check_sudoers(root: &Path, user: &str, file: &str) -> anyhow::Result<()> {
    let visudo = rootpath::resolve(root, Path::new("/usr/sbin/visudo"), true)?;
    if !visudo.exists() {
        bail!("user {user}: sudo is set but the image has no sudo (add the package 'sudo')");
    }
    let out = crate::util::process::output(
        std::process::Command::new("chroot")
            .arg(root)
            .args(["/usr/sbin/visudo", "-c", "-f", file])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    )
    .with_context(|| format!("cannot chroot into {} to run visudo", root.display()))?;
    if !out.status.success() {
        let host = rootpath::resolve(root, Path::new(file), true)?;
        let written = std::fs::read_to_string(&host).unwrap_or_default();
        let _ = std::fs::remove_file(&host);
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        let reason = said
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.ends_with("parsed OK"))
            .unwrap_or("rejected");
        bail!(
            "user {user}: the sudo rule '{}' is not valid sudoers syntax (the image's visudo -c: {reason})",
            written.trim_end()
        );
    }
    Ok(())
}

/// (uid, gid, home, shell) of a user in the image.
fn passwd_entry(root: &Path, name: &str) -> anyhow::Result<(u32, u32, String, String)> {
    let path = rootpath::resolve(root, Path::new("/etc/passwd"), true)?;
    let text = std::fs::read_to_string(path)?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == name {
            return Ok((
                f[2].parse()?,
                f[3].parse()?,
                f[5].to_string(),
                f[6].to_string(),
            ));
        }
    }
    bail!("user {name} is missing from the image's /etc/passwd")
}

/// group name → member names, from the image's /etc/group.
fn group_members(root: &Path) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let path = rootpath::resolve(root, Path::new("/etc/group"), true)?;
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4).then(|| {
                (
                    f[0].to_string(),
                    f[3].split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            })
        })
        .collect())
}

/// The password field of a user in the image's /etc/shadow.
fn shadow_hash(root: &Path, name: &str) -> anyhow::Result<Option<String>> {
    let path = rootpath::resolve(root, Path::new("/etc/shadow"), true)?;
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 1 && f[0] == name)
        .map(|f| f[1].to_string()))
}
