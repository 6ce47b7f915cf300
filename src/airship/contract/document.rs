//! The v2 contract's one YAML document on stdin:
//!
//! ```yaml
//! user_data: |                 # or a map: #cloud-config content
//!   #cloud-config
//!   runcmd: [...]
//! network_config: |            # network_data.json as JSON or YAML text, or netplan;
//!   {"links": [...], ...}      # or a map of either
//! osconfig: {...}              # the osconfig role's variables, a map or YAML text
//! qcow: {...}                  # the qcow role's variables, a map or YAML text
//! outputFileName: ephemeral.iso
//! ```
//!
//! Airship's own scripts cut the document into files by indentation, so both
//! shapes turn up: bodies as block strings and bodies as nested maps. A
//! `user_data:` written as indented `#cloud-config` lines without `|` parses
//! as a map (the header is a YAML comment), which is why a map is taken as
//! cloud-config content.

use std::path::{Path, PathBuf};

use super::error::ContractError;
use crate::airship::VarsText;
use crate::netconfig::HostNetwork;
use crate::profile::{Node, Value};

const KEYS: &str = "user_data, network_config, osconfig, qcow or outputFileName";

#[derive(Debug, Clone, Default)]
pub struct Document {
    pub user_data: Option<String>,
    pub network: Option<HostNetwork>,
    pub osconfig: Option<VarsText>,
    pub qcow: Option<VarsText>,
    pub output_file: Option<String>,
}

impl Document {
    pub fn parse(text: &str) -> Result<Document, ContractError> {
        let root = Node::parse(text, Path::new("stdin")).map_err(ContractError::ParsingDocument)?;
        let entries = match &root.value {
            Value::Map(entries) if !entries.is_empty() => entries,
            _ => {
                return Err(invalid(
                    "(document)",
                    format!(
                        "expected a map with the keys {KEYS}, got {}",
                        describe(&root)
                    ),
                ));
            }
        };
        let mut doc = Document::default();
        for entry in entries {
            let node = &entry.value;
            let key = entry.key.as_str();
            match key {
                "user_data" => doc.user_data = user_data(node)?,
                "network_config" => doc.network = network(node)?,
                "osconfig" | "qcow" => {
                    let vars = vars(key, node)?;
                    if key == "osconfig" {
                        doc.osconfig = vars;
                    } else {
                        doc.qcow = vars;
                    }
                }
                "outputFileName" => match &node.value {
                    Value::Str(name) => {
                        super::check_file_name(name).map_err(|m| invalid(key, m))?;
                        doc.output_file = Some(name.clone());
                    }
                    Value::Null => {}
                    _ => {
                        return Err(invalid(
                            key,
                            format!("expected a file name, got {}", describe(node)),
                        ));
                    }
                },
                // What a KRM-style wrapper adds around the keys.
                "apiVersion" | "kind" | "metadata" => {}
                other => {
                    return Err(invalid(other, format!("unknown key (expected {KEYS})")));
                }
            }
        }
        Ok(doc)
    }
}

fn user_data(node: &Node) -> Result<Option<String>, ContractError> {
    let text = match &node.value {
        Value::Null => return Ok(None),
        Value::Str(text) => text.clone(),
        Value::Map(_) => format!("#cloud-config\n{}", to_yaml(node)),
        _ => {
            return Err(invalid(
                "user_data",
                format!(
                    "expected user-data text (user_data: | and #cloud-config lines) or a map, got {}",
                    describe(node)
                ),
            ));
        }
    };
    crate::profile::check_user_data(&text).map_err(|m| invalid("user_data", m))?;
    Ok(Some(text))
}

fn network(node: &Node) -> Result<Option<HostNetwork>, ContractError> {
    let parsed = match &node.value {
        Value::Null => return Ok(None),
        Value::Str(text) => HostNetwork::parse_any(text),
        Value::Map(_) => HostNetwork::from_value(&node.to_json())
            .unwrap_or_else(|| HostNetwork::parse(&to_yaml(node))),
        _ => {
            return Err(invalid(
                "network_config",
                format!(
                    "expected network_data.json or netplan, as text or a map, got {}",
                    describe(node)
                ),
            ));
        }
    };
    parsed
        .map(Some)
        .map_err(|e| invalid("network_config", e.to_string()))
}

fn vars(key: &str, node: &Node) -> Result<Option<VarsText>, ContractError> {
    let text = match &node.value {
        Value::Null => return Ok(None),
        Value::Str(text) => text.clone(),
        // JSON is YAML: a map goes to the vars reader exactly as given.
        Value::Map(_) => {
            serde_json::to_string_pretty(&node.to_json()).expect("JSON values serialise")
        }
        _ => {
            return Err(invalid(
                key,
                format!(
                    "expected a map of the {key} role's variables (or YAML text of one), got {}",
                    describe(node)
                ),
            ));
        }
    };
    Ok(Some(VarsText {
        text,
        path: PathBuf::from(format!("stdin ({key})")),
        rel: format!("stdin: {key}"),
    }))
}

fn to_yaml(node: &Node) -> String {
    serde_saphyr::to_string(&node.to_json()).expect("JSON values serialise as YAML")
}

fn describe(node: &Node) -> String {
    match &node.value {
        Value::Null => "nothing".into(),
        _ => node.kind().to_string(),
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ContractError {
    ContractError::InvalidDocument {
        key: key.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Document::parse(text).unwrap_err().to_string()
    }

    const NETWORK_JSON: &str = r#"{"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}], "networks": [{"id": "n0", "link": "eth0", "type": "ipv4", "ip_address": "10.0.2.50", "netmask": "255.255.255.0"}]}"#;

    #[test]
    fn bodies_as_block_strings_are_taken_as_written() {
        let text = format!(
            "user_data: |\n  #cloud-config\n  runcmd: [\"echo hi\"]\nnetwork_config: |\n  {NETWORK_JSON}\nosconfig: |\n  sysctl:\n    - {{name: vm.swappiness, value: '10'}}\noutputFileName: node.iso\n"
        );
        let doc = Document::parse(&text).unwrap();
        assert_eq!(
            doc.user_data.as_deref(),
            Some("#cloud-config\nruncmd: [\"echo hi\"]\n")
        );
        assert_eq!(
            doc.network.unwrap().network_data_json().unwrap(),
            format!("{NETWORK_JSON}\n")
        );
        assert!(doc.osconfig.unwrap().text.contains("vm.swappiness"));
        assert_eq!(doc.output_file.as_deref(), Some("node.iso"));
    }

    #[test]
    fn bodies_as_nested_maps_become_cloud_config_network_data_and_vars() {
        let text = "user_data:\n    #cloud-config\n    runcmd:\n      - echo hi\nnetwork_config:\n  links:\n    - {id: eth0, type: phy, ethernet_mac_address: '52:54:00:12:34:56'}\n  networks:\n    - {id: n0, link: eth0, type: ipv4_dhcp}\nosconfig:\n  sysctl:\n    - {name: vm.swappiness, value: '10'}\n";
        let doc = Document::parse(text).unwrap();
        let user_data = doc.user_data.unwrap();
        assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
        assert!(user_data.contains("echo hi"), "{user_data}");
        let json: serde_json::Value =
            serde_json::from_str(&doc.network.unwrap().network_data_json().unwrap()).unwrap();
        assert_eq!(
            json["links"][0]["ethernet_mac_address"],
            "52:54:00:12:34:56"
        );
        let vars: serde_json::Value = serde_json::from_str(&doc.osconfig.unwrap().text).unwrap();
        assert_eq!(vars["sysctl"][0]["value"], "10");
    }

    #[test]
    fn bad_documents_name_the_key_and_what_was_expected() {
        assert_eq!(
            err("- a\n"),
            format!("stdin: (document): expected a map with the keys {KEYS}, got a list")
        );
        assert_eq!(
            err("user-data: x\n"),
            format!("stdin: user-data: unknown key (expected {KEYS})")
        );
        assert!(err("user_data: [a]\n").starts_with("stdin: user_data: expected user-data text"));
        assert!(
            err("user_data: hello\n").contains("not a cloud-init header"),
            "{}",
            err("user_data: hello\n")
        );
        let e = err(
            "network_config: |\n  {\"links\": [{\"id\": \"a\", \"type\": \"phy\", \"ethernet_mac_address\": \"zz\"}]}\n",
        );
        assert!(e.starts_with("stdin: network_config: links[0]"), "{e}");
        assert!(err("osconfig: 3\n").starts_with("stdin: osconfig: expected a map"));
        assert!(err("outputFileName: ../x.iso\n").starts_with("stdin: outputFileName:"));
        assert!(
            err("user_data: [\n").starts_with("stdin:"),
            "{}",
            err("user_data: [\n")
        );
    }
}
