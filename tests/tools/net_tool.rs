//! A small network fixture for the networking tests and net-bench, copied
//! into containers (with the libraries it loads) because the busybox test
//! image has no UDP server:
//!   net-tool echo PORT        answers every UDP datagram with itself
//!   net-tool dns PORT IPV4    answers every DNS query with one A record
//!   net-tool send ADDR TEXT   sends TEXT from a connected UDP socket (so
//!                             only a reply from ADDR counts), prints the reply
//!   net-tool send-each TEXT ADDR...
//!                             sends TEXT to every ADDR from one unconnected
//!                             socket; succeeds when each answered TEXT
//!                             from its own address
//!   net-tool tcp-echo PORT    echoes each TCP connection, a thread each
//!   net-tool connect-times ADDR N
//!                             N times: connect, send a byte, read it back,
//!                             close; prints the latencies (µs) as JSON
//!   net-tool unix-request PATH TEXT
//!                             sends TEXT on a unix stream socket, prints
//!                             the answer (slirp4netns' API socket)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("net-tool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["echo", port] => serve(port.parse().context("port")?, |q| Some(q.to_vec())),
        ["dns", port, ip] => {
            let ip: Ipv4Addr = ip.parse().context("IPv4 address")?;
            serve(port.parse().context("port")?, move |q| dns_answer(q, ip))
        }
        ["send", addr, text] => send(addr.parse().context("address")?, text),
        ["send-each", text, addrs @ ..] if !addrs.is_empty() => {
            let addrs = addrs
                .iter()
                .map(|a| a.parse().context("address"))
                .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
            send_each(text, &addrs)
        }
        ["tcp-echo", port] => tcp_echo(port.parse().context("port")?),
        ["connect-times", addr, n] => connect_times(
            addr.parse().context("address")?,
            n.parse().context("count")?,
        ),
        ["unix-request", path, text] => unix_request(path, text),
        _ => bail!(
            "usage: net-tool echo PORT | dns PORT IPV4 | send ADDR TEXT | tcp-echo PORT | \
             connect-times ADDR N | unix-request PATH TEXT"
        ),
    }
}

fn serve(port: u16, answer: impl Fn(&[u8]) -> Option<Vec<u8>>) -> anyhow::Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).context("bind")?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        if let Some(reply) = answer(&buf[..n]) {
            sock.send_to(&reply, from)?;
        }
    }
}

fn send(addr: SocketAddr, text: &str) -> anyhow::Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    sock.connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        sock.send(text.as_bytes())?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                println!("{}", String::from_utf8_lossy(&buf[..n]));
                return Ok(());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no reply from {addr}")
}

fn send_each(text: &str, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut answered = vec![false; addrs.len()];
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        for (addr, done) in addrs.iter().zip(&answered) {
            if !done {
                sock.send_to(text.as_bytes(), addr)?;
            }
        }
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let i = addrs
                .iter()
                .position(|a| *a == from)
                .with_context(|| format!("a reply from {from}, which was not asked"))?;
            if &buf[..n] != text.as_bytes() {
                bail!("{from} answered {:?}", String::from_utf8_lossy(&buf[..n]));
            }
            answered[i] = true;
            if answered.iter().all(|a| *a) {
                println!("all answered");
                return Ok(());
            }
        }
    }
    bail!("no reply from some of {addrs:?}: {answered:?}")
}

fn tcp_echo(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).context("bind")?;
    for conn in listener.incoming() {
        let mut conn = conn?;
        std::thread::spawn(move || {
            let _ = conn.set_nodelay(true);
            let mut buf = [0u8; 16384];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

/// Connection set-up as a client sees it through a proxy: the connect
/// returns as soon as the proxy's listener accepts, so the first byte's
/// round trip (which needs the proxy's own connection) is counted too.
fn connect_times(addr: SocketAddr, n: usize) -> anyhow::Result<()> {
    let mut micros = Vec::with_capacity(n);
    for _ in 0..n {
        let start = std::time::Instant::now();
        let mut conn = TcpStream::connect(addr).context("connect")?;
        conn.set_nodelay(true)?;
        conn.write_all(b"x")?;
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).context("echo")?;
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "{{\"micros\": [{}]}}",
        micros
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(())
}

fn unix_request(path: &str, text: &str) -> anyhow::Result<()> {
    let mut conn = std::os::unix::net::UnixStream::connect(path).context("connect")?;
    conn.write_all(text.as_bytes())?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    println!("{answer}");
    Ok(())
}

/// The response to the query's question: one A record (TTL 60) with `ip`
/// for an A question, no records (NOERROR) for any other type.
fn dns_answer(query: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let is_a = query.get(end..end + 2)? == [0, 1];
    let mut r = Vec::with_capacity(question.len() + 28);
    r.extend_from_slice(&header[..2]); // id
    r.extend_from_slice(&[0x81, 0x80]); // response, RD, RA, NOERROR
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]); // counts
    r.extend_from_slice(question);
    if is_a {
        // Name (pointer to the question), A, IN, TTL 60, 4 bytes.
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}
