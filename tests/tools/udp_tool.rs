//! A small UDP fixture for the networking tests, copied into containers
//! (with the libraries it loads) because the busybox test image has no UDP
//! server:
//!   udp-tool echo PORT        answers every datagram with itself
//!   udp-tool dns PORT IPV4    answers every DNS query with one A record
//!   udp-tool send ADDR TEXT   sends TEXT from a connected socket (so only
//!                             a reply from ADDR counts) and prints the reply

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-tool: {e:#}");
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
        _ => bail!("usage: udp-tool echo PORT | dns PORT IPV4 | send ADDR TEXT"),
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
