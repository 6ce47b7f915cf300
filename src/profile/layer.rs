//! What a profile adds on top of the root filesystem it starts from: where
//! that filesystem comes from (`source:`), the package manager, package
//! groups and shell commands (`cmds:`, OpenCHAMI's base-layer commands).
//!
//! ```yaml
//! source: bootstrap                      # mmdebstrap (the default)
//! source: docker://registry:5000/os/base:1     # or oci-archive:FILE, docker-archive:FILE,
//! source: {ref: "oci:base-layout:1", tls_verify: false, authfile: auth.json}  # oci:DIR[:TAG]
//! source: tarball:rootfs.tar.zst         # a tarball (any compression tar reads), or dir:PATH
//! pkg_manager: apt                       # apt (tested) or dnf
//! package_groups: [ssh-server]           # apt: tasksel tasks (NAME^); dnf: groups
//! cmds:
//!   - "echo built > /etc/built"
//!   - {cmd: "update-ca-certificates", loglevel: DEBUG}  # INFO: output shown; DEBUG: only logged
//! ```
//!
//! Paths are relative to the profile file that names them.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// `source:` as written: a reference string, or a map with options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceDoc {
    pub reference: String,
    pub tls_verify: Option<bool>,
    pub authfile: Option<String>,
}

impl<'de> Deserialize<'de> for SourceDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(rename = "ref")]
            reference: String,
            #[serde(default)]
            tls_verify: Option<bool>,
            #[serde(default)]
            authfile: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SourceDoc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "bootstrap, docker://REF, oci-archive:FILE, docker-archive:FILE, oci:DIR[:TAG], tarball:FILE, dir:PATH, or {ref, tls_verify, authfile}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SourceDoc, E> {
                Ok(SourceDoc {
                    reference: v.to_string(),
                    tls_verify: None,
                    authfile: None,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SourceDoc, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SourceDoc {
                    reference: full.reference,
                    tls_verify: full.tls_verify,
                    authfile: full.authfile,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Where the root filesystem comes from, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RootfsSource {
    /// mmdebstrap from the profile's `distro:`, `repos:` and `packages:`.
    Bootstrap,
    /// A container image, in the containers-transports syntax skopeo takes:
    /// `docker://REF`, `oci-archive:FILE`, `docker-archive:FILE`, `oci:DIR[:TAG]`.
    Image {
        reference: String,
        /// Registry TLS verification (docker:// only); on unless turned off.
        tls_verify: bool,
        authfile: Option<PathBuf>,
    },
    /// A tarball of a root filesystem (compression as tar detects it).
    Tarball { path: PathBuf },
    /// A directory holding a root filesystem.
    Directory { path: PathBuf },
}

impl RootfsSource {
    pub fn is_bootstrap(&self) -> bool {
        matches!(self, RootfsSource::Bootstrap)
    }
}

/// What a reference string means, before paths are resolved; `Err` says what
/// was expected.
pub(crate) enum SourceKind<'a> {
    Bootstrap,
    Image { path: Option<&'a str> },
    Tarball(&'a str),
    Directory(&'a str),
}

pub(crate) fn classify_source(reference: &str) -> Result<SourceKind<'_>, String> {
    if reference == "bootstrap" {
        return Ok(SourceKind::Bootstrap);
    }
    if let Some(rest) = reference.strip_prefix("docker://") {
        if rest.is_empty() {
            return Err("docker:// needs an image reference (docker://host/name:tag)".into());
        }
        return Ok(SourceKind::Image { path: None });
    }
    for transport in ["oci-archive:", "docker-archive:", "oci:"] {
        if let Some(rest) = reference.strip_prefix(transport) {
            // oci:DIR:TAG and the archives' FILE:REF: the path is before the first colon.
            let path = rest.split(':').next().unwrap_or("");
            if path.is_empty() {
                return Err(format!("{transport} needs a path ({transport}PATH)"));
            }
            return Ok(SourceKind::Image { path: Some(path) });
        }
    }
    if let Some(path) = reference.strip_prefix("tarball:").filter(|p| !p.is_empty()) {
        return Ok(SourceKind::Tarball(path));
    }
    if let Some(path) = reference.strip_prefix("dir:").filter(|p| !p.is_empty()) {
        return Ok(SourceKind::Directory(path));
    }
    Err(format!(
        "'{reference}' is not a rootfs source (expected bootstrap, docker://REF, oci-archive:FILE, docker-archive:FILE, oci:DIR[:TAG], tarball:FILE or dir:PATH)"
    ))
}

/// The package manager of the image the packages are installed into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PkgManager {
    #[default]
    Apt,
    /// Modelled for images from RPM distributions; osforge's tests use apt.
    Dnf,
}

/// How a command's output is shown: INFO on the console and in the log,
/// DEBUG in the stage's log file only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    #[default]
    Info,
    Debug,
}

/// One of `cmds:`, run with `/bin/sh -c` in the working container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cmd {
    pub cmd: String,
    pub loglevel: LogLevel,
}

impl<'de> Deserialize<'de> for Cmd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            cmd: String,
            #[serde(default)]
            loglevel: LogLevel,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cmd;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a shell command, or {cmd, loglevel: INFO|DEBUG}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cmd, E> {
                check_cmd(v).map_err(E::custom)?;
                Ok(Cmd {
                    cmd: v.to_string(),
                    loglevel: LogLevel::Info,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Cmd, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                check_cmd(&full.cmd).map_err(de::Error::custom)?;
                Ok(Cmd {
                    cmd: full.cmd,
                    loglevel: full.loglevel,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn check_cmd(cmd: &str) -> Result<(), String> {
    if cmd.trim().is_empty() {
        return Err("an empty command".into());
    }
    if cmd.contains('\0') {
        return Err("a NUL byte in a command".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_references_are_classified_by_transport() {
        assert!(matches!(
            classify_source("bootstrap"),
            Ok(SourceKind::Bootstrap)
        ));
        assert!(matches!(
            classify_source("docker://localhost:5000/a/b:1"),
            Ok(SourceKind::Image { path: None })
        ));
        assert!(matches!(
            classify_source("oci:layout:1"),
            Ok(SourceKind::Image {
                path: Some("layout")
            })
        ));
        assert!(matches!(
            classify_source("tarball:root.tar.zst"),
            Ok(SourceKind::Tarball("root.tar.zst"))
        ));
        let err = classify_source("ftp://x").err().unwrap();
        assert!(err.contains("expected bootstrap, docker://REF"), "{err}");
        assert!(classify_source("oci-archive:").is_err());
    }
}
