//! A host's network configuration from a site's files: OpenStack
//! `network_data.json` (Airship's `iso/network_data.json`, Ironic's config
//! drive) or netplan / cloud-init `network-config` version 2, checked and
//! turned into whichever the host's datasource reads: `network_data.json` on
//! a config drive (`config-2`), `network-config` in a NoCloud seed.
//!
//! A file already in the datasource's format goes to the host as written
//! (after the checks), so nothing a site wrote is lost; only a conversion
//! rewrites it, and fails for what the target format cannot say.

pub mod netplan;
pub mod openstack;

use std::path::{Path, PathBuf};

pub use netplan::Netplan;
pub use openstack::NetworkData;

/// A problem in a network file, at a key path inside it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct NetError {
    pub key: String,
    pub message: String,
}

impl NetError {
    pub fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        NetError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A network file that could not be used, naming it.
#[derive(Debug, thiserror::Error)]
pub enum HostNetworkError {
    #[error("{}: {source}", path.display())]
    Reading {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: NetError,
    },
}

/// `52:54:00:12:34:56`.
pub fn check_mac(mac: &str) -> Result<(), String> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(format!("'{mac}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))
    }
}

/// One host's network, as the site wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum HostNetwork {
    OpenStack { data: NetworkData, text: String },
    Netplan { plan: Netplan, text: String },
}

impl HostNetwork {
    /// Reads and checks a file; JSON is `network_data.json`, anything else
    /// netplan YAML (version 2, at the top or under `network:`).
    pub fn load(path: &Path) -> Result<HostNetwork, HostNetworkError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostNetworkError::Reading {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|source| HostNetworkError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<HostNetwork, NetError> {
        if text.trim_start().starts_with('{') {
            let data = NetworkData::parse(text)?;
            Ok(HostNetwork::OpenStack {
                data,
                text: text.to_string(),
            })
        } else {
            let plan = Netplan::parse(text)?;
            Ok(HostNetwork::Netplan {
                plan,
                text: text.to_string(),
            })
        }
    }

    /// [`Self::parse`], also taking `network_data.json` written as YAML, as
    /// a BareMetalHost's networkData secret often is and as airshipctl hands
    /// it to the image builder (which converted it with `yq r -j`): a YAML map
    /// with `links`, `networks` or `services` is that, turned into JSON; any
    /// other YAML is netplan.
    pub fn parse_any(text: &str) -> Result<HostNetwork, NetError> {
        if text.trim_start().starts_with('{') {
            return Self::parse(text);
        }
        // The profiles' YAML reader: YAML 1.2 scalars, so `no` or `0644` stay strings.
        let node = crate::profile::Node::parse(text, Path::new("")).map_err(|e| match e {
            crate::profile::ProfileError::ParsingYaml { at, message } => NetError::at(
                "",
                format!("line {}: not YAML or JSON: {message}", at.line.unwrap_or(0)),
            ),
            other => NetError::at("", other.to_string()),
        })?;
        Self::from_value(&node.to_json()).unwrap_or_else(|| Self::parse(text))
    }

    /// A parsed YAML or JSON value in network_data.json's shape, as JSON text;
    /// `None` when it is not that shape (netplan, then).
    pub fn from_value(value: &serde_json::Value) -> Option<Result<HostNetwork, NetError>> {
        let map = value.as_object()?;
        if !["links", "networks", "services"]
            .iter()
            .any(|k| map.contains_key(*k))
        {
            return None;
        }
        let mut json = serde_json::to_string_pretty(value).expect("JSON values serialise");
        json.push('\n');
        Some(Self::parse(&json))
    }

    /// The config drive's `openstack/latest/network_data.json`.
    pub fn network_data_json(&self) -> Result<String, NetError> {
        match self {
            HostNetwork::OpenStack { text, .. } => Ok(text.clone()),
            HostNetwork::Netplan { plan, .. } => {
                let data = plan.to_network_data()?;
                let mut json = serde_json::to_string_pretty(&data).expect("JSON");
                json.push('\n');
                Ok(json)
            }
        }
    }

    /// The NoCloud seed's `network-config` (netplan v2).
    pub fn network_config(&self) -> Result<String, NetError> {
        match self {
            HostNetwork::Netplan { text, .. } => Ok(text.clone()),
            HostNetwork::OpenStack { data, .. } => {
                let plan = netplan::from_network_data(data)?;
                let yaml = serde_saphyr::to_string(&plan)
                    .map_err(|e| NetError::at("", format!("writing network-config: {e}")))?;
                Ok(format!(
                    "# network-config (netplan v2), converted by osforge from network_data.json\n{yaml}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_data_written_as_yaml_is_read_as_network_data_and_kept_as_json() {
        let yaml = "links:\n  - {id: eth0, type: phy, ethernet_mac_address: \"52:54:00:12:34:56\"}\nnetworks:\n  - {id: n0, link: eth0, type: ipv4, ip_address: 10.0.2.50, netmask: 255.255.255.0}\n";
        let net = HostNetwork::parse_any(yaml).unwrap();
        let json = net.network_data_json().unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["networks"][0]["ip_address"], "10.0.2.50");
        assert!(matches!(net, HostNetwork::OpenStack { .. }));
        let netplan = "version: 2\nethernets:\n  e: {dhcp4: true}\n";
        assert!(matches!(
            HostNetwork::parse_any(netplan).unwrap(),
            HostNetwork::Netplan { .. }
        ));
        let err = HostNetwork::parse_any("links: [{id: a, type: phy, ethernet_mac_address: \"52:54:00:12:34:56\"}]\nnetworks:\n  - {id: n, link: nope, type: ipv4_dhcp}\n")
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    /// Airship's ephemeral host: two NICs bonded (LACP), a VLAN on the bond
    /// with the address, DNS as a service.
    const AIRSHIP: &str = r#"{
  "links": [
    {"id": "oam0", "type": "phy", "ethernet_mac_address": "52:54:00:9b:27:4c", "mtu": 1500},
    {"id": "oam1", "type": "phy", "ethernet_mac_address": "52:54:00:9b:27:4d", "mtu": 1500},
    {"id": "bond0", "type": "bond", "bond_links": ["oam0", "oam1"], "bond_mode": "802.3ad",
     "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4", "ethernet_mac_address": "52:54:00:9b:27:4c"},
    {"id": "bond0.41", "type": "vlan", "vlan_link": "bond0", "vlan_id": 41, "vlan_mac_address": "52:54:00:9b:27:4c"}
  ],
  "networks": [
    {"id": "oam-ipv4", "link": "bond0.41", "type": "ipv4", "ip_address": "10.23.25.101",
     "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.23.25.1"}]}
  ],
  "services": [{"type": "dns", "address": "8.8.8.8"}]
}"#;

    #[test]
    fn airship_network_data_becomes_netplan_with_its_bond_vlan_and_address() {
        let net = HostNetwork::parse(AIRSHIP).unwrap();
        assert_eq!(net.network_data_json().unwrap(), AIRSHIP, "kept as written");
        let yaml = net.network_config().unwrap();
        let plan = Netplan::parse(&yaml).unwrap();
        assert_eq!(
            plan.ethernets["oam0"]
                .matches
                .as_ref()
                .unwrap()
                .macaddress
                .as_deref(),
            Some("52:54:00:9b:27:4c")
        );
        let bond = &plan.bonds["bond0"];
        assert_eq!(bond.interfaces, vec!["oam0", "oam1"]);
        assert_eq!(
            bond.parameters.as_ref().unwrap().mode.as_deref(),
            Some("802.3ad")
        );
        let vlan = &plan.vlans["bond0.41"];
        assert_eq!((vlan.id, vlan.link.as_deref()), (Some(41), Some("bond0")));
        assert_eq!(vlan.addresses, vec!["10.23.25.101/24"]);
        assert_eq!(vlan.routes[0].to, "0.0.0.0/0");
        assert_eq!(vlan.routes[0].via, "10.23.25.1");
        assert_eq!(
            vlan.nameservers.as_ref().unwrap().addresses,
            vec!["8.8.8.8"]
        );
    }

    #[test]
    fn netplan_becomes_network_data_and_back_to_the_same_network() {
        let yaml = "network:\n  version: 2\n  ethernets:\n    eno1:\n      match: {macaddress: \"52:54:00:12:34:56\"}\n      set-name: eno1\n      addresses: [192.168.7.10/24]\n      routes: [{to: default, via: 192.168.7.1}]\n      nameservers: {addresses: [192.168.7.2]}\n    eno2:\n      match: {macaddress: \"52:54:00:12:34:57\"}\n      dhcp4: true\n";
        let net = HostNetwork::parse(yaml).unwrap();
        assert_eq!(net.network_config().unwrap(), yaml, "kept as written");
        let json = net.network_data_json().unwrap();
        let data = NetworkData::parse(&json).unwrap();
        assert_eq!(data.links.len(), 2);
        let static_net = data.networks.iter().find(|n| n.kind == "ipv4").unwrap();
        assert_eq!(static_net.ip_address.as_deref(), Some("192.168.7.10"));
        assert_eq!(static_net.netmask.as_deref(), Some("255.255.255.0"));
        assert_eq!(static_net.routes[0].gateway, "192.168.7.1");
        assert!(
            data.networks
                .iter()
                .any(|n| n.kind == "ipv4_dhcp" && n.link == "eno2")
        );
        assert_eq!(data.dns_servers(), vec!["192.168.7.2"]);
        let back =
            Netplan::parse(&HostNetwork::parse(&json).unwrap().network_config().unwrap()).unwrap();
        assert_eq!(back.ethernets["eno1"].addresses, vec!["192.168.7.10/24"]);
        assert_eq!(back.ethernets["eno2"].dhcp4, Some(true));
    }

    #[test]
    fn what_a_config_drive_cannot_say_is_refused_with_its_key() {
        let yaml = "version: 2\nethernets:\n  all:\n    match: {name: \"e*\"}\n    dhcp4: true\n";
        let err = HostNetwork::parse(yaml)
            .unwrap()
            .network_data_json()
            .unwrap_err();
        assert_eq!(err.key, "ethernets.all.match.macaddress");
        let err = HostNetwork::parse("version: 2\nethernets:\n  a: {addresses: [10.0.0.1]}\n")
            .unwrap_err();
        assert!(err.to_string().contains("needs a prefix length"), "{err}");
        let err = HostNetwork::parse("version: 2\nvlans:\n  v: {id: 5, link: nope}\n").unwrap_err();
        assert_eq!(err.to_string(), "vlans.v.link: no device 'nope'");
        let err = HostNetwork::parse("version: 1\nconfig: []\n").unwrap_err();
        assert!(
            err.to_string().contains("version 1 is not supported"),
            "{err}"
        );
    }
}
