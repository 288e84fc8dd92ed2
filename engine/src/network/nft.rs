//! nftables over netlink, built by hand: the few message and expression
//! types hutch needs (tables, base chains, rules with meta/cmp/payload/
//! bitwise/immediate/masq/tproxy), sent as one atomic batch. No `nft`
//! binary, no libnftnl. Constants are from linux/netfilter/nf_tables.h.

use std::io;
use std::net::Ipv4Addr;

use netlink_sys::{Socket, SocketAddr};

const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

/// `NFPROTO_IPV4`: tables of family `ip`.
pub const FAMILY_IP: u8 = 2;

/// Netfilter hooks.
#[derive(Debug, Clone, Copy)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

/// A base chain: hook, priority, type (`filter`, `nat`), policy accept/drop.
#[derive(Debug, Clone)]
pub struct BaseChain {
    pub name: &'static str,
    pub hook: Hook,
    pub priority: i32,
    pub kind: &'static str,
    pub accept_by_default: bool,
}

/// One nftables expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Load a meta key into register 1.
    Meta(MetaKey),
    /// Set a meta key from register 1.
    MetaSet(MetaKey),
    /// Compare register 1 with `data`.
    Cmp {
        equal: bool,
        data: Vec<u8>,
    },
    /// Load `len` bytes at `offset` of the network header into register 1.
    Network {
        offset: u32,
        len: u32,
    },
    /// Load `len` bytes at `offset` of the transport header into register 1.
    Transport {
        offset: u32,
        len: u32,
    },
    /// Register 1 = (register 1 & mask) ^ 0.
    Mask(Vec<u8>),
    /// Register 1 = data.
    Load(Vec<u8>),
    /// Register 2 = data.
    Load2(Vec<u8>),
    /// Register 3 = data.
    Load3(Vec<u8>),
    Verdict {
        accept: bool,
    },
    Masquerade,
    /// TPROXY to the port in register 1 (IPv4).
    Tproxy,
    /// DNAT to the address in register 1 and the port in register 2.
    Dnat,
    /// DNAT to the address in register 1 and a port between registers 2
    /// and 3, which conntrack picks so that every flow's reply tuple is
    /// unique.
    DnatRange,
    /// Register 1 = the route type of the destination address
    /// (`fib daddr type`).
    FibDaddrType,
}

#[derive(Debug, Clone, Copy)]
pub enum MetaKey {
    Mark = 3,
    IifName = 6,
    OifName = 7,
    L4Proto = 16,
}

/// Builders for the matches and actions hutch's rules are made of.
pub mod expr {
    use super::*;

    fn ifname(name: &str) -> Vec<u8> {
        let mut v = name.as_bytes().to_vec();
        v.push(0);
        v
    }

    pub fn iifname(name: &str, equal: bool) -> Vec<Expr> {
        vec![
            Expr::Meta(MetaKey::IifName),
            Expr::Cmp {
                equal,
                data: ifname(name),
            },
        ]
    }

    pub fn oifname(name: &str, equal: bool) -> Vec<Expr> {
        vec![
            Expr::Meta(MetaKey::OifName),
            Expr::Cmp {
                equal,
                data: ifname(name),
            },
        ]
    }

    /// `meta l4proto tcp|udp` (6 or 17).
    pub fn l4proto(proto: u8) -> Vec<Expr> {
        vec![
            Expr::Meta(MetaKey::L4Proto),
            Expr::Cmp {
                equal: true,
                data: vec![proto],
            },
        ]
    }

    fn addr_in(offset: u32, net: Ipv4Addr, prefix: u8, equal: bool) -> Vec<Expr> {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        vec![
            Expr::Network { offset, len: 4 },
            Expr::Mask(mask.to_be_bytes().to_vec()),
            Expr::Cmp {
                equal,
                data: (u32::from(net) & mask).to_be_bytes().to_vec(),
            },
        ]
    }

    /// `ip saddr (!=) net/prefix`.
    pub fn saddr_in(net: Ipv4Addr, prefix: u8, equal: bool) -> Vec<Expr> {
        addr_in(12, net, prefix, equal)
    }

    /// `ip daddr (!=) net/prefix`.
    pub fn daddr_in(net: Ipv4Addr, prefix: u8, equal: bool) -> Vec<Expr> {
        addr_in(16, net, prefix, equal)
    }

    /// `th dport PORT` (TCP and UDP keep it at the same offset).
    pub fn dport(port: u16) -> Vec<Expr> {
        vec![
            Expr::Transport { offset: 2, len: 2 },
            Expr::Cmp {
                equal: true,
                data: port.to_be_bytes().to_vec(),
            },
        ]
    }

    pub fn set_mark(mark: u32) -> Vec<Expr> {
        vec![
            Expr::Load(mark.to_ne_bytes().to_vec()),
            Expr::MetaSet(MetaKey::Mark),
        ]
    }

    pub fn tproxy_to(port: u16) -> Vec<Expr> {
        vec![Expr::Load(port.to_be_bytes().to_vec()), Expr::Tproxy]
    }

    /// `dnat to IP:LO-HI`.
    pub fn dnat_range(ip: Ipv4Addr, lo: u16, hi: u16) -> Vec<Expr> {
        vec![
            Expr::Load(ip.octets().to_vec()),
            Expr::Load2(lo.to_be_bytes().to_vec()),
            Expr::Load3(hi.to_be_bytes().to_vec()),
            Expr::DnatRange,
        ]
    }

    /// `fib daddr type local`: the packet is for one of this netns's own
    /// addresses (any of them, loopback included), as `-p PORT` means.
    pub fn daddr_local() -> Vec<Expr> {
        const RTN_LOCAL: u32 = 2;
        vec![
            Expr::FibDaddrType,
            Expr::Cmp {
                equal: true,
                data: RTN_LOCAL.to_ne_bytes().to_vec(),
            },
        ]
    }

    /// `ip daddr IP`.
    pub fn daddr(ip: Ipv4Addr) -> Vec<Expr> {
        daddr_in(ip, 32, true)
    }

    pub fn dnat_to(ip: Ipv4Addr, port: u16) -> Vec<Expr> {
        vec![
            Expr::Load(ip.octets().to_vec()),
            Expr::Load2(port.to_be_bytes().to_vec()),
            Expr::Dnat,
        ]
    }
}

/// Netlink attribute encoding (also used by the conntrack client).
pub(super) struct Attrs(pub(super) Vec<u8>);

impl Attrs {
    pub(super) fn new() -> Attrs {
        Attrs(Vec::new())
    }

    pub(super) fn put(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0
            .extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v)
    }

    pub(super) fn be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    pub(super) fn nested(&mut self, kind: u16, inner: Attrs) -> &mut Self {
        self.put(kind | NLA_F_NESTED, &inner.0)
    }
}

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
const REG_3: u32 = 3;

fn data_value(bytes: &[u8]) -> Attrs {
    let mut a = Attrs::new();
    a.put(1, bytes); // NFTA_DATA_VALUE
    a
}

fn encode_expr(e: &Expr) -> Attrs {
    let (name, data) = match e {
        Expr::Meta(key) => {
            let mut d = Attrs::new();
            d.be32(2, *key as u32).be32(1, REG_1); // KEY, DREG
            ("meta", d)
        }
        Expr::MetaSet(key) => {
            let mut d = Attrs::new();
            d.be32(2, *key as u32).be32(3, REG_1); // KEY, SREG
            ("meta", d)
        }
        Expr::Cmp { equal, data } => {
            let mut d = Attrs::new();
            d.be32(1, REG_1).be32(2, u32::from(!equal)); // SREG, OP (EQ 0, NEQ 1)
            d.nested(3, data_value(data));
            ("cmp", d)
        }
        Expr::Network { offset, len } | Expr::Transport { offset, len } => {
            let base = if matches!(e, Expr::Network { .. }) {
                1
            } else {
                2
            };
            let mut d = Attrs::new();
            d.be32(1, REG_1)
                .be32(2, base)
                .be32(3, *offset)
                .be32(4, *len);
            ("payload", d)
        }
        Expr::Mask(mask) => {
            let mut d = Attrs::new();
            let len = u32::try_from(mask.len()).unwrap_or(0);
            d.be32(1, REG_1).be32(2, REG_1).be32(3, len);
            d.nested(4, data_value(mask));
            d.nested(5, data_value(&vec![0u8; mask.len()]));
            ("bitwise", d)
        }
        Expr::Load(bytes) | Expr::Load2(bytes) | Expr::Load3(bytes) => {
            let reg = match e {
                Expr::Load(_) => REG_1,
                Expr::Load2(_) => REG_2,
                _ => REG_3,
            };
            let mut d = Attrs::new();
            d.be32(1, reg).nested(2, data_value(bytes));
            ("immediate", d)
        }
        Expr::Verdict { accept } => {
            let mut code = Attrs::new();
            code.be32(1, u32::from(*accept)); // NFTA_VERDICT_CODE: NF_DROP 0, NF_ACCEPT 1
            let mut data = Attrs::new();
            data.nested(2, code); // NFTA_DATA_VERDICT
            let mut d = Attrs::new();
            d.be32(1, REG_VERDICT).nested(2, data);
            ("immediate", d)
        }
        Expr::Masquerade => ("masq", Attrs::new()),
        Expr::Tproxy => {
            let mut d = Attrs::new();
            d.be32(1, u32::from(FAMILY_IP)).be32(3, REG_1); // FAMILY, REG_PORT
            ("tproxy", d)
        }
        Expr::Dnat => {
            let mut d = Attrs::new();
            // TYPE dnat, FAMILY, REG_ADDR_MIN, REG_PROTO_MIN
            d.be32(1, 1)
                .be32(2, u32::from(FAMILY_IP))
                .be32(3, REG_1)
                .be32(5, REG_2);
            ("nat", d)
        }
        Expr::DnatRange => {
            let mut d = Attrs::new();
            // TYPE dnat, FAMILY, REG_ADDR_MIN, REG_PROTO_MIN, REG_PROTO_MAX
            d.be32(1, 1)
                .be32(2, u32::from(FAMILY_IP))
                .be32(3, REG_1)
                .be32(5, REG_2)
                .be32(6, REG_3);
            ("nat", d)
        }
        Expr::FibDaddrType => {
            let mut d = Attrs::new();
            // DREG, RESULT (NFT_FIB_RESULT_ADDRTYPE 3), FLAGS (NFTA_FIB_F_DADDR 2)
            d.be32(1, REG_1).be32(2, 3).be32(3, 2);
            ("fib", d)
        }
    };
    let mut a = Attrs::new();
    a.str(1, name).nested(2, data); // NFTA_EXPR_NAME, NFTA_EXPR_DATA
    a
}

/// An atomic batch of nf_tables changes.
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    acks: Vec<u32>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq: 0,
            acks: Vec::new(),
        };
        b.msg(
            NFNL_MSG_BATCH_BEGIN,
            0,
            0,
            NFNL_SUBSYS_NFTABLES,
            &Attrs::new(),
        );
        b
    }

    fn msg(&mut self, kind: u16, flags: u16, family: u8, res_id: u16, attrs: &Attrs) {
        self.seq += 1;
        let len = 16 + 4 + attrs.0.len();
        self.buf
            .extend_from_slice(&u32::try_from(len).unwrap_or(0).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf
            .extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self.buf.extend_from_slice(&attrs.0);
        if flags & NLM_F_ACK != 0 {
            self.acks.push(self.seq);
        }
    }

    fn nft(&mut self, kind: u16, flags: u16, family: u8, attrs: &Attrs) {
        self.msg(
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            NLM_F_ACK | flags,
            family,
            0,
            attrs,
        );
    }

    pub fn add_table(&mut self, family: u8, table: &str) -> &mut Self {
        let mut a = Attrs::new();
        a.str(1, table);
        self.nft(NFT_MSG_NEWTABLE, NLM_F_CREATE, family, &a);
        self
    }

    pub fn delete_table(&mut self, family: u8, table: &str) -> &mut Self {
        let mut a = Attrs::new();
        a.str(1, table);
        self.nft(NFT_MSG_DELTABLE, 0, family, &a);
        self
    }

    /// Replaces `table` whether or not it exists: the add makes the delete
    /// succeed either way, all in the same transaction.
    pub fn reset_table(&mut self, family: u8, table: &str) -> &mut Self {
        self.add_table(family, table)
            .delete_table(family, table)
            .add_table(family, table)
    }

    pub fn add_chain(&mut self, family: u8, table: &str, chain: &BaseChain) -> &mut Self {
        let mut hook = Attrs::new();
        hook.be32(1, chain.hook as u32)
            .be32(2, chain.priority as u32);
        let mut a = Attrs::new();
        a.str(1, table).str(3, chain.name).nested(4, hook);
        a.be32(5, u32::from(chain.accept_by_default));
        a.str(7, chain.kind);
        self.nft(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, &a);
        self
    }

    pub fn add_rule(&mut self, family: u8, table: &str, chain: &str, exprs: &[Expr]) -> &mut Self {
        let mut list = Attrs::new();
        for e in exprs {
            list.nested(1, encode_expr(e)); // NFTA_LIST_ELEM
        }
        let mut a = Attrs::new();
        a.str(1, table).str(2, chain).nested(4, list);
        self.nft(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family, &a);
        self
    }

    /// Commits the batch in the calling thread's network namespace.
    pub fn commit(mut self) -> io::Result<()> {
        self.msg(
            NFNL_MSG_BATCH_END,
            0,
            0,
            NFNL_SUBSYS_NFTABLES,
            &Attrs::new(),
        );
        let socket = open()?;
        socket.send(&self.buf, 0)?;
        let mut pending = self.acks.len();
        while pending > 0 {
            let (reply, _) = socket.recv_from_full()?;
            for (kind, seq, payload) in messages(&reply) {
                if kind != NLMSG_ERROR || !self.acks.contains(&seq) {
                    continue;
                }
                let code = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                pending = pending.saturating_sub(1);
            }
        }
        Ok(())
    }
}

pub(super) fn open() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// `(type, seq, payload)` of each netlink message in a datagram.
pub(super) fn messages(buf: &[u8]) -> Vec<(u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let word = |at: usize| buf.get(at..at + 4).and_then(|b| b.try_into().ok());
        let len = word(off).map_or(0, u32::from_ne_bytes) as usize;
        let kind = buf
            .get(off + 4..off + 6)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_ne_bytes);
        let seq = word(off + 8).map_or(0, u32::from_ne_bytes);
        if len < 16 || off + len > buf.len() {
            break;
        }
        out.push((kind, seq, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Names of the nftables tables of `family` in the calling thread's netns.
pub fn tables(family: u8) -> io::Result<Vec<String>> {
    let socket = open()?;
    let mut msg = Vec::new();
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[family, 0, 0, 0]);
    socket.send(&msg, 0)?;
    let mut names = Vec::new();
    loop {
        let (reply, _) = socket.recv_from_full()?;
        for (kind, _, payload) in messages(&reply) {
            match kind {
                3 => return Ok(names), // NLMSG_DONE
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, i32::from_ne_bytes);
                    return if code == 0 {
                        Ok(names)
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                _ => {
                    if let Some(name) = table_name(payload.get(4..).unwrap_or_default()) {
                        names.push(name);
                    }
                }
            }
        }
    }
}

/// NFTA_TABLE_NAME of a table message's attributes.
fn table_name(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes(attrs.get(..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(attrs.get(2..4)?.try_into().ok()?) & !NLA_F_NESTED;
        if len < 4 {
            return None;
        }
        if kind == 1 {
            let raw = attrs.get(4..len)?;
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            return String::from_utf8(raw[..end].to_vec()).ok();
        }
        attrs = attrs.get((len + 3) & !3..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut a = Attrs::new();
        a.str(1, "ab");
        assert_eq!(a.0, vec![7, 0, 1, 0, b'a', b'b', 0, 0]);
    }

    #[test]
    fn prefix_matches_mask_the_address() {
        let e = expr::daddr_in(Ipv4Addr::new(172, 18, 3, 4), 16, false);
        match (&e[1], &e[2]) {
            (Expr::Mask(m), Expr::Cmp { equal, data }) => {
                assert_eq!(m, &vec![255, 255, 0, 0]);
                assert_eq!(data, &vec![172, 18, 0, 0]);
                assert!(!equal);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end() {
        let mut b = Batch::new();
        b.add_table(FAMILY_IP, "t");
        let kinds: Vec<u16> = messages(&b.buf).iter().map(|m| m.0).collect();
        assert_eq!(kinds, vec![NFNL_MSG_BATCH_BEGIN, (10 << 8)]);
        assert_eq!(b.acks, vec![2]);
    }
}
