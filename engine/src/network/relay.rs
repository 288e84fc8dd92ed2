//! The transparent layer-4 uplink, for pods whose netns the engine cannot
//! touch (no CAP_NET_ADMIN over it) and that have no /dev/net/tun. In the
//! bridge netns, which the engine owns, nftables DNATs every TCP connection
//! and UDP datagram containers send off their network to the relay's
//! sockets at the gateway. The original destination comes back from
//! conntrack: SO_ORIGINAL_DST for a TCP connection, a ctnetlink query by the
//! reply tuple for a UDP flow. The engine connects to that destination from
//! the pod's netns, where its threads live, and splices TCP sockets or
//! forwards UDP datagrams by flow; UDP replies leave through the socket the
//! flow came in on, so conntrack turns their source back into the original
//! destination, as the container expects.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{shutdown, Shutdown as How};

use super::conntrack::Conntrack;
use super::netns::Worker;
use super::{sock, splice, udp};

/// The relay's TCP port in the bridge netns, and the first of its UDP ports.
pub const PORT: u16 = 15001;
/// How many UDP ports the relay listens on (PORT..PORT+UDP_PORTS). A
/// container may send from one UDP port to several destinations at once
/// (resolvers queried in parallel); each such flow needs its own reply
/// tuple, so the DNAT picks a free port among these.
pub const UDP_PORTS: u16 = 8;
/// How long a remembered original destination is trusted without asking
/// conntrack again: less than its shortest UDP timeout (30 s), so the
/// conntrack entry it came from cannot have been replaced meanwhile.
const TRUST: Duration = Duration::from_secs(20);

/// The relay's sockets; dropping them stops it.
#[derive(Debug)]
pub struct Relay {
    sockets: Vec<OwnedFd>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for fd in &self.sockets {
            let _ = shutdown(fd.as_raw_fd(), How::Both);
        }
    }
}

/// Starts the relay in the bridge netns of `bridge`.
pub fn start(bridge: Arc<Worker>) -> io::Result<Relay> {
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
    let (tcp, udps, conntrack) = bridge.run(move || {
        let udps = (PORT..PORT + UDP_PORTS)
            .map(|p| {
                let s = sock::udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)), false)?;
                // The address each datagram was sent to (the gateway of the
                // client's network), for the conntrack query and replies.
                nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Ipv4PacketInfo, &true)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<UdpSocket>>>()?;
        Ok((sock::tcp_listener(any, false)?, udps, Conntrack::open()?))
    })?;
    let mut sockets = vec![OwnedFd::from(tcp.try_clone()?)];
    for s in &udps {
        sockets.push(OwnedFd::from(s.try_clone()?));
    }
    serve_tcp(tcp)?;
    udp::serve(
        UdpRelay {
            sockets: udps,
            conntrack: Mutex::new(conntrack),
            origins: Mutex::default(),
            routes: Mutex::default(),
        },
        udp::IDLE,
    )?;
    Ok(Relay { sockets })
}

fn serve_tcp(listener: TcpListener) -> io::Result<()> {
    std::thread::Builder::new()
        .name("hutch-relay".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let spawned = std::thread::Builder::new()
                    .name("hutch-relay-conn".into())
                    .spawn(move || {
                        let dst = match sock::original_destination(&conn) {
                            Ok(d) => d,
                            Err(_) => return,
                        };
                        // This thread is in the pod's netns: the connection
                        // leaves from the pod, as the pod's own would.
                        match sock::tcp_connect(dst) {
                            Ok(up) => splice::relay(conn, up),
                            Err(e) => {
                                tracing::debug!(%e, %dst, "relay: upstream connect failed");
                                // Reset, so the container sees a refusal
                                // rather than an accepted, silent socket.
                                let _ = nix::sys::socket::setsockopt(
                                    &conn,
                                    nix::sys::socket::sockopt::Linger,
                                    &libc::linger {
                                        l_onoff: 1,
                                        l_linger: 0,
                                    },
                                );
                            }
                        }
                    });
                if spawned.is_err() {
                    tracing::warn!("relay: cannot start a connection thread");
                }
            }
        })?;
    Ok(())
}

/// The UDP side of the relay.
struct UdpRelay {
    /// Bound to PORT + index in the bridge netns.
    sockets: Vec<UdpSocket>,
    conntrack: Mutex<Conntrack>,
    /// (client, socket index) → (original destination, when last used).
    origins: Mutex<HashMap<(SocketAddrV4, usize), (SocketAddrV4, Instant)>>,
    /// (client, destination) → (socket index, gateway address) of the
    /// flow's latest datagram: where its replies must leave from.
    routes: Mutex<HashMap<(SocketAddrV4, SocketAddrV4), (usize, Ipv4Addr)>>,
}

impl UdpRelay {
    /// The original destination of a datagram from `client` that arrived
    /// at `local` on socket `index`.
    fn origin(
        &self,
        client: SocketAddrV4,
        local: Ipv4Addr,
        index: usize,
    ) -> io::Result<SocketAddrV4> {
        let now = Instant::now();
        let mut origins = self
            .origins
            .lock()
            .map_err(|_| io::Error::other("relay state poisoned"))?;
        if let Some((dst, seen)) = origins.get_mut(&(client, index)) {
            if now.duration_since(*seen) < TRUST {
                *seen = now;
                return Ok(*dst);
            }
        }
        let port = PORT + u16::try_from(index).unwrap_or(0);
        let dst = self
            .conntrack
            .lock()
            .map_err(|_| io::Error::other("relay state poisoned"))?
            .original_destination(17, SocketAddrV4::new(local, port), client)?;
        if origins.len() > 4096 {
            origins.retain(|_, (_, seen)| now.duration_since(*seen) < TRUST);
        }
        origins.insert((client, index), (dst, now));
        Ok(dst)
    }
}

impl udp::Front for UdpRelay {
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, SocketAddrV4)> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds: Vec<PollFd> = self
                .sockets
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            // A socket shut down by Relay::drop polls as hung up (and
            // readable, though a non-blocking read finds nothing).
            if fds
                .iter()
                .any(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)))
            {
                return Err(io::ErrorKind::NotConnected.into());
            }
            let ready: Vec<usize> = fds
                .iter()
                .enumerate()
                .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| i)
                .collect();
            for index in ready {
                let Some(sock) = self.sockets.get(index) else {
                    continue;
                };
                let (n, client, local) = match sock::recv_with_local(sock, buf) {
                    Ok(Some(v)) => v,
                    // Shut down: the relay is stopping.
                    Ok(None) => return Err(io::ErrorKind::NotConnected.into()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    // One bad datagram must not stop the relay; shutdown
                    // shows as POLLHUP above.
                    Err(e) => {
                        tracing::debug!(%e, "relay: unreadable datagram");
                        continue;
                    }
                };
                let dst = match self.origin(client, local, index) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::debug!(%e, %client, "relay: no original destination for a datagram");
                        continue;
                    }
                };
                if let Ok(mut routes) = self.routes.lock() {
                    routes.insert((client, dst), (index, local));
                }
                return Ok((n, client, dst));
            }
        }
    }

    fn upstream(&self, _client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<UdpSocket> {
        // This thread is in the pod's netns: the flow leaves from the pod.
        sock::udp_connect(SocketAddr::V4(dst))
    }

    fn reply(&self, data: &[u8], client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<()> {
        let (index, local) = self
            .routes
            .lock()
            .map_err(|_| io::Error::other("relay state poisoned"))?
            .get(&(client, dst))
            .copied()
            .ok_or_else(|| io::Error::other("reply for a forgotten flow"))?;
        let sock = self
            .sockets
            .get(index)
            .ok_or_else(|| io::Error::other("no such relay socket"))?;
        sock::send_from(sock, data, local, client)
    }

    fn forget(&self, client: SocketAddrV4, dst: SocketAddrV4) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&(client, dst));
        }
    }
}
