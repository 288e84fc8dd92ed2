//! The one conntrack query the layer-4 relay needs, over ctnetlink (no
//! `conntrack` binary, no libnetfilter_conntrack): the original destination
//! of a flow that a DNAT rule sent to one of the relay's sockets, found
//! from the flow's reply tuple (the relay's address → the client). For TCP
//! the kernel answers the same question through SO_ORIGINAL_DST; for UDP
//! there is no socket option, so this asks conntrack directly.
//! Constants are from linux/netfilter/nfnetlink_conntrack.h.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use netlink_sys::Socket;

use super::nft::{messages, open, Attrs};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const AF_INET: u8 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// A ctnetlink socket in the network namespace of the thread that opened it.
pub struct Conntrack {
    socket: Socket,
    seq: u32,
}

impl Conntrack {
    /// Opens the socket in the calling thread's network namespace (which
    /// must be the one whose conntrack table is asked).
    pub fn open() -> io::Result<Conntrack> {
        Ok(Conntrack {
            socket: open()?,
            seq: 0,
        })
    }

    /// The original destination of the `proto` (6 TCP, 17 UDP) flow whose
    /// replies go from `local` (where a DNAT sent it) to `peer`.
    pub fn original_destination(
        &mut self,
        proto: u8,
        local: SocketAddrV4,
        peer: SocketAddrV4,
    ) -> io::Result<SocketAddrV4> {
        self.seq = self.seq.wrapping_add(1);
        let request = get_by_reply(self.seq, proto, local, peer);
        self.socket.send(&request, 0)?;
        loop {
            let (reply, _) = self.socket.recv_from_full()?;
            for (kind, seq, payload) in messages(&reply) {
                if seq != self.seq {
                    continue; // a late answer to an earlier question
                }
                if kind == NLMSG_ERROR {
                    let code = payload
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, i32::from_ne_bytes);
                    return Err(match code {
                        0 => io::Error::other("conntrack answered with no entry"),
                        c => io::Error::from_raw_os_error(-c),
                    });
                }
                if kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW {
                    return original_dst(payload.get(4..).unwrap_or_default())
                        .ok_or_else(|| io::Error::other("conntrack entry without its tuple"));
                }
            }
        }
    }
}

/// IPCTNL_MSG_CT_GET for the entry with reply tuple `local` → `peer`.
fn get_by_reply(seq: u32, proto: u8, local: SocketAddrV4, peer: SocketAddrV4) -> Vec<u8> {
    let mut ip = Attrs::new();
    ip.put(CTA_IP_V4_SRC, &local.ip().octets())
        .put(CTA_IP_V4_DST, &peer.ip().octets());
    let mut ports = Attrs::new();
    ports
        .put(CTA_PROTO_NUM, &[proto])
        .put(CTA_PROTO_SRC_PORT, &local.port().to_be_bytes())
        .put(CTA_PROTO_DST_PORT, &peer.port().to_be_bytes());
    let mut tuple = Attrs::new();
    tuple
        .nested(CTA_TUPLE_IP, ip)
        .nested(CTA_TUPLE_PROTO, ports);
    let mut attrs = Attrs::new();
    attrs.nested(CTA_TUPLE_REPLY, tuple);

    let len = 16 + 4 + attrs.0.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[AF_INET, 0, 0, 0]); // nfgenmsg: family, version, res_id
    msg.extend_from_slice(&attrs.0);
    msg
}

/// The attribute `kind` among `attrs`.
fn attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes(attrs.get(..2)?.try_into().ok()?));
        let k = u16::from_ne_bytes(attrs.get(2..4)?.try_into().ok()?) & !NLA_F_NESTED;
        if len < 4 {
            return None;
        }
        if k == kind {
            return attrs.get(4..len);
        }
        attrs = attrs.get((len + 3) & !3..)?;
    }
    None
}

/// CTA_TUPLE_ORIG's destination address and port.
fn original_dst(attrs: &[u8]) -> Option<SocketAddrV4> {
    let orig = attr(attrs, CTA_TUPLE_ORIG)?;
    let ip: [u8; 4] = attr(attr(orig, CTA_TUPLE_IP)?, CTA_IP_V4_DST)?
        .try_into()
        .ok()?;
    let port: [u8; 2] = attr(attr(orig, CTA_TUPLE_PROTO)?, CTA_PROTO_DST_PORT)?
        .try_into()
        .ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::from(ip),
        u16::from_be_bytes(port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_reply_tuple() {
        let local = SocketAddrV4::new(Ipv4Addr::new(172, 17, 0, 1), 15001);
        let peer = SocketAddrV4::new(Ipv4Addr::new(172, 17, 0, 2), 40000);
        let msg = get_by_reply(7, 17, local, peer);
        assert_eq!(
            msg.len(),
            u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize
        );
        let attrs = &msg[20..];
        let tuple = attr(attrs, CTA_TUPLE_REPLY).unwrap_or_default();
        let ip = attr(tuple, CTA_TUPLE_IP).unwrap_or_default();
        assert_eq!(attr(ip, CTA_IP_V4_SRC), Some(&[172, 17, 0, 1][..]));
        assert_eq!(attr(ip, CTA_IP_V4_DST), Some(&[172, 17, 0, 2][..]));
        let proto = attr(tuple, CTA_TUPLE_PROTO).unwrap_or_default();
        assert_eq!(attr(proto, CTA_PROTO_NUM), Some(&[17][..]));
        assert_eq!(
            attr(proto, CTA_PROTO_DST_PORT),
            Some(&40000u16.to_be_bytes()[..])
        );
    }

    #[test]
    fn the_original_destination_is_read_from_the_orig_tuple() {
        // A CT_NEW answer as the kernel builds it: ORIG then REPLY tuples.
        let tuple = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
            let mut ip = Attrs::new();
            ip.put(CTA_IP_V4_SRC, &src).put(CTA_IP_V4_DST, &dst);
            let mut p = Attrs::new();
            p.put(CTA_PROTO_NUM, &[17])
                .put(CTA_PROTO_SRC_PORT, &sport.to_be_bytes())
                .put(CTA_PROTO_DST_PORT, &dport.to_be_bytes());
            let mut t = Attrs::new();
            t.nested(CTA_TUPLE_IP, ip).nested(CTA_TUPLE_PROTO, p);
            t
        };
        let mut a = Attrs::new();
        a.nested(
            CTA_TUPLE_ORIG,
            tuple([172, 17, 0, 2], [10, 244, 7, 2], 40000, 53),
        );
        a.nested(
            CTA_TUPLE_REPLY,
            tuple([172, 17, 0, 1], [172, 17, 0, 2], 15001, 40000),
        );
        assert_eq!(
            original_dst(&a.0),
            Some(SocketAddrV4::new(Ipv4Addr::new(10, 244, 7, 2), 53))
        );
        assert_eq!(original_dst(&[]), None);
    }
}
