//! Published ports: listeners in the pod's network namespace (where the
//! daemon's threads live, so `localhost:<port>` works in the pod), each
//! connection or UDP flow proxied to the container's address from the
//! bridge netns. Ports below 1024 are bound by the pod-level parent, which
//! holds CAP_NET_BIND_SERVICE in the pod.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::sys::socket::{shutdown, Shutdown as How};

use super::netns::Worker;
use super::podside::PodParent;
use super::state::{PortBinding, Proto};
use super::{sock, splice, udp};

/// A port as requested (`-p [IP:][HOST:]CONTAINER[/PROTO]`, `-P`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    /// None or 0: a random port, resolved when bound.
    pub host_port: Option<u16>,
}

/// Parses Docker's `-p` syntax, ranges included, into single ports.
pub fn parse_publish(spec: &str) -> Result<Vec<PortRequest>, String> {
    let bad = |why: &str| format!("invalid port specification {spec:?}: {why}");
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?}"))),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = match rest.strip_prefix('[') {
        Some(v6) => {
            let (ip, tail) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let mut p = vec![ip];
            p.extend(tail.trim_start_matches(':').split(':'));
            p
        }
        None => rest.split(':').collect(),
    };
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [ip, h, c] => (Some(*ip), *h, *c),
        _ => return Err(bad("too many colons")),
    };
    let host_ip = match ip.filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse().map_err(|_| bad("bad host IP"))?),
        None => None,
    };
    let range = |s: &str| -> Result<(u16, u16), String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u16 = a.parse().map_err(|_| bad("bad port"))?;
        let b: u16 = b.parse().map_err(|_| bad("bad port"))?;
        if b < a {
            return Err(bad("reversed range"));
        }
        Ok((a, b))
    };
    let (c0, c1) = range(container)?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(range(host)?)
    };
    let count = c1 - c0;
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != count && h0 != h1 {
            return Err(bad("host and container ranges differ in size"));
        }
    }
    Ok((0..=count)
        .map(|i| PortRequest {
            container_port: c0 + i,
            proto,
            host_ip,
            host_port: hosts.map(|(h0, h1)| if h0 == h1 { h0 } else { h0 + i }),
        })
        .collect())
}

/// The listeners of one container; dropping them stops the proxies.
#[derive(Debug, Default)]
pub struct Published {
    sockets: Vec<OwnedFd>,
}

impl Drop for Published {
    fn drop(&mut self) {
        // Wakes the proxy threads blocked on these sockets; they exit.
        for fd in &self.sockets {
            let _ = shutdown(std::os::fd::AsRawFd::as_raw_fd(fd), How::Both);
        }
    }
}

impl Published {
    /// Binds each port in the pod netns (a fixed host port from `previous`
    /// when it was resolved before, so ports survive restarts) and starts
    /// proxying to `target` through sockets made by `bridge`.
    pub fn start(
        requests: &[PortRequest],
        previous: &[PortBinding],
        target: Ipv4Addr,
        bridge: &Arc<Worker>,
        parent: Option<&PodParent>,
    ) -> io::Result<(Published, Vec<PortBinding>)> {
        let mut published = Published::default();
        let mut bindings: Vec<PortBinding> = Vec::new();
        // Ports asked for by number are not free for random requests.
        let pinned: Vec<u16> = requests.iter().filter_map(|r| r.host_port).collect();
        for req in requests {
            let host_ip = req.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let remembered = previous.iter().find(|b| {
                b.container_port == req.container_port
                    && b.proto == req.proto
                    && b.host_ip == host_ip
                    && !pinned.contains(&b.host_port)
                    && !bindings
                        .iter()
                        .any(|t| t.host_port == b.host_port && t.proto == b.proto)
            });
            let port = req
                .host_port
                .filter(|p| *p != 0)
                .or(remembered.map(|b| b.host_port))
                .unwrap_or(0);
            let addr = SocketAddr::new(host_ip, port);
            let fd = bind(req.proto, addr, parent).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("binding {addr}/{}: {e}", req.proto.name()),
                )
            })?;
            let to = SocketAddrV4::new(target, req.container_port);
            let bound = match req.proto {
                Proto::Tcp => {
                    let listener = TcpListener::from(fd.try_clone()?);
                    let port = listener.local_addr()?.port();
                    tcp(listener, to, bridge.clone())?;
                    port
                }
                Proto::Udp => {
                    let sock = UdpSocket::from(fd.try_clone()?);
                    let port = sock.local_addr()?.port();
                    udp::serve(
                        UdpFront {
                            sock: Arc::new(sock),
                            to,
                            bridge: bridge.clone(),
                        },
                        udp::IDLE,
                    )?;
                    port
                }
            };
            published.sockets.push(fd);
            bindings.push(PortBinding {
                container_port: req.container_port,
                proto: req.proto,
                host_ip,
                host_port: bound,
            });
        }
        Ok((published, bindings))
    }
}

fn bind(proto: Proto, addr: SocketAddr, parent: Option<&PodParent>) -> io::Result<OwnedFd> {
    if addr.port() != 0 && addr.port() < 1024 {
        if let Some(parent) = parent {
            return parent.bind(proto, addr);
        }
    }
    Ok(match proto {
        Proto::Tcp => sock::tcp_listener(addr, false)?.into(),
        Proto::Udp => sock::udp_socket(addr, false)?.into(),
    })
}

fn tcp(listener: TcpListener, to: SocketAddrV4, bridge: Arc<Worker>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("hutch-publish".into())
        .spawn(move || {
            for client in listener.incoming() {
                let client = match client {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let bridge = bridge.clone();
                let spawned = std::thread::Builder::new()
                    .name("hutch-publish-conn".into())
                    .spawn(move || match connect_in(&bridge, SocketAddr::V4(to)) {
                        Ok(upstream) => splice::relay(client, upstream),
                        Err(e) => {
                            tracing::debug!(%e, %to, "published port: container unreachable");
                            let _ = client.shutdown(Shutdown::Both);
                        }
                    });
                if spawned.is_err() {
                    tracing::warn!("published port: cannot start a connection thread");
                }
            }
        })?;
    Ok(())
}

/// A TCP connection to `to` from the namespace of `worker`: the socket is
/// made there, the (blocking) connect happens here.
pub fn connect_in(worker: &Worker, to: SocketAddr) -> io::Result<std::net::TcpStream> {
    let fd: OwnedFd = worker.run(|| {
        Ok(nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?)
    })?;
    let SocketAddr::V4(v4) = to else {
        return Err(io::ErrorKind::Unsupported.into());
    };
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()),
        &nix::sys::socket::SockaddrIn::from(v4),
    )?;
    Ok(std::net::TcpStream::from(fd))
}

struct UdpFront {
    sock: Arc<UdpSocket>,
    to: SocketAddrV4,
    bridge: Arc<Worker>,
}

impl udp::Front for UdpFront {
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, SocketAddrV4)> {
        let (n, from) = self.sock.recv_from(buf)?;
        Ok((n, udp::v4(from)?, self.to))
    }

    fn upstream(&self, _client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<UdpSocket> {
        self.bridge
            .run(move || sock::udp_connect(SocketAddr::V4(dst)))
    }

    fn reply(&self, data: &[u8], client: SocketAddrV4, _dst: SocketAddrV4) -> io::Result<()> {
        self.sock.send_to(data, client).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_like_dockers() -> Result<(), String> {
        let one = parse_publish("8080:80")?;
        assert_eq!(one[0].host_port, Some(8080));
        assert_eq!(one[0].container_port, 80);
        assert_eq!(parse_publish("80")?[0].host_port, None);
        let udp = parse_publish("127.0.0.1::53/udp")?;
        assert_eq!(udp[0].proto, Proto::Udp);
        assert_eq!(udp[0].host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(udp[0].host_port, None);
        let range = parse_publish("9000-9002:7000-7002")?;
        assert_eq!(range.len(), 3);
        assert_eq!(
            (range[2].host_port, range[2].container_port),
            (Some(9002), 7002)
        );
        assert!(parse_publish("1-2:1-5").is_err());
        assert!(parse_publish("80/sctp").is_err());
        Ok(())
    }
}
