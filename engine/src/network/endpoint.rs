//! Plugging a container into a network: a veth pair whose bridge-netns end
//! joins the network's bridge and whose other end is created directly in
//! the container's netns, with Docker's MAC, the endpoint's address and,
//! for the first network with an uplink, the default route.

use std::io;
use std::net::Ipv4Addr;

use super::netns::NetNs;
use super::rtnl::{Route, Rtnl};

pub struct Plug<'a> {
    pub bridge: &'a str,
    /// The bridge-netns end's name.
    pub host_if: &'a str,
    /// The name inside the container (`eth0`, `eth1`, ...).
    pub container_if: &'a str,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// Default route via this gateway.
    pub gateway: Option<Ipv4Addr>,
}

/// The bridge-netns end's name for an endpoint: short, unique per endpoint.
pub fn host_if_name(endpoint_id: &str) -> String {
    format!("veth{}", &endpoint_id[..endpoint_id.len().min(8)])
}

pub fn plug(bridge_rtnl: &mut Rtnl, container: &NetNs, p: &Plug<'_>) -> io::Result<()> {
    bridge_rtnl.delete_link_named(p.host_if)?;
    bridge_rtnl.add_veth(p.host_if, p.container_if, Some(container.fd()), Some(p.mac))?;
    let host = bridge_rtnl.require(p.host_if)?;
    let master = bridge_rtnl.require(p.bridge)?;
    bridge_rtnl.set_master(host, master)?;
    bridge_rtnl.set_up(host)?;
    let (name, ip, prefix, gateway) = (p.container_if.to_owned(), p.ip, p.prefix, p.gateway);
    container.run(move || {
        let mut rtnl = Rtnl::open()?;
        let index = rtnl.require(&name)?;
        rtnl.add_address(index, ip, prefix)?;
        rtnl.set_up(index)?;
        if let Some(gw) = gateway {
            rtnl.add_route(&Route {
                gateway: Some(gw),
                ..Route::default()
            })?;
        }
        Ok(())
    })
}

/// Removes the endpoint's veth pair (deleting one end removes both).
pub fn unplug(bridge_rtnl: &mut Rtnl, host_if: &str) -> io::Result<()> {
    bridge_rtnl.delete_link_named(host_if)
}
