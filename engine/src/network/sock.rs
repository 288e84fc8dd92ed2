//! Socket construction with the options the proxies need (transparent
//! binding for the layer-4 uplink, address reuse for listeners), on top of
//! nix. Every socket is made in the calling thread's network namespace.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    bind, connect, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrStorage,
};

fn new(kind: SockType) -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        kind,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn v4(addr: SocketAddr) -> io::Result<SockaddrIn> {
    match addr {
        SocketAddr::V4(a) => Ok(SockaddrIn::from(a)),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "IPv6 is not supported yet",
        )),
    }
}

/// A TCP listener on `addr`; `transparent` sets IP_TRANSPARENT so TPROXY
/// can hand it connections for any destination.
pub fn tcp_listener(addr: SocketAddr, transparent: bool) -> io::Result<TcpListener> {
    let fd = new(SockType::Stream)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if transparent {
        setsockopt(&fd, sockopt::IpTransparent, &true)?;
    }
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &v4(addr)?)?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// A UDP socket bound to `addr`. `transparent` also asks for each
/// datagram's original destination (IP_RECVORIGDSTADDR).
pub fn udp_socket(addr: SocketAddr, transparent: bool) -> io::Result<UdpSocket> {
    let fd = new(SockType::Datagram)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if transparent {
        setsockopt(&fd, sockopt::IpTransparent, &true)?;
        setsockopt(&fd, sockopt::Ipv4OrigDstAddr, &true)?;
    }
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &v4(addr)?)?;
    Ok(UdpSocket::from(fd))
}

/// A TCP connection to `to`, made in the caller's network namespace.
pub fn tcp_connect(to: SocketAddr) -> io::Result<TcpStream> {
    let fd = new(SockType::Stream)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &v4(to)?)?;
    Ok(TcpStream::from(fd))
}

/// A UDP socket connected to `to`.
pub fn udp_connect(to: SocketAddr) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    sock.connect(to)?;
    Ok(sock)
}

/// The destination a connection had before a DNAT rule sent it to us
/// (SO_ORIGINAL_DST, from conntrack).
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let sa = nix::sys::socket::getsockopt(stream, sockopt::OriginalDst)?;
    Ok(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
        u16::from_be(sa.sin_port),
    )))
}

/// Receives one datagram with its source and the local address it was sent
/// to (IP_PKTINFO must be on); None once the socket is shut down.
pub fn recv_with_local(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<Option<(usize, SocketAddrV4, Ipv4Addr)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    // A shut-down socket reads as an empty message from nobody.
    let Some(from) = msg
        .address
        .and_then(|a| a.as_sockaddr_in().copied())
        .map(SocketAddrV4::from)
    else {
        return Ok(None);
    };
    let mut local = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
            local = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
        }
    }
    let local = local.ok_or_else(|| io::Error::other("datagram without IP_PKTINFO"))?;
    Ok(Some((msg.bytes, from, local)))
}

/// Sends `data` to `to` from `sock`'s port and the local address `from`.
pub fn send_from(
    sock: &UdpSocket,
    data: &[u8],
    from: Ipv4Addr,
    to: SocketAddrV4,
) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(from).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let to = SockaddrIn::from(to);
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(data)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(())
}
