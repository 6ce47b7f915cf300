//! A layer: packages, package groups, repositories and commands added to a
//! root filesystem tarball inside a working container ([`crate::container`]),
//! written out as a new tarball. How a child profile starts from its parent's
//! built rootfs instead of a bootstrap of its own, like OpenCHAMI's base
//! layers on a `parent:` image.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use super::{ExtraRepo, Network};
use crate::container::WorkingContainer;
use crate::profile::{Cmd, LogLevel, PkgManager};

/// What a layer adds. Serialised into its cache key.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSpec {
    pub pkg_manager: PkgManager,
    pub repos: Vec<ExtraRepo>,
    pub packages: Vec<String>,
    pub package_groups: Vec<String>,
    pub cmds: Vec<Cmd>,
    pub source_date_epoch: Option<u64>,
    /// apt preferences pinning a lock file's versions (`--lock`).
    pub pins: Option<String>,
}

impl LayerSpec {
    pub fn is_empty(&self) -> bool {
        self.repos.is_empty()
            && self.packages.is_empty()
            && self.package_groups.is_empty()
            && self.cmds.is_empty()
    }

    /// "+3 packages, 1 command", for the log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let count =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        if !self.repos.is_empty() {
            parts.push(count(self.repos.len(), "repository", "repositories"));
        }
        if !self.packages.is_empty() {
            parts.push(count(self.packages.len(), "package", "packages"));
        }
        if !self.package_groups.is_empty() {
            parts.push(count(
                self.package_groups.len(),
                "package group",
                "package groups",
            ));
        }
        if !self.cmds.is_empty() {
            parts.push(count(self.cmds.len(), "command", "commands"));
        }
        format!("+{}", parts.join(", +"))
    }
}

/// Unpacks `parent` into `<dir>/root`, applies `spec` in a working container
/// and writes `<dir>/rootfs.tar` (the tree is removed afterwards). The
/// container's output goes to `<dir>/layer.log`; INFO commands' lines also
/// go to `echo`.
pub fn build(
    parent: &Path,
    spec: &LayerSpec,
    network: &Network,
    dir: &Path,
    mut echo: impl FnMut(&str),
) -> anyhow::Result<PathBuf> {
    let root = dir.join("root");
    super::unpack(parent, &root)?;
    let mut container = WorkingContainer::open(&root, network, &dir.join("layer.log"))?;
    container.set_source_date_epoch(spec.source_date_epoch);
    add_repos(&root, spec)?;
    let pins = root.join(super::LOCK_PREFERENCES);
    if let Some(prefs) = &spec.pins {
        std::fs::create_dir_all(pins.parent().expect("a path in etc/apt"))?;
        std::fs::write(&pins, prefs).with_context(|| format!("writing {}", pins.display()))?;
    }
    let origins = dir.join(super::PACKAGE_ORIGINS);
    if let Some(script) = install_script(spec) {
        container.run("installing packages", &script, |_| {})?;
        let listed = root.join(ORIGINS_IN_IMAGE);
        if listed.exists() {
            std::fs::rename(&listed, &origins)
                .with_context(|| format!("moving {}", listed.display()))?;
        }
    }
    // Without an install of its own the layer's packages came from below.
    let below = parent.with_file_name(super::PACKAGE_ORIGINS);
    if !origins.exists() && below.exists() {
        std::fs::copy(&below, &origins).with_context(|| format!("copying {}", below.display()))?;
    }
    if spec.pins.is_some() {
        std::fs::remove_file(&pins).with_context(|| format!("removing {}", pins.display()))?;
    }
    for (i, cmd) in spec.cmds.iter().enumerate() {
        let what = format!("cmds[{i}] ({})", first_line(&cmd.cmd));
        container.run(&what, &cmd.cmd, |line| {
            if cmd.loglevel == LogLevel::Info {
                echo(line)
            }
        })?;
    }
    container.close()?;
    remove_build_logs(&root)?;
    let tar = dir.join("rootfs.tar");
    pack(&root, &tar, spec.source_date_epoch)?;
    std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    Ok(tar)
}

fn first_line(cmd: &str) -> String {
    let line = cmd.lines().next().unwrap_or("").trim();
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The repositories' sources entries and keys, as the bootstrap writes them.
fn add_repos(root: &Path, spec: &LayerSpec) -> anyhow::Result<()> {
    for repo in &spec.repos {
        let write = |relative: String, contents: &[u8]| -> anyhow::Result<()> {
            let path = root.join(&relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
        };
        match spec.pkg_manager {
            PkgManager::Apt => {
                let signed_by = match (&repo.key, repo.key_extension()) {
                    (Some(key), Some(ext)) => {
                        let image_key = format!("etc/apt/keyrings/osforge-{}.{ext}", repo.name);
                        write(image_key.clone(), key)?;
                        format!(" [signed-by=/{image_key}]")
                    }
                    _ => String::new(),
                };
                let line = repo.apt_line(&signed_by);
                write(
                    format!("etc/apt/sources.list.d/osforge-{}.list", repo.name),
                    format!("{line}\n").as_bytes(),
                )?;
            }
            PkgManager::Dnf => {
                let mut text = format!(
                    "[osforge-{0}]\nname={0}\nbaseurl={1}\nenabled=1\n",
                    repo.name, repo.uri
                );
                match &repo.key {
                    Some(key) => {
                        let image_key = format!("etc/pki/rpm-gpg/osforge-{}", repo.name);
                        write(image_key.clone(), key)?;
                        text.push_str(&format!("gpgcheck=1\ngpgkey=file:///{image_key}\n"));
                    }
                    None => text.push_str("gpgcheck=0\n"),
                }
                write(
                    format!("etc/yum.repos.d/osforge-{}.repo", repo.name),
                    text.as_bytes(),
                )?;
            }
        }
    }
    Ok(())
}

/// Where the install script leaves the packages' origins, moved out of the
/// image into the layer's entry right after.
const ORIGINS_IN_IMAGE: &str = "var/lib/osforge-packages.uris";

/// What mmdebstrap removes after a bootstrap so that its output is
/// reproducible: logs and caches stamped with the time of the build.
const BUILD_LOGS: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/apt/history.log",
    "var/log/apt/term.log",
    "var/log/alternatives.log",
    "var/cache/ldconfig/aux-cache",
    "var/log/apt/eipp.log.xz",
    "var/lib/dbus/machine-id",
];

fn remove_build_logs(root: &Path) -> anyhow::Result<()> {
    for name in BUILD_LOGS {
        let path = root.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The package manager's commands for the layer's packages, cleaning up as
/// mmdebstrap does (no package lists or downloaded archives in the image).
fn install_script(spec: &LayerSpec) -> Option<String> {
    if spec.packages.is_empty() && spec.package_groups.is_empty() && spec.repos.is_empty() {
        return None;
    }
    let quote = crate::util::shell_quote;
    Some(match spec.pkg_manager {
        PkgManager::Apt => {
            // A group is a tasksel task: apt installs it as `task^`.
            let names: Vec<String> = spec
                .packages
                .iter()
                .map(|p| quote(p))
                .chain(spec.package_groups.iter().map(|g| quote(&format!("{g}^"))))
                .collect();
            let install = if names.is_empty() {
                String::new()
            } else {
                format!(
                    "apt-get -q -o Acquire::Retries=3 install -y --no-install-recommends {}\n",
                    names.join(" ")
                )
            };
            format!(
                "set -e\napt-get -q -o Acquire::Retries=3 update\n{install}{{ {}; }} > /{ORIGINS_IN_IMAGE}\napt-get clean\nrm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin\n",
                crate::manifest::lock::PRINT_URIS
            )
        }
        PkgManager::Dnf => {
            let mut script = String::from("set -e\n");
            if !spec.packages.is_empty() {
                let names: Vec<String> = spec.packages.iter().map(|p| quote(p)).collect();
                script.push_str(&format!(
                    "dnf -y --setopt=install_weak_deps=False install {}\n",
                    names.join(" ")
                ));
            }
            if !spec.package_groups.is_empty() {
                let names: Vec<String> = spec.package_groups.iter().map(|g| quote(g)).collect();
                script.push_str(&format!("dnf -y group install {}\n", names.join(" ")));
            }
            script.push_str("dnf clean all\n");
            script
        }
    })
}

/// Writes the tree as a tarball the way the bootstrap's reads back: numeric
/// owners, xattrs (file capabilities), sorted, times clamped when reproducible.
pub fn pack(root: &Path, tar: &Path, source_date_epoch: Option<u64>) -> anyhow::Result<()> {
    let mut cmd = Command::new("tar");
    cmd.args([
        "--sort=name",
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    ]);
    if let Some(epoch) = source_date_epoch {
        cmd.arg(format!("--mtime=@{epoch}")).arg("--clamp-mtime");
    }
    cmd.arg("-cf").arg(tar).arg("-C").arg(root).arg(".");
    super::run_tar(&mut cmd, || format!("packing {}", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LayerSpec {
        LayerSpec {
            pkg_manager: PkgManager::Apt,
            repos: Vec::new(),
            packages: vec!["numactl".into(), "o'brien".into()],
            package_groups: vec!["ssh-server".into()],
            cmds: Vec::new(),
            source_date_epoch: None,
            pins: None,
        }
    }

    #[test]
    fn apt_installs_packages_and_tasks_without_recommends_and_cleans_up() {
        let script = install_script(&spec()).unwrap();
        assert!(
            script.contains(
                "install -y --no-install-recommends 'numactl' 'o'\\''brien' 'ssh-server^'"
            ),
            "{script}"
        );
        assert!(script.contains("rm -rf /var/lib/apt/lists/*"), "{script}");
        assert_eq!(spec().summary(), "+2 packages, +1 package group");
    }

    #[test]
    fn dnf_installs_groups_with_group_install() {
        let mut s = spec();
        s.pkg_manager = PkgManager::Dnf;
        let script = install_script(&s).unwrap();
        assert!(
            script.contains("dnf -y group install 'ssh-server'"),
            "{script}"
        );
        assert!(script.contains("dnf clean all"), "{script}");
    }
}
