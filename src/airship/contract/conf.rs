//! airshipctl's builder configuration (`BUILDER_CONFIG`, builder-conf.yaml):
//! where the shared volume is on the host and in the container, and the names
//! of the files in it.
//!
//! ```yaml
//! container:
//!   volume: /srv/images:/config      # host side : container side
//! builder:
//!   userDataFileName: user-data
//!   networkConfigFileName: network-config
//!   outputFileName: ephemeral.iso
//!   outputMetadataFileName: output-metadata.yaml
//!   osconfigVarsFileName: osconfig-vars.yaml
//!   qcowVarsFileName: qcow-vars.yaml
//!   imageType: iso                   # optional; IMAGE_TYPE wins
//! ```
//!
//! Other keys (the container image, its runtime, remoteDirect) are
//! airshipctl's own and are ignored.

use std::path::{Path, PathBuf};

use super::error::ContractError;
use crate::profile::{Node, Value};

/// The directory airshipctl mounts into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// As the host sees it: what `bootImagePath` names.
    pub host: String,
    /// As osforge sees it: where inputs are read and the image is written.
    pub container: PathBuf,
}

impl Volume {
    /// A file named by the configuration: relative names are in the volume.
    pub fn file(&self, name: &str) -> PathBuf {
        self.container.join(name)
    }

    /// The host's path of a file in the volume.
    pub fn host_path(&self, name: &str) -> String {
        format!("{}/{name}", self.host.trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builder {
    pub user_data: Option<String>,
    pub network_config: Option<String>,
    pub output_file: Option<String>,
    pub output_metadata: Option<String>,
    pub osconfig_vars: Option<String>,
    pub qcow_vars: Option<String>,
    pub image_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderConf {
    pub path: PathBuf,
    pub volume: Volume,
    pub builder: Builder,
}

impl BuilderConf {
    pub fn load(path: &Path) -> Result<BuilderConf, ContractError> {
        let text = std::fs::read_to_string(path).map_err(|source| ContractError::ReadingInput {
            what: "BUILDER_CONFIG".into(),
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<BuilderConf, ContractError> {
        let root = Node::parse(text, path).map_err(ContractError::ParsingConf)?;
        let at = |node: &Node| format!("{}:{}", path.display(), node.origin.line);
        let text_at = |key: &'static str| -> Result<Option<(String, &Node)>, ContractError> {
            let mut node = &root;
            for part in key.split('.') {
                match node.get(part) {
                    Some(child) => node = child,
                    None => return Ok(None),
                }
            }
            match &node.value {
                Value::Null => Ok(None),
                Value::Str(s) if s.is_empty() => Ok(None),
                Value::Str(s) => Ok(Some((s.clone(), node))),
                _ => Err(ContractError::InvalidConf {
                    at: at(node),
                    key,
                    message: format!("expected a string, got {}", node.kind()),
                }),
            }
        };
        if !matches!(root.value, Value::Map(_)) {
            return Err(ContractError::InvalidConf {
                at: at(&root),
                key: "container.volume",
                message: format!(
                    "expected a map with container and builder, got {}",
                    root.kind()
                ),
            });
        }
        let Some((volume, node)) = text_at("container.volume")? else {
            return Err(ContractError::InvalidConf {
                at: path.display().to_string(),
                key: "container.volume",
                message:
                    "missing (expected \"hostpath:containerpath\", the volume airshipctl mounts)"
                        .into(),
            });
        };
        let volume = match volume.split_once(':') {
            Some((host, ctr)) if !host.is_empty() && !ctr.is_empty() && !ctr.contains(':') => {
                Volume {
                    host: host.to_string(),
                    container: PathBuf::from(ctr),
                }
            }
            _ => {
                return Err(ContractError::InvalidConf {
                    at: at(node),
                    key: "container.volume",
                    message: format!("'{volume}' is not \"hostpath:containerpath\""),
                });
            }
        };
        if !volume.container.is_dir() {
            return Err(ContractError::InvalidConf {
                at: at(node),
                key: "container.volume",
                message: format!(
                    "the container side {} is not a directory (is the volume mounted?)",
                    volume.container.display()
                ),
            });
        }
        let text = |key| text_at(key).map(|v| v.map(|(s, _)| s));
        let builder = Builder {
            user_data: text("builder.userDataFileName")?,
            network_config: text("builder.networkConfigFileName")?,
            output_file: text("builder.outputFileName")?,
            output_metadata: text("builder.outputMetadataFileName")?,
            osconfig_vars: text("builder.osconfigVarsFileName")?,
            qcow_vars: text("builder.qcowVarsFileName")?,
            image_type: text("builder.imageType")?,
        };
        if let Some((name, node)) = text_at("builder.outputFileName")? {
            super::check_file_name(&name).map_err(|message| ContractError::InvalidConf {
                at: at(node),
                key: "builder.outputFileName",
                message,
            })?;
        }
        Ok(BuilderConf {
            path: path.to_path_buf(),
            volume,
            builder,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BuilderConf, String> {
        BuilderConf::parse(text, Path::new("conf.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn airshipctl_s_configuration_gives_both_sides_of_the_volume_and_the_file_names() {
        let conf = parse(
            "container:\n  volume: /srv/images:/tmp\n  image: quay.io/x\nbuilder:\n  userDataFileName: user-data\n  outputFileName: ephemeral.iso\n",
        )
        .unwrap();
        assert_eq!(conf.volume.host, "/srv/images");
        assert_eq!(conf.volume.container, PathBuf::from("/tmp"));
        assert_eq!(
            conf.volume.host_path("ephemeral.iso"),
            "/srv/images/ephemeral.iso"
        );
        assert_eq!(conf.builder.user_data.as_deref(), Some("user-data"));
        assert_eq!(conf.builder.network_config, None);
    }

    #[test]
    fn a_missing_or_malformed_volume_names_the_key() {
        let e = parse("builder: {outputFileName: x.iso}\n").unwrap_err();
        assert!(
            e.starts_with("BUILDER_CONFIG conf.yaml: container.volume: missing"),
            "{e}"
        );
        let e = parse("container:\n  volume: /srv/images\n").unwrap_err();
        assert_eq!(
            e,
            "BUILDER_CONFIG conf.yaml:2: container.volume: '/srv/images' is not \"hostpath:containerpath\""
        );
        let e = parse("container: {volume: /a:/nonexistent-osforge}\n").unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = parse("container: {volume: /a:/tmp}\nbuilder: {outputFileName: a/b.iso}\n")
            .unwrap_err();
        assert!(e.contains("builder.outputFileName"), "{e}");
        let e = parse("container: {volume: [a]}\n").unwrap_err();
        assert!(e.contains("expected a string, got a list"), "{e}");
    }
}
