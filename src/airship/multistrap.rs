//! `rootfs/multistrap-vars.yaml` → packages and repositories.
//!
//! Airship bootstrapped Ubuntu 20.04 with multistrap from a list of
//! repositories, each with the packages to take from it. osforge bootstraps
//! Debian with mmdebstrap, so:
//!
//! * package names (`ubuntu_packages_append`, the packages of repositories
//!   that can be carried over) go to `packages`, installed from Debian, where
//!   almost every Ubuntu name exists too;
//! * Ubuntu's own archives, and third-party repositories built for an Ubuntu
//!   release, cannot serve a Debian image: each is reported, with its packages;
//! * other repositories become `repos` entries; a key given as a URL is
//!   reported, since osforge reads repository keys from files.

use super::emit::{Parts, Repo, sourced};
use super::error::ImportError;
use super::vars::{VarsFile, invalid};
use crate::profile::{Arch, Component, Package, RepoName, Suite, Uri};
use crate::profile::{Node, Value};

const NO_EQUIVALENT: &str = "osforge has no equivalent";
/// Release code names of Ubuntu; a suite named after one (or `<name>-updates`) is Ubuntu's.
const UBUNTU_RELEASES: [&str; 12] = [
    "xenial", "bionic", "focal", "groovy", "hirsute", "impish", "jammy", "kinetic", "lunar",
    "mantic", "noble", "oracular",
];
/// Ubuntu's kernel metapackages and the Debian ones that do the same.
const KERNEL_NAMES: [(&str, &str); 4] = [
    ("linux-image-generic", "linux-image-amd64"),
    ("linux-generic", "linux-image-amd64"),
    ("linux-headers-generic", "linux-headers-amd64"),
    ("linux-image-virtual", "linux-image-cloud-amd64"),
];

pub(crate) fn map(f: &VarsFile) -> Result<Parts, ImportError> {
    let mut parts = Parts::default();
    for entry in f.entries() {
        let node = &entry.value;
        match entry.key.as_str() {
            "repos" | "repos_append" => {
                for item in f.list(node)? {
                    repo(f, item, &mut parts)?;
                }
            }
            "ubuntu_packages" | "ubuntu_packages_append" => {
                for item in f.list(node)? {
                    package(f, item, &mut parts)?;
                }
            }
            "kernel_base_pkg" | "kernel_headers_pkg" => package(f, node, &mut parts)?,
            // apt's "pkg-" drops a package, as Airship's pin to -1 kept it out.
            "unapproved_packages" => {
                for item in f.list(node)? {
                    if let Some(name) = f.text(item)? {
                        push_package(item, format!("{name}-"), f.from(item), &mut parts)?;
                    }
                }
            }
            "rootfs_arch" => {
                if let Some(arch) = f.text(node)? {
                    Arch::try_from(arch.clone()).map_err(|e| invalid(node, e))?;
                    parts.arch = Some(sourced(arch, f.from(node)));
                }
            }
            _ => f.defer_unknown(node, NO_EQUIVALENT),
        }
    }
    Ok(parts)
}

fn package(f: &VarsFile, node: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let Some(name) = f.text(node)? else {
        return Ok(());
    };
    match KERNEL_NAMES.iter().find(|(ubuntu, _)| *ubuntu == name) {
        Some((_, debian)) => {
            let from = format!("{} ({name}, as Debian names it)", f.from(node));
            push_package(node, debian.to_string(), from, parts)
        }
        None => push_package(node, name, f.from(node), parts),
    }
}

fn push_package(
    node: &Node,
    name: String,
    from: String,
    parts: &mut Parts,
) -> Result<(), ImportError> {
    Package::try_from(name.clone()).map_err(|e| invalid(node, e))?;
    parts.packages.push(sourced(name, from));
    Ok(())
}

fn repo(f: &VarsFile, item: &Node, parts: &mut Parts) -> Result<(), ImportError> {
    let fields = f.fields(
        item,
        &[
            "name",
            "source",
            "suite",
            "components",
            "keyring_pkg",
            "keyring_url",
            "packages",
            "register_repo_with_rootfs",
            "omitdebsrc",
        ],
        NO_EQUIVALENT,
    )?;
    let (Some(name), Some(source), Some(suite)) = (
        f.required_text(&fields, &["name"])?,
        f.required_text(&fields, &["source"])?,
        f.required_text(&fields, &["suite"])?,
    ) else {
        return Ok(());
    };
    let packages: Vec<&Node> = match fields.get("packages") {
        // `"{{ ubuntu_packages }}"`: Airship's default list, which needs Ansible.
        Some(
            node @ Node {
                value: Value::Str(_),
                ..
            },
        ) => {
            f.text(node)?;
            Vec::new()
        }
        Some(node) => f.list(node)?.iter().collect(),
        None => Vec::new(),
    };
    let keyring_pkg = match fields.get("keyring_pkg") {
        Some(node) => f.text(node)?.unwrap_or_default(),
        None => String::new(),
    };
    let release = suite.split('-').next().unwrap_or("");
    let ubuntu = keyring_pkg.starts_with("ubuntu")
        || source.contains("ubuntu")
        || UBUNTU_RELEASES.contains(&release);
    if ubuntu {
        let mut names = Vec::new();
        for p in &packages {
            if let Some(t) = super::vars::scalar_text(p) {
                names.push(t);
            }
        }
        let listed = if names.is_empty() {
            String::new()
        } else {
            format!("; its packages are not installed: {}", names.join(", "))
        };
        f.unmapped(
            item,
            format!(
                "repository {name} ({source} {suite}) is for Ubuntu and cannot build a Debian image{listed}"
            ),
        );
        return Ok(());
    }
    let components: Vec<String> = match fields.get("components") {
        Some(node) => match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.extend(f.text(i)?);
                }
                out
            }
            _ => f
                .text(node)?
                .map(|t| t.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
        },
        None => Vec::new(),
    };
    let at = |key: &str| fields.get(key).unwrap_or(item);
    // A repository name becomes a file name; Airship's may have spaces or capitals.
    let repo_name = name.to_ascii_lowercase().replace(
        |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "-",
    );
    RepoName::try_from(repo_name.clone()).map_err(|e| invalid(at("name"), e))?;
    Uri::try_from(source.clone()).map_err(|e| invalid(at("source"), e))?;
    Suite::try_from(suite.clone()).map_err(|e| invalid(at("suite"), e))?;
    for c in &components {
        Component::try_from(c.clone()).map_err(|e| invalid(at("components"), e))?;
    }
    if let Some(node) = fields.get("keyring_url") {
        f.unmapped(
            node,
            "osforge reads repository keys from files: download the key and add key_file to the repos entry",
        );
    }
    if !keyring_pkg.is_empty() {
        f.unmapped(
            fields.get("keyring_pkg").expect("read above"),
            "osforge needs the key before the bootstrap: give it as key_file",
        );
    }
    if let Some(node) = fields.get("register_repo_with_rootfs")
        && !f.bool(node)?
    {
        f.unmapped(
            node,
            "osforge registers every repository it builds from in the image",
        );
    }
    // omitdebsrc: osforge never adds deb-src lines, so either value is what it does.
    parts.repos.push(sourced(
        Repo {
            name: repo_name,
            uri: source,
            suite,
            components,
        },
        f.from(item),
    ));
    for p in packages {
        package(f, p, parts)?;
    }
    Ok(())
}
