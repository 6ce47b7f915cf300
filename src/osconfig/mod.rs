//! The native configuration step: declarative OS settings applied to a root
//! filesystem, with no Ansible needed.
//!
//! Every step writes the desired state (whole files osforge owns under
//! `*.d/` directories, accounts made to match), so applying twice changes
//! nothing the second time. Paths are resolved inside the root
//! ([`rootpath`]); the few things that must run the image's own tools
//! (useradd, locale-gen, systemctl enable) run chrooted in it. The last step
//! empties /etc/machine-id so every booted host gets its own.

mod accounts;
pub mod rootpath;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

/// What the configuration step applies. Serialised (file contents by digest)
/// into the configure stage's cache key.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OsSettings {
    pub hostname: String,
    pub locale: String,
    pub timezone: String,
    pub users: Vec<UserSpec>,
    pub sysctl: Vec<(String, String)>,
    pub modules_load: Vec<String>,
    pub modules_blacklist: Vec<String>,
    pub limits: Vec<LimitSpec>,
    pub directories: Vec<DirSpec>,
    pub files: Vec<FileSpec>,
    pub units_enable: Vec<String>,
    pub units_disable: Vec<String>,
    pub units_mask: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UserSpec {
    pub name: String,
    pub uid: Option<u32>,
    pub groups: Vec<String>,
    pub shell: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    /// A crypt(3) hash; never a password. Cache manifests record its digest only.
    #[serde(serialize_with = "digest_of_secret")]
    pub password_hash: Option<String>,
    pub sudo: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitSpec {
    pub domain: String,
    pub kind: String,
    pub item: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirSpec {
    pub path: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSpec {
    pub path: String,
    #[serde(skip)]
    pub contents: Vec<u8>,
    pub contents_digest: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

fn digest_of_secret<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(&format!(
            "xxh3:{:032x}",
            xxhash_rust::xxh3::xxh3_128(v.as_bytes())
        )),
        None => s.serialize_none(),
    }
}

/// What was done, one line per step, for the build log.
#[derive(Debug, Default)]
pub struct Report {
    pub actions: Vec<String>,
}

/// Applies `settings` to the tree at `root`. Needs root (or a user namespace)
/// for chroot and chown.
pub fn apply(root: &Path, s: &OsSettings) -> anyhow::Result<Report> {
    let mut report = Report::default();
    set_hostname(root, &s.hostname, &mut report)?;
    set_locale(root, &s.locale, &mut report)?;
    set_timezone(root, &s.timezone, &mut report)?;
    for user in &s.users {
        report.actions.push(accounts::ensure_user(root, user)?);
    }
    write_sysctl(root, &s.sysctl, &mut report)?;
    write_kernel_modules(root, &s.modules_load, &s.modules_blacklist, &mut report)?;
    write_limits(root, &s.limits, &mut report)?;
    make_directories(root, &s.directories, &mut report)?;
    write_files(root, &s.files, &mut report)?;
    set_units(root, s, &mut report)?;
    remove_host_identity(root, &mut report)?;
    Ok(report)
}

fn set_hostname(root: &Path, hostname: &str, report: &mut Report) -> anyhow::Result<()> {
    write_file(
        root,
        Path::new("/etc/hostname"),
        format!("{hostname}\n").as_bytes(),
        0o644,
        0,
        0,
    )?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    );
    write_file(root, Path::new("/etc/hosts"), hosts.as_bytes(), 0o644, 0, 0)?;
    report.actions.push(format!("hostname {hostname}"));
    Ok(())
}

fn set_locale(root: &Path, locale: &str, report: &mut Report) -> anyhow::Result<()> {
    write_file(
        root,
        Path::new("/etc/default/locale"),
        format!("LANG={locale}\n").as_bytes(),
        0o644,
        0,
        0,
    )?;
    // C.UTF-8 is built into glibc; anything else must be generated.
    if !matches!(locale, "C" | "C.UTF-8" | "POSIX") {
        let charset = locale.split('.').nth(1).unwrap_or("UTF-8");
        let gen_path = rootpath::resolve(root, Path::new("/etc/locale.gen"), true)?;
        if !root.join("usr/sbin/locale-gen").exists() {
            bail!("locale {locale} needs the 'locales' package in the image (or use C.UTF-8)");
        }
        write_file(
            root,
            Path::new("/etc/locale.gen"),
            format!("{locale} {charset}\n").as_bytes(),
            0o644,
            0,
            0,
        )
        .with_context(|| format!("writing {}", gen_path.display()))?;
        run_in_root(root, "locale-gen", &[])?;
    }
    report.actions.push(format!("locale {locale}"));
    Ok(())
}

fn set_timezone(root: &Path, tz: &str, report: &mut Report) -> anyhow::Result<()> {
    let zone = format!("/usr/share/zoneinfo/{tz}");
    if !rootpath::resolve(root, Path::new(&zone), true)?.is_file() {
        bail!("timezone {tz} is not in the image ({zone} is missing; is tzdata installed?)");
    }
    let localtime = rootpath::resolve(root, Path::new("/etc/localtime"), false)?;
    let _ = fs::remove_file(&localtime);
    symlink(&zone, &localtime).with_context(|| format!("linking {}", localtime.display()))?;
    write_file(
        root,
        Path::new("/etc/timezone"),
        format!("{tz}\n").as_bytes(),
        0o644,
        0,
        0,
    )?;
    report.actions.push(format!("timezone {tz}"));
    Ok(())
}

fn write_sysctl(
    root: &Path,
    sysctl: &[(String, String)],
    report: &mut Report,
) -> anyhow::Result<()> {
    let path = Path::new("/etc/sysctl.d/90-osforge.conf");
    if sysctl.is_empty() {
        return remove_owned(root, path);
    }
    let body: String = sysctl.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    write_file(root, path, with_header(&body).as_bytes(), 0o644, 0, 0)?;
    report
        .actions
        .push(format!("{} sysctl settings", sysctl.len()));
    Ok(())
}

fn write_kernel_modules(
    root: &Path,
    load: &[String],
    blacklist: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    let load_path = Path::new("/etc/modules-load.d/osforge.conf");
    let black_path = Path::new("/etc/modprobe.d/osforge-blacklist.conf");
    if load.is_empty() {
        remove_owned(root, load_path)?;
    } else {
        let body: String = load.iter().map(|m| format!("{m}\n")).collect();
        write_file(root, load_path, with_header(&body).as_bytes(), 0o644, 0, 0)?;
    }
    if blacklist.is_empty() {
        remove_owned(root, black_path)?;
    } else {
        // "install … /bin/false" also stops loading as a dependency, which
        // "blacklist" alone does not.
        let body: String = blacklist
            .iter()
            .map(|m| format!("blacklist {m}\ninstall {m} /bin/false\n"))
            .collect();
        write_file(root, black_path, with_header(&body).as_bytes(), 0o644, 0, 0)?;
    }
    if !load.is_empty() || !blacklist.is_empty() {
        report.actions.push(format!(
            "kernel modules: {} loaded, {} blacklisted",
            load.len(),
            blacklist.len()
        ));
    }
    Ok(())
}

fn write_limits(root: &Path, limits: &[LimitSpec], report: &mut Report) -> anyhow::Result<()> {
    let path = Path::new("/etc/security/limits.d/90-osforge.conf");
    if limits.is_empty() {
        return remove_owned(root, path);
    }
    let body: String = limits
        .iter()
        .map(|l| format!("{}\t{}\t{}\t{}\n", l.domain, l.kind, l.item, l.value))
        .collect();
    write_file(root, path, with_header(&body).as_bytes(), 0o644, 0, 0)?;
    report
        .actions
        .push(format!("{} security limits", limits.len()));
    Ok(())
}

fn make_directories(root: &Path, dirs: &[DirSpec], report: &mut Report) -> anyhow::Result<()> {
    if dirs.is_empty() {
        return Ok(());
    }
    let users = accounts::read_ids(root, "/etc/passwd")?;
    let groups = accounts::read_ids(root, "/etc/group")?;
    for d in dirs {
        let uid = accounts::resolve_id(&users, &d.owner, "owner", "/etc/passwd")?;
        let gid = accounts::resolve_id(&groups, &d.group, "group", "/etc/group")?;
        ensure_dir(root, Path::new(&d.path), d.mode, uid, gid)
            .with_context(|| format!("directory {}", d.path))?;
    }
    report.actions.push(format!("{} directories", dirs.len()));
    Ok(())
}

fn write_files(root: &Path, files: &[FileSpec], report: &mut Report) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let users = accounts::read_ids(root, "/etc/passwd")?;
    let groups = accounts::read_ids(root, "/etc/group")?;
    for f in files {
        let uid = accounts::resolve_id(&users, &f.owner, "owner", "/etc/passwd")?;
        let gid = accounts::resolve_id(&groups, &f.group, "group", "/etc/group")?;
        write_file(root, Path::new(&f.path), &f.contents, f.mode, uid, gid)
            .with_context(|| format!("file {}", f.path))?;
    }
    report.actions.push(format!("{} files", files.len()));
    Ok(())
}

fn set_units(root: &Path, s: &OsSettings, report: &mut Report) -> anyhow::Result<()> {
    if s.units_enable.is_empty() && s.units_disable.is_empty() && s.units_mask.is_empty() {
        return Ok(());
    }
    if !rootpath::resolve(root, Path::new("/usr/bin/systemctl"), true)?.exists() {
        bail!("systemd units are configured but the image has no systemctl (add systemd-sysv)");
    }
    // The image's own systemctl knows its units' [Install] sections; in a
    // chroot it edits links only and starts nothing.
    for (verb, units) in [
        ("enable", &s.units_enable),
        ("disable", &s.units_disable),
        ("mask", &s.units_mask),
    ] {
        if !units.is_empty() {
            let mut args = vec![verb.to_string()];
            args.extend(units.iter().cloned());
            run_in_root(root, "systemctl", &args)?;
            report
                .actions
                .push(format!("systemctl {verb} {}", units.join(" ")));
        }
    }
    Ok(())
}

/// Everything that makes one machine itself, or that no image should carry:
/// each booted host must get its own.
fn remove_host_identity(root: &Path, report: &mut Report) -> anyhow::Result<()> {
    // Empty, not absent: systemd then generates the id on first boot and
    // treats that boot as the first one (presets, ConditionFirstBoot).
    write_file(root, Path::new("/etc/machine-id"), b"", 0o444, 0, 0)?;
    let dbus = rootpath::resolve(root, Path::new("/var/lib/dbus/machine-id"), false)?;
    if dbus
        .symlink_metadata()
        .is_ok_and(|m| !m.file_type().is_symlink())
    {
        fs::remove_file(&dbus)?;
    }
    // openssh-server's postinst made host keys during the bootstrap: private
    // keys every host of the image would share. They go; sshd makes its own
    // when it first starts (cloud-init may make them earlier).
    let ssh_dir = rootpath::resolve(root, Path::new("/etc/ssh"), true)?;
    let mut removed_keys = 0;
    if let Ok(entries) = fs::read_dir(&ssh_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                fs::remove_file(entry.path())?;
                removed_keys += 1;
            }
        }
    }
    if rootpath::resolve(root, Path::new("/usr/sbin/sshd"), true)?.exists() {
        let dropin = "# Written by osforge: the image carries no SSH host keys; make them on first start.\n[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n";
        write_file(
            root,
            Path::new("/etc/systemd/system/ssh.service.d/osforge-host-keys.conf"),
            dropin.as_bytes(),
            0o644,
            0,
            0,
        )?;
    }
    // The entropy seed of the build, and the account databases' backups
    // (copies from before osconfig's changes, hashes included).
    for path in [
        "/var/lib/systemd/random-seed",
        "/etc/passwd-",
        "/etc/shadow-",
        "/etc/group-",
        "/etc/gshadow-",
    ] {
        remove_owned(root, Path::new(path))?;
    }
    report.actions.push(format!(
        "machine-id emptied, {removed_keys} SSH host key files removed"
    ));
    Ok(())
}

fn with_header(body: &str) -> String {
    format!(
        "# Written by osforge from the host profile; changes are overwritten on rebuild.\n{body}"
    )
}

/// Removes a file osforge wrote earlier, if the profile no longer asks for it.
fn remove_owned(root: &Path, path: &Path) -> anyhow::Result<()> {
    let host = rootpath::resolve(root, path, false)?;
    match fs::remove_file(&host) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Creates a directory (and missing parents, root-owned 0755) inside the root.
/// The path is resolved first, so missing parents are created along the
/// resolved path, which lies inside the root by construction.
pub(crate) fn ensure_dir(
    root: &Path,
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> anyhow::Result<()> {
    let host = rootpath::resolve(root, path, true)?;
    if !host.is_dir() {
        fs::create_dir_all(&host).with_context(|| format!("creating {}", host.display()))?;
    }
    set_owner_mode(&host, mode, uid, gid)
}

/// Writes a regular file inside the root (replacing a symlink at that name
/// rather than writing through it), then sets its owner and mode.
pub(crate) fn write_file(
    root: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir_parents(root, parent)?;
    }
    let host = rootpath::resolve(root, path, false)?;
    if host
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        fs::remove_file(&host)?;
    }
    fs::write(&host, contents).with_context(|| format!("writing {}", host.display()))?;
    set_owner_mode(&host, mode, uid, gid)
}

fn ensure_dir_parents(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let host = rootpath::resolve(root, dir, true)?;
    if !host.is_dir() {
        fs::create_dir_all(&host).with_context(|| format!("creating {}", host.display()))?;
    }
    Ok(())
}

fn set_owner_mode(host: &PathBuf, mode: u32, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(host, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", host.display()))?;
    fs::set_permissions(host, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", host.display()))?;
    Ok(())
}

/// Runs one of the image's own tools chrooted in it, with a clean environment
/// (but SOURCE_DATE_EPOCH, which useradd takes for the account's dates).
pub(crate) fn run_in_root(root: &Path, program: &str, args: &[String]) -> anyhow::Result<()> {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .arg(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8");
    if let Some(epoch) = std::env::var_os("SOURCE_DATE_EPOCH") {
        cmd.env("SOURCE_DATE_EPOCH", epoch);
    }
    let out = crate::util::process::output(&mut cmd)
        .with_context(|| format!("cannot chroot into {} to run {program}", root.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = crate::util::process::last_line(&stderr).unwrap_or("");
        bail!(
            "{program} {} failed in the image ({}): {line}",
            redacted(args).join(" "),
            out.status
        );
    }
    Ok(())
}

/// Arguments as they may appear in logs: password hashes replaced.
fn redacted(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        out.push(if hide_next {
            "<redacted>".to_string()
        } else {
            a.clone()
        });
        hide_next = a == "--password";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_never_reach_error_messages() {
        let args: Vec<String> = ["--password", "$6$salt$hash", "ops"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(redacted(&args), vec!["--password", "<redacted>", "ops"]);
    }
}
