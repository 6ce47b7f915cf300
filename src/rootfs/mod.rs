//! The bootstrap stage: a Debian root filesystem made by mmdebstrap in unshare
//! mode, as a tarball.
//!
//! Unshare mode runs apt and dpkg in a user namespace, so no root is needed and
//! the host is never touched; the tarball records the real owners (which a
//! directory written from a user namespace would not). The mirror is never
//! chosen here: without one mmdebstrap uses its own default (the Debian mirror
//! plus updates and security for stable suites); the profile or `--mirror`
//! can name one. Extra repositories go in through a setup hook, because a
//! positional mirror argument would replace mmdebstrap's default instead of
//! adding to it. A proxy is passed in the environment only, so it never ends up
//! in the image's apt configuration.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Serialize;

pub mod foreign;
pub mod image;
pub mod layer;
pub mod preload;

/// What decides the bootstrapped tree. Serialised into the cache key.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapSpec {
    pub suite: String,
    pub arch: String,
    pub variant: String,
    pub components: Vec<String>,
    /// None: mmdebstrap's default mirror.
    pub mirror: Option<String>,
    pub repos: Vec<ExtraRepo>,
    pub packages: Vec<String>,
    /// Fixes file times and makes the tarball reproducible for the same inputs.
    pub source_date_epoch: Option<u64>,
    /// The mirror is a snapshot archive (snapshot.debian.org or a copy):
    /// its Release files are past their Valid-Until, which apt must accept.
    pub snapshot: bool,
    /// apt preferences pinning a lock file's versions (`--lock`).
    pub pins: Option<String>,
}

/// Where the bootstrap and the layers record the origin of every installed
/// package (see [`crate::manifest::lock`]), in their cache entries.
pub const PACKAGE_ORIGINS: &str = "packages.uris";

/// The name of the lock's apt preferences in the image while it is built.
pub const LOCK_PREFERENCES: &str = "etc/apt/preferences.d/osforge-lock.pref";

/// apt's option for a snapshot mirror, written into the image so that the
/// layers and the booted system can use its (expired) Release files too.
pub const SNAPSHOT_APT_CONF: (&str, &str) = (
    "etc/apt/apt.conf.d/50osforge-snapshot",
    "Acquire::Check-Valid-Until \"false\";",
);

#[derive(Debug, Clone, Serialize)]
pub struct ExtraRepo {
    pub name: String,
    pub uri: String,
    pub suite: String,
    pub components: Vec<String>,
    /// The signing key (armored or binary); the cache key holds its digest.
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    pub key_digest: Option<String>,
}

impl ExtraRepo {
    /// The one-line sources.list entry; `signed_by` is empty or ` [signed-by=…]`.
    pub fn apt_line(&self, signed_by: &str) -> String {
        format!(
            "deb{signed_by} {} {} {}",
            self.uri,
            self.suite,
            self.components.join(" ")
        )
    }

    /// The key's file extension: apt tells armored keys by `.asc`.
    pub fn key_extension(&self) -> Option<&'static str> {
        self.key.as_ref().map(|key| {
            if key.starts_with(b"-----BEGIN") {
                "asc"
            } else {
                "gpg"
            }
        })
    }
}

/// How to reach the network. Not part of any cache key: a proxy does not
/// change what is installed.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl Network {
    /// The proxy's password, to be kept out of anything shown.
    pub fn secret(&self) -> Option<&str> {
        self.proxy
            .as_deref()
            .and_then(crate::util::redact::password_of)
    }

    /// `text` with the proxy's password hidden.
    pub fn redact(&self, text: &str) -> String {
        crate::util::redact::secrets(text, self.secret().as_slice())
    }

    /// `--proxy`/`--no-proxy` when given, else the usual variables of the
    /// environment osforge runs in (`https_proxy` first: mirrors and
    /// registries are mostly HTTPS), so a build behind a proxy works as
    /// curl and apt on the same shell would.
    pub fn from_environment(proxy: Option<String>, no_proxy: Option<String>) -> Network {
        let first = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        Network {
            proxy: proxy
                .or_else(|| first(&["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"])),
            no_proxy: no_proxy.or_else(|| first(&["no_proxy", "NO_PROXY"])),
        }
    }

    /// The variables that carry the proxy to apt, curl, skopeo and Ansible,
    /// in both spellings, since tools differ in which they read.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(proxy) = &self.proxy {
            for var in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"] {
                env.push((var.to_string(), proxy.clone()));
            }
        }
        if let Some(no_proxy) = &self.no_proxy {
            env.push(("no_proxy".to_string(), no_proxy.clone()));
            env.push(("NO_PROXY".to_string(), no_proxy.clone()));
        }
        env
    }
}

/// Runs mmdebstrap, writing `<dir>/rootfs.tar` and `<dir>/mmdebstrap.log`.
pub fn bootstrap(spec: &BootstrapSpec, network: &Network, dir: &Path) -> anyhow::Result<PathBuf> {
    let tar = dir.join("rootfs.tar");
    let log_path = dir.join("mmdebstrap.log");
    let keys_dir = dir.join("keys");
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--mode=unshare")
        .arg(format!("--variant={}", spec.variant))
        .arg(format!("--architectures={}", spec.arch))
        .arg(format!("--components={}", spec.components.join(",")))
        // Flaky mirrors were the most common failure of the tools osforge
        // replaces; apt retries, and the option is removed from the image below.
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg("--customize-hook=rm -f \"$1/etc/apt/apt.conf.d/99mmdebstrap\"")
        // The build host's identity must not leak into the image.
        .arg("--customize-hook=rm -f \"$1/etc/resolv.conf\" \"$1/etc/hostname\"");
    if !spec.packages.is_empty() {
        cmd.arg(format!("--include={}", spec.packages.join(",")));
    }
    if spec.snapshot {
        let (path, line) = SNAPSHOT_APT_CONF;
        cmd.arg(format!("--aptopt={line}"));
        cmd.arg(format!("--customize-hook=echo '{line}' > \"$1/{path}\""));
    }
    if let Some(pins) = &spec.pins {
        std::fs::create_dir_all(dir)?;
        let host = dir.join("osforge-lock.pref");
        std::fs::write(&host, pins).with_context(|| format!("writing {}", host.display()))?;
        cmd.arg("--setup-hook=mkdir -p \"$1/etc/apt/preferences.d\"");
        cmd.arg(format!(
            "--setup-hook=copy-in {} /etc/apt/preferences.d/",
            host.display()
        ));
        cmd.arg(format!("--customize-hook=rm -f \"$1/{LOCK_PREFERENCES}\""));
    }
    for repo in &spec.repos {
        let signed_by = match (&repo.key, repo.key_extension()) {
            (Some(key), Some(ext)) => {
                std::fs::create_dir_all(&keys_dir)?;
                let host_key = keys_dir.join(format!("{}.{ext}", repo.name));
                std::fs::write(&host_key, key)?;
                let image_key = format!("/etc/apt/keyrings/osforge-{}.{ext}", repo.name);
                cmd.arg("--setup-hook=mkdir -p \"$1/etc/apt/keyrings\"");
                cmd.arg(format!(
                    "--setup-hook=copy-in {} /etc/apt/keyrings/",
                    host_key.display()
                ));
                cmd.arg(format!(
                    "--setup-hook=mv \"$1/etc/apt/keyrings/{}.{ext}\" \"$1{image_key}\"",
                    repo.name
                ));
                format!(" [signed-by={image_key}]")
            }
            _ => String::new(),
        };
        let line = repo.apt_line(&signed_by);
        cmd.arg(format!(
            "--setup-hook=mkdir -p \"$1/etc/apt/sources.list.d\" && echo '{line}' > \"$1/etc/apt/sources.list.d/osforge-{}.list\"",
            repo.name
        ));
    }
    // Before mmdebstrap removes the package lists: where each package came from.
    cmd.arg(format!(
        "--customize-hook=chroot \"$1\" sh -c {} > {}",
        crate::util::shell_quote(crate::manifest::lock::PRINT_URIS),
        crate::util::shell_quote(&dir.join(PACKAGE_ORIGINS).to_string_lossy())
    ));
    cmd.arg(&spec.suite).arg(&tar);
    if let Some(mirror) = &spec.mirror {
        cmd.arg(mirror);
    }
    cmd.envs(network.environment());
    if let Some(epoch) = spec.source_date_epoch {
        cmd.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let status = crate::util::process::status(&mut cmd)
        .context("cannot run mmdebstrap (install it: apt-get install mmdebstrap uidmap)")?;
    if !status.success() {
        bail!(
            "mmdebstrap failed ({status}): {}; full log in {}",
            network
                .redact(&last_error_line(&log_path).unwrap_or_else(|| "no error message".into())),
            log_path.display()
        );
    }
    Ok(tar)
}

/// The most telling line of a failed mmdebstrap run: apt's last "E:" line.
fn last_error_line(log: &Path) -> Option<String> {
    let file = File::open(log).ok()?;
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("E: ") && !l.contains("mmdebstrap failed"))
        .or_else(|| lines.iter().rev().find(|l| !l.trim().is_empty()))
        .map(|l| l.trim().to_string())
}

/// The version of mmdebstrap, part of the cache key: a different mmdebstrap
/// may build a different tree from the same inputs.
pub fn mmdebstrap_version() -> String {
    Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Unpacks a bootstrap tarball into `dest` with owners, modes and xattrs
/// intact (GNU tar; needs root or a user namespace). Device nodes are left
/// out, as mkosi leaves them out: a user namespace cannot make them, every
/// booted system mounts a devtmpfs on /dev and the working container binds its
/// own, and leaving them out everywhere makes a rootless build's images the
/// same bytes as root's.
pub fn unpack(tar: &Path, dest: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dest)?;
    let nodes = crate::util::userns::device_nodes(tar)?;
    let mut exclude = tempfile::NamedTempFile::new()?;
    // One name a line: tar's --null does not apply to --exclude-from. A
    // name with a newline in it stays in, and in a user namespace tar then
    // says it cannot mknod it.
    for node in nodes.iter().filter(|n| !n.contains(&b'\n')) {
        for name in tar_match_names(node) {
            std::io::Write::write_all(&mut exclude, &name)?;
            std::io::Write::write_all(&mut exclude, b"\n")?;
        }
    }
    let mut tar_cmd = Command::new("tar");
    tar_cmd
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--same-owner",
            "--anchored",
            "--no-wildcards",
            "--exclude-from",
        ])
        .arg(exclude.path())
        .arg("-xpf")
        .arg(tar)
        .arg("-C")
        .arg(dest);
    let unpacked = run_tar(&mut tar_cmd, || format!("unpacking {}", tar.display()));
    // Also after a failure: tar has extracted the members before the bad one.
    remove_device_nodes(dest)?;
    unpacked
}

/// A member's name as written and as GNU tar matches it against
/// --exclude-from: without leading `/` and `./`, doubled or trailing `/`.
/// (A device node named `dev/x/` got past a list holding only `dev/x/`.)
fn tar_match_names(name: &[u8]) -> Vec<Vec<u8>> {
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .skip_while(|p| *p == b".")
        .collect();
    let normal = parts.join(&b'/');
    if normal.is_empty() || normal == name {
        vec![name.to_vec()]
    } else {
        vec![name.to_vec(), normal]
    }
}

/// Removes any device node the exclusions missed, so none reaches an image
/// whatever the tarball's names: after a `..` member GNU tar no longer
/// matched `b/x y` against a device node named `/b/x y/`.
fn remove_device_nodes(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_char_device() || kind.is_block_device() {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Runs GNU tar; a failure names what it was doing and tar's first line
/// (the one that says why; later ones follow from it).
pub(crate) fn run_tar(cmd: &mut Command, doing: impl FnOnce() -> String) -> anyhow::Result<()> {
    let out = crate::util::process::output(cmd).context("cannot run tar")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{} failed: {}",
            doing(),
            stderr.lines().next().unwrap_or("").trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tar_match_names;

    #[test]
    fn device_node_names_are_also_excluded_as_tar_matches_them() {
        let forms = |name: &[u8]| tar_match_names(name);
        assert_eq!(forms(b"dev/null"), vec![b"dev/null".to_vec()]);
        assert_eq!(
            forms(b"/b//x y/"),
            vec![b"/b//x y/".to_vec(), b"b/x y".to_vec()]
        );
        assert_eq!(
            forms(b"./dev/zero"),
            vec![b"./dev/zero".to_vec(), b"dev/zero".to_vec()]
        );
        assert_eq!(forms(b"/"), vec![b"/".to_vec()]);
    }
}
