//! The embedded DNS server for user-defined networks, as Docker's: each
//! container on such a network finds a resolver at 127.0.0.11:53 *inside its
//! own network namespace* (the engine, which owns that namespace, binds the
//! socket there), so resolv.conf says `nameserver 127.0.0.11` and no NAT
//! rule is needed. Names are container names, network aliases, short IDs
//! and compose service names on the networks the asking container shares
//! with them; several addresses for one name are rotated (round robin).
//! Anything else is forwarded to the pod's resolvers from the pod's network
//! namespace, where the daemon's threads live.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// Where containers find the embedded resolver.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// Names per network: network ID → lowercased name → addresses.
#[derive(Debug, Default)]
pub struct Names {
    by_network: BTreeMap<String, BTreeMap<String, BTreeSet<Ipv4Addr>>>,
}

impl Names {
    pub fn add(&mut self, network: &str, names: &[String], ip: Ipv4Addr) {
        let table = self.by_network.entry(network.to_owned()).or_default();
        for name in names.iter().filter(|n| !n.is_empty()) {
            table.entry(name.to_lowercase()).or_default().insert(ip);
        }
    }

    pub fn remove(&mut self, network: &str, ip: Ipv4Addr) {
        if let Some(table) = self.by_network.get_mut(network) {
            table.retain(|_, ips| {
                ips.remove(&ip);
                !ips.is_empty()
            });
        }
    }

    pub fn drop_network(&mut self, network: &str) {
        self.by_network.remove(network);
    }

    /// Addresses of `name` on any of `networks`.
    pub fn lookup(&self, networks: &[String], name: &str) -> Vec<Ipv4Addr> {
        let name = name.trim_end_matches('.').to_lowercase();
        let mut out = BTreeSet::new();
        for net in networks {
            if let Some(ips) = self.by_network.get(net).and_then(|t| t.get(&name)) {
                out.extend(ips.iter().copied());
            }
        }
        out.into_iter().collect()
    }
}

/// The shared name table and the pod's resolvers.
#[derive(Debug)]
pub struct Dns {
    pub names: RwLock<Names>,
    upstream: Vec<SocketAddr>,
    turn: AtomicUsize,
}

impl Dns {
    pub fn new(upstream: Vec<SocketAddr>) -> Dns {
        Dns {
            names: RwLock::default(),
            upstream,
            turn: AtomicUsize::new(0),
        }
    }

    /// Serves queries arriving on `sock` (bound in a container's netns) for
    /// a container on `networks`, on a thread of its own, until the socket
    /// is shut down.
    pub fn serve(
        self: &Arc<Self>,
        sock: UdpSocket,
        networks: Arc<RwLock<Vec<String>>>,
    ) -> io::Result<()> {
        let dns = self.clone();
        std::thread::Builder::new()
            .name("hutch-dns".into())
            .spawn(move || {
                let sock = Arc::new(sock);
                let mut buf = vec![0u8; 4096];
                while let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let nets = networks.read().map(|n| n.clone()).unwrap_or_default();
                    dns.answer(&sock, &buf[..n], from, &nets);
                }
            })?;
        Ok(())
    }

    fn answer(&self, sock: &Arc<UdpSocket>, query: &[u8], from: SocketAddr, networks: &[String]) {
        let Ok(msg) = Message::from_vec(query) else {
            return;
        };
        match self.local_answer(&msg, networks) {
            Some(reply) => {
                if let Ok(bytes) = reply.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
            None => self.forward(sock.clone(), query.to_vec(), from, msg),
        }
    }

    /// The reply for names the engine knows; None to forward.
    fn local_answer(&self, msg: &Message, networks: &[String]) -> Option<Message> {
        let query = msg.queries.first()?;
        let name = query.name().to_ascii();
        let ips = self.names.read().ok()?.lookup(networks, &name);
        if ips.is_empty() {
            return None;
        }
        let mut reply = Message::response(msg.metadata.id, msg.metadata.op_code);
        reply.metadata.message_type = MessageType::Response;
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = msg.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_query(query.clone());
        if query.query_type() == RecordType::A {
            let start = self.turn.fetch_add(1, Ordering::Relaxed) % ips.len();
            for ip in ips.iter().cycle().skip(start).take(ips.len()) {
                reply.add_answer(Record::from_rdata(
                    query.name().clone(),
                    TTL,
                    RData::A(A(*ip)),
                ));
            }
        }
        // Other types of a known name: an empty NOERROR answer, so clients
        // asking AAAA first do not fall through to the upstream resolvers.
        Some(reply)
    }

    /// Forwards the query to the pod's resolvers on a thread of its own.
    fn forward(&self, sock: Arc<UdpSocket>, query: Vec<u8>, from: SocketAddr, msg: Message) {
        let upstream = self.upstream.clone();
        let spawned = std::thread::Builder::new()
            .name("hutch-dns-fwd".into())
            .spawn(move || {
                let reply = upstream
                    .iter()
                    .find_map(|server| ask(*server, &query).ok())
                    .or_else(|| {
                        let mut m = Message::error_msg(
                            msg.metadata.id,
                            msg.metadata.op_code,
                            ResponseCode::ServFail,
                        );
                        m.queries = msg.queries.clone();
                        m.to_vec().ok()
                    });
                if let Some(bytes) = reply {
                    let _ = sock.send_to(&bytes, from);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(%e, "cannot forward a DNS query");
        }
    }
}

fn ask(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    sock.set_read_timeout(Some(FORWARD_TIMEOUT))?;
    sock.connect(server)?;
    sock.send(query)?;
    let mut buf = vec![0u8; 65535];
    let n = sock.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn query(name: &str) -> Message {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(
            Name::from_str(name).expect("valid name"),
            RecordType::A,
        ));
        m
    }

    #[test]
    fn names_resolve_per_network_and_rotate() {
        let dns = Dns::new(Vec::new());
        {
            let mut names = dns.names.write().expect("lock");
            names.add(
                "n1",
                &["web".into(), "Alias".into()],
                Ipv4Addr::new(10, 0, 0, 2),
            );
            names.add("n1", &["web".into()], Ipv4Addr::new(10, 0, 0, 3));
            names.add("n2", &["db".into()], Ipv4Addr::new(10, 1, 0, 2));
        }
        let nets = vec!["n1".to_string()];
        let first = dns.local_answer(&query("web."), &nets).expect("known");
        let second = dns.local_answer(&query("web."), &nets).expect("known");
        let a =
            |m: &Message| -> Vec<String> { m.answers.iter().map(|r| r.data.to_string()).collect() };
        assert_eq!(a(&first).len(), 2);
        assert_ne!(a(&first), a(&second));
        assert_eq!(
            a(&dns.local_answer(&query("alias"), &nets).expect("alias")).len(),
            1
        );
        assert!(dns.local_answer(&query("db"), &nets).is_none());
        dns.names
            .write()
            .expect("lock")
            .remove("n1", Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(
            a(&dns.local_answer(&query("web"), &nets).expect("known")).len(),
            1
        );
    }
}
