//! What only the pod's own namespaces allow, done by the small parent half
//! of the engine bootstrap (see [`crate::bootstrap`]) that stays there as
//! pod root: binding ports below 1024 in the pod's netns (CAP_NET_BIND_SERVICE
//! counts against the netns owner, which the engine's user namespace is
//! not), and the kernel uplink (a veth into the pod netns and NAT there,
//! which needs CAP_NET_ADMIN over the pod netns). The engine asks over a
//! unix socket; descriptors travel with SCM_RIGHTS.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::nft::{self, expr, BaseChain, Batch, Expr, Hook};
use super::rtnl::{Route, Rtnl};
use super::{sock, Proto};
use crate::runtime::channel;

/// The pod side of the uplink veth pair.
pub const POD_LINK: &str = "hutch0";
/// The bridge netns side.
pub const BRIDGE_LINK: &str = "uplink0";
/// The pair's /30: the pod side takes .1, the bridge netns side .2.
pub const POD_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 213, 1);
pub const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 213, 2);
pub const UPLINK_PREFIX: u8 = 30;
/// hutch's nftables table, in every namespace it touches.
pub const TABLE: &str = "hutch";

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Bind a port in the pod netns; the reply carries the socket.
    Bind { proto: Proto, addr: SocketAddr },
    /// Create the uplink veth towards the bridge netns sent along.
    UplinkUp,
    /// Remove the uplink and its NAT rules from the pod netns.
    UplinkDown,
    /// Make the pod netns DNAT exactly these published ports.
    Forward(Vec<Forward>),
}

/// A published port the pod's kernel forwards (kernel uplink only):
/// traffic to `host_port` on `host_ip` (any of the pod's addresses, 127.0.0.1
/// included, when unset) is DNATed to the container, in prerouting for
/// other hosts and containers and in output for the pod's own processes.
/// The proxy's listener stays bound: it holds the port, as docker-proxy does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub proto: Proto,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub to: SocketAddrV4,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Ok,
    Fd,
    Failed(String),
}

/// The engine's handle on the pod-level parent.
#[derive(Debug)]
pub struct PodParent {
    sock: Mutex<UnixStream>,
}

impl PodParent {
    pub fn new(sock: UnixStream) -> PodParent {
        PodParent {
            sock: Mutex::new(sock),
        }
    }

    fn call(&self, req: &Request, fd: Option<&OwnedFd>) -> io::Result<Option<OwnedFd>> {
        let mut sock = self
            .sock
            .lock()
            .map_err(|_| io::Error::other("pod parent lock poisoned"))?;
        channel::send(&mut sock, req)?;
        if let Some(fd) = fd {
            channel::send_fds(&sock, &[fd.try_clone()?])?;
        }
        match channel::recv::<Reply>(&mut sock)? {
            Some(Reply::Ok) => Ok(None),
            Some(Reply::Fd) => Ok(channel::recv_fds(&sock, 1)?.pop()),
            Some(Reply::Failed(why)) => Err(io::Error::other(why)),
            None => Err(io::Error::other("the pod-level parent is gone")),
        }
    }

    /// A socket bound to `addr` in the pod's netns (TCP ones listening).
    pub fn bind(&self, proto: Proto, addr: SocketAddr) -> io::Result<OwnedFd> {
        self.call(&Request::Bind { proto, addr }, None)?
            .ok_or_else(|| io::Error::other("the pod-level parent sent no socket"))
    }

    /// Creates the uplink veth between the pod netns and `bridge_netns`,
    /// with NAT in the pod netns.
    pub fn uplink_up(&self, bridge_netns: &OwnedFd) -> io::Result<()> {
        self.call(&Request::UplinkUp, Some(bridge_netns)).map(drop)
    }

    pub fn uplink_down(&self) -> io::Result<()> {
        self.call(&Request::UplinkDown, None).map(drop)
    }

    /// Replaces the published ports the pod netns forwards in the kernel.
    pub fn forward(&self, forwards: Vec<Forward>) -> io::Result<()> {
        self.call(&Request::Forward(forwards), None).map(drop)
    }
}

/// Serves the engine's requests until it hangs up. Runs in the parent, in
/// the pod's namespaces.
pub fn serve(mut sock: UnixStream) {
    // Container addresses routed to the bridge netns for the DNAT.
    let mut routed = BTreeSet::new();
    while let Ok(Some(req)) = channel::recv::<Request>(&mut sock) {
        let result = match req {
            Request::Bind { proto, addr } => bind(proto, addr).map(Some),
            Request::UplinkUp => channel::recv_fds(&sock, 1)
                .and_then(|mut fds| fds.pop().ok_or_else(|| io::ErrorKind::InvalidData.into()))
                .and_then(|fd| uplink_up(&fd))
                .map(|()| None),
            Request::UplinkDown => {
                routed.clear();
                uplink_down().map(|()| None)
            }
            Request::Forward(forwards) => forward(&forwards, &mut routed).map(|()| None),
        };
        let sent = match result {
            Ok(None) => channel::send(&mut sock, &Reply::Ok),
            Ok(Some(fd)) => {
                channel::send(&mut sock, &Reply::Fd).and_then(|()| channel::send_fds(&sock, &[fd]))
            }
            Err(e) => channel::send(&mut sock, &Reply::Failed(e.to_string())),
        };
        if sent.is_err() {
            return;
        }
    }
}

fn bind(proto: Proto, addr: SocketAddr) -> io::Result<OwnedFd> {
    Ok(match proto {
        Proto::Tcp => sock::tcp_listener(addr, false)?.into(),
        Proto::Udp => sock::udp_socket(addr, false)?.into(),
    })
}

fn uplink_up(bridge_netns: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsFd;
    let mut rtnl = Rtnl::open()?;
    rtnl.delete_link_named(POD_LINK)?;
    rtnl.add_veth(POD_LINK, BRIDGE_LINK, Some(bridge_netns.as_fd()), None)?;
    let index = rtnl.require(POD_LINK)?;
    rtnl.add_address(index, POD_ADDR, UPLINK_PREFIX)?;
    rtnl.set_up(index)?;
    // Replies of pod services bound to 0.0.0.0 take the source address of
    // the route back to the bridge netns. A UDP server answering a
    // container that asked for the pod's address must answer from that
    // address (conntrack and the container's connected socket match on
    // it), not from 169.254.213.1; so that route prefers the pod's own
    // address, when it has one.
    if let Some(src) = rtnl
        .addresses()?
        .into_iter()
        .map(|a| a.ip)
        .find(|ip| !ip.is_loopback() && !ip.is_link_local())
    {
        rtnl.add_route(&Route {
            dst: Some((BRIDGE_ADDR, 32)),
            oif: Some(index),
            prefsrc: Some(src),
            ..Route::default()
        })?;
    }
    // The kernel decides forwarding by the input device: our veth for
    // outbound packets, the pod's other links for the replies. /proc/sys is
    // read-only in a pod; netlink devconf is not.
    for link in rtnl.links()? {
        if link.name != "lo" {
            rtnl.set_forwarding(link.index, true)?;
        }
    }
    // Published ports DNATed from 127.0.0.1 leave by our veth with a
    // loopback source until they are masqueraded; the kernel routes such
    // packets (and their replies) only where route_localnet is on.
    rtnl.set_route_localnet(index, true)?;
    pod_table(&[]).commit()
}

/// DNATs exactly `forwards`: the pod netns has no routes to the bridges'
/// subnets (they may overlap the cluster's), so each target container gets
/// a /32 route to the bridge netns while it has published ports.
fn forward(forwards: &[Forward], routed: &mut BTreeSet<Ipv4Addr>) -> io::Result<()> {
    let mut rtnl = Rtnl::open()?;
    let oif = rtnl.require(POD_LINK)?;
    let route = |ip: Ipv4Addr| Route {
        dst: Some((ip, 32)),
        gateway: Some(BRIDGE_ADDR),
        oif: Some(oif),
        ..Route::default()
    };
    let wanted: BTreeSet<Ipv4Addr> = forwards.iter().map(|f| *f.to.ip()).collect();
    for ip in wanted.difference(routed) {
        rtnl.replace_route(&route(*ip))?;
    }
    pod_table(forwards).commit()?;
    for ip in routed.difference(&wanted) {
        rtnl.delete_route(&route(*ip))?;
    }
    *routed = wanted;
    Ok(())
}

/// hutch's table in the pod netns, whole: the uplink's masquerade and the
/// published ports' DNAT.
fn pod_table(forwards: &[Forward]) -> Batch {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    let f = nft::FAMILY_IP;
    let mut batch = Batch::new();
    batch.reset_table(f, TABLE);
    batch.add_chain(
        f,
        TABLE,
        &BaseChain {
            name: "postrouting",
            hook: Hook::Postrouting,
            priority: 100,
            kind: "nat",
            accept_by_default: true,
        },
    );
    // Containers' traffic, out of the pod, and back into the bridge netns
    // when a container reaches a published port at the pod's address (so
    // the reply returns through the pod netns, which undoes the DNAT).
    let mut rule = expr::saddr_in(BRIDGE_ADDR, 32, true);
    rule.push(Expr::Masquerade);
    batch.add_rule(f, TABLE, "postrouting", &rule);
    // The pod's own connections to 127.0.0.1:PORT, DNATed to a container.
    let mut rule = expr::saddr_in(Ipv4Addr::LOCALHOST, 8, true);
    rule.extend(expr::oifname(POD_LINK, true));
    rule.push(Expr::Masquerade);
    batch.add_rule(f, TABLE, "postrouting", &rule);
    if forwards.is_empty() {
        return batch;
    }
    for (name, hook) in [
        ("published", Hook::Prerouting),
        ("published_local", Hook::Output),
    ] {
        batch.add_chain(
            f,
            TABLE,
            &BaseChain {
                name,
                hook,
                priority: -100,
                kind: "nat",
                accept_by_default: true,
            },
        );
        for fw in forwards {
            let mut rule = match fw.host_ip {
                Some(ip) if !ip.is_unspecified() => expr::daddr(ip),
                _ => expr::daddr_local(),
            };
            rule.extend(expr::l4proto(match fw.proto {
                Proto::Tcp => TCP,
                Proto::Udp => UDP,
            }));
            rule.extend(expr::dport(fw.host_port));
            rule.extend(expr::dnat_to(*fw.to.ip(), fw.to.port()));
            batch.add_rule(f, TABLE, name, &rule);
        }
    }
    batch
}

fn uplink_down() -> io::Result<()> {
    let mut rtnl = Rtnl::open()?;
    rtnl.delete_link_named(POD_LINK)?;
    let mut batch = Batch::new();
    batch
        .add_table(nft::FAMILY_IP, TABLE)
        .delete_table(nft::FAMILY_IP, TABLE);
    batch.commit()
}
