//! `docker run --rm IMAGE true` without the CLI: the requests the docker
//! CLI makes for it, in its order, sent straight to the socket, so the
//! daemon's share of a run is timed apart from the CLI's own work (its
//! start-up, flag parsing, signal set-up and exit, which no engine can
//! shorten). Baseline: a `GET /_ping` round trip on a fresh connection,
//! timed in the same rounds.

use std::io::Read;
use std::time::Instant;

use anyhow::{ensure, Context};

use super::conn::{Conn, Head};

/// One round's latencies (ms).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Round {
    pub ping: f64,
    pub create: f64,
    /// Attach (hijacked) and `wait?condition=removed`, as the CLI opens
    /// them before the start.
    pub attach_wait: f64,
    pub start: f64,
    /// From the start's answer to the wait's answer: the exit, the
    /// removal, and the answer.
    pub exit_removed: f64,
    pub total: f64,
}

/// Inside the pod: `runs` rounds, printed as a JSON list of [`Round`].
pub fn run(runs: u32, image: &str) -> anyhow::Result<()> {
    let mut rounds = Vec::with_capacity(runs as usize);
    // Warm-up, not counted.
    one(image)?;
    for _ in 0..runs {
        let started = Instant::now();
        ping()?;
        let ping = ms(started);
        let mut round = one(image)?;
        round.ping = ping;
        rounds.push(round);
    }
    println!("{}", serde_json::to_string(&rounds)?);
    Ok(())
}

fn ms(since: Instant) -> f64 {
    between(since, Instant::now())
}

fn between(from: Instant, to: Instant) -> f64 {
    (to - from).as_secs_f64() * 1000.0
}

/// A fresh connection with `method path` sent (no body) and the answer's
/// head read, whose status must be `want`.
fn opened(method: &str, path: &str, headers: &str, want: u16) -> anyhow::Result<(Conn, Head)> {
    let mut c = Conn::open()?;
    c.send(method, path, headers, None)?;
    let head = c.head()?;
    ensure!(head.status == want, "{method} {path}: {}", head.status);
    Ok((c, head))
}

fn ping() -> anyhow::Result<()> {
    let (mut c, head) = opened("GET", "/_ping", "", 200)?;
    c.body(&head)?;
    Ok(())
}

fn one(image: &str) -> anyhow::Result<Round> {
    let t0 = Instant::now();
    let mut api = Conn::open()?;
    let create = serde_json::json!({
        "Image": image,
        "Cmd": ["true"],
        "AttachStdout": true,
        "AttachStderr": true,
        "HostConfig": {"AutoRemove": true},
    });
    api.send(
        "POST",
        "/v1.50/containers/create",
        "",
        Some(&create.to_string()),
    )?;
    let head = api.head()?;
    let body = api.body(&head)?;
    ensure!(
        head.status == 201,
        "create: {} {}",
        head.status,
        String::from_utf8_lossy(&body)
    );
    let created: serde_json::Value = serde_json::from_slice(&body)?;
    let id = created["Id"].as_str().context("create: no Id")?.to_string();
    let t1 = Instant::now();

    let (mut attach, _) = opened(
        "POST",
        &format!("/v1.50/containers/{id}/attach?stream=1&stdout=1&stderr=1"),
        "Connection: Upgrade\r\nUpgrade: tcp\r\n",
        101,
    )?;
    let (mut wait, _) = opened(
        "POST",
        &format!("/v1.50/containers/{id}/wait?condition=removed"),
        "",
        200,
    )?;
    let t2 = Instant::now();

    api.send("POST", &format!("/v1.50/containers/{id}/start"), "", None)?;
    let head = api.head()?;
    ensure!(head.status == 204, "start: {}", head.status);
    let t3 = Instant::now();

    // The wait's answer is one chunk: its size line, then the JSON.
    loop {
        let line = wait.line()?;
        if line.contains("StatusCode") {
            ensure!(line.contains("\"StatusCode\":0"), "wait: {line}");
            break;
        }
    }
    let t4 = Instant::now();
    // The attach stream ends with the container (nothing to read: `true`).
    let mut rest = Vec::new();
    attach.reader.read_to_end(&mut rest)?;
    Ok(Round {
        ping: 0.0,
        create: between(t0, t1),
        attach_wait: between(t1, t2),
        start: between(t2, t3),
        exit_removed: between(t3, t4),
        total: ms(t0),
    })
}
