//! The MTU of the bridges and container veths. A network's own option
//! wins, then the daemon's `--mtu`, then the pod's: container packets must
//! fit the pod's link (an overlay network's 1450, say), or large packets
//! depend on path MTU discovery across the pod network, the classic
//! Docker-in-Docker failure that dockerd (fixed at 1500) leaves to users.

use std::collections::BTreeMap;

use super::rtnl::Rtnl;
use super::state::NetworkRecord;

/// Docker's bridge driver option for one network's MTU.
pub const OPTION: &str = "com.docker.network.driver.mtu";

/// The MTU when neither the daemon nor the pod says: Ethernet's.
const DEFAULT: u32 = 1500;

/// The MTU of the pod's default-route interface, read in the calling
/// thread's netns (the pod's, before the engine makes its own), at most
/// 1500; else 1500. Capped because a jumbo-frame pod network (AWS VPC
/// CNI's 9001) carries 1500 fine, while container packets of 9001 would
/// lean on path MTU discovery past it: dockerd's 1500 stays where it is
/// safe, and only a smaller pod link lowers it.
pub fn pod_mtu() -> u32 {
    match Rtnl::open().and_then(|mut r| r.default_route_mtu()) {
        Ok(Some(mtu)) => mtu.min(DEFAULT),
        Ok(None) => DEFAULT,
        Err(e) => {
            tracing::warn!(%e, "reading the pod's MTU; using {DEFAULT}");
            DEFAULT
        }
    }
}

/// A network's MTU: its own option (checked at create), else `default`.
pub fn of_network(net: &NetworkRecord, default: u32) -> u32 {
    net.options
        .get(OPTION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `-o com.docker.network.driver.mtu=N` as Docker's bridge driver takes it.
pub fn check_option(options: &BTreeMap<String, String>) -> Result<(), String> {
    match options.get(OPTION).map(|v| v.parse::<u32>()) {
        None | Some(Ok(68..=65535)) => Ok(()),
        Some(_) => Err(format!(
            "invalid {OPTION} {:?}: a number from 68 to 65535",
            options.get(OPTION).map(String::as_str).unwrap_or("")
        )),
    }
}
