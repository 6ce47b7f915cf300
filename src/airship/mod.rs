//! Airship image-builder manifests → osforge profiles (`osforge import-airship`).
//!
//! Users of Airship's image-builder have a `manifests/` tree:
//!
//! ```text
//! manifests/
//!   rootfs/multistrap-vars.yaml        packages, repositories     ┐ the shared rootfs:
//!   rootfs/osconfig-vars.yaml          OS configuration           ┘ airship-rootfs.yaml
//!   rootfs/livecdcontent-vars.yaml     squashfs settings          ┐ the ISO:
//!   iso/{user_data,network_data.json}  its config drive           ┘ airship-ephemeral.yaml
//!   qcow-bundle*/<image>/qcow-vars.yaml       disk layout, size   ┐ one qcow2 each:
//!   qcow-bundle*/<image>/osconfig-vars.yaml   kernel parameters…  ┘ <image>.yaml
//!   scripts/{common,qcow}/*            scripts run in the image (no equivalent)
//! ```
//!
//! [`import`] reads it and returns the profiles as text plus every key it
//! could not map ([`Unmapped`]), each with its file and key path; nothing is
//! dropped without a line saying so. The profiles inherit the shipped ones by
//! name (`qcow2-host`, `ephemeral`, through `airship-rootfs`, which inherits
//! `base`), so they load wherever the shipped profiles are on the search path.
//! This module knows nothing of the command line.

pub mod contract;
mod emit;
mod error;
mod multistrap;
mod osconfig;
mod qcow;
mod vars;

pub use error::ImportError;

use std::fs;
use std::path::{Path, PathBuf};

use emit::{Header, Parts, sourced};
use vars::VarsFile;

/// The shared parent every imported image inherits.
pub const ROOTFS_PROFILE: &str = "airship-rootfs";
/// The ISO host's profile.
pub const ISO_PROFILE: &str = "airship-ephemeral";
/// Names an image may not take: they would hide a profile the imported ones
/// inherit (a parent is looked up in the child's own directory first).
const RESERVED_NAMES: [&str; 5] = [
    "base",
    "qcow2-host",
    "ephemeral",
    ROOTFS_PROFILE,
    ISO_PROFILE,
];

/// A key osforge could not carry over, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unmapped {
    /// Relative to the manifests directory: `qcow-bundle/control-plane/osconfig-vars.yaml`.
    pub file: String,
    /// `kdump_tools.foo`, `partitions[2].part_start`; empty for a whole file.
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: not mapped: {}", self.file, self.reason)
        } else {
            write!(
                f,
                "{}: {}: not mapped: {}",
                self.file, self.key, self.reason
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    /// The shared parent; builds nothing itself.
    Shared,
    Qcow2,
    Iso,
}

/// One profile to write.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportedProfile {
    pub name: String,
    pub kind: ProfileKind,
    /// What `osforge build` writes from it: `control-plane.qcow2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The Airship folder it came from, relative to the manifests directory.
    pub from: String,
    #[serde(skip)]
    pub text: String,
}

/// The result of reading a manifests tree.
#[derive(Debug, Clone)]
pub struct Import {
    pub profiles: Vec<ImportedProfile>,
    /// Templates the profiles name, relative to the output directory.
    pub templates: Vec<(PathBuf, String)>,
    pub unmapped: Vec<Unmapped>,
}

/// One vars file's text and the names errors and comments give it.
#[derive(Debug, Clone)]
pub struct VarsText {
    pub text: String,
    /// The path as the user gave it (or `stdin (osconfig)`), for errors.
    pub path: PathBuf,
    /// How profile comments name it.
    pub rel: String,
}

/// One image's own osconfig and qcow vars mapped onto a profile that
/// inherits `parent`: what the airshipctl container contract builds.
#[derive(Debug, Clone)]
pub struct ImageProfile {
    pub text: String,
    /// `img_name` of the qcow vars, which names the image when the builder
    /// configuration does not.
    pub img_name: Option<String>,
    pub unmapped: Vec<Unmapped>,
}

/// Maps an image's osconfig vars (the osconfig role's whole variable file,
/// routed by `run_contexts` as the rootfs file is) and qcow vars. For an ISO
/// (`qcow_image` false) items meant for qcow images only are left out and
/// reported; the qcow vars of an ISO are not read.
pub fn image_profile(
    parent: &str,
    qcow_image: bool,
    osconfig: Option<&VarsText>,
    qcow: Option<&VarsText>,
) -> Result<ImageProfile, ImportError> {
    let mut parts = Parts::default();
    let mut unmapped = Vec::new();
    let mut img_name = None;
    let mut sources = Vec::new();
    if let Some(v) = osconfig {
        let f = VarsFile::parse(&v.text, &v.path, v.rel.clone())?;
        let routed = osconfig::map(&f, osconfig::Level::Rootfs)?;
        parts.append(routed.common);
        if qcow_image {
            parts.append(routed.qcow);
        } else if routed.qcow != Parts::default() {
            unmapped.push(Unmapped {
                file: v.rel.clone(),
                key: String::new(),
                reason: "items with run_contexts [qcow] are for qcow images only, not the ISO"
                    .into(),
            });
        }
        unmapped.extend(f.take_unmapped());
        sources.push(v.rel.clone());
    }
    if let Some(v) = qcow.filter(|_| qcow_image) {
        let f = VarsFile::parse(&v.text, &v.path, v.rel.clone())?;
        let q = qcow::map(&f)?;
        parts.disk = Some(q.disk);
        img_name = q.img_name.map(|(name, _)| name);
        unmapped.extend(f.take_unmapped());
        sources.push(v.rel.clone());
    }
    let from = if sources.is_empty() {
        "no vars files".to_string()
    } else {
        sources.join(", ")
    };
    let text = emit::render(
        &Header {
            comment: &[
                format!("Written by osforge airship-builder from {from}."),
                format!(
                    "Inherits {parent}; each comment names the Airship file and key a value came from."
                ),
            ],
            description: "Airship image-builder container build (osconfig and qcow vars imported)",
            inherits: &[parent],
        },
        &parts,
    );
    Ok(ImageProfile {
        text,
        img_name,
        unmapped,
    })
}

/// Where the parts of the tree are.
struct Layout {
    /// The manifests directory; messages name files relative to it.
    root: PathBuf,
    /// (image name, its folder).
    images: Vec<(String, PathBuf)>,
}

/// Reads an Airship manifests tree, or one `qcow-bundle` folder of it (its
/// parent's rootfs/ and iso/ are read too).
pub fn import(dir: &Path) -> Result<Import, ImportError> {
    let layout = find_layout(dir)?;
    let mut unmapped = Vec::new();
    let rel = |p: &Path| {
        p.strip_prefix(&layout.root)
            .unwrap_or(p)
            .display()
            .to_string()
    };

    // The shared rootfs: multistrap and the rootfs osconfig.
    let rootfs_dir = layout.root.join("rootfs");
    let mut shared = Parts::default();
    let mut rootfs_qcow = Parts::default();
    if let Some(f) = read_vars(&rootfs_dir.join("multistrap-vars.yaml"), &rel)? {
        shared.append(multistrap::map(&f)?);
        unmapped.extend(f.take_unmapped());
    }
    if let Some(f) = read_vars(&rootfs_dir.join("osconfig-vars.yaml"), &rel)? {
        let routed = osconfig::map(&f, osconfig::Level::Rootfs)?;
        shared.append(routed.common);
        rootfs_qcow = routed.qcow;
        unmapped.extend(f.take_unmapped());
    }
    unmapped.extend(unread_files(
        &rootfs_dir,
        &[
            "multistrap-vars.yaml",
            "osconfig-vars.yaml",
            "livecdcontent-vars.yaml",
        ],
        &rel,
    )?);
    let mut profiles = vec![ImportedProfile {
        name: ROOTFS_PROFILE.into(),
        kind: ProfileKind::Shared,
        image: None,
        from: rel(&rootfs_dir),
        text: emit::render(
            &Header {
                comment: &[
                    format!(
                        "Written by osforge import-airship from {}.",
                        rel(&rootfs_dir)
                    ),
                    "What Airship put into the rootfs every image shares: packages,".into(),
                    "repositories and the OS configuration for all run contexts.".into(),
                    "Each comment names the Airship file and key a value came from.".into(),
                ],
                description: "Airship rootfs settings (imported): packages, repositories, OS configuration",
                inherits: &["base"],
            },
            &shared,
        ),
    }];

    for (name, image_dir) in &layout.images {
        let mut parts = rootfs_qcow.clone();
        let mut img_name: Option<(String, String)> = None;
        if let Some(f) = read_vars(&image_dir.join("osconfig-vars.yaml"), &rel)? {
            parts.append(osconfig::map(&f, osconfig::Level::Image)?.common);
            unmapped.extend(f.take_unmapped());
        }
        if let Some(f) = read_vars(&image_dir.join("qcow-vars.yaml"), &rel)? {
            let q = qcow::map(&f)?;
            parts.disk = Some(q.disk);
            if let Some((text, node)) = q.img_name {
                img_name = Some((text, f.from(&node)));
            }
            unmapped.extend(f.take_unmapped());
        }
        let img_file = image_dir.join("img_name");
        if img_file.is_file() {
            let text = read(&img_file)?;
            img_name = Some((text.trim().to_string(), rel(&img_file)));
        }
        let image = format!("{name}.qcow2");
        if let Some((wanted, from)) = img_name
            && wanted != image
        {
            let (file, key) = match from.split_once(": ") {
                Some((file, key)) => (file.to_string(), key.to_string()),
                None => (from, String::new()),
            };
            unmapped.push(Unmapped {
                file,
                key,
                reason: format!(
                    "'{wanted}': osforge names the image after the profile, {image} (rename the folder to change it)"
                ),
            });
        }
        unmapped.extend(unread_files(
            image_dir,
            &["osconfig-vars.yaml", "qcow-vars.yaml", "img_name"],
            &rel,
        )?);
        profiles.push(ImportedProfile {
            name: name.clone(),
            kind: ProfileKind::Qcow2,
            image: Some(image.clone()),
            from: rel(image_dir),
            text: emit::render(
                &Header {
                    comment: &[
                        format!("Written by osforge import-airship from {}: builds {image}.", rel(image_dir)),
                        format!("Inherits {ROOTFS_PROFILE} (the shared rootfs) after qcow2-host; lists add"),
                        "to the parents' (Ansible would let this image's variables replace them).".into(),
                        "Each comment names the Airship file and key a value came from.".into(),
                    ],
                    description: &format!("Airship qcow bundle image {name} (imported)"),
                    inherits: &["qcow2-host", ROOTFS_PROFILE],
                },
                &parts,
            ),
        });
    }

    let mut templates = Vec::new();
    if let Some(iso) = iso_profile(&layout, &rel, &mut templates, &mut unmapped)? {
        profiles.push(iso);
    }
    unmapped.extend(scripts(&layout.root.join("scripts"), &rel)?);
    Ok(Import {
        profiles,
        templates,
        unmapped,
    })
}

impl Import {
    /// Writes the profiles and their templates into `out` (created if
    /// missing); returns the paths written.
    pub fn write(&self, out: &Path) -> Result<Vec<PathBuf>, ImportError> {
        let mut written = Vec::new();
        let mut put = |path: PathBuf, text: &str| -> Result<(), ImportError> {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|source| ImportError::WritingProfile {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            fs::write(&path, text).map_err(|source| ImportError::WritingProfile {
                path: path.clone(),
                source,
            })?;
            written.push(path);
            Ok(())
        };
        for (rel, text) in &self.templates {
            put(out.join(rel), text)?;
        }
        for p in &self.profiles {
            put(out.join(format!("{}.yaml", p.name)), &p.text)?;
        }
        Ok(written)
    }
}

fn find_layout(dir: &Path) -> Result<Layout, ImportError> {
    let images_in = |bundle: &Path| -> Result<Vec<(String, PathBuf)>, ImportError> {
        Ok(subdirs(bundle)?
            .into_iter()
            .filter(|d| d.join("qcow-vars.yaml").is_file())
            .map(|d| (file_name(&d), d))
            .collect())
    };
    let direct = images_in(dir)?;
    let (root, images) = if !direct.is_empty() {
        // A qcow-bundle folder: the manifests are its parent when that has them.
        let parent = dir
            .parent()
            .filter(|p| p.join("rootfs").is_dir() || p.join("iso").is_dir());
        (
            parent.map_or_else(|| dir.to_path_buf(), Path::to_path_buf),
            direct,
        )
    } else {
        let mut images = Vec::new();
        for bundle in subdirs(dir)?
            .into_iter()
            .filter(|d| file_name(d).starts_with("qcow-bundle"))
        {
            images.extend(images_in(&bundle)?);
        }
        (dir.to_path_buf(), images)
    };
    if images.is_empty() && !root.join("rootfs").is_dir() && !root.join("iso").is_dir() {
        return Err(ImportError::NoManifests {
            dir: dir.to_path_buf(),
        });
    }
    for (i, (name, path)) in images.iter().enumerate() {
        if RESERVED_NAMES.contains(&name.as_str()) {
            return Err(ImportError::NameClash {
                path: path.clone(),
                message: format!(
                    "an image named '{name}' would hide the profile {name} the imported ones inherit; rename the folder"
                ),
            });
        }
        if let Err(e) = crate::profile::Hostname::try_from(name.clone()) {
            return Err(ImportError::NameClash {
                path: path.clone(),
                message: format!("'{name}' cannot name a profile and image: {e}"),
            });
        }
        if let Some((_, first)) = images[..i].iter().find(|(n, _)| n == name) {
            return Err(ImportError::NameClash {
                path: path.clone(),
                message: format!(
                    "a second image named '{name}' (the first is {})",
                    first.display()
                ),
            });
        }
    }
    Ok(Layout { root, images })
}

fn iso_profile(
    layout: &Layout,
    rel: &dyn Fn(&Path) -> String,
    templates: &mut Vec<(PathBuf, String)>,
    unmapped: &mut Vec<Unmapped>,
) -> Result<Option<ImportedProfile>, ImportError> {
    let iso_dir = layout.root.join("iso");
    let livecd = layout.root.join("rootfs").join("livecdcontent-vars.yaml");
    let mut parts = Parts::default();
    if let Some(f) = read_vars(&livecd, rel)? {
        if iso_dir.is_dir() {
            for entry in f.entries() {
                match entry.key.as_str() {
                    "mksquashfs_compression" => match f.text(&entry.value)?.as_deref() {
                        Some(c @ ("gzip" | "xz" | "zstd" | "lz4")) => {
                            parts.squashfs_compression =
                                Some(sourced(c.to_string(), f.from(&entry.value)));
                        }
                        Some(other) => f.unmapped(
                            &entry.value,
                            format!("{other}: osforge writes gzip, xz, zstd or lz4"),
                        ),
                        None => {}
                    },
                    "mksquashfs_threads" => f.unmapped(
                        &entry.value,
                        "osforge compresses on every CPU (osforge build --jobs)",
                    ),
                    _ => f.unmapped(&entry.value, "osforge has no equivalent"),
                }
            }
        } else {
            f.unmapped_at(
                &Default::default(),
                "there is no iso/ folder, so no ISO profile is written",
            );
        }
        unmapped.extend(f.take_unmapped());
    }
    if !iso_dir.is_dir() {
        return Ok(None);
    }
    // Copied as templates that render to exactly themselves: the raw block
    // keeps tera from reading braces in them.
    for (file, key, json) in [
        ("user_data", "user_data", false),
        ("network_data.json", "network_data", true),
        ("meta_data.json", "meta_data_json", true),
    ] {
        let path = iso_dir.join(file);
        if !path.is_file() {
            continue;
        }
        let text = read(&path)?;
        if json && let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
            return Err(ImportError::InvalidValue {
                at: crate::profile::SourceLocation::new(&path, u32::try_from(e.line()).ok()),
                key: Default::default(),
                message: format!("not JSON: {e}"),
            });
        }
        if text.contains("{% endraw %}") || text.contains("{%- endraw") {
            unmapped.push(Unmapped {
                file: rel(&path),
                key: String::new(),
                reason: "it holds '{% endraw %}', which cannot be carried through a template"
                    .into(),
            });
            continue;
        }
        let template = PathBuf::from(ISO_PROFILE).join(format!("{file}.tera"));
        templates.push((template.clone(), format!("{{% raw %}}{text}{{% endraw %}}")));
        parts
            .cloud_init
            .push(sourced((key, template.display().to_string()), rel(&path)));
    }
    unmapped.extend(unread_files(
        &iso_dir,
        &["user_data", "network_data.json", "meta_data.json"],
        rel,
    )?);
    Ok(Some(ImportedProfile {
        name: ISO_PROFILE.into(),
        kind: ProfileKind::Iso,
        image: Some(format!("{ISO_PROFILE}.iso")),
        from: rel(&iso_dir),
        text: emit::render(
            &Header {
                comment: &[
                    format!(
                        "Written by osforge import-airship from {}: the ephemeral ISO host.",
                        rel(&iso_dir)
                    ),
                    "Its config-2 drive carries Airship's files as they are (templates that".into(),
                    "render to themselves). Build it with osforge build --type iso.".into(),
                ],
                description: "Airship ephemeral ISO (imported): its own config-2 config drive",
                inherits: &["ephemeral", ROOTFS_PROFILE],
            },
            &parts,
        ),
    }))
}

/// Scripts Airship ran in the image: each reported, osforge runs none.
fn scripts(dir: &Path, rel: &dyn Fn(&Path) -> String) -> Result<Vec<Unmapped>, ImportError> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for path in entries(&d)? {
            if path.is_dir() {
                stack.push(path);
            } else if !is_readme(&path) {
                out.push(Unmapped {
                    file: rel(&path),
                    key: String::new(),
                    reason:
                        "osforge runs no scripts in the image; the configuration is declarative"
                            .into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Files in `dir` the import does not read (READMEs aside).
fn unread_files(
    dir: &Path,
    known: &[&str],
    rel: &dyn Fn(&Path) -> String,
) -> Result<Vec<Unmapped>, ImportError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(entries(dir)?
        .into_iter()
        .filter(|p| !known.contains(&file_name(p).as_str()) && !is_readme(p))
        .map(|p| Unmapped {
            file: rel(&p),
            key: String::new(),
            reason: format!("not read: osforge reads {} here", known.join(", ")),
        })
        .collect())
}

fn read_vars(path: &Path, rel: &dyn Fn(&Path) -> String) -> Result<Option<VarsFile>, ImportError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read(path)?;
    VarsFile::parse(&text, path, rel(path)).map(Some)
}

fn read(path: &Path) -> Result<String, ImportError> {
    fs::read_to_string(path).map_err(|source| ImportError::ReadingFile {
        path: path.to_path_buf(),
        source,
    })
}

/// A directory's entries, sorted so that output does not depend on the file system.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let reading = |source| ImportError::ReadingFile {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(reading)? {
        paths.push(entry.map_err(reading)?.path());
    }
    paths.sort();
    Ok(paths)
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    Ok(entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_readme(path: &Path) -> bool {
    file_name(path).to_ascii_lowercase().starts_with("readme")
}
