//! The networking state that must survive a daemon restart: networks, the
//! endpoints reserved for containers (address, MAC, aliases) and their
//! resolved published ports. Kept as one JSON file under the data root,
//! replaced atomically on every change (by [`super::persist::Persister`]).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ipam::Subnet;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 hex digits, as Docker's network IDs.
    pub id: String,
    pub name: String,
    /// `bridge`, or `host`/`null` for the two built-in pseudo networks.
    #[serde(default = "bridge_driver")]
    pub driver: String,
    /// RFC 3339.
    pub created: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Whether the IPAM config was given by the user (inspect shows it).
    #[serde(default)]
    pub user_subnet: bool,
    /// `--ip-range`: where addresses are given out from (the whole subnet
    /// when absent); `--ip` may still pick any free address of the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Subnet>,
    /// `--aux-address NAME=IP`: addresses never given to a container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    /// The bridge's name in the bridge netns.
    pub bridge: String,
}

fn bridge_driver() -> String {
    "bridge".into()
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// The default `bridge` network: no embedded DNS, as in Docker.
    pub fn is_default_bridge(&self) -> bool {
        self.name == "bridge"
    }
}

/// A container's place on a network, reserved from connect until
/// disconnect (or the container's removal), across stops and restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    pub container_id: String,
    pub container_name: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether the user asked for this address (`--ip`).
    #[serde(default)]
    pub static_ip: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A published port with its host side resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub networks: Vec<NetworkRecord>,
    pub endpoints: Vec<EndpointRecord>,
    /// Resolved published ports by container ID.
    #[serde(default)]
    pub ports: BTreeMap<String, Vec<PortBinding>>,
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct Store {
    file: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            file: dir.join("state.json"),
        }
    }

    pub fn load(&self) -> io::Result<State> {
        match std::fs::read(&self.file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, state: &State) -> io::Result<()> {
        self.write_bytes(&serde_json::to_vec_pretty(state).map_err(io::Error::other)?)
    }

    /// Replaces the file with `bytes` (a serialised [`State`]) by rename:
    /// a crash leaves the old state or the new one, never a torn file.
    pub fn write_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_save_and_load() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::new(dir.path());
        assert!(store.load()?.networks.is_empty());
        let mut state = State::default();
        state.ports.insert(
            "c1".into(),
            vec![PortBinding {
                container_port: 80,
                proto: Proto::Udp,
                host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                host_port: 32768,
            }],
        );
        store.save(&state)?;
        assert_eq!(store.load()?.ports, state.ports);
        Ok(())
    }
}
