//! The transparent layer-4 uplink, for pods whose netns the engine cannot
//! touch (no CAP_NET_ADMIN over it) and that have no /dev/net/tun. In the
//! bridge netns, which the engine owns, nftables sends every TCP connection
//! containers open off their network to a listener the engine holds there
//! (DNAT to the gateway; the original destination comes back through
//! SO_ORIGINAL_DST) and every UDP datagram to a transparent socket (TPROXY;
//! IP_ORIGDSTADDR). The engine connects to the original destination from
//! the pod's netns, where its threads live, and splices the two sockets.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use nix::sys::socket::{shutdown, Shutdown as How};

use super::netns::Worker;
use super::rtnl::{Route, Rtnl};
use super::{sock, splice, udp};

/// The relay's port in the bridge netns (TCP and UDP).
pub const PORT: u16 = 15001;
/// Packet mark set with TPROXY (UDP), routed to the local table below.
pub const MARK: u32 = 0x4855;
const TABLE: u32 = 100;

/// The relay's sockets; dropping them stops it.
#[derive(Debug)]
pub struct Relay {
    sockets: Vec<OwnedFd>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for fd in &self.sockets {
            let _ = shutdown(std::os::fd::AsRawFd::as_raw_fd(fd), How::Both);
        }
    }
}

/// Sets up policy routing for TPROXY in the bridge netns (marked packets
/// are local) and starts the relay. `rtnl` must be a socket there.
pub fn start(rtnl: &mut Rtnl, bridge: Arc<Worker>) -> io::Result<Relay> {
    rtnl.add_fwmark_rule(MARK, TABLE, 100)?;
    let lo = rtnl.require("lo")?;
    rtnl.add_route(&Route {
        dst: Some((Ipv4Addr::UNSPECIFIED, 0)),
        oif: Some(lo),
        table: Some(TABLE),
        local: true,
        ..Route::default()
    })?;
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
    let (tcp, udp_sock) =
        bridge.run(move || Ok((sock::tcp_listener(any, true)?, sock::udp_socket(any, true)?)))?;
    let sockets = vec![
        OwnedFd::from(tcp.try_clone()?),
        OwnedFd::from(udp_sock.try_clone()?),
    ];
    serve_tcp(tcp)?;
    udp::serve(
        UdpFront {
            sock: udp_sock,
            bridge,
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

struct UdpFront {
    sock: UdpSocket,
    bridge: Arc<Worker>,
}

impl udp::Front for UdpFront {
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, SocketAddrV4)> {
        let (n, from, dst) = sock::recv_with_destination(&self.sock, buf)?;
        let dst = dst.ok_or_else(|| io::Error::other("datagram without its destination"))?;
        Ok((n, from, dst))
    }

    fn upstream(&self, _client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<UdpSocket> {
        sock::udp_connect(SocketAddr::V4(dst))
    }

    fn replier(&self, _client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<udp::Replier> {
        let sock = self
            .bridge
            .run(move || sock::udp_socket(SocketAddr::V4(dst), true))?;
        Ok(udp::Replier::Bound(sock))
    }
}
