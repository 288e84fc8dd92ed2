//! A small synchronous rtnetlink client: links, addresses, routes and rules
//! in the network namespace the socket was opened in. The socket keeps that
//! namespace for its whole life, wherever the thread using it goes next, so
//! callers open one from a thread that has entered the namespace (see
//! [`super::netns`]) and may then use it from anywhere.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `IFLA_INET_CONF` inside `IFLA_AF_SPEC`/`AF_INET` (linux/if_link.h).
const IFLA_INET_CONF: u16 = 1;
/// `IPV4_DEVCONF_FORWARDING` (linux/ip.h, 1-based).
const IPV4_DEVCONF_FORWARDING: u16 = 1;
/// `IPV4_DEVCONF_ROUTE_LOCALNET` (linux/ip.h, 1-based).
const IPV4_DEVCONF_ROUTE_LOCALNET: u16 = 26;

/// One link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
}

/// One IPv4 address as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// A route to add.
#[derive(Debug, Clone, Default)]
pub struct Route {
    pub dst: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub table: Option<u32>,
    /// A `local` route (delivered to this host), as TPROXY needs.
    pub local: bool,
    /// The source address for packets this host sends along the route.
    pub prefsrc: Option<Ipv4Addr>,
}

/// A route-netlink socket bound to the caller's network namespace.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { socket, seq: 0 })
    }

    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link {
                    index: l.header.index,
                    name: l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?,
                }),
                _ => None,
            })
            .collect())
    }

    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(req))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(Address {
                    index: a.header.index,
                    prefix: a.header.prefix_len,
                    ip: a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    })?,
                }),
                _ => None,
            })
            .collect())
    }

    /// The index of the link called `name`: one RTM_GETLINK by name (a
    /// dump would grow with every container's veth in the bridge netns).
    pub fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        let seq = self.send(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK)?;
        match self.collect(seq) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of `name`, or NotFound.
    pub fn require(&mut self, name: &str) -> io::Result<u32> {
        self.index(name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link named {name}")))
    }

    /// The smallest MTU of the interfaces the IPv4 default routes leave
    /// by (the main table), or `None` without a default route.
    pub fn default_route_mtu(&mut self) -> io::Result<Option<u32>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let routes = self.dump(RouteNetlinkMessage::GetRoute(req))?;
        let oifs: Vec<u32> = routes
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.destination_prefix_length == 0
                        && r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect();
        if oifs.is_empty() {
            return Ok(None);
        }
        let links = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(links
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) if oifs.contains(&l.header.index) => {
                    l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::Mtu(mtu) => Some(*mtu),
                        _ => None,
                    })
                }
                _ => None,
            })
            .min())
    }

    pub fn add_bridge(&mut self, name: &str, mac: Option<[u8; 6]>, mtu: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// A veth pair `name` here and `peer` in `peer_netns` (here when None),
    /// the peer with hardware address `peer_mac`.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
        peer_mac: Option<[u8; 6]>,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = one_queue(vec![LinkAttribute::IfName(peer.to_owned())]);
        if let Some(fd) = peer_netns {
            peer_msg
                .attributes
                .push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        if let Some(mac) = peer_mac {
            peer_msg
                .attributes
                .push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut msg = LinkMessage::default();
        msg.attributes = one_queue(vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ]);
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// [`Rtnl::add_veth`] with this end enslaved to `master` and up, in the
    /// same request (one round trip instead of three); both ends `mtu`.
    pub fn add_veth_on(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        peer_mac: [u8; 6],
        master: u32,
        mtu: u32,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = one_queue(vec![
            LinkAttribute::IfName(peer.to_owned()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::Mtu(mtu),
        ]);
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes = one_queue(vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Controller(master),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ]);
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// Configures a container's end of a veth in one batch: loopback up,
    /// the address, the link up and (with `gateway`) the default route,
    /// sent together and acknowledged in order.
    pub fn configure_endpoint(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let mut batch = vec![
            (up_msg(LOOPBACK_INDEX), 0),
            (no_ipv6_link_local_msg(index), 0),
            (address_msg(index, ip, prefix), NLM_F_CREATE | NLM_F_EXCL),
            (up_msg(index), 0),
        ];
        if let Some(gw) = gateway {
            let route = Route {
                gateway: Some(gw),
                ..Route::default()
            };
            batch.push((route_msg(&route), NLM_F_CREATE | NLM_F_EXCL));
        }
        let mut seqs = Vec::with_capacity(batch.len());
        for (msg, flags) in batch {
            seqs.push(self.send(msg, NLM_F_ACK | flags)?);
        }
        // Acknowledgements come in request order; the first error wins.
        for seq in seqs {
            self.collect(seq)?;
        }
        Ok(())
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(up_msg(index), 0)
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::Controller(master)];
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Turns IPv4 forwarding on for packets arriving on this link. The
    /// kernel decides forwarding by the input device's devconf, which
    /// netlink can set even where /proc/sys is read-only (as in pods).
    pub fn set_forwarding(&mut self, index: u32, on: bool) -> io::Result<()> {
        self.set_devconf(index, IPV4_DEVCONF_FORWARDING, on)
    }

    /// `route_localnet`: lets 127.0.0.0/8 addresses be routed through the
    /// link, so local traffic DNATed away from loopback can leave by it
    /// and its replies come back (Docker sets it for the same reason when
    /// it DNATs localhost to containers).
    pub fn set_route_localnet(&mut self, index: u32, on: bool) -> io::Result<()> {
        self.set_devconf(index, IPV4_DEVCONF_ROUTE_LOCALNET, on)
    }

    /// Sets one IPv4 per-device setting by netlink (IFLA_INET_CONF), since
    /// /proc/sys is read-only in a pod.
    fn set_devconf(&mut self, index: u32, key: u16, on: bool) -> io::Result<()> {
        let mut conf = Vec::with_capacity(8);
        conf.extend_from_slice(&8u16.to_ne_bytes());
        conf.extend_from_slice(&key.to_ne_bytes());
        conf.extend_from_slice(&u32::from(on).to_ne_bytes());
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::Other(DefaultNla::new(IFLA_INET_CONF, conf)),
        ])])];
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.request(address_msg(index, ip, prefix), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub fn add_route(&mut self, route: &Route) -> io::Result<()> {
        self.request(route_msg(route), NLM_F_CREATE | NLM_F_EXCL)
    }

    /// `ip route replace`.
    pub fn replace_route(&mut self, route: &Route) -> io::Result<()> {
        self.request(route_msg(route), NLM_F_CREATE | NLM_F_REPLACE)
    }

    /// `ip route del`; a route already gone is not an error.
    pub fn delete_route(&mut self, route: &Route) -> io::Result<()> {
        let RouteNetlinkMessage::NewRoute(msg) = route_msg(route) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        match self.request(RouteNetlinkMessage::DelRoute(msg), 0) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// `ip rule add fwmark MARK lookup TABLE`.
    pub fn add_fwmark_rule(&mut self, mark: u32, table: u32, priority: u32) -> io::Result<()> {
        let mut msg = RuleMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.action = RuleAction::ToTable;
        msg.header.table = u8::try_from(table).unwrap_or(0);
        msg.attributes = vec![
            RuleAttribute::FwMark(mark),
            RuleAttribute::FwMask(u32::MAX),
            RuleAttribute::Table(table),
            RuleAttribute::Priority(priority),
        ];
        self.request(RouteNetlinkMessage::NewRule(msg), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0)
    }

    /// Deletes the link called `name` if there is one.
    pub fn delete_link_named(&mut self, name: &str) -> io::Result<()> {
        match self.index(name)? {
            Some(index) => self.delete_link(index),
            None => Ok(()),
        }
    }

    fn send(&mut self, payload: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, payload: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let seq = self.send(payload, NLM_F_ACK | flags)?;
        self.collect(seq).map(drop)
    }

    fn dump(&mut self, payload: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(payload, NLM_F_DUMP)?;
        self.collect(seq)
    }

    /// Reads replies to `seq` until the ack, an error or the end of a dump.
    fn collect(&mut self, seq: u32) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        loop {
            let (reply, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < reply.len() {
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..])
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let len = usize::try_from(parsed.header.length).unwrap_or(0);
                if parsed.header.sequence_number == seq {
                    match parsed.payload {
                        NetlinkPayload::Error(err) => {
                            return match err.code {
                                None => Ok(out),
                                Some(_) => Err(err.to_io()),
                            };
                        }
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }
}

/// The loopback device's index in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// `attributes` with one transmit and one receive queue asked for. A veth
/// made without them gets a queue per possible CPU, and the driver cuts
/// each end down to one right after registering it (the one queue a veth
/// uses by default, as Docker's have): each cut of the transmit queues
/// waits for an expedited RCU grace period (`synchronize_net` in
/// `netif_set_real_num_tx_queues`). Asking for one at once saved ~120 us
/// of a ~360 us veth creation on this 2-core machine, more on a busy
/// many-core node.
fn one_queue(mut attributes: Vec<LinkAttribute>) -> Vec<LinkAttribute> {
    attributes.push(LinkAttribute::NumTxQueues(1));
    attributes.push(LinkAttribute::NumRxQueues(1));
    attributes
}

fn up_msg(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    RouteNetlinkMessage::SetLink(msg)
}

/// No IPv6 link-local address (nor its duplicate address detection) when
/// the link comes up: hutch's networks are IPv4-only, and Docker turns
/// IPv6 off on the interfaces of containers on such networks, so an
/// `ip addr` in the container shows the same. (`disable_ipv6` itself is a
/// /proc/sys write, read-only in a pod; the address generation mode is
/// netlink's.)
fn no_ipv6_link_local_msg(index: u32) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes = vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
        vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
    )])];
    RouteNetlinkMessage::SetLink(msg)
}

fn address_msg(index: u32, ip: Ipv4Addr, prefix: u8) -> RouteNetlinkMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix;
    msg.header.index = index;
    msg.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(ip)),
        AddressAttribute::Address(IpAddr::V4(ip)),
    ];
    if prefix < 31 {
        let host_bits = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let broadcast = Ipv4Addr::from(u32::from(ip) | host_bits);
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
    }
    RouteNetlinkMessage::NewAddress(msg)
}

fn route_msg(route: &Route) -> RouteNetlinkMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.kind = if route.local {
        RouteType::Local
    } else {
        RouteType::Unicast
    };
    msg.header.scope = if route.local {
        RouteScope::Host
    } else if route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if let Some((dst, len)) = route.dst {
        msg.header.destination_prefix_length = len;
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    }
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(src) = route.prefsrc {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
    }
    if let Some(table) = route.table {
        msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        msg.attributes.push(RouteAttribute::Table(table));
    }
    RouteNetlinkMessage::NewRoute(msg)
}
