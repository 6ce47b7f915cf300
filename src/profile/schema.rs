//! The profile file format, as serde types.
//!
//! Two layers share these types. [`ProfileDoc`] is one file as written: every key
//! optional, so a parent can leave the suite to its child and each file can still
//! be checked alone — an unknown key or a wrong type is reported in the file that
//! holds it. The frozen [`super::Profile`] is built from the merged `ProfileDoc`.
//! List items (a user, a partition, a file) never merge field by field, so their
//! types are complete on their own and are used by both layers as they are.
//!
//! Values that have a shape (names, paths, modes, hashes) are newtypes that check
//! it when they are read, so the rest of osforge can rely on it.
//!
//! # The format
//!
//! ```yaml
//! description: one line             # this file's own; not inherited
//! inherits: [base]                  # names (own directory, then the search path)
//!                                   # or paths relative to this file
//! variables: {hostname: node}       # template variables; --var overrides declared ones;
//!                                   # {secret: {env: OSFORGE_SECRET_X}} or {secret: {file: F}} (secrets.rs)
//! distro: {name: debian, suite: bookworm, arch: amd64,          # required, somewhere
//!          mirror: null, components: [main], variant: important, # defaults shown
//!          snapshot: false}         # true: the mirror is a snapshot archive (old Release files accepted)
//! repos: [{name, uri, suite, components, key_file}]  # key_file relative to this file
//! packages: [linux-image-amd64]
//! source: bootstrap                 # or docker://REF, oci-archive:FILE, tarball:FILE, dir:PATH (see layer.rs)
//! pkg_manager: apt                  # or dnf; package_groups: [], cmds: ["shell command", {cmd, loglevel}]
//! ansible: {playbooks: [a.yml], inventory, groups, verbosity, extra_vars}  # see ansible.rs
//! hostname: debian                  # required; locale: C.UTF-8, timezone: Etc/UTC by default
//! users: [{name, uid, groups, shell, ssh_authorized_keys, password_hash, sudo}]
//! sysctl: {vm.swappiness: 10}
//! kernel_modules: {load: [], blacklist: []}
//! limits: [{domain, type: soft|hard|both, item, value}]
//! files: [{path, content | source, mode: "0644", owner: root, group: root}]
//! directories: [{path, mode: "0755", owner, group}]
//! systemd: {enable: [], disable: [], mask: []}
//! kernel: {cmdline: ["console=ttyS0,115200n8", "hugepages={{ hugepages }}",
//!                    {name: isolcpus, value: "{{ isolcpus }}"}]}
//! cloud_init: {datasource: nocloud | configdrive,       # nocloud by default
//!              user_data: user-data.tera,                # both datasources
//!              meta_data: meta-data.tera, network_config: network-config.tera,  # nocloud
//!              meta_data_json: meta_data.json.tera, network_data: network_data.json.tera}
//! iso: {volume_id: null, squashfs: {compression: zstd, level: 15, block_size: 1M},
//!       secure_boot: false}         # UEFI through the image's signed shim and GRUB
//! disk: {size: 8G, partitions: [{name, size: 4M | rest, type, filesystem, mount, fstab_options}],
//!        compression: zlib,             # qcow2 clusters: none, zlib (default) or zstd
//!        secure_boot: false}            # UEFI through the signed shim and GRUB
//! ```
//!
//! A template name with a `/` is a path relative to the profile that names it;
//! a `null` network template leaves that file out.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::disk::{ByteSize, DiskCompression, Partition};
use super::validate;

/// A string newtype that is checked when read and prints as itself.
macro_rules! checked_string {
    ($(#[$meta:meta])* $name:ident, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&text)?;
                Ok($name(text))
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// A user or group name (`^[a-z_][a-z0-9_-]*$`).
    AccountName, validate::check_user_name
);
checked_string!(
    /// An absolute, normalised path inside the image.
    AbsPath, validate::check_absolute_path
);
checked_string!(
    /// An RFC 1123 host name.
    Hostname, validate::check_hostname
);
checked_string!(
    /// A package for mmdebstrap's `--include` (`name[:arch][=version|/release]`).
    Package, validate::check_package
);
checked_string!(
    /// A kernel module name.
    ModuleName, validate::check_module_name
);
checked_string!(
    /// A systemd unit name with its type suffix.
    UnitName, validate::check_unit_name
);
checked_string!(
    /// A sysctl key (`net.ipv4.ip_forward`).
    SysctlKey, validate::check_sysctl_key
);
checked_string!(
    /// A glibc locale name.
    Locale, validate::check_locale
);
checked_string!(
    /// A tzdata zone name.
    Timezone, validate::check_timezone
);
checked_string!(
    /// One `authorized_keys` line.
    SshKey, validate::check_ssh_key
);
checked_string!(
    /// A crypt(3) hash (yescrypt, SHA-crypt, bcrypt, scrypt); never a plain password.
    PasswordHash, validate::check_password_hash
);
checked_string!(
    /// A repository name; it becomes `/etc/apt/sources.list.d/<name>.sources`.
    RepoName, validate::check_repo_name
);
checked_string!(
    /// An apt repository URI.
    Uri, validate::check_uri
);
checked_string!(
    /// A Debian architecture.
    Arch, validate::check_arch
);
checked_string!(
    /// A suite or codename.
    Suite, validate::check_suite
);
checked_string!(
    /// An archive component.
    Component, validate::check_component
);
checked_string!(
    /// A limits.conf domain.
    LimitDomain, validate::check_limit_domain
);
checked_string!(
    /// A sudoers rule (`ALL=(ALL) NOPASSWD:ALL`), written after the user name.
    SudoRule, |t| validate::check_single_line("the sudo rule", t)
);
checked_string!(
    /// Mount options for fstab's fourth field.
    FstabOptions, |t| {
        validate::check_single_line("fstab_options", t)?;
        if t.contains(char::is_whitespace) {
            return Err("fstab_options must not contain spaces".into());
        }
        Ok(())
    }
);
checked_string!(
    /// A profile's description: one line, as `osforge profiles` prints it.
    Description, |t| validate::check_single_line("the description", t)
);
checked_string!(
    /// An ISO 9660 volume identifier.
    VolumeId, validate::check_volume_id
);

/// A file mode, written as octal text (`"0644"`) and printed the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Mode(pub u32);

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        validate::parse_mode(&text).map(Mode)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The distribution. Only Debian for now; the enum is where the next one goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", rename_all = "lowercase")]
pub enum DistroName {
    Debian,
}

impl TryFrom<String> for DistroName {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "debian" => Ok(DistroName::Debian),
            other => Err(format!(
                "'{other}' is not supported (only debian is, for now)"
            )),
        }
    }
}

/// mmdebstrap's `--variant`: which packages make the base system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Extract,
    Custom,
    Essential,
    Apt,
    Required,
    Minbase,
    Buildd,
    Important,
    Debootstrap,
    Standard,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Extract => "extract",
            Variant::Custom => "custom",
            Variant::Essential => "essential",
            Variant::Apt => "apt",
            Variant::Required => "required",
            Variant::Minbase => "minbase",
            Variant::Buildd => "buildd",
            Variant::Important => "important",
            Variant::Debootstrap => "debootstrap",
            Variant::Standard => "standard",
        }
    }
}

/// Where cloud-init finds its seed on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Datasource {
    /// NoCloud: `user-data`, `meta-data`, `network-config` (netplan v2).
    Nocloud,
    /// OpenStack config drive (`config-2`): `openstack/latest/{user_data,
    /// meta_data.json, network_data.json}`, as Airship's ISO carries it.
    Configdrive,
}

/// A user created in the image. Keys and per-host users belong in cloud-init.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: AccountName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default)]
    pub groups: Vec<AccountName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<AbsPath>,
    #[serde(default)]
    pub ssh_authorized_keys: Vec<SshKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<PasswordHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<Sudo>,
}

/// The rule `sudo: true` stands for, as cloud-init's and Airship's users mean it.
pub const PASSWORDLESS_SUDO: &str = "ALL=(ALL) NOPASSWD:ALL";

/// A user's `sudo:`: `true` is passwordless sudo for every command, `false`
/// none (a child profile can turn a parent's off), a string a sudoers rule
/// written after the user name (`ALL=(ALL) ALL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sudo {
    Allowed(bool),
    Rule(SudoRule),
}

impl Sudo {
    /// The text written after the user name in sudoers, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Sudo::Allowed(true) => Some(PASSWORDLESS_SUDO),
            Sudo::Allowed(false) => None,
            Sudo::Rule(rule) => Some(rule.as_str()),
        }
    }
}

impl Serialize for Sudo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Sudo::Allowed(allowed) => s.serialize_bool(*allowed),
            Sudo::Rule(rule) => rule.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Sudo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Sudo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a sudoers rule such as 'ALL=(ALL) ALL'")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Sudo, E> {
                Ok(Sudo::Allowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Sudo, E> {
                SudoRule::try_from(v.to_string())
                    .map(Sudo::Rule)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A sysctl value: a number or a string (`"4096 87380 6291456"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysctlValue {
    Int(i64),
    Text(String),
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Text(t) => f.write_str(t),
        }
    }
}

impl Serialize for SysctlValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SysctlValue::Int(i) => s.serialize_i64(*i),
            SysctlValue::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SysctlValue, E> {
                i64::try_from(v)
                    .map(SysctlValue::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SysctlValue, E> {
                validate::check_single_line("a sysctl value", v).map_err(E::custom)?;
                Ok(SysctlValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelModules {
    pub load: Vec<ModuleName>,
    pub blacklist: Vec<ModuleName>,
}

/// limits.conf's second field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitType {
    Soft,
    Hard,
    /// Both soft and hard (`-` in limits.conf).
    #[serde(alias = "-")]
    Both,
}

/// limits.conf's third field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitItem {
    Core,
    Data,
    Fsize,
    Memlock,
    Nofile,
    Rss,
    Stack,
    Cpu,
    Nproc,
    #[serde(rename = "as")]
    AddressSpace,
    Maxlogins,
    Maxsyslogins,
    Nonewprivs,
    Priority,
    Locks,
    Sigpending,
    Msgqueue,
    Nice,
    Rtprio,
}

/// limits.conf's fourth field: a number or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitValue {
    Value(i64),
    Unlimited,
}

impl Serialize for LimitValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LimitValue::Value(v) => s.serialize_i64(*v),
            LimitValue::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for LimitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LimitValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or 'unlimited'")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LimitValue, E> {
                Ok(LimitValue::Value(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LimitValue, E> {
                i64::try_from(v)
                    .map(LimitValue::Value)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LimitValue, E> {
                match v {
                    "unlimited" | "infinity" => Ok(LimitValue::Unlimited),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub domain: LimitDomain,
    #[serde(rename = "type")]
    pub kind: LimitType,
    pub item: LimitItem,
    pub value: LimitValue,
}

fn root_account() -> AccountName {
    AccountName("root".into())
}

fn mode_0644() -> Mode {
    Mode(0o644)
}

fn mode_0755() -> Mode {
    Mode(0o755)
}

/// A file as a profile writes it: inline `content`, or `source` (a path relative
/// to the profile file), not both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDoc {
    pub path: AbsPath,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default = "mode_0644")]
    pub mode: Mode,
    #[serde(default = "root_account")]
    pub owner: AccountName,
    #[serde(default = "root_account")]
    pub group: AccountName,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub path: AbsPath,
    #[serde(default = "mode_0755")]
    pub mode: Mode,
    #[serde(default = "root_account")]
    pub owner: AccountName,
    #[serde(default = "root_account")]
    pub group: AccountName,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Systemd {
    pub enable: Vec<UnitName>,
    pub disable: Vec<UnitName>,
    pub mask: Vec<UnitName>,
}

/// An extra apt repository as written; `key_file` is relative to the profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RepoDoc {
    pub name: RepoName,
    pub uri: Uri,
    pub suite: Suite,
    #[serde(default)]
    pub components: Vec<Component>,
    #[serde(default)]
    pub key_file: Option<String>,
}

/// A kernel parameter template: `"isolcpus={{ isolcpus }}"`, or Airship's
/// `{name: isolcpus, value: "{{ isolcpus }}"}` form, which means `name=value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CmdlineParamDoc(pub String);

impl<'de> Deserialize<'de> for CmdlineParamDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NameValue {
            name: String,
            #[serde(default)]
            value: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CmdlineParamDoc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a map with name and value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CmdlineParamDoc, E> {
                Ok(CmdlineParamDoc(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CmdlineParamDoc, E> {
                Ok(CmdlineParamDoc(v.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<CmdlineParamDoc, A::Error> {
                let nv = NameValue::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(CmdlineParamDoc(match nv.value {
                    Some(value) => format!("{}={value}", nv.name),
                    None => nv.name,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// `inherits: base` or `inherits: [base, extra]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inherits(pub Vec<String>);

impl<'de> Deserialize<'de> for Inherits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Inherits;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a profile name or a list of them")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Inherits, E> {
                Ok(Inherits::default())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Inherits, E> {
                Ok(Inherits(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Inherits, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(Inherits(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// Absent → `None`; written as `null` → `Some(None)`; a value → `Some(Some(v))`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DistroDoc {
    pub name: Option<DistroName>,
    pub suite: Option<Suite>,
    pub arch: Option<Arch>,
    pub mirror: Option<Uri>,
    pub snapshot: Option<bool>,
    pub components: Option<Vec<Component>>,
    pub variant: Option<Variant>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct KernelDoc {
    pub cmdline: Vec<CmdlineParamDoc>,
}

/// Template names per cloud-init file; `null` leaves an optional file out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CloudInitDoc {
    pub datasource: Option<Datasource>,
    #[serde(deserialize_with = "present")]
    pub user_data: Option<Option<String>>,
    /// NoCloud `meta-data` (YAML).
    #[serde(deserialize_with = "present")]
    pub meta_data: Option<Option<String>>,
    /// NoCloud `network-config` (netplan v2).
    #[serde(deserialize_with = "present")]
    pub network_config: Option<Option<String>>,
    /// Config drive `meta_data.json`.
    #[serde(deserialize_with = "present")]
    pub meta_data_json: Option<Option<String>>,
    /// Config drive `network_data.json`.
    #[serde(deserialize_with = "present")]
    pub network_data: Option<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CompressionDoc {
    Gzip,
    Xz,
    Zstd,
    Lz4,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SquashfsDoc {
    pub compression: Option<CompressionDoc>,
    pub level: Option<u32>,
    pub block_size: Option<ByteSize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct IsoDoc {
    pub volume_id: Option<VolumeId>,
    pub squashfs: SquashfsDoc,
    pub secure_boot: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DiskDoc {
    pub size: Option<ByteSize>,
    pub partitions: Vec<Partition>,
    pub compression: Option<DiskCompression>,
    pub secure_boot: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OciDoc {
    pub backup_paths: Vec<String>,
}

/// One `images:` entry: a container image baked in for containerd
/// ([`super::images`]); the keys BOSH's import-images takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct PreloadImageDoc {
    pub name: String,
    /// base64 of `user:password`, as BOSH import-images takes it, or a
    /// reference to an auth.json (`{file: F}`).
    pub auth: Option<PreloadAuthDoc>,
    /// A containers `auth.json`, relative to the profile.
    pub authfile: Option<String>,
    #[serde(rename = "retagAs", alias = "retag_as")]
    pub retag_as: Option<String>,
    pub tls_verify: Option<bool>,
}

/// `images[].auth`: BOSH's base64 string, or `{file: auth.json}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum PreloadAuthDoc {
    Inline(String),
    File(PreloadAuthFileDoc),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreloadAuthFileDoc {
    pub file: String,
}

/// One profile file, or several merged: every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProfileDoc {
    pub description: Option<Description>,
    pub inherits: Inherits,
    pub variables: BTreeMap<String, serde_json::Value>,
    pub distro: DistroDoc,
    pub repos: Vec<RepoDoc>,
    pub packages: Vec<Package>,
    pub source: Option<super::layer::SourceDoc>,
    pub pkg_manager: Option<super::layer::PkgManager>,
    pub package_groups: Vec<Package>,
    pub cmds: Vec<super::layer::Cmd>,
    pub ansible: Option<super::ansible::AnsibleDoc>,
    pub hostname: Option<Hostname>,
    pub locale: Option<Locale>,
    pub timezone: Option<Timezone>,
    pub users: Vec<User>,
    pub sysctl: BTreeMap<SysctlKey, SysctlValue>,
    pub kernel_modules: KernelModules,
    pub limits: Vec<Limit>,
    pub files: Vec<FileDoc>,
    pub directories: Vec<Directory>,
    pub systemd: Systemd,
    pub kernel: KernelDoc,
    pub cloud_init: CloudInitDoc,
    pub iso: IsoDoc,
    pub disk: Option<DiskDoc>,
    /// SOURCE_DATE_EPOCH for reproducible builds, unless the environment or
    /// `--source-date-epoch` gives one.
    pub epoch: Option<u64>,
    pub oci: OciDoc,
    pub images: Vec<PreloadImageDoc>,
    /// The architecture to build for; wins over `distro.arch`.
    pub arch: Option<Arch>,
}
