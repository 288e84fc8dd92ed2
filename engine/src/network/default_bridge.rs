//! The default `bridge` network's place, set at each daemon start by
//! dockerd's `--bip` and `--default-address-pool`: clusters whose own
//! ranges fall in Docker's 172.17.0.0/16 move it (and new networks) off
//! them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::ipam::{self, AddressPool, Subnet};
use super::manager::NetworkError;
use super::state::State;

/// Puts the default bridge where the daemon's options say: `bip`, else
/// (with pools) a subnet of `pools`, kept while it still lies in them,
/// else Docker's 172.17.0.0/16. When that moves it, the containers on it
/// are given addresses of the new subnet (and the MACs derived from them),
/// as dockerd gives them at their next start.
pub fn place(
    state: &mut State,
    bip: Option<(Ipv4Addr, u8)>,
    pools: &[AddressPool],
) -> Result<(), NetworkError> {
    let Some(pos) = state.networks.iter().position(|n| n.is_default_bridge()) else {
        return Ok(());
    };
    let current = state.networks[pos].subnet;
    let others: Vec<Subnet> = state
        .networks
        .iter()
        .filter(|n| n.is_bridge() && !n.is_default_bridge())
        .map(|n| n.subnet)
        .collect();
    let (subnet, gateway) = match bip {
        Some((gateway, prefix)) => (Subnet::new(gateway, prefix), gateway),
        None if pools.is_empty() => (ipam::DEFAULT_BRIDGE, ipam::DEFAULT_BRIDGE.first_host()),
        None => {
            let in_pools = pools
                .iter()
                .any(|p| p.base.overlaps(&current) && current.prefix >= p.base.prefix);
            let subnet = if in_pools {
                current
            } else {
                ipam::free_subnet(pools, &others).ok_or_else(|| {
                    NetworkError::Invalid(
                        "the default address pools have no subnet left for the default bridge"
                            .into(),
                    )
                })?
            };
            (subnet, subnet.first_host())
        }
    };
    if let Some(t) = others.iter().find(|t| t.overlaps(&subnet)) {
        return Err(NetworkError::Invalid(format!(
            "the default bridge's subnet {subnet} overlaps {t} of another network"
        )));
    }
    let net = &mut state.networks[pos];
    if net.subnet == subnet && net.gateway == gateway {
        return Ok(());
    }
    tracing::info!(from = %net.subnet, to = %subnet, "moving the default bridge");
    net.subnet = subnet;
    net.gateway = gateway;
    let id = net.id.clone();
    let mut used = BTreeSet::from([gateway]);
    for ep in state.endpoints.iter_mut().filter(|e| e.network_id == id) {
        let ip = ipam::free_address(&subnet, &used).ok_or_else(|| {
            NetworkError::Invalid(format!(
                "the default bridge's subnet {subnet} is too small for its containers"
            ))
        })?;
        used.insert(ip);
        if ep.mac == ipam::mac_for(ep.ip) {
            ep.mac = ipam::mac_for(ip);
        }
        ep.ip = ip;
    }
    Ok(())
}
