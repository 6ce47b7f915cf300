//! The frozen profile: what the pipeline builds from, merged, checked and complete.
//!
//! A `Profile` is never changed after [`super::load`] returns it; per-host values
//! come out of [`Profile::render_host`] as a separate value. Files a profile points
//! at (repository keys, file sources, templates) are read during loading, so the
//! build sees exactly what was checked, and their digests feed the cache keys.
//!
//! The cache-key inputs are split by stage: [`RootfsInputs`] (what mmdebstrap
//! gets) and [`OsInputs`] (what the configuration step applies). Neither includes
//! template variables, so a `--var` that only changes cloud-init or the kernel
//! command line leaves both unchanged and the rootfs cache warm. OS values
//! written as templates are rendered before freezing (`expand`), so `OsInputs`
//! holds their rendered text: a variable they use is part of the configure key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

use super::disk::{ByteSize, Disk};
use super::error::{KeyPath, SourceLocation};
use super::schema::{
    AbsPath, AccountName, Arch, Component, Datasource, Directory, DistroName, Hostname,
    KernelModules, Limit, Locale, Mode, Package, RepoName, Suite, SysctlKey, SysctlValue, Systemd,
    Timezone, Uri, User, Variant, VolumeId,
};
use crate::formats::squashfs::Compression;

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The profile's name: its file name without `.yaml`.
    pub name: String,
    /// The profile's own file (the last one merged).
    pub path: PathBuf,
    /// The leaf file's own description (not inherited).
    pub description: String,
    /// Every file that shaped the profile, profiles first in merge order, then keys,
    /// file sources and templates.
    pub source_files: Vec<PathBuf>,
    /// Template variables after `--var` overrides.
    pub variables: BTreeMap<String, serde_json::Value>,
    pub distro: Distro,
    pub repos: Vec<Repo>,
    pub packages: Vec<Package>,
    /// Where the root filesystem comes from (`source:`); mmdebstrap by default.
    pub source: super::layer::RootfsSource,
    pub pkg_manager: super::layer::PkgManager,
    pub package_groups: Vec<Package>,
    /// Shell commands run in the working container after the packages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmds: Vec<super::layer::Cmd>,
    /// The profile files merged into this one, ancestors first, this one last:
    /// the ancestors' built root filesystems are the layers this one can start from.
    pub lineage: Vec<PathBuf>,
    /// Playbooks run on the configured image (`ansible:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ansible: Option<super::ansible::Ansible>,
    pub os: OsConfig,
    /// The OS values that were templates, rendered into `os` with the variables.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub os_templates: Vec<super::OsTemplate>,
    pub kernel: Kernel,
    pub cloud_init: CloudInit,
    pub iso: Iso,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
    /// `epoch:`: the build's SOURCE_DATE_EPOCH when the command line and
    /// environment give none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// `--type oci`: the image's second layer (`oci.backup_paths`).
    #[serde(skip_serializing_if = "Oci::is_empty")]
    pub oci: Oci,
    /// `images:`: container images baked in for containerd.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::images::PreloadImage>,
}

/// What `--type oci` writes beyond the root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Oci {
    /// Directories (absolute, normalised: `/etc`, `/var`) that go into a
    /// layer of their own on top of the rest, as IBU's seed images carry
    /// their `/etc` and `/var` backup: the flattened image is the same.
    pub backup_paths: Vec<String>,
}

impl Oci {
    pub fn is_empty(&self) -> bool {
        self.backup_paths.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distro {
    pub name: DistroName,
    pub suite: Suite,
    pub arch: Arch,
    /// `None`: mmdebstrap's default, which is the build host's apt sources.
    pub mirror: Option<Uri>,
    /// The mirror is a snapshot archive such as
    /// `http://snapshot.debian.org/archive/debian/20261201T000000Z/`, whose
    /// Release files have expired: apt is told to accept them, in the build
    /// and in the image. What makes an old lock file replayable.
    pub snapshot: bool,
    pub components: Vec<Component>,
    pub variant: Variant,
}

/// A file read while loading, with its content digest (xxh3-128, hex).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedFile {
    pub path: PathBuf,
    #[serde(skip)]
    pub contents: Vec<u8>,
    pub xxh3_128: String,
}

impl LoadedFile {
    pub(crate) fn new(path: PathBuf, contents: Vec<u8>) -> Self {
        let xxh3_128 = digest(&contents);
        LoadedFile {
            path,
            contents,
            xxh3_128,
        }
    }
}

pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repo {
    pub name: RepoName,
    pub uri: Uri,
    pub suite: Suite,
    pub components: Vec<Component>,
    /// The signing key (armored or binary), read from `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<LoadedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OsConfig {
    /// The static host name baked into the image; per-host names come from cloud-init.
    pub hostname: Hostname,
    pub locale: Locale,
    pub timezone: Timezone,
    pub users: Vec<User>,
    pub sysctl: BTreeMap<SysctlKey, SysctlValue>,
    pub kernel_modules: KernelModules,
    pub limits: Vec<Limit>,
    pub files: Vec<ImageFile>,
    pub directories: Vec<Directory>,
    pub systemd: Systemd,
}

/// A file the configuration step writes into the image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageFile {
    pub path: AbsPath,
    #[serde(flatten)]
    pub contents: FileContents,
    pub mode: Mode,
    pub owner: AccountName,
    pub group: AccountName,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileContents {
    /// Written in the profile (`content:`).
    #[serde(rename = "content")]
    Inline(String),
    /// Read from a file next to the profile (`source:`).
    Source(LoadedFile),
}

impl FileContents {
    pub fn bytes(&self) -> &[u8] {
        match self {
            FileContents::Inline(text) => text.as_bytes(),
            FileContents::Source(file) => &file.contents,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kernel {
    /// Parameter templates, rendered per host by [`Profile::render_host`].
    pub cmdline: Vec<CmdlineTemplate>,
}

/// One kernel parameter template and where it was written, so a parameter that
/// renders badly is reported at its line.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdlineTemplate {
    pub template: String,
    pub defined_at: SourceLocation,
    /// The key path in the file that wrote it (`kernel.cmdline[2]`).
    pub key_path: KeyPath,
}

impl Serialize for CmdlineTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.template)
    }
}

/// A tera template, read while loading and checked for syntax.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    /// The name as the profile wrote it.
    pub name: String,
    /// Where it was found in the template search path.
    pub path: PathBuf,
    #[serde(skip)]
    pub source: String,
}

/// The cloud-init seed a host gets. Which files these are depends on the
/// datasource: NoCloud's `user-data`, `meta-data`, `network-config`, or the config
/// drive's `user_data`, `meta_data.json`, `network_data.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudInit {
    pub datasource: Datasource,
    pub user_data: Template,
    pub meta_data: Template,
    /// Left out when the profile sets it to null; a template that renders to
    /// nothing also leaves the file out (cloud-init then falls back to DHCP).
    pub network: Option<Template>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Iso {
    /// The ISO's volume label: `config-2` for a config drive, else `cidata` (NoCloud finds its seed by it).
    pub volume_id: VolumeId,
    pub squashfs: SquashfsSettings,
    /// UEFI through the image's signed shim and GRUB (`iso.secure_boot`).
    pub secure_boot: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SquashfsSettings {
    #[serde(serialize_with = "compression_name")]
    pub compression: Compression,
    pub level: u32,
    pub block_size: ByteSize,
}

fn compression_name<S: Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

/// Everything that decides the bootstrapped rootfs: the distribution, the
/// repositories (keys by content) and the packages. Paths are left out on purpose:
/// moving a checkout must not invalidate the cache.
#[derive(Debug, Serialize)]
pub struct RootfsInputs<'a> {
    pub distro: &'a Distro,
    pub repos: Vec<RepoInputs<'a>>,
    pub packages: &'a [Package],
}

#[derive(Debug, Serialize)]
pub struct RepoInputs<'a> {
    pub name: &'a RepoName,
    pub uri: &'a Uri,
    pub suite: &'a Suite,
    pub components: &'a [Component],
    pub key_xxh3_128: Option<&'a str>,
}

/// Everything the configuration step applies inside the rootfs, files by content.
#[derive(Debug, Serialize)]
pub struct OsInputs<'a> {
    pub hostname: &'a Hostname,
    pub locale: &'a Locale,
    pub timezone: &'a Timezone,
    pub users: &'a [User],
    pub sysctl: &'a BTreeMap<SysctlKey, SysctlValue>,
    pub kernel_modules: &'a KernelModules,
    pub limits: &'a [Limit],
    pub files: Vec<FileInputs<'a>>,
    pub directories: &'a [Directory],
    pub systemd: &'a Systemd,
}

#[derive(Debug, Serialize)]
pub struct FileInputs<'a> {
    pub path: &'a AbsPath,
    pub xxh3_128: String,
    pub mode: Mode,
    pub owner: &'a AccountName,
    pub group: &'a AccountName,
}

impl RootfsInputs<'_> {
    /// A digest of the inputs (xxh3-128 of their JSON), for cache keys.
    pub fn fingerprint(&self) -> String {
        fingerprint(self)
    }
}

impl OsInputs<'_> {
    /// A digest of the inputs (xxh3-128 of their JSON), for cache keys.
    pub fn fingerprint(&self) -> String {
        fingerprint(self)
    }
}

fn fingerprint<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("profile inputs serialise to JSON");
    digest(&json)
}

impl Profile {
    /// The variables among `vars` (what `--var` set) that OS values use, each
    /// with the first key that uses it: these make the configure stage per host.
    pub fn per_host_os_variables<'a>(
        &'a self,
        vars: &[(String, String)],
    ) -> Vec<(&'a str, &'a str)> {
        let mut found: Vec<(&str, &str)> = Vec::new();
        for (var, _) in vars {
            if let Some(used) = self.os_use_of(var)
                && !found.contains(&used)
            {
                found.push(used);
            }
        }
        found
    }

    /// The first OS value (`sysctl.vm.swappiness`) that uses the variable
    /// `var`: setting it changes the configure stage's key.
    pub fn os_key_using(&self, var: &str) -> Option<&str> {
        self.os_use_of(var).map(|(_, key)| key)
    }

    /// (the variable, the first OS value's key path) when an OS value uses `var`.
    fn os_use_of(&self, var: &str) -> Option<(&str, &str)> {
        self.os_templates.iter().find_map(|t| {
            t.variables
                .iter()
                .find(|v| *v == var)
                .map(|v| (v.as_str(), t.key_path.as_str()))
        })
    }

    /// The inputs of the rootfs stage, for its cache key.
    pub fn rootfs_inputs(&self) -> RootfsInputs<'_> {
        RootfsInputs {
            distro: &self.distro,
            repos: self
                .repos
                .iter()
                .map(|r| RepoInputs {
                    name: &r.name,
                    uri: &r.uri,
                    suite: &r.suite,
                    components: &r.components,
                    key_xxh3_128: r.key.as_ref().map(|k| k.xxh3_128.as_str()),
                })
                .collect(),
            packages: &self.packages,
        }
    }

    /// The inputs of the configuration stage, for its cache key.
    pub fn os_inputs(&self) -> OsInputs<'_> {
        let os = &self.os;
        OsInputs {
            hostname: &os.hostname,
            locale: &os.locale,
            timezone: &os.timezone,
            users: &os.users,
            sysctl: &os.sysctl,
            kernel_modules: &os.kernel_modules,
            limits: &os.limits,
            files: os
                .files
                .iter()
                .map(|f| FileInputs {
                    path: &f.path,
                    xxh3_128: match &f.contents {
                        FileContents::Inline(text) => digest(text.as_bytes()),
                        FileContents::Source(file) => file.xxh3_128.clone(),
                    },
                    mode: f.mode,
                    owner: &f.owner,
                    group: &f.group,
                })
                .collect(),
            directories: &os.directories,
            systemd: &os.systemd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Profile>();
        shareable::<super::super::HostRender>();
    }

    #[test]
    fn digests_are_32_hex_digits_and_follow_the_content() {
        let a = LoadedFile::new("k".into(), b"key".to_vec());
        assert_eq!(a.xxh3_128.len(), 32);
        assert_ne!(
            a.xxh3_128,
            LoadedFile::new("k".into(), b"kez".to_vec()).xxh3_128
        );
    }
}
