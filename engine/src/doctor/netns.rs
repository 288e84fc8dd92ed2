//! The pod's network namespace: who owns it, and whether the kernel lets us
//! add links to it (the kernel uplink: a veth from the bridge netns, NAT).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

use super::child::{At, Failure, Sandbox};
use super::report::{Check, Status};

/// Who owns the network namespace we run in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Our own user namespace (containerd 2.x creates the pod netns so).
    Pod,
    /// A user namespace above ours: the node's initial one, typically.
    Ancestor,
    Unknown(String),
}

impl Owner {
    pub fn name(&self) -> &'static str {
        match self {
            Owner::Pod => "pod",
            Owner::Ancestor => "ancestor",
            Owner::Unknown(_) => "unknown",
        }
    }
}

/// NS_GET_USERNS on our netns: the kernel answers EPERM when the owner is
/// outside our user namespace (an ancestor).
pub fn owner() -> Owner {
    let net = match File::open("/proc/self/ns/net") {
        Ok(f) => f,
        Err(e) => return Owner::Unknown(format!("open /proc/self/ns/net: {e}")),
    };
    // SAFETY: NS_GET_USERNS takes no argument and returns a new fd or -1.
    let fd = unsafe { libc::ioctl(net.as_raw_fd(), libc::NS_GET_USERNS as _) };
    if fd < 0 {
        return match Errno::last() {
            Errno::EPERM => Owner::Ancestor,
            e => Owner::Unknown(format!("ioctl(NS_GET_USERNS): {e}")),
        };
    }
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    let owner = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    match (owner.metadata(), std::fs::metadata("/proc/self/ns/user")) {
        (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev() => Owner::Pod,
        // Owned by a namespace we can see that is not ours: one below us
        // cannot own the netns we live in, so it is above.
        (Ok(_), Ok(_)) => Owner::Ancestor,
        (Err(e), _) | (_, Err(e)) => Owner::Unknown(format!("stat user namespaces: {e}")),
    }
}

/// `netns.owner`.
pub fn check_owner(owner: &Owner) -> Check {
    let (status, detail) = match owner {
        Owner::Pod => (
            Status::Ok,
            "owned by the pod's user namespace: NET_ADMIN in the pod applies to it".to_owned(),
        ),
        Owner::Ancestor => (
            Status::Missing,
            "owned by a user namespace above the pod's (the node's): no capability in \
             the pod applies to it"
                .to_owned(),
        ),
        Owner::Unknown(why) => (Status::Missing, why.clone()),
    };
    Check::new(
        "netns.owner",
        "owner of the pod's network namespace",
        status,
        detail,
    )
    .blocks("the kernel uplink (veth + NAT into the pod netns): the L4 relay is used")
    .fix(
        "# node: a runtime that creates the pod netns inside the pod's user namespace \
             (containerd >= 2.0)",
    )
}

/// `netns.link`: a trial veth pair in the pod's netns, deleted again.
pub fn check_link() -> Check {
    let outcome = Sandbox::here().run(|| {
        let name = format!("hd{}", std::process::id());
        let peer = format!("{name}p");
        add_veth(&name, &peer)?;
        delete_link(&name)
    });
    let (status, detail) = match outcome {
        Ok(()) => (
            Status::Ok,
            "created and deleted a veth pair in the pod's network namespace".to_owned(),
        ),
        Err(failure) => (Status::Missing, failure.to_string()),
    };
    Check::new(
        "netns.link",
        "links in the pod's network namespace",
        status,
        detail,
    )
    .blocks("the kernel uplink (veth + NAT into the pod netns): the L4 relay is used")
    .fix(
        "\
securityContext:
  capabilities: {add: [NET_ADMIN]}
# and a runtime that creates the pod netns inside the pod's user namespace (containerd >= 2.0)",
    )
}

fn add_veth(name: &str, peer: &str) -> Result<(), Failure> {
    let mut peer_msg = LinkMessage::default();
    peer_msg.attributes = vec![LinkAttribute::IfName(peer.to_owned())];
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]),
    ];
    request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .at("create a veth pair (RTM_NEWLINK)")
}

fn delete_link(name: &str) -> Result<(), Failure> {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![LinkAttribute::IfName(name.to_owned())];
    request(RouteNetlinkMessage::DelLink(msg), 0).at("delete the veth pair (RTM_DELLINK)")
}

/// Sends one request and waits for its acknowledgement.
fn request(payload: RouteNetlinkMessage, flags: u16) -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(payload));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    loop {
        let (reply, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < reply.len() {
            let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[offset..])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let len = usize::try_from(parsed.header.length).unwrap_or(0);
            if let NetlinkPayload::Error(err) = parsed.payload {
                return match err.code {
                    None => Ok(()),
                    Some(_) => Err(err.to_io()),
                };
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}
