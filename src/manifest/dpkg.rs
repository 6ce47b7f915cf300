//! The installed packages of a Debian root, from `/var/lib/dpkg/status`.
//!
//! Why the status file and not `dpkg-query --admindir`: it is dpkg's own
//! record (deb822 paragraphs), readable without running anything from the
//! image or needing dpkg on the build host, and identical on a cache hit,
//! where the configured rootfs is reused as it was written.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where dpkg keeps its database inside a root.
pub const STATUS_PATH: &str = "var/lib/dpkg/status";

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DebPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The `Maintainer` field (`Name <email>`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    #[error("cannot read {path}: it lists the image's packages")]
    Reading {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The packages dpkg marks installed in the root at `root`, sorted by name
/// and architecture.
pub fn installed_packages(root: &Path) -> Result<Vec<DebPackage>, DpkgError> {
    let path = root.join(STATUS_PATH);
    let text = std::fs::read(&path).map_err(|source| DpkgError::Reading { path, source })?;
    Ok(parse_status(&String::from_utf8_lossy(&text)))
}

/// Parses a status file. Only paragraphs whose `Status` ends in
/// `installed` count: removed packages leave `deinstall ok config-files`
/// paragraphs behind, and half-installed ones are not in the image as
/// their version says.
pub fn parse_status(text: &str) -> Vec<DebPackage> {
    let mut found = Vec::new();
    for paragraph in text.split("\n\n") {
        let field = |name: &str| -> Option<String> {
            paragraph.lines().find_map(|line| {
                // Continuation lines start with a space; fields do not.
                let (key, value) = line.split_once(':')?;
                (!line.starts_with([' ', '\t']) && key.eq_ignore_ascii_case(name))
                    .then(|| value.trim().to_string())
            })
        };
        let installed =
            field("Status").is_some_and(|s| s.split_whitespace().nth(2) == Some("installed"));
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        if !installed {
            continue;
        }
        found.push(DebPackage {
            name,
            version,
            architecture: field("Architecture").unwrap_or_else(|| "all".into()),
            maintainer: field("Maintainer").filter(|m| !m.is_empty()),
            homepage: field("Homepage").filter(|h| !h.is_empty()),
        });
    }
    found.sort();
    found.dedup_by(|a, b| a.name == b.name && a.architecture == b.architecture);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: systemd\n\
        Status: install ok installed\n\
        Priority: important\n\
        Architecture: amd64\n\
        Maintainer: Debian systemd Maintainers <pkg-systemd-maintainers@lists.alioth.debian.org>\n\
        Version: 252.30-1~deb12u2\n\
        Depends: libc6 (>= 2.34)\n\
        Description: system and service manager\n \
        Package: not-a-field, a continuation line\n\
        Homepage: https://systemd.io/\n\
        \n\
        Package: old-tool\n\
        Status: deinstall ok config-files\n\
        Architecture: amd64\n\
        Version: 1.0\n\
        \n\
        Package: libstdc++6\n\
        Status: install ok installed\n\
        Architecture: amd64\n\
        Version: 12.2.0-14+deb12u1\n\
        \n\
        Package: broken\n\
        Status: install reinstreq half-installed\n\
        Version: 2\n";

    #[test]
    fn only_installed_packages_are_listed_with_version_arch_and_maintainer() {
        let p = parse_status(STATUS);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libstdc++6", "systemd"]);
        let systemd = &p[1];
        assert_eq!(systemd.version, "252.30-1~deb12u2");
        assert_eq!(systemd.architecture, "amd64");
        assert_eq!(systemd.homepage.as_deref(), Some("https://systemd.io/"));
        assert!(
            systemd
                .maintainer
                .as_deref()
                .unwrap()
                .starts_with("Debian systemd Maintainers <")
        );
        assert_eq!(p[0].maintainer, None);
    }

    #[test]
    fn a_root_without_a_dpkg_database_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = installed_packages(dir.path()).unwrap_err();
        assert!(err.to_string().contains("var/lib/dpkg/status"), "{err}");
    }
}
