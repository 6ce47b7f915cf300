//! Netplan / cloud-init network-config version 2: the NoCloud form.
//!
//! Read into a small typed model of what both formats can say (ethernets
//! matched by MAC or name, bonds, VLANs, static addresses, DHCP, routes, DNS),
//! and converted to and from OpenStack `network_data.json`, so a site can give
//! either and the host gets what its datasource reads.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::openstack::{self, Link, Network, NetworkData, Route, Service};
use super::{NetError, check_mac};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Netplan {
    pub version: u32,
    #[serde(default)]
    pub renderer: Option<String>,
    #[serde(default)]
    pub ethernets: BTreeMap<String, Device>,
    #[serde(default)]
    pub bonds: BTreeMap<String, Device>,
    #[serde(default)]
    pub vlans: BTreeMap<String, Device>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Device {
    #[serde(rename = "match")]
    pub matches: Option<Match>,
    pub set_name: Option<String>,
    pub macaddress: Option<String>,
    pub mtu: Option<u32>,
    pub dhcp4: Option<bool>,
    pub dhcp6: Option<bool>,
    pub accept_ra: Option<bool>,
    #[serde(default)]
    pub addresses: Vec<String>,
    pub gateway4: Option<String>,
    pub gateway6: Option<String>,
    #[serde(default)]
    pub routes: Vec<NetplanRoute>,
    pub nameservers: Option<Nameservers>,
    pub optional: Option<bool>,
    pub wakeonlan: Option<bool>,
    /// Bonds: member interfaces.
    #[serde(default)]
    pub interfaces: Vec<String>,
    pub parameters: Option<BondParameters>,
    /// VLANs: the VLAN id and the device it runs on.
    pub id: Option<u32>,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub macaddress: Option<String>,
    pub name: Option<String>,
    pub driver: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetplanRoute {
    pub to: String,
    pub via: String,
    pub metric: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nameservers {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub search: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BondParameters {
    pub mode: Option<String>,
    pub mii_monitor_interval: Option<Value>,
    pub transmit_hash_policy: Option<String>,
    pub lacp_rate: Option<String>,
    pub primary: Option<String>,
}

impl Netplan {
    /// Parses `version: 2` at the top or under `network:`.
    pub fn parse(text: &str) -> Result<Netplan, NetError> {
        let value: Value = serde_saphyr::from_str(text).map_err(|e| {
            NetError::at(
                "",
                format!(
                    "not valid YAML: {}",
                    e.to_string().lines().next().unwrap_or("")
                ),
            )
        })?;
        let value = match value.get("network") {
            Some(inner) => inner.clone(),
            None => value,
        };
        match value.get("version").and_then(Value::as_u64) {
            Some(2) => {}
            Some(1) => {
                return Err(NetError::at(
                    "version",
                    "network-config version 1 is not supported; write version 2 (netplan)",
                ));
            }
            _ => {
                return Err(NetError::at(
                    "version",
                    "missing or not 2 (netplan network-config version 2)",
                ));
            }
        }
        let plan: Netplan =
            serde_json::from_value(value).map_err(|e| NetError::at("", e.to_string()))?;
        plan.check()?;
        Ok(plan)
    }

    fn devices(&self) -> impl Iterator<Item = (&'static str, &String, &Device)> {
        self.ethernets
            .iter()
            .map(|(n, d)| ("ethernets", n, d))
            .chain(self.bonds.iter().map(|(n, d)| ("bonds", n, d)))
            .chain(self.vlans.iter().map(|(n, d)| ("vlans", n, d)))
    }

    fn check(&self) -> Result<(), NetError> {
        let names: Vec<&String> = self.devices().map(|(_, n, _)| n).collect();
        for (section, name, dev) in self.devices() {
            let at = |key: &str| format!("{section}.{name}.{key}");
            for mac in dev
                .macaddress
                .iter()
                .chain(dev.matches.as_ref().and_then(|m| m.macaddress.as_ref()))
            {
                check_mac(mac).map_err(|m| NetError::at(at("macaddress"), m))?;
            }
            for address in &dev.addresses {
                let (_, prefix) = openstack::split_address(address)
                    .map_err(|m| NetError::at(at("addresses"), m))?;
                if prefix.is_none() {
                    return Err(NetError::at(
                        at("addresses"),
                        format!("'{address}' needs a prefix length (address/prefix)"),
                    ));
                }
            }
            for route in &dev.routes {
                route.via.parse::<std::net::IpAddr>().map_err(|_| {
                    NetError::at(
                        at("routes"),
                        format!("'{}' is not an IP address", route.via),
                    )
                })?;
                if route.to != "default" {
                    openstack::split_address(&route.to)
                        .map_err(|m| NetError::at(at("routes"), m))?;
                }
            }
            for member in dev.interfaces.iter().chain(dev.link.iter()) {
                if !names.contains(&member) {
                    return Err(NetError::at(
                        at(if section == "bonds" {
                            "interfaces"
                        } else {
                            "link"
                        }),
                        format!("no device '{member}'"),
                    ));
                }
            }
            if section == "vlans" && !matches!(dev.id, Some(1..=4094)) {
                return Err(NetError::at(at("id"), "a VLAN id (1-4094) is required"));
            }
            if section == "vlans" && dev.link.is_none() {
                return Err(NetError::at(at("link"), "missing"));
            }
            if let Some(mode) = dev.parameters.as_ref().and_then(|p| p.mode.as_ref())
                && !openstack::BOND_MODES.contains(&mode.as_str())
            {
                return Err(NetError::at(
                    at("parameters.mode"),
                    format!("unknown bond mode '{mode}'"),
                ));
            }
        }
        Ok(())
    }

    /// The same network as OpenStack `network_data.json`. Fails for what a
    /// config drive cannot say: an ethernet matched by name, not by MAC.
    pub fn to_network_data(&self) -> Result<NetworkData, NetError> {
        let mut macs: BTreeMap<&str, String> = BTreeMap::new();
        let mut data = NetworkData {
            links: Vec::new(),
            networks: Vec::new(),
            services: Vec::new(),
        };
        for (name, dev) in &self.ethernets {
            let mac = dev.matches.as_ref().and_then(|m| m.macaddress.clone()).or_else(|| dev.macaddress.clone()).ok_or_else(|| {
                NetError::at(format!("ethernets.{name}.match.macaddress"), "a config drive names interfaces by MAC address; add match: {macaddress: ...}")
            })?;
            macs.insert(name, mac.clone());
            data.links.push(link(
                dev.set_name.as_deref().unwrap_or(name),
                "phy",
                Some(mac),
                dev.mtu,
            ));
        }
        for (name, dev) in &self.bonds {
            let mac = dev.macaddress.clone().or_else(|| {
                dev.interfaces
                    .first()
                    .and_then(|m| macs.get(m.as_str()).cloned())
            });
            if let Some(mac) = &mac {
                macs.insert(name, mac.clone());
            }
            let mut bond = link(name, "bond", mac, dev.mtu);
            bond.bond_links = dev.interfaces.iter().map(|m| link_id(self, m)).collect();
            if let Some(p) = &dev.parameters {
                bond.bond_mode = p.mode.clone();
                bond.bond_miimon = p
                    .mii_monitor_interval
                    .as_ref()
                    .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                    .map(|v| v as u32);
                bond.bond_xmit_hash_policy = p.transmit_hash_policy.clone();
            }
            data.links.push(bond);
        }
        for (name, dev) in &self.vlans {
            let parent = dev.link.clone().unwrap_or_default();
            let mut vlan = link(name, "vlan", None, dev.mtu);
            vlan.vlan_link = Some(link_id(self, &parent));
            vlan.vlan_id = dev.id;
            vlan.vlan_mac_address = dev
                .macaddress
                .clone()
                .or_else(|| macs.get(parent.as_str()).cloned());
            data.links.push(vlan);
        }
        for (section, name, dev) in self.devices() {
            let link_name = if section == "ethernets" {
                link_id(self, name)
            } else {
                name.clone()
            };
            let mut networks = Vec::new();
            let mut routes: Vec<Route> = Vec::new();
            for r in &dev.routes {
                let (network, netmask) = if r.to == "default" {
                    let v6 = r.via.contains(':');
                    (
                        if v6 { "::" } else { "0.0.0.0" }.to_string(),
                        if v6 { "::" } else { "0.0.0.0" }.to_string(),
                    )
                } else {
                    let (ip, prefix) = openstack::split_address(&r.to)
                        .map_err(|m| NetError::at(format!("{section}.{name}.routes"), m))?;
                    let prefix = prefix.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
                    (
                        ip.to_string(),
                        if ip.is_ipv4() {
                            openstack::prefix_netmask_v4(prefix)
                        } else {
                            prefix.to_string()
                        },
                    )
                };
                routes.push(Route {
                    network,
                    netmask,
                    gateway: r.via.clone(),
                });
            }
            for (gateway, v6) in [(&dev.gateway4, false), (&dev.gateway6, true)] {
                if let Some(gw) = gateway {
                    let any = if v6 { "::" } else { "0.0.0.0" };
                    routes.push(Route {
                        network: any.into(),
                        netmask: any.into(),
                        gateway: gw.clone(),
                    });
                }
            }
            let dns: Vec<String> = dev
                .nameservers
                .as_ref()
                .map(|n| n.addresses.clone())
                .unwrap_or_default();
            for address in &dev.addresses {
                let (ip, prefix) = openstack::split_address(address)
                    .map_err(|m| NetError::at(format!("{section}.{name}.addresses"), m))?;
                let prefix = prefix.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
                let v4 = ip.is_ipv4();
                let routes_here: Vec<Route> = routes
                    .iter()
                    .filter(|r| r.gateway.contains(':') != v4)
                    .cloned()
                    .collect();
                networks.push(network(
                    &link_name,
                    if v4 { "ipv4" } else { "ipv6" },
                    Some(ip.to_string()),
                    Some(if v4 {
                        openstack::prefix_netmask_v4(prefix)
                    } else {
                        prefix.to_string()
                    }),
                    routes_here,
                    dns.clone(),
                ));
            }
            if dev.dhcp4 == Some(true) {
                networks.push(network(
                    &link_name,
                    "ipv4_dhcp",
                    None,
                    None,
                    Vec::new(),
                    Vec::new(),
                ));
            }
            if dev.dhcp6 == Some(true) {
                networks.push(network(
                    &link_name,
                    "ipv6_dhcp",
                    None,
                    None,
                    Vec::new(),
                    Vec::new(),
                ));
            }
            for server in dns {
                if !data.services.iter().any(|s| s.address == server) {
                    data.services.push(Service {
                        kind: "dns".into(),
                        address: server,
                    });
                }
            }
            data.networks.extend(networks);
        }
        for (i, net) in data.networks.iter_mut().enumerate() {
            net.id = format!("network{i}");
        }
        data.check()?;
        Ok(data)
    }
}

/// The link id an ethernet gets in network_data.json: its `set-name`, else its netplan name.
fn link_id(plan: &Netplan, name: &str) -> String {
    plan.ethernets
        .get(name)
        .and_then(|d| d.set_name.clone())
        .unwrap_or_else(|| name.to_string())
}

fn link(id: &str, kind: &str, mac: Option<String>, mtu: Option<u32>) -> Link {
    Link {
        id: id.to_string(),
        kind: kind.to_string(),
        ethernet_mac_address: mac,
        mtu,
        bond_links: Vec::new(),
        bond_mode: None,
        bond_miimon: None,
        bond_xmit_hash_policy: None,
        vlan_link: None,
        vlan_id: None,
        vlan_mac_address: None,
        other: Default::default(),
    }
}

fn network(
    link: &str,
    kind: &str,
    ip: Option<String>,
    netmask: Option<String>,
    routes: Vec<Route>,
    dns: Vec<String>,
) -> Network {
    Network {
        id: String::new(),
        link: link.to_string(),
        kind: kind.to_string(),
        ip_address: ip,
        netmask,
        routes,
        dns_nameservers: dns,
        other: Default::default(),
    }
}

/// A valid interface name, which netplan's `set-name` can give.
fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// network_data.json as netplan v2 (the NoCloud `network-config`).
pub fn from_network_data(data: &NetworkData) -> Result<Value, NetError> {
    let mut ethernets = serde_json::Map::new();
    let mut bonds = serde_json::Map::new();
    let mut vlans = serde_json::Map::new();
    for l in &data.links {
        let mut dev = serde_json::Map::new();
        if let Some(mtu) = l.mtu {
            dev.insert("mtu".into(), json!(mtu));
        }
        match l.kind.as_str() {
            "bond" => {
                dev.insert("interfaces".into(), json!(l.bond_links));
                let mut params = serde_json::Map::new();
                if let Some(mode) = &l.bond_mode {
                    params.insert("mode".into(), json!(mode));
                }
                if let Some(miimon) = l.bond_miimon {
                    params.insert("mii-monitor-interval".into(), json!(miimon));
                }
                if let Some(policy) = &l.bond_xmit_hash_policy {
                    params.insert("transmit-hash-policy".into(), json!(policy));
                }
                if !params.is_empty() {
                    dev.insert("parameters".into(), Value::Object(params));
                }
                if let Some(mac) = &l.ethernet_mac_address {
                    dev.insert("macaddress".into(), json!(mac.to_lowercase()));
                }
                bonds.insert(l.id.clone(), Value::Object(dev));
            }
            "vlan" => {
                dev.insert("id".into(), json!(l.vlan_id));
                dev.insert("link".into(), json!(l.vlan_link));
                vlans.insert(l.id.clone(), Value::Object(dev));
            }
            _ => {
                let mac = l
                    .ethernet_mac_address
                    .clone()
                    .unwrap_or_default()
                    .to_lowercase();
                dev.insert("match".into(), json!({ "macaddress": mac }));
                if is_interface_name(&l.id) {
                    dev.insert("set-name".into(), json!(l.id));
                }
                ethernets.insert(l.id.clone(), Value::Object(dev));
            }
        }
    }
    let services_dns: Vec<&str> = data.dns_servers();
    for net in &data.networks {
        let section = match data
            .links
            .iter()
            .find(|l| l.id == net.link)
            .map(|l| l.kind.as_str())
        {
            Some("bond") => &mut bonds,
            Some("vlan") => &mut vlans,
            _ => &mut ethernets,
        };
        let Some(Value::Object(dev)) = section.get_mut(&net.link) else {
            return Err(NetError::at("networks", format!("no link '{}'", net.link)));
        };
        match net.kind.as_str() {
            "ipv4_dhcp" => {
                dev.insert("dhcp4".into(), json!(true));
            }
            "ipv6_dhcp" | "ipv6_dhcpv6-stateful" | "ipv6_dhcpv6-stateless" => {
                dev.insert("dhcp6".into(), json!(true));
            }
            "ipv6_slaac" => {
                dev.insert("accept-ra".into(), json!(true));
            }
            _ => {
                let address = net.ip_address.clone().unwrap_or_default();
                let (ip, prefix) =
                    openstack::split_address(&address).map_err(|m| NetError::at("networks", m))?;
                let prefix = match prefix {
                    Some(p) => p,
                    None => openstack::netmask_prefix(net.netmask.as_deref().unwrap_or(""))
                        .map_err(|m| NetError::at("networks", m))?,
                };
                push(dev, "addresses", json!(format!("{ip}/{prefix}")));
                for r in &net.routes {
                    let prefix = openstack::netmask_prefix(&r.netmask)
                        .map_err(|m| NetError::at("networks", m))?;
                    let to = if prefix == 0 {
                        if ip.is_ipv4() {
                            "0.0.0.0/0".to_string()
                        } else {
                            "::/0".to_string()
                        }
                    } else {
                        format!("{}/{prefix}", r.network)
                    };
                    push(dev, "routes", json!({ "to": to, "via": r.gateway }));
                }
                let dns: Vec<&str> = if net.dns_nameservers.is_empty() {
                    services_dns.clone()
                } else {
                    net.dns_nameservers.iter().map(String::as_str).collect()
                };
                if !dns.is_empty() {
                    dev.insert("nameservers".into(), json!({ "addresses": dns }));
                }
            }
        }
    }
    let mut plan = serde_json::Map::new();
    plan.insert("version".into(), json!(2));
    for (key, section) in [("ethernets", ethernets), ("bonds", bonds), ("vlans", vlans)] {
        if !section.is_empty() {
            plan.insert(key.into(), Value::Object(section));
        }
    }
    Ok(Value::Object(plan))
}

fn push(dev: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    match dev.entry(key.to_string()).or_insert_with(|| json!([])) {
        Value::Array(items) => items.push(value),
        other => *other = json!([value]),
    }
}
