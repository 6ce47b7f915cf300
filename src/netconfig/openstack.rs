//! OpenStack `network_data.json`, as Airship's site manifests and Ironic write
//! it: `links` (phy, bond, vlan), `networks` on those links, `services` (DNS).
//!
//! Only the fields cloud-init's ConfigDrive reader uses are typed; anything
//! else a site adds (`vif_id`, `neutron_network_id`, ...) is kept as it was
//! written, so a file that is valid goes to the host unchanged.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{NetError, check_mac};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct NetworkData {
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Link {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethernet_mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bond_links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_miimon: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_xmit_hash_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_mac_address: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Network {
    pub id: String,
    pub link: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_nameservers: Vec<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Route {
    pub network: String,
    pub netmask: String,
    pub gateway: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: String,
}

/// The link types cloud-init's ConfigDrive reader turns into physical NICs.
pub const PHYSICAL_LINK_TYPES: &[&str] = &[
    "phy",
    "ethernet",
    "bridge",
    "hw_veb",
    "hyperv",
    "ovs",
    "tap",
    "vhostuser",
    "vif",
    "dvs",
    "ib",
];
const NETWORK_TYPES: &[&str] = &[
    "ipv4",
    "ipv6",
    "ipv4_dhcp",
    "ipv6_dhcp",
    "ipv6_slaac",
    "ipv6_dhcpv6-stateless",
    "ipv6_dhcpv6-stateful",
];
/// Linux bonding modes, by the names network_data.json and netplan both use.
pub const BOND_MODES: &[&str] = &[
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
];

impl NetworkData {
    pub fn parse(text: &str) -> Result<NetworkData, NetError> {
        let data: NetworkData = serde_json::from_str(text).map_err(|e| {
            NetError::at(
                format!("line {}", e.line()),
                format!("not valid network_data.json: {e}"),
            )
        })?;
        data.check()?;
        Ok(data)
    }

    /// The checks cloud-init does not do, or does only on the booted host.
    pub fn check(&self) -> Result<(), NetError> {
        let mut ids = BTreeSet::new();
        for (i, link) in self.links.iter().enumerate() {
            let at = |key: &str| format!("links[{i}].{key}");
            if !ids.insert(link.id.as_str()) {
                return Err(NetError::at(
                    at("id"),
                    format!("link '{}' is defined twice", link.id),
                ));
            }
            match link.kind.as_str() {
                "bond" => {
                    if link.bond_links.is_empty() {
                        return Err(NetError::at(
                            at("bond_links"),
                            "a bond needs its member links",
                        ));
                    }
                    if let Some(mode) = &link.bond_mode
                        && !BOND_MODES.contains(&mode.as_str())
                    {
                        return Err(NetError::at(
                            at("bond_mode"),
                            format!(
                                "unknown bond mode '{mode}' (expected one of {})",
                                BOND_MODES.join(", ")
                            ),
                        ));
                    }
                }
                "vlan" => {
                    if link.vlan_link.is_none() {
                        return Err(NetError::at(
                            at("vlan_link"),
                            "a vlan needs the link it runs on",
                        ));
                    }
                    match link.vlan_id {
                        Some(1..=4094) => {}
                        Some(id) => {
                            return Err(NetError::at(
                                at("vlan_id"),
                                format!("{id} is not a VLAN id (1-4094)"),
                            ));
                        }
                        None => return Err(NetError::at(at("vlan_id"), "missing")),
                    }
                }
                kind if PHYSICAL_LINK_TYPES.contains(&kind) => {
                    if link.ethernet_mac_address.is_none() {
                        return Err(NetError::at(
                            at("ethernet_mac_address"),
                            "a physical link is matched by its MAC address; it is missing",
                        ));
                    }
                }
                other => {
                    return Err(NetError::at(
                        at("type"),
                        format!("unknown link type '{other}'"),
                    ));
                }
            }
            for (key, mac) in [
                ("ethernet_mac_address", &link.ethernet_mac_address),
                ("vlan_mac_address", &link.vlan_mac_address),
            ] {
                if let Some(mac) = mac {
                    check_mac(mac).map_err(|m| NetError::at(at(key), m))?;
                }
            }
        }
        let known = || {
            self.links
                .iter()
                .map(|l| l.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, link) in self.links.iter().enumerate() {
            let refs = link
                .bond_links
                .iter()
                .map(|l| ("bond_links", l))
                .chain(link.vlan_link.iter().map(|l| ("vlan_link", l)));
            for (key, target) in refs {
                if !ids.contains(target.as_str()) || target == &link.id {
                    return Err(NetError::at(
                        format!("links[{i}].{key}"),
                        format!("no link '{target}' (links: {})", known()),
                    ));
                }
            }
        }
        for (i, net) in self.networks.iter().enumerate() {
            let at = |key: &str| format!("networks[{i}].{key}");
            if !ids.contains(net.link.as_str()) {
                return Err(NetError::at(
                    at("link"),
                    format!("no link '{}' (links: {})", net.link, known()),
                ));
            }
            if !NETWORK_TYPES.contains(&net.kind.as_str()) {
                return Err(NetError::at(
                    at("type"),
                    format!(
                        "unknown network type '{}' (expected one of {})",
                        net.kind,
                        NETWORK_TYPES.join(", ")
                    ),
                ));
            }
            if net.kind == "ipv4" || net.kind == "ipv6" {
                let address = net.ip_address.as_deref().ok_or_else(|| {
                    NetError::at(at("ip_address"), "missing for a static network")
                })?;
                let (ip, prefix) =
                    split_address(address).map_err(|m| NetError::at(at("ip_address"), m))?;
                if (net.kind == "ipv4") != ip.is_ipv4() {
                    return Err(NetError::at(
                        at("ip_address"),
                        format!("'{address}' is not an {} address", net.kind),
                    ));
                }
                if prefix.is_none() {
                    let mask = net.netmask.as_deref().ok_or_else(|| {
                        NetError::at(
                            at("netmask"),
                            "missing (or write ip_address as address/prefix)",
                        )
                    })?;
                    netmask_prefix(mask).map_err(|m| NetError::at(at("netmask"), m))?;
                }
            }
            for (r, route) in net.routes.iter().enumerate() {
                let at = |key: &str| format!("networks[{i}].routes[{r}].{key}");
                route.network.parse::<IpAddr>().map_err(|_| {
                    NetError::at(
                        at("network"),
                        format!("'{}' is not an IP address", route.network),
                    )
                })?;
                netmask_prefix(&route.netmask).map_err(|m| NetError::at(at("netmask"), m))?;
                route.gateway.parse::<IpAddr>().map_err(|_| {
                    NetError::at(
                        at("gateway"),
                        format!("'{}' is not an IP address", route.gateway),
                    )
                })?;
            }
            for (d, server) in net.dns_nameservers.iter().enumerate() {
                server.parse::<IpAddr>().map_err(|_| {
                    NetError::at(
                        format!("networks[{i}].dns_nameservers[{d}]"),
                        format!("'{server}' is not an IP address"),
                    )
                })?;
            }
        }
        for (i, service) in self.services.iter().enumerate() {
            if service.kind == "dns" {
                service.address.parse::<IpAddr>().map_err(|_| {
                    NetError::at(
                        format!("services[{i}].address"),
                        format!("'{}' is not an IP address", service.address),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The DNS servers of `services`.
    pub fn dns_servers(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|s| s.kind == "dns")
            .map(|s| s.address.as_str())
            .collect()
    }
}

/// `10.0.0.5` or `10.0.0.5/24` → (address, prefix).
pub fn split_address(text: &str) -> Result<(IpAddr, Option<u8>), String> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, p)) => (
            ip,
            Some(
                p.parse::<u8>()
                    .map_err(|_| format!("'{text}' has a bad prefix length"))?,
            ),
        ),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("'{text}' is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix.is_some_and(|p| p > max) {
        return Err(format!("'{text}' has a prefix longer than {max}"));
    }
    Ok((ip, prefix))
}

/// `255.255.255.0` → 24; an IPv6 mask (`ffff:ffff::`) or a bare prefix (`64`) too.
pub fn netmask_prefix(mask: &str) -> Result<u8, String> {
    if let Ok(prefix) = mask.parse::<u8>() {
        return if prefix <= 128 {
            Ok(prefix)
        } else {
            Err(format!("'{mask}' is not a netmask"))
        };
    }
    let bits: u128 = match mask.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => u128::from(u32::from(v4)) << 96,
        Ok(IpAddr::V6(v6)) => u128::from(v6),
        Err(_) => return Err(format!("'{mask}' is not a netmask")),
    };
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(format!("'{mask}' is not a contiguous netmask"));
    }
    Ok(prefix as u8)
}

/// `24` → `255.255.255.0`.
pub fn prefix_netmask_v4(prefix: u8) -> String {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_become_prefixes_and_back() {
        assert_eq!(netmask_prefix("255.255.255.0"), Ok(24));
        assert_eq!(netmask_prefix("0.0.0.0"), Ok(0));
        assert_eq!(netmask_prefix("ffff:ffff:ffff:ffff::"), Ok(64));
        assert_eq!(netmask_prefix("64"), Ok(64));
        assert!(netmask_prefix("255.0.255.0").is_err());
        assert!(netmask_prefix("banana").is_err());
        assert_eq!(prefix_netmask_v4(24), "255.255.255.0");
        assert_eq!(prefix_netmask_v4(0), "0.0.0.0");
    }

    #[test]
    fn references_types_and_addresses_are_checked_with_their_key() {
        let bad = |json: &str| NetworkData::parse(json).unwrap_err().to_string();
        assert!(
            bad(r#"{"links":[{"id":"a","type":"phy"}]}"#).contains("links[0].ethernet_mac_address")
        );
        assert!(
            bad(r#"{"links":[{"id":"b","type":"bond","bond_links":["x"]}]}"#)
                .contains("links[0].bond_links: no link 'x'")
        );
        assert!(
            bad(r#"{"links":[{"id":"v","type":"vlan","vlan_link":"v","vlan_id":5}]}"#)
                .contains("links[0].vlan_link")
        );
        assert!(bad(r#"{"links":[{"id":"a","type":"phy","ethernet_mac_address":"52:54:00:12:34:56"}],"networks":[{"id":"n","link":"a","type":"ipv4","ip_address":"10.0.0.300","netmask":"255.255.255.0"}]}"#)
            .contains("networks[0].ip_address: '10.0.0.300' is not an IP address"));
        assert!(
            bad(r#"{"links":[], "networks":[{"id":"n","link":"zz","type":"ipv4_dhcp"}]}"#)
                .contains("networks[0].link: no link 'zz'")
        );
        assert!(bad("{\"links\": [}").contains("not valid network_data.json"));
    }
}
