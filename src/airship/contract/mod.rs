//! The airshipctl container contract: what airshipctl's image phases hand the
//! image-builder container, resolved into one osforge build ([`Job`]).
//!
//! - **v1** (`VERSION` unset or `v1`): environment variables and a builder
//!   configuration file. `BUILDER_CONFIG` names builder-conf.yaml
//!   ([`conf`]), whose `container.volume` is `hostpath:containerpath`; input
//!   files are read from the container side (relative names are in it), the
//!   image is written there, and `output-metadata.yaml` names it by its host
//!   path, so airshipctl finds it. `IMAGE_TYPE`, `USER_DATA_FILE`,
//!   `NET_CONFIG_FILE`, `OSCONFIG_FILE`, `QCOW_CONFIG_FILE` and
//!   `OUTPUT_METADATA_FILE_NAME` override the configuration's names.
//! - **v2** (`VERSION=v2`): one YAML document on stdin ([`document`]) with
//!   the bodies themselves; the volume comes from `BUILDER_CONFIG` when it is
//!   set, else the image goes to the output directory.
//!
//! The osconfig and qcow vars are the Airship roles' variables; they are
//! mapped as `osforge import-airship` maps them ([`crate::airship::image_profile`])
//! onto a profile inheriting `ephemeral` (ISO) or `control-plane` (qcow), or
//! `OSFORGE_PROFILE`. Everything is read and checked here, before any build
//! starts. This module knows nothing of the command line.

pub mod conf;
pub mod document;
mod error;

pub use error::ContractError;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::airship::{ImageProfile, VarsText, image_profile};
use crate::netconfig::HostNetwork;
use conf::{BuilderConf, Volume};
use document::Document;

/// Airship's names when the configuration gives none.
pub const DEFAULT_METADATA_FILE: &str = "output-metadata.yaml";
pub const DEFAULT_ISO_FILE: &str = "ephemeral.iso";
/// The profiles the images build on unless `OSFORGE_PROFILE` names another.
pub const DEFAULT_ISO_PROFILE: &str = "ephemeral";
pub const DEFAULT_QCOW_PROFILE: &str = "control-plane";

/// The environment the container was started with. Empty values count as
/// unset, as the shell scripts airshipctl ran took them (`[[ -z ... ]]`).
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Env {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn from_env(env: &Env) -> Result<Version, ContractError> {
        match env.get("VERSION") {
            None | Some("v1") => Ok(Version::V1),
            Some("v2") => Ok(Version::V2),
            Some(other) => Err(ContractError::InvalidEnv {
                var: "VERSION",
                value: other.into(),
                message: "expected v1 or v2".into(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Iso,
    Qcow,
}

/// One build, everything read and checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub image_type: ImageType,
    /// The profile the build inherits: a name, or an absolute path.
    pub base_profile: String,
    /// The generated profile: the vars files mapped, inheriting `base_profile`.
    pub profile: ImageProfile,
    /// (where it came from, text), checked for a cloud-init header.
    pub user_data: Option<(String, String)>,
    pub network: Option<HostNetwork>,
    pub volume: Volume,
    /// The image's file name in the volume.
    pub output_file: String,
    /// The metadata file's path in the container.
    pub metadata_file: PathBuf,
    pub proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl Job {
    /// Where osforge writes the image.
    pub fn image_path(&self) -> PathBuf {
        self.volume.file(&self.output_file)
    }

    /// `output-metadata.yaml`: the image by its host path and its md5sum, as
    /// Airship's entrypoint wrote it.
    pub fn metadata_yaml(&self, md5_hex: &str) -> String {
        format!(
            "bootImagePath: {}\nmd5sum: {md5_hex}\n",
            crate::airship::emit::quote(&self.volume.host_path(&self.output_file))
        )
    }
}

/// v1: the environment and builder-conf.yaml.
pub fn resolve_v1(env: &Env) -> Result<Job, ContractError> {
    let Some(conf_path) = env.get("BUILDER_CONFIG") else {
        return Err(ContractError::MissingEnv {
            var: "BUILDER_CONFIG",
            hint: " (the path of builder-conf.yaml, which names the volume and the input files)"
                .into(),
        });
    };
    let conf = BuilderConf::load(Path::new(conf_path))?;
    let image_type = image_type(env, Some(&conf))?;
    let b = &conf.builder;
    let volume = &conf.volume;
    let named = |var: &'static str, key: &'static str, from_conf: &Option<String>| {
        env.get(var)
            .map(|name| (var.to_string(), name.to_string()))
            .or_else(|| {
                from_conf
                    .clone()
                    .map(|name| (format!("builder.{key}"), name))
            })
    };
    let required = |var: &'static str, key: &'static str, from_conf: &Option<String>| {
        named(var, key, from_conf).ok_or_else(|| ContractError::MissingEnv {
            var,
            hint: format!(
                " and {} has no builder.{key} (an ISO needs both user-data and network configuration)",
                conf.path.display()
            ),
        })
    };
    let (mut user_data, mut network) = (None, None);
    if image_type == ImageType::Iso {
        let (what, name) = required("USER_DATA_FILE", "userDataFileName", &b.user_data)?;
        let path = volume.file(&name);
        let text = read_input(&what, &path)?;
        crate::profile::check_user_data(&text).map_err(|message| ContractError::InvalidInput {
            what: what.clone(),
            path: path.clone(),
            message,
        })?;
        user_data = Some((format!("{what} {}", path.display()), text));
        let (what, name) = required(
            "NET_CONFIG_FILE",
            "networkConfigFileName",
            &b.network_config,
        )?;
        let path = volume.file(&name);
        let text = read_input(&what, &path)?;
        network = Some(
            HostNetwork::parse_any(&text).map_err(|e| ContractError::InvalidInput {
                what,
                path,
                message: e.to_string(),
            })?,
        );
    }
    let read_vars = |found: Option<(String, String)>| -> Result<Option<VarsText>, ContractError> {
        found
            .map(|(what, name)| {
                let path = volume.file(&name);
                Ok(VarsText {
                    text: read_input(&what, &path)?,
                    rel: name,
                    path,
                })
            })
            .transpose()
    };
    let osconfig = read_vars(named(
        "OSCONFIG_FILE",
        "osconfigVarsFileName",
        &b.osconfig_vars,
    ))?;
    let qcow = match image_type {
        ImageType::Qcow => read_vars(named("QCOW_CONFIG_FILE", "qcowVarsFileName", &b.qcow_vars))?,
        ImageType::Iso => None,
    };
    finish(
        env,
        image_type,
        volume.clone(),
        Some(&conf),
        None,
        (osconfig, qcow),
        (user_data, network),
    )
}

/// v2: the document on stdin; the volume from `BUILDER_CONFIG` if set, else
/// `output_dir` (both sides: osforge is not in a container then).
pub fn resolve_v2(env: &Env, stdin: &str, output_dir: &Path) -> Result<Job, ContractError> {
    let conf = env
        .get("BUILDER_CONFIG")
        .map(|p| BuilderConf::load(Path::new(p)))
        .transpose()?;
    let image_type = image_type(env, conf.as_ref())?;
    let doc = Document::parse(stdin)?;
    let missing = |key: &str| ContractError::InvalidDocument {
        key: key.to_string(),
        message: "missing (an ISO needs user_data and network_config)".into(),
    };
    let (user_data, network) = match image_type {
        ImageType::Iso => (
            Some((
                "stdin: user_data".to_string(),
                doc.user_data.ok_or_else(|| missing("user_data"))?,
            )),
            Some(doc.network.ok_or_else(|| missing("network_config"))?),
        ),
        ImageType::Qcow => (None, None),
    };
    let volume = match &conf {
        Some(conf) => conf.volume.clone(),
        None => {
            let dir =
                std::path::absolute(output_dir).map_err(|source| ContractError::ReadingInput {
                    what: "--output".into(),
                    path: output_dir.to_path_buf(),
                    source,
                })?;
            Volume {
                host: dir.display().to_string(),
                container: dir,
            }
        }
    };
    let qcow = doc.qcow.filter(|_| image_type == ImageType::Qcow);
    finish(
        env,
        image_type,
        volume,
        conf.as_ref(),
        doc.output_file,
        (doc.osconfig, qcow),
        (user_data, network),
    )
}

type Vars = (Option<VarsText>, Option<VarsText>);
type HostInputs = (Option<(String, String)>, Option<HostNetwork>);

/// What v1 and v2 share once the inputs are read: the profile, the names.
fn finish(
    env: &Env,
    image_type: ImageType,
    volume: Volume,
    conf: Option<&BuilderConf>,
    output_file: Option<String>,
    (osconfig, qcow): Vars,
    (user_data, network): HostInputs,
) -> Result<Job, ContractError> {
    let base_profile = base_profile(env, image_type)?;
    let profile = image_profile(
        &base_profile,
        image_type == ImageType::Qcow,
        osconfig.as_ref(),
        qcow.as_ref(),
    )?;
    let from_conf =
        |f: fn(&conf::Builder) -> &Option<String>| conf.and_then(|c| f(&c.builder).clone());
    let output_file = output_file
        .or_else(|| from_conf(|b| &b.output_file))
        .or_else(|| match image_type {
            ImageType::Iso => Some(DEFAULT_ISO_FILE.to_string()),
            ImageType::Qcow => profile.img_name.clone(),
        })
        .unwrap_or_else(|| {
            let stem = Path::new(&base_profile).file_stem().unwrap_or_default();
            format!("{}.qcow2", stem.to_string_lossy())
        });
    // Only img_name from the qcow vars can still be a path here.
    check_file_name(&output_file).map_err(|message| ContractError::InvalidInput {
        what: "img_name in".into(),
        path: qcow.as_ref().map(|q| q.path.clone()).unwrap_or_default(),
        message,
    })?;
    let metadata_name = env
        .get("OUTPUT_METADATA_FILE_NAME")
        .map(str::to_string)
        .or_else(|| from_conf(|b| &b.output_metadata))
        .unwrap_or_else(|| DEFAULT_METADATA_FILE.to_string());
    if metadata_name == output_file {
        return Err(ContractError::InvalidEnv {
            var: "OUTPUT_METADATA_FILE_NAME",
            value: metadata_name,
            message: "the metadata file would overwrite the image".into(),
        });
    }
    let first = |names: &[&str]| names.iter().find_map(|n| env.get(n)).map(str::to_string);
    Ok(Job {
        image_type,
        base_profile,
        profile,
        user_data,
        network,
        metadata_file: volume.file(&metadata_name),
        volume,
        output_file,
        proxy: first(&["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"]),
        no_proxy: first(&["no_proxy", "NO_PROXY"]),
    })
}

/// `IMAGE_TYPE`, else the configuration's `builder.imageType`, else iso (as
/// Airship's entrypoint defaulted for backwards compatibility).
fn image_type(env: &Env, conf: Option<&BuilderConf>) -> Result<ImageType, ContractError> {
    let (var, value) = match env.get("IMAGE_TYPE") {
        Some(v) => ("IMAGE_TYPE", v.to_string()),
        None => match conf.and_then(|c| c.builder.image_type.clone()) {
            Some(v) => ("builder.imageType", v),
            None => return Ok(ImageType::Iso),
        },
    };
    match value.as_str() {
        "iso" => Ok(ImageType::Iso),
        "qcow" | "qcow2" => Ok(ImageType::Qcow),
        _ => Err(ContractError::InvalidEnv {
            var,
            value,
            message: "expected iso or qcow".into(),
        }),
    }
}

/// `OSFORGE_PROFILE` or the default; a path is made absolute, because the
/// generated profile that inherits it lives in a temporary directory.
fn base_profile(env: &Env, image_type: ImageType) -> Result<String, ContractError> {
    let Some(value) = env.get("OSFORGE_PROFILE") else {
        return Ok(match image_type {
            ImageType::Iso => DEFAULT_ISO_PROFILE,
            ImageType::Qcow => DEFAULT_QCOW_PROFILE,
        }
        .to_string());
    };
    if !(value.contains('/') || value.ends_with(".yaml") || value.ends_with(".yml")) {
        return Ok(value.to_string());
    }
    std::fs::canonicalize(value)
        .map(|p| p.display().to_string())
        .map_err(|e| ContractError::InvalidEnv {
            var: "OSFORGE_PROFILE",
            value: value.to_string(),
            message: e.to_string(),
        })
}

fn read_input(what: &str, path: &Path) -> Result<String, ContractError> {
    std::fs::read_to_string(path).map_err(|source| ContractError::ReadingInput {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// An output name is a file in the volume, not a path out of it.
pub(crate) fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        Err(format!(
            "'{name}' is not a file name (expected e.g. ephemeral.iso, no '/')"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
