//! From the merged document to the frozen [`Profile`]: the checks that need the
//! whole profile, defaults, and reading the files a profile points at.
//!
//! Errors here are about values that passed their own file's check but are wrong
//! in the whole: a required key no file set, two users with one name, a layout
//! whose partitions don't fit, a template that does not exist or does not parse.
//! Each is reported at the node that holds the value, found by its key path in the
//! merged tree — so at the file and line of whichever profile wrote it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::disk::{ByteSize, Disk, LayoutError};
use super::error::{KeyPath, ProfileError, SourceLocation};
use super::layer::{RootfsSource, SourceDoc, SourceKind, classify_source};
use super::load::{SearchPath, describe_dirs, locate, tidy};
use super::model::{
    CloudInit, CmdlineTemplate, Distro, FileContents, ImageFile, Iso, Kernel, LoadedFile, OsConfig,
    Profile, Repo, SquashfsSettings, Template,
};
use super::node::Node;
use super::render::{check_template_syntax, is_uuid};
use super::schema::{
    CloudInitDoc, Component, CompressionDoc, Datasource, DiskDoc, DistroDoc, IsoDoc, KernelDoc,
    Locale, ProfileDoc, RepoDoc, Timezone, Variant, VolumeId,
};
use super::validate::{check_hostname, check_single_line, check_variable_name};
use crate::formats::squashfs::{self, Compression};

/// The default label of a NoCloud host's ISO. The live ISO carries the host's
/// NoCloud seed at its root, so it is the seed volume, and cloud-init's
/// ds-identify finds a seed by this label (the alternative, `ds=nocloud;s=…` on
/// the kernel command line, contains `;`, which grub.cfg takes as a separator).
pub const NOCLOUD_VOLUME_ID: &str = "cidata";
/// The label cloud-init's ConfigDrive datasource looks for.
pub const CONFIGDRIVE_VOLUME_ID: &str = "config-2";
/// Large blocks compress a root filesystem best; squashfs's maximum.
pub const DEFAULT_SQUASHFS_BLOCK_BYTES: u64 = 1 << 20;

pub(crate) struct Freezer<'a> {
    pub tree: &'a Node,
    pub leaf: &'a Path,
    pub name: &'a str,
    pub search: &'a SearchPath,
    /// Files read so far, in order, for `Profile::source_files`.
    pub sources: Vec<PathBuf>,
    /// The profile files in merge order, for `Profile::lineage`.
    pub lineage: Vec<PathBuf>,
}

fn path(text: &str) -> KeyPath {
    KeyPath::parse(text)
}

impl Freezer<'_> {
    /// An error at the node on `at` (or at the leaf file if no file wrote it).
    pub(super) fn error(&self, at: &KeyPath, message: impl Into<String>) -> ProfileError {
        let (location, local) = locate(self.tree, at, self.leaf);
        ProfileError::invalid(location, local, message)
    }

    fn missing(&self, at: &str) -> ProfileError {
        ProfileError::invalid(
            SourceLocation::file_only(self.leaf),
            path(at),
            format!("missing (set it in {} or a profile it inherits)", self.name),
        )
    }

    /// The directory of the file that wrote the node at `at`, for relative paths.
    pub(super) fn base_dir(&self, at: &KeyPath) -> PathBuf {
        let (node, _) = self.tree.lookup(at);
        node.origin
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The file `relative` names, from the directory of the profile that wrote
    /// `at`; it must stay inside that folder.
    pub(super) fn locate_file(
        &self,
        at: &KeyPath,
        relative: &str,
    ) -> Result<PathBuf, ProfileError> {
        let base = self.base_dir(at);
        let file = tidy(&base.join(relative));
        // Profiles are input from others (a site repo, a bundle): a path must
        // not reach the build host's files (`../../etc/shadow`, a symlink out).
        if !(self.search.allow_files_outside || is_inside(&base, &file)) {
            return Err(self.error(
                at,
                format!(
                    "'{relative}' is outside the profile's folder {}/ (set {}=1 to allow it)",
                    base.display(),
                    SearchPath::ALLOW_OUTSIDE_ENV
                ),
            ));
        }
        Ok(file)
    }

    fn read(&mut self, at: &KeyPath, relative: &str) -> Result<LoadedFile, ProfileError> {
        let file = self.locate_file(at, relative)?;
        let contents = std::fs::read(&file).map_err(|e| {
            let reason = ProfileError::reading(&file, e);
            self.error(at, format!("cannot read {reason}"))
        })?;
        self.note_source(file.clone());
        Ok(LoadedFile::new(file, contents))
    }

    pub(super) fn note_source(&mut self, file: PathBuf) {
        if !self.sources.contains(&file) {
            self.sources.push(file);
        }
    }
}

/// Whether `file` (already joined to `base` and tidied) stays inside the
/// folder `base`, by its path and by where its symlinks lead. A file that
/// does not exist counts as inside: reading it fails with its own message.
pub(crate) fn is_inside(base: &Path, file: &Path) -> bool {
    let base_dir = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let lexically_inside = if tidy(base_dir) == Path::new(".") {
        !file.is_absolute() && !file.starts_with("..")
    } else {
        file.starts_with(tidy(base_dir))
    };
    lexically_inside
        && match (std::fs::canonicalize(base_dir), std::fs::canonicalize(file)) {
            (Ok(real_base), Ok(real_file)) => real_file.starts_with(real_base),
            _ => true,
        }
}

/// The whole profile, one section at a time; each step fails at the value at fault.
pub(crate) fn freeze(
    doc: ProfileDoc,
    description: String,
    fz: &mut Freezer<'_>,
) -> Result<Profile, ProfileError> {
    let distro = freeze_distro(&doc.distro, doc.arch.as_ref(), fz)?;
    let os = freeze_os(&doc, fz)?;
    let repos = freeze_repos(doc.repos, fz)?;
    let variables = check_variables(doc.variables, fz)?;
    let kernel = freeze_kernel(doc.kernel, fz)?;
    let cloud_init = freeze_cloud_init(doc.cloud_init, fz)?;
    let iso = freeze_iso(doc.iso, cloud_init.datasource, fz)?;
    let disk = doc.disk.map(|d| freeze_disk(d, fz)).transpose()?;
    let source = freeze_source(doc.source.as_ref(), fz)?;
    let ansible = super::ansible::freeze_ansible(doc.ansible, fz)?;
    let oci = freeze_oci(&doc.oci, fz)?;
    let images = super::images::freeze_images(&doc.images, fz)?;
    Ok(Profile {
        name: fz.name.to_string(),
        path: fz.leaf.to_path_buf(),
        description,
        source_files: fz.sources.clone(),
        variables,
        distro,
        repos,
        packages: doc.packages,
        source,
        pkg_manager: doc.pkg_manager.unwrap_or_default(),
        package_groups: doc.package_groups,
        cmds: doc.cmds,
        lineage: fz.lineage.clone(),
        ansible,
        os,
        os_templates: Vec::new(),
        kernel,
        cloud_init,
        iso,
        disk,
        epoch: doc.epoch,
        oci,
        images,
    })
}

/// `oci.backup_paths`: absolute directories without `.`, `..` or `//`,
/// none the root, none inside another.
fn freeze_oci(
    doc: &super::schema::OciDoc,
    fz: &Freezer<'_>,
) -> Result<super::model::Oci, ProfileError> {
    let mut paths: Vec<String> = Vec::new();
    for (i, raw) in doc.backup_paths.iter().enumerate() {
        let at = path(&format!("oci.backup_paths[{i}]"));
        let trimmed = raw.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.split('/').skip(1).collect();
        if !raw.starts_with('/')
            || trimmed.is_empty()
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(fz.error(
                &at,
                format!("'{raw}' is not a directory of the image (expected an absolute path below /, like /etc)"),
            ));
        }
        let inside = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if let Some(other) = paths
            .iter()
            .find(|p| inside(trimmed, p) || inside(p, trimmed))
        {
            return Err(fz.error(
                &at,
                format!("'{raw}' overlaps '{other}': each path goes into the backup layer once"),
            ));
        }
        paths.push(trimmed.to_string());
    }
    Ok(super::model::Oci {
        backup_paths: paths,
    })
}

/// `source:` with its paths resolved against the profile that wrote it.
fn freeze_source(
    doc: Option<&SourceDoc>,
    fz: &mut Freezer<'_>,
) -> Result<RootfsSource, ProfileError> {
    let Some(doc) = doc else {
        return Ok(RootfsSource::Bootstrap);
    };
    let at = path("source");
    let kind = classify_source(&doc.reference).map_err(|e| fz.error(&at, e))?;
    if !matches!(kind, SourceKind::Image { .. })
        && (doc.tls_verify.is_some() || doc.authfile.is_some())
    {
        return Err(fz.error(
            &at,
            "tls_verify and authfile only apply to container images",
        ));
    }
    let resolve = |relative: &str| -> Result<PathBuf, ProfileError> {
        let file = fz.locate_file(&at, relative)?;
        if !file.exists() {
            return Err(fz.error(&at, format!("{} does not exist", file.display())));
        }
        // Not a source file of the manifest: the source stage's key holds its
        // content digest, and a tree or an auth.json is not hashed as a file.
        Ok(file)
    };
    Ok(match kind {
        SourceKind::Bootstrap => RootfsSource::Bootstrap,
        SourceKind::Image { path } => {
            let reference = match path {
                // The path part is resolved; the transport and tag are kept.
                Some(p) => {
                    let file = resolve(p)?;
                    let (transport, rest) = doc.reference.split_once(':').unwrap_or_default();
                    let tail = &rest[p.len()..];
                    format!("{transport}:{}{tail}", file.display())
                }
                None => doc.reference.clone(),
            };
            let authfile = match &doc.authfile {
                Some(a) => Some(resolve(a)?),
                None => None,
            };
            RootfsSource::Image {
                reference,
                tls_verify: doc.tls_verify.unwrap_or(true),
                authfile,
            }
        }
        SourceKind::Tarball(p) => RootfsSource::Tarball { path: resolve(p)? },
        SourceKind::Directory(p) => RootfsSource::Directory { path: resolve(p)? },
    })
}

/// `arch:` (the profile's architecture, wherever it is set) wins over
/// `distro.arch`, so that `arch: arm64` in a child retargets a parent.
fn freeze_distro(
    d: &DistroDoc,
    arch: Option<&super::schema::Arch>,
    fz: &Freezer<'_>,
) -> Result<Distro, ProfileError> {
    let main = || vec![Component::try_from("main".to_string()).expect("'main' is a component")];
    Ok(Distro {
        name: d.name.ok_or_else(|| fz.missing("distro.name"))?,
        suite: d.suite.clone().ok_or_else(|| fz.missing("distro.suite"))?,
        arch: arch
            .or(d.arch.as_ref())
            .cloned()
            .ok_or_else(|| fz.missing("distro.arch"))?,
        mirror: d.mirror.clone(),
        snapshot: d.snapshot.unwrap_or(false),
        components: d
            .components
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(main),
        variant: d.variant.unwrap_or(Variant::Important),
    })
}

/// Repositories with their signing keys read (relative to the profile that
/// names them).
fn freeze_repos(docs: Vec<RepoDoc>, fz: &mut Freezer<'_>) -> Result<Vec<Repo>, ProfileError> {
    let mut repos: Vec<Repo> = Vec::new();
    for (i, r) in docs.into_iter().enumerate() {
        if repos.iter().any(|have| have.name == r.name) {
            return Err(fz.error(
                &path(&format!("repos[{i}].name")),
                format!("a second repository named '{}'", r.name),
            ));
        }
        let key = match &r.key_file {
            Some(file) => Some(fz.read(&path(&format!("repos[{i}].key_file")), file)?),
            None => None,
        };
        repos.push(Repo {
            name: r.name,
            uri: r.uri,
            suite: r.suite,
            components: r.components,
            key,
        });
    }
    Ok(repos)
}

/// Parameter templates with where each was written; each must parse now.
fn freeze_kernel(doc: KernelDoc, fz: &Freezer<'_>) -> Result<Kernel, ProfileError> {
    let mut cmdline = Vec::new();
    for (i, param) in doc.cmdline.into_iter().enumerate() {
        let (defined_at, key_path) =
            locate(fz.tree, &path(&format!("kernel.cmdline[{i}]")), fz.leaf);
        check_template_syntax(&param.0)
            .map_err(|(_, m)| ProfileError::invalid(defined_at.clone(), key_path.clone(), m))?;
        cmdline.push(CmdlineTemplate {
            template: param.0,
            defined_at,
            key_path,
        });
    }
    Ok(Kernel { cmdline })
}

fn freeze_os(doc: &ProfileDoc, fz: &mut Freezer<'_>) -> Result<OsConfig, ProfileError> {
    let hostname = doc.hostname.clone().ok_or_else(|| fz.missing("hostname"))?;
    for (i, user) in doc.users.iter().enumerate() {
        if doc.users[..i].iter().any(|u| u.name == user.name) {
            return Err(fz.error(
                &path(&format!("users[{i}].name")),
                format!("a second user named '{}'", user.name),
            ));
        }
    }
    let mut files: Vec<ImageFile> = Vec::new();
    for (i, f) in doc.files.iter().enumerate() {
        let at = path(&format!("files[{i}]"));
        if files.iter().any(|have| have.path == f.path) {
            return Err(fz.error(&at.key("path"), format!("a second file at {}", f.path)));
        }
        let contents = match (&f.content, &f.source) {
            (Some(text), None) => FileContents::Inline(text.clone()),
            (None, Some(source)) => FileContents::Source(fz.read(&at.key("source"), source)?),
            (Some(_), Some(_)) => return Err(fz.error(&at, "give content or source, not both")),
            (None, None) => return Err(fz.error(&at, "missing content or source")),
        };
        files.push(ImageFile {
            path: f.path.clone(),
            contents,
            mode: f.mode,
            owner: f.owner.clone(),
            group: f.group.clone(),
        });
    }
    for (i, d) in doc.directories.iter().enumerate() {
        if doc.directories[..i].iter().any(|have| have.path == d.path) {
            return Err(fz.error(
                &path(&format!("directories[{i}].path")),
                format!("a second directory at {}", d.path),
            ));
        }
    }
    let systemd = &doc.systemd;
    for (i, unit) in systemd.enable.iter().enumerate() {
        let clash = if systemd.disable.contains(unit) {
            Some("disabled")
        } else if systemd.mask.contains(unit) {
            Some("masked")
        } else {
            None
        };
        if let Some(how) = clash {
            return Err(fz.error(
                &path(&format!("systemd.enable[{i}]")),
                format!("{unit} is enabled and also {how}"),
            ));
        }
    }
    Ok(OsConfig {
        hostname,
        locale: doc
            .locale
            .clone()
            .unwrap_or_else(|| Locale::try_from("C.UTF-8".to_string()).expect("a valid locale")),
        timezone: doc
            .timezone
            .clone()
            .unwrap_or_else(|| Timezone::try_from("Etc/UTC".to_string()).expect("a valid zone")),
        users: doc.users.clone(),
        sysctl: doc.sysctl.clone(),
        kernel_modules: doc.kernel_modules.clone(),
        limits: doc.limits.clone(),
        files,
        directories: doc.directories.clone(),
        systemd: doc.systemd.clone(),
    })
}

fn check_variables(
    variables: BTreeMap<String, serde_json::Value>,
    fz: &Freezer<'_>,
) -> Result<BTreeMap<String, serde_json::Value>, ProfileError> {
    for (name, value) in &variables {
        let at = KeyPath::root().key("variables").key(name.as_str());
        check_variable(name, value).map_err(|m| fz.error(&at, m))?;
    }
    Ok(variables)
}

/// One variable's name, and its value where osforge reads it itself
/// (`hostname`, `uuid`, `instance_id`); a profile's or a hosts file's.
pub(crate) fn check_variable(name: &str, value: &serde_json::Value) -> Result<(), String> {
    check_variable_name(name)?;
    if name == "profile" {
        return Err("'profile' is set by osforge (the profile's name)".into());
    }
    let text = match value {
        serde_json::Value::Null => return Ok(()),
        serde_json::Value::String(s) => s.as_str(),
        _ if matches!(name, "hostname" | "uuid" | "instance_id") => {
            return Err("expected a string".into());
        }
        _ => return Ok(()),
    };
    match name {
        "hostname" => check_hostname(text),
        "uuid" if !is_uuid(text) => Err(format!("'{text}' is not a UUID")),
        "instance_id" => check_single_line("instance_id", text),
        _ => Ok(()),
    }
}

fn freeze_cloud_init(doc: CloudInitDoc, fz: &mut Freezer<'_>) -> Result<CloudInit, ProfileError> {
    let datasource = doc.datasource.unwrap_or(Datasource::Nocloud);
    let (meta_key, meta, meta_default, net_key, net, net_default) = match datasource {
        Datasource::Nocloud => (
            "meta_data",
            doc.meta_data,
            "meta-data.tera",
            "network_config",
            doc.network_config,
            "network-config.tera",
        ),
        Datasource::Configdrive => (
            "meta_data_json",
            doc.meta_data_json,
            "meta_data.json.tera",
            "network_data",
            doc.network_data,
            "network_data.json.tera",
        ),
    };
    let required = |fz: &mut Freezer<'_>, key, value, default| {
        find_template(fz, key, value, default)?.ok_or_else(|| {
            fz.error(
                &path(&format!("cloud_init.{key}")),
                "cannot be null: cloud-init needs this file",
            )
        })
    };
    Ok(CloudInit {
        datasource,
        user_data: required(fz, "user_data", doc.user_data, "user-data.tera")?,
        meta_data: required(fz, meta_key, meta, meta_default)?,
        network: find_template(fz, net_key, net, net_default)?,
    })
}

/// Finds and reads a template: a name in the template search path, or a path
/// (with a `/`) relative to the profile that names it. `Some(None)` is `null`.
fn find_template(
    fz: &mut Freezer<'_>,
    key: &str,
    value: Option<Option<String>>,
    default: &str,
) -> Result<Option<Template>, ProfileError> {
    let at = path(&format!("cloud_init.{key}"));
    let name = match value {
        None => default.to_string(),
        Some(None) => return Ok(None),
        Some(Some(name)) => name,
    };
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![tidy(&fz.base_dir(&at).join(&name))]
    } else {
        fz.search
            .template_dirs
            .iter()
            .map(|d| tidy(&d.join(&name)))
            .collect()
    };
    let Some(found) = candidates.iter().find(|p| p.is_file()).cloned() else {
        let searched = if name.contains('/') {
            candidates[0].display().to_string()
        } else {
            format!("searched {}", describe_dirs(&fz.search.template_dirs))
        };
        return Err(fz.error(&at, format!("template '{name}' not found ({searched})")));
    };
    let source = std::fs::read_to_string(&found).map_err(|e| ProfileError::reading(&found, e))?;
    check_template_syntax(&source).map_err(|(line, message)| ProfileError::RenderingTemplate {
        at: SourceLocation::new(found.clone(), line),
        message,
    })?;
    fz.note_source(found.clone());
    Ok(Some(Template {
        name,
        path: found,
        source,
    }))
}

fn freeze_iso(doc: IsoDoc, datasource: Datasource, fz: &Freezer<'_>) -> Result<Iso, ProfileError> {
    let volume_id = doc.volume_id.unwrap_or_else(|| {
        let id = match datasource {
            Datasource::Nocloud => NOCLOUD_VOLUME_ID,
            Datasource::Configdrive => CONFIGDRIVE_VOLUME_ID,
        };
        VolumeId::try_from(id.to_string()).expect("the default volume ids are valid")
    });
    let compression = match doc.squashfs.compression.unwrap_or(CompressionDoc::Zstd) {
        CompressionDoc::Gzip => Compression::Gzip,
        CompressionDoc::Xz => Compression::Xz,
        CompressionDoc::Zstd => Compression::Zstd,
        CompressionDoc::Lz4 => Compression::Lz4,
    };
    let level = doc.squashfs.level.unwrap_or(compression.default_level());
    if compression.check_level(level).is_err() {
        let (min, max) = compression.level_range();
        return Err(fz.error(
            &path("iso.squashfs.level"),
            format!("{level} is not a {compression} level ({min} to {max})"),
        ));
    }
    let block_size = doc
        .squashfs
        .block_size
        .unwrap_or(ByteSize(DEFAULT_SQUASHFS_BLOCK_BYTES));
    let range = u64::from(squashfs::MIN_BLOCK_SIZE)..=u64::from(squashfs::MAX_BLOCK_SIZE);
    if !block_size.0.is_power_of_two() || !range.contains(&block_size.0) {
        return Err(fz.error(
            &path("iso.squashfs.block_size"),
            format!("{block_size} is not a power of two from 4K to 1M"),
        ));
    }
    Ok(Iso {
        secure_boot: doc.secure_boot.unwrap_or(false),
        volume_id,
        squashfs: SquashfsSettings {
            compression,
            level,
            block_size,
        },
    })
}

fn freeze_disk(doc: DiskDoc, fz: &Freezer<'_>) -> Result<Disk, ProfileError> {
    let disk = Disk {
        size: doc.size.ok_or_else(|| fz.missing("disk.size"))?,
        partitions: doc.partitions,
        compression: doc.compression.unwrap_or_default(),
        secure_boot: doc.secure_boot.unwrap_or(false),
    };
    disk.check().map_err(|e: LayoutError| {
        let at = match (e.partition, e.field) {
            (Some(i), Some(field)) => format!("disk.partitions[{i}].{field}"),
            (Some(i), None) => format!("disk.partitions[{i}]"),
            (None, Some(field)) => format!("disk.{field}"),
            (None, None) => "disk.partitions".to_string(),
        };
        fz.error(&path(&at), e.message)
    })?;
    Ok(disk)
}
