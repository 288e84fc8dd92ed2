//! Docker-shaped descriptions of networks and container network settings
//! (the field names of Docker's JSON, so the API layer passes them on).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    pub gateway: String,
    /// `--ip-range`, empty when not given.
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auxiliary_addresses: BTreeMap<String, String>,
}

/// One container on a network, as `docker network inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointInfo {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    /// `ADDRESS/PREFIX`.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Vec<IpamConfig>,
    pub internal: bool,
    pub attachable: bool,
    pub containers: BTreeMap<String, EndpointInfo>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// `NetworkSettings.Networks[name]` of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    pub mac_address: String,
    pub aliases: Vec<String>,
    #[serde(rename = "DNSNames")]
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPort {
    pub host_ip: String,
    pub host_port: String,
}

/// A container's `NetworkSettings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub networks: BTreeMap<String, EndpointSettings>,
    /// `"80/tcp"` → bindings (resolved host ports).
    pub ports: BTreeMap<String, Vec<HostPort>>,
    pub sandbox_key: String,
}
