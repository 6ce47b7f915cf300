//! Lock files: every package a build installed, its version, architecture
//! and the archive file it came from (URL and sha256, as apt's
//! `download --print-uris` names them). `osforge build` writes one beside the
//! images; `--lock FILE` replays it: apt is pinned to the locked versions in
//! every stage that installs packages, and the build fails when what got
//! installed differs from the lock (a mirror that no longer carries a locked
//! version is the usual cause: name a snapshot mirror in the profile).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dpkg::DebPackage;

/// The lock file format's version, written as `osforge_lock`.
pub const LOCK_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub osforge_lock: u32,
    pub profile: String,
    pub suite: String,
    pub arch: String,
    /// The mirror the build used (`None`: mmdebstrap's default).
    #[serde(default)]
    pub mirror: Option<String>,
    /// The `source:` the rootfs came from and what identified its content;
    /// `None` for a bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LockedSource>,
    pub packages: Vec<LockedPackage>,
}

/// A `source:` as the build found it: the profile's reference and its
/// content's digest (a registry's manifest digest, else a digest of the file
/// or directory listing). `--lock` pulls a `docker://` image by that digest
/// and refuses any other source whose content no longer has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSource {
    pub reference: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Where apt fetched it from; `None` when apt could not say (a package
    /// from an image source, or one no repository carries any more).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read the lock file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an osforge lock file: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: lock format {found}, this osforge reads format {LOCK_FORMAT}")]
    Format { path: String, found: u32 },
}

/// Where each installed package came from, by (name, arch), read from the
/// output of `apt-get download --print-uris`: lines of
/// `'URL' NAME_VERSION_ARCH.deb SIZE SHA256:HEX`.
pub type Origins = BTreeMap<(String, String), (String, String, Option<String>)>;

impl LockFile {
    pub fn load(path: &Path) -> Result<Self, LockError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LockError::Read {
            path: shown.clone(),
            source,
        })?;
        let lock: LockFile = serde_json::from_str(&text).map_err(|e| LockError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        if lock.osforge_lock != LOCK_FORMAT {
            return Err(LockError::Format {
                path: shown,
                found: lock.osforge_lock,
            });
        }
        Ok(lock)
    }

    /// The lock of what a build installed: `packages` from the image's dpkg
    /// database, each with its origin when apt named one.
    pub fn new(
        profile: &str,
        suite: &str,
        arch: &str,
        mirror: Option<&str>,
        packages: &[DebPackage],
        origins: &Origins,
    ) -> Self {
        let packages = packages
            .iter()
            .map(|p| {
                let origin = origins
                    .get(&(p.name.clone(), p.architecture.clone()))
                    .filter(|(version, _, _)| *version == p.version);
                LockedPackage {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    arch: p.architecture.clone(),
                    url: origin.map(|(_, url, _)| url.clone()),
                    sha256: origin.and_then(|(_, _, sha)| sha.clone()),
                }
            })
            .collect();
        LockFile {
            osforge_lock: LOCK_FORMAT,
            profile: profile.to_string(),
            suite: suite.to_string(),
            arch: arch.to_string(),
            mirror: mirror.map(str::to_string),
            source: None,
            packages,
        }
    }

    /// apt preferences pinning every locked version above anything else
    /// (priority > 1000 also allows a downgrade to it). By name alone: apt
    /// files `Architecture: all` packages under the native architecture.
    pub fn apt_preferences(&self) -> String {
        let mut out = String::from("# osforge --lock: versions pinned for this build\n");
        for p in &self.packages {
            out.push_str(&format!(
                "\nPackage: {}\nPin: version {}\nPin-Priority: 1001\n",
                p.name, p.version
            ));
        }
        out
    }

    /// What differs between the lock and what was installed, one line each;
    /// empty when the build replayed the lock exactly.
    pub fn differences(&self, installed: &[DebPackage]) -> Vec<String> {
        let locked: BTreeMap<(&str, &str), &str> = self
            .packages
            .iter()
            .map(|p| ((p.name.as_str(), p.arch.as_str()), p.version.as_str()))
            .collect();
        let got: BTreeMap<(&str, &str), &str> = installed
            .iter()
            .map(|p| {
                (
                    (p.name.as_str(), p.architecture.as_str()),
                    p.version.as_str(),
                )
            })
            .collect();
        let mut out = Vec::new();
        for (&(name, arch), &version) in &locked {
            match got.get(&(name, arch)) {
                None => out.push(format!(
                    "{name}:{arch} {version} is locked but not installed"
                )),
                Some(&v) if v != version => out.push(format!(
                    "{name}:{arch} is locked at {version}, installed {v}"
                )),
                _ => {}
            }
        }
        for (&(name, arch), &version) in &got {
            if !locked.contains_key(&(name, arch)) {
                out.push(format!(
                    "{name}:{arch} {version} is installed but not locked"
                ));
            }
        }
        out
    }
}

/// Reads `apt-get download --print-uris` output (see [`Origins`]).
pub fn parse_print_uris(text: &str) -> Origins {
    let mut origins = Origins::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(url), Some(file)) = (fields.next(), fields.next()) else {
            continue;
        };
        let url = url.trim_matches('\'');
        let sha = fields
            .nth(1)
            .and_then(|h| h.strip_prefix("SHA256:"))
            .map(str::to_string);
        let Some(stem) = file.strip_suffix(".deb") else {
            continue;
        };
        let parts: Vec<&str> = stem.split('_').collect();
        if let [name, version, arch] = parts[..] {
            // apt writes an epoch's ':' as %3a in file names.
            let version = version.replace("%3a", ":");
            origins.insert(
                (name.to_string(), arch.to_string()),
                (version, url.to_string(), sha),
            );
        }
    }
    origins
}

/// The shell command that prints where every installed package came from,
/// run in the image before its package lists are removed. A package apt
/// cannot place makes the whole listing fail, which leaves the lock without
/// URLs but does not fail the build.
pub const PRINT_URIS: &str = "apt-get download --print-uris $(dpkg-query -W -f '${binary:Package}=${Version} ') 2>/dev/null || true";

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> DebPackage {
        DebPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            maintainer: None,
            homepage: None,
        }
    }

    #[test]
    fn reads_apt_print_uris_lines_with_epochs() {
        let text = "'http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2%2bb7_amd64.deb' bash_5.2.15-2+b7_amd64.deb 1505464 SHA256:abcd\n\
                    'http://deb.debian.org/debian/pool/main/s/systemd/libsystemd0_252.39-1~deb12u2_amd64.deb' libsystemd0_1%3a252.39-1~deb12u2_amd64.deb 100 SHA256:ef01\n";
        let origins = parse_print_uris(text);
        let bash = &origins[&("bash".to_string(), "amd64".to_string())];
        assert_eq!(bash.0, "5.2.15-2+b7");
        assert!(bash.1.ends_with("bash_5.2.15-2%2bb7_amd64.deb"));
        assert_eq!(bash.2.as_deref(), Some("abcd"));
        assert_eq!(
            origins[&("libsystemd0".to_string(), "amd64".to_string())].0,
            "1:252.39-1~deb12u2"
        );
    }

    #[test]
    fn a_lock_round_trips_and_names_every_difference() {
        let installed = [pkg("bash", "5.2"), pkg("zlib1g", "1.2")];
        let origins =
            parse_print_uris("'http://m/bash_5.2_amd64.deb' bash_5.2_amd64.deb 1 SHA256:aa\n");
        let lock = LockFile::new("p", "bookworm", "amd64", None, &installed, &origins);
        assert_eq!(lock.packages[0].sha256.as_deref(), Some("aa"));
        assert_eq!(lock.packages[1].url, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock.json");
        std::fs::write(&path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
        assert_eq!(LockFile::load(&path).unwrap(), lock);
        assert!(lock.differences(&installed).is_empty());
        let changed = [pkg("bash", "5.3"), pkg("curl", "8")];
        let diff = lock.differences(&changed);
        assert_eq!(
            diff,
            [
                "bash:amd64 is locked at 5.2, installed 5.3",
                "zlib1g:amd64 1.2 is locked but not installed",
                "curl:amd64 8 is installed but not locked",
            ]
        );
        assert!(
            lock.apt_preferences()
                .contains("Package: bash\nPin: version 5.2\n")
        );
    }

    #[test]
    fn a_bad_lock_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock.json");
        std::fs::write(&path, "{\"osforge_lock\": 1}").unwrap();
        let err = LockFile::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("x.lock.json: not an osforge lock file"),
            "{err}"
        );
        std::fs::write(&path, "{\"osforge_lock\": 9, \"profile\": \"p\", \"suite\": \"s\", \"arch\": \"a\", \"packages\": []}").unwrap();
        let err = LockFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("lock format 9"), "{err}");
    }
}
