//! Container networking: the bridge netns with a Linux bridge per network,
//! a veth per container endpoint, persistent IPAM, the embedded DNS server,
//! published ports, and the uplink from the bridge netns to the pod's
//! network (kernel veth + NAT, the transparent layer-4 relay, or
//! slirp4netns on request).
//!
//! [`Networks`] is the engine's API for the daemon. Everything here works
//! with the kernel through netlink (rtnetlink, hand-built nf_tables
//! messages); no `ip`, `nft` or `iptables` binary is run. See
//! docs/architecture.md, "Networking", for the design.

mod conntrack;
pub mod counters;
mod default_bridge;
mod dns;
mod endpoint;
pub mod files;
mod firewall;
mod info;
pub mod ipam;
mod manager;
mod mtu;
pub mod netns;
pub mod nft;
mod persist;
pub mod podside;
pub mod ports;
mod relay;
pub mod rtnl;
mod slirp;
mod sock;
mod splice;
pub mod state;
mod udp;

pub use info::{
    EndpointInfo, EndpointSettings, HostPort, IpamConfig, NetworkInfo, NetworkSettings,
};
pub use manager::{
    host_gateway, Attachment, ContainerNetworking, CreateNetwork, EndpointOptions, HostLink, Mode,
    NetworkError, Networks, NetworksConfig, UplinkPreference,
};
pub use podside::PodParent;
pub use ports::{parse_publish, PortRequest};
pub use state::{PortBinding, Proto};

/// How the bridge netns reaches the pod's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UplinkMode {
    /// A veth into the pod netns, routing and NAT in the kernel.
    Kernel,
    /// The transparent layer-4 relay (DNAT + conntrack + splice).
    L4Relay,
    /// slirp4netns's tap in the bridge netns (asked for, with /dev/net/tun).
    Slirp4netns,
}

impl UplinkMode {
    /// The name `hutch doctor` and `/info` use.
    pub fn name(self) -> &'static str {
        match self {
            UplinkMode::Kernel => "kernel-veth-nat",
            UplinkMode::L4Relay => "l4-relay",
            UplinkMode::Slirp4netns => "slirp4netns",
        }
    }

    /// The bridge netns's link to the pod's network, where routing and
    /// NAT go out (none for the relay, which connects from the pod netns).
    pub fn link(self) -> Option<&'static str> {
        match self {
            UplinkMode::Kernel => Some(podside::BRIDGE_LINK),
            UplinkMode::L4Relay => None,
            UplinkMode::Slirp4netns => Some(slirp::TAP),
        }
    }
}
