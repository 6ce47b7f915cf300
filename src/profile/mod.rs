//! Host profiles: the YAML files that say what an image is, and the per-host
//! cloud-init seed and kernel command line rendered from them.
//!
//! A profile is `profiles/<name>.yaml`. It may inherit from others; files are
//! merged on a generic YAML tree (maps deep, lists appended, `!replace` to
//! replace) and the result is deserialized into typed structs and frozen into a
//! [`Profile`]. Each file is first checked alone, so an unknown key or a wrong
//! type is reported in the file that holds it, with its line and key path.
//!
//! ```text
//!  base.yaml ─┐
//!  qcow2-host ├─ read + check each ─ merge (post-order) ─ --var ─ typed ─ freeze ─► Profile
//!  data-plane ┘                                                                        │
//!                                                        render_host() ◄──────────────┘
//!                                                   kernel cmdline + cloud-init seed
//! ```
//!
//! The pipeline reads a `Profile` and never changes it. What a stage depends on
//! is exposed for cache keys: [`Profile::rootfs_inputs`] and
//! [`Profile::os_inputs`]; template variables are in neither.
//!
//! Files: `node` (the YAML tree with origins), `de` (typed structs from it),
//! `merge`, `load` (search, inherits, `--var`), `schema` (the file format),
//! `validate` (single values), `disk`, `cmdline`, `freeze` (whole-profile checks),
//! `model` (the frozen profile), `render` (per-host output), `hosts` (a hosts
//! file: many hosts of one profile).

mod ansible;
mod cmdline;
mod de;
mod disk;
#[cfg(test)]
pub(crate) use disk::tests as disk_layouts;
mod error;
mod expand;
mod freeze;
mod hosts;
mod images;
mod layer;
mod load;
mod merge;
mod model;
mod node;
mod render;
mod schema;
mod secrets;
mod validate;

pub use ansible::{Ansible, Playbook};
pub use cmdline::{KernelCmdline, MAX_CMDLINE_BYTES, check_param, split_params};
pub use disk::{
    ByteSize, Disk, DiskCompression, Filesystem, LayoutError, Partition, PartitionSize,
    PartitionType, PlacedPartition,
};
pub use error::{KeyPath, PathSegment, ProfileError, SourceLocation};
pub use expand::OsTemplate;
pub use freeze::{CONFIGDRIVE_VOLUME_ID, NOCLOUD_VOLUME_ID};
pub use hosts::{HostEntry, HostsFile};
pub use images::PreloadImage;
pub use layer::{Cmd, LogLevel, PkgManager, RootfsSource};
pub use load::{SearchPath, parse_var_arg};
pub use model::{
    CloudInit, CmdlineTemplate, Distro, FileContents, FileInputs, ImageFile, Iso, Kernel,
    LoadedFile, OsConfig, OsInputs, Profile, Repo, RepoInputs, RootfsInputs, SquashfsSettings,
    Template,
};
/// The YAML tree with origins, for readers of other YAML formats (`airship`).
pub(crate) use node::{Entry, Node, Value};
pub use render::{ConfigDrive, HostFiles, HostRender, NoCloudSeed, check_user_data, derived_uuid};
pub use schema::{
    AbsPath, AccountName, Arch, Component, Datasource, Description, Directory, DistroName,
    FstabOptions, Hostname, KernelModules, Limit, LimitDomain, LimitItem, LimitType, LimitValue,
    Locale, Mode, ModuleName, PASSWORDLESS_SUDO, Package, PasswordHash, RepoName, SshKey, Sudo,
    SudoRule, Suite, SysctlKey, SysctlValue, Systemd, Timezone, UnitName, Uri, User, Variant,
    VolumeId,
};

use std::path::PathBuf;

/// A profile as `osforge profiles` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProfileSummary {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
}

/// Every profile in the search path, by name; the first directory that has a
/// name wins. Each file is parsed (not merged) to read its description.
pub fn list(search: &SearchPath) -> Result<Vec<ProfileSummary>, ProfileError> {
    let mut found: Vec<ProfileSummary> = Vec::new();
    for dir in &search.profile_dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        paths.sort();
        for path in paths {
            let name = load::profile_name(&path);
            if found.iter().any(|p| p.name == name) {
                continue;
            }
            let file = load::ProfileFile::read(&load::tidy(&path))?;
            found.push(ProfileSummary {
                name,
                description: file
                    .doc
                    .description
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                path: file.path,
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Loads a profile by name (looked up in `search`) or by path, with `--var`
/// overrides as `(key, value)` pairs (values are parsed as YAML scalars).
pub fn load(
    name_or_path: &str,
    search: &SearchPath,
    vars: &[(String, String)],
) -> Result<Profile, ProfileError> {
    let leaf = load::resolve(name_or_path, search)?;
    let mut search = search.clone();
    if let Some(dir) = leaf.parent() {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        search.add_profile_dir(dir, true);
    }
    let files = load::linearize(&leaf, &search)?;
    let name = load::profile_name(&leaf);
    let description = files
        .last()
        .and_then(|f| f.doc.description.as_ref().map(|d| d.to_string()))
        .unwrap_or_default();
    let mut tree = load::merge_files(&files);
    load::apply_vars(&mut tree, vars, &name)?;
    secrets::resolve(&mut tree, &search)?;
    let os_templates = expand::render_os_values(&mut tree, &name)?;
    let doc: schema::ProfileDoc = de::from_node(&tree)?;
    let mut freezer = freeze::Freezer {
        tree: &tree,
        leaf: &leaf,
        name: &name,
        search: &search,
        sources: files.iter().map(|f| f.path.clone()).collect(),
        lineage: files.iter().map(|f| f.path.clone()).collect(),
    };
    let mut profile = freeze::freeze(doc, description, &mut freezer)?;
    profile.os_templates = os_templates;
    Ok(profile)
}
