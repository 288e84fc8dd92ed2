//! UDP forwarding by flow: each (client, destination) pair gets its own
//! upstream socket, so replies find their way back, and a flow that stays
//! quiet for a while is dropped with its socket.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a flow lives without traffic (Docker's userland proxy uses 90 s
/// for UDP; DNS-sized exchanges need far less, but a long-lived UDP
/// protocol must not lose its flow between packets).
pub const IDLE: Duration = Duration::from_secs(90);

/// Where datagrams come from and how replies go back.
pub trait Front: Send + Sync + 'static {
    /// One datagram: (length, client, destination). An error ends the
    /// front (its sockets were shut down).
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, SocketAddrV4)>;
    /// An upstream socket for a new flow.
    fn upstream(&self, client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<UdpSocket>;
    /// Sends a reply of the flow (client, dst) to its client, as coming
    /// from `dst`.
    fn reply(&self, data: &[u8], client: SocketAddrV4, dst: SocketAddrV4) -> io::Result<()>;
    /// The flow (client, dst) has ended.
    fn forget(&self, _client: SocketAddrV4, _dst: SocketAddrV4) {}
}

struct Flow {
    upstream: UdpSocket,
    last: Mutex<Instant>,
}

type Flows = Arc<Mutex<HashMap<(SocketAddrV4, SocketAddrV4), Arc<Flow>>>>;

/// Serves `front` on a thread of its own until its socket fails (it is
/// shut down by closing it elsewhere or by the daemon exiting).
pub fn serve<F: Front>(front: F, idle: Duration) -> io::Result<()> {
    let front = Arc::new(front);
    std::thread::Builder::new()
        .name("hutch-udp".into())
        .spawn(move || run(front, idle))?;
    Ok(())
}

fn run<F: Front>(front: Arc<F>, idle: Duration) {
    let flows: Flows = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client, dst) = match front.recv(&mut buf) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(%e, "UDP front closed");
                return;
            }
        };
        let flow = match flow(&front, &flows, client, dst, idle) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%e, %client, %dst, "cannot open a UDP flow");
                continue;
            }
        };
        if let Ok(mut last) = flow.last.lock() {
            *last = Instant::now();
        }
        if let Err(e) = flow.upstream.send(&buf[..n]) {
            tracing::debug!(%e, %dst, "UDP send upstream failed");
        }
    }
}

fn flow<F: Front>(
    front: &Arc<F>,
    flows: &Flows,
    client: SocketAddrV4,
    dst: SocketAddrV4,
    idle: Duration,
) -> io::Result<Arc<Flow>> {
    let mut table = flows
        .lock()
        .map_err(|_| io::Error::other("flow table poisoned"))?;
    if let Some(f) = table.get(&(client, dst)) {
        return Ok(f.clone());
    }
    let upstream = front.upstream(client, dst)?;
    upstream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let flow = Arc::new(Flow {
        upstream,
        last: Mutex::new(Instant::now()),
    });
    table.insert((client, dst), flow.clone());
    let (flows, mine, front) = (flows.clone(), flow.clone(), front.clone());
    std::thread::Builder::new()
        .name("hutch-udp-flow".into())
        .spawn(move || {
            replies(&*front, &mine, client, dst, idle);
            if let Ok(mut t) = flows.lock() {
                t.remove(&(client, dst));
            }
            front.forget(client, dst);
        })?;
    Ok(flow)
}

fn replies<F: Front>(
    front: &F,
    flow: &Flow,
    client: SocketAddrV4,
    dst: SocketAddrV4,
    idle: Duration,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match flow.upstream.recv(&mut buf) {
            Ok(n) => {
                if let Ok(mut last) = flow.last.lock() {
                    *last = Instant::now();
                }
                if let Err(e) = front.reply(&buf[..n], client, dst) {
                    tracing::debug!(%e, %client, "UDP reply not delivered");
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let quiet = flow.last.lock().map(|l| l.elapsed()).unwrap_or(idle);
                if quiet >= idle {
                    return;
                }
            }
            // ECONNREFUSED from an ICMP port unreachable: keep the flow.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => return,
        }
    }
}

/// A plain socket address as a V4 one (the proxies are IPv4 only for now).
pub fn v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "IPv6 is not supported yet",
        )),
    }
}
