//! `podsim __sidecar-probe`: self-check's sidecar. Listens on the pod's
//! 127.0.0.1, prints the port, and answers every connection with the first
//! line of its own uid_map, which shows whose credentials it runs with.

use std::io::Write;
use std::net::TcpListener;

use anyhow::Context;

pub fn run() -> anyhow::Result<()> {
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").context("reading uid_map")?;
    let first = uid_map
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("listening on 127.0.0.1")?;
    let port = listener.local_addr().context("reading the port")?.port();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{port}").and_then(|()| out.flush()).context("printing the port")?;
    drop(out);
    for stream in listener.incoming() {
        if let Ok(mut stream) = stream {
            // Best effort: a client that hangs up early learns nothing.
            let _ = writeln!(stream, "{first}");
        }
    }
    Ok(())
}
