//! A container's streams: `GET /containers/{id}/logs` (the json-file log,
//! framed without a tty, raw with one) and `POST /containers/{id}/attach`
//! (hijacked, see `hijack`) and `GET /containers/{id}/attach/ws` (the same
//! attach over a WebSocket, see `websocket`).

use std::io;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use hutch_engine::containers::config::LogDriver;
use hutch_engine::containers::logread::{LogLine, LogsOptions, Stream as LogStream};
use hutch_engine::containers::AttachSpec;
use hyper::Response;

use super::super::error::ApiError;
use super::super::events::now_nanos;
use super::super::hijack::{self, frame, PendingSource, SessionOptions, Source, StreamKind};
use super::super::query::timestamp;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};
use super::super::version::ApiVersion;
use super::super::websocket::{self, WsOptions};

type Reply = Result<Response<Body>, ApiError>;

/// A `since`/`until` bound; 0 (what the CLI sends when unset) means none.
fn bound(req: &ApiRequest, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(v) = req.query.non_empty(key) else {
        return Ok(None);
    };
    let nanos = timestamp(v, now_nanos())?;
    Ok((nanos != 0).then(|| DateTime::from_timestamp_nanos(nanos)))
}

/// Docker's log timestamp: RFC 3339 with exactly nine fractional digits.
fn fixed_nanos(time: &str) -> String {
    DateTime::parse_from_rfc3339(time)
        .map(|t| {
            t.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Nanos, true)
        })
        .unwrap_or_else(|_| time.to_string())
}

fn render(line: &LogLine, timestamps: bool, tty: bool) -> Bytes {
    let mut data = Vec::with_capacity(line.message.len() + 32);
    if timestamps {
        data.extend_from_slice(fixed_nanos(&line.time).as_bytes());
        data.push(b' ');
    }
    data.extend_from_slice(&line.message);
    if tty {
        return Bytes::from(data);
    }
    let kind = match line.stream {
        LogStream::Stdout => StreamKind::Stdout,
        LogStream::Stderr => StreamKind::Stderr,
    };
    frame(kind, &data)
}

/// `GET /containers/{id}/logs`. The headers go out before the first line.
pub async fn logs(req: ApiRequest) -> Reply {
    let stdout = req.query.bool("stdout");
    let stderr = req.query.bool("stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let tail = match req.query.non_empty("tail") {
        None | Some("all") => None,
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n < 0 => None,
            Ok(n) => Some(n as usize),
            Err(_) => return Err(ApiError::bad_request(format!("invalid tail {n:?}"))),
        },
    };
    let opts = LogsOptions {
        stdout,
        stderr,
        since: bound(&req, "since")?,
        until: bound(&req, "until")?,
        tail,
        follow: req.query.bool("follow"),
    };
    let timestamps = req.query.bool("timestamps");
    let query = req.param("id").to_string();
    // Opened before the answer: a client may remove the container before
    // it reads the body (docker-py's `run` does).
    let (details, log) = req
        .daemon
        .with_engine(move |e| Ok((e.inspect(&query)?, e.open_logs(&query)?)))
        .await?;
    if details.config.options.log_config.driver == LogDriver::None {
        return Err(ApiError::new(
            hyper::StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    let tty = details.config.options.tty;
    let (resp, tx) = response::stream(hijack::content_type(tty, req.version));
    tokio::task::spawn_blocking(move || {
        let wanted = || !tx.is_closed();
        let mut sink = |line: LogLine| -> io::Result<()> {
            tx.blocking_send(render(&line, timestamps, tty))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
        };
        if let Err(e) = log.read(&opts, &wanted, &mut sink) {
            tracing::debug!(%e, "logs ended early");
        }
    });
    Ok(resp)
}

/// `detachKeys` as the CLI spells them: `ctrl-p,ctrl-q`, `a`, `ctrl-@`.
pub fn detach_keys(text: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::bad_request(format!("Invalid detach keys ({text}) provided"));
    text.split(',')
        .map(|k| match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let b = c.as_bytes()[0].to_ascii_lowercase();
                match b {
                    b'a'..=b'z' => Ok(b - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' => Ok(27),
                    b'\\' => Ok(28),
                    b']' => Ok(29),
                    b'^' => Ok(30),
                    b'_' => Ok(31),
                    _ => Err(bad()),
                }
            }
            Some(_) => Err(bad()),
            None if k.len() == 1 => Ok(k.as_bytes()[0]),
            None => Err(bad()),
        })
        .collect()
}

/// What an attach asks for, from its query: `stdin`/`stdout`/`stderr`,
/// `detachKeys`, `logs` (replay what was logged) and `stream` (follow).
struct AttachRequest {
    spec: AttachSpec,
    logs: bool,
    stream: bool,
}

impl AttachRequest {
    fn parse(req: &ApiRequest) -> Result<AttachRequest, ApiError> {
        let q = &req.query;
        Ok(AttachRequest {
            spec: AttachSpec {
                stdin: q.bool("stdin"),
                stdout: q.bool("stdout"),
                stderr: q.bool("stderr"),
                detach_keys: q.non_empty("detachKeys").map(detach_keys).transpose()?,
            },
            logs: q.bool("logs"),
            stream: q.bool("stream"),
        })
    }
}

/// The output an attach serves, shared by both transports: with `logs`,
/// what was logged so far (moby reads the log first); with `stream`, then
/// the live stream. A container not running yet (`docker run` attaches,
/// then starts) gets its live stream at the start, connected before the
/// process runs. Returns whether the container has a tty, and the source.
async fn attach_source(
    req: &ApiRequest,
    attach: AttachRequest,
) -> Result<(bool, PendingSource), ApiError> {
    let query = req.param("id").to_string();
    let details = req.daemon.with_engine(move |e| e.inspect(&query)).await?;
    let tty = details.config.options.tty;
    let id = details.config.id.clone();
    let daemon = req.daemon.clone();
    let spec = attach.spec;
    let logged = if attach.logs {
        Some(LoggedOutput::read(&daemon.engine, &id, spec.stdout, spec.stderr).await?)
    } else {
        None
    };
    if !attach.stream {
        let logged = logged.unwrap_or_default();
        return Ok((
            tty,
            Box::pin(async move { Some(Box::new(logged) as Box<dyn Source>) }),
        ));
    }
    let live: PendingSource = if details.state.is_active() {
        let stream = daemon
            .with_engine(move |e| {
                e.attach(&id, spec.stdin, spec.stdout, spec.stderr, spec.detach_keys)
            })
            .await?;
        Box::pin(async move { Some(Box::new(stream) as Box<dyn Source>) })
    } else {
        let rx = daemon.pending_attaches.add(&id, spec);
        Box::pin(async move { rx.await.ok().map(|s| Box::new(s) as Box<dyn Source>) })
    };
    let Some(logged) = logged else {
        return Ok((tty, live));
    };
    Ok((
        tty,
        Box::pin(async move {
            let live = live.await?;
            Some(Box::new(Replayed { logged, live }) as Box<dyn Source>)
        }),
    ))
}

/// `POST /containers/{id}/attach`: hijacked (or a plain 200 stream), see
/// `hijack`.
pub async fn attach(mut req: ApiRequest) -> Reply {
    let attach = AttachRequest::parse(&req)?;
    if !attach.stream && !attach.logs {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one of stream or logs",
        ));
    }
    let stdin = attach.spec.stdin;
    let (tty, source) = attach_source(&req, attach).await?;
    let opts = SessionOptions {
        tty,
        stdin,
        content_type: hijack::content_type(tty, req.version),
    };
    let upgrade = req.upgrade.take();
    Ok(hijack::respond(upgrade, &req.headers, opts, source))
}

/// `GET /containers/{id}/attach/ws`: the same attach over a WebSocket
/// (see `websocket`). Before API 1.42 moby attaches all three streams
/// whatever the query says; `logs` and `stream` as for the hijacked attach.
pub async fn attach_ws(mut req: ApiRequest) -> Reply {
    let mut attach = AttachRequest::parse(&req)?;
    if req.version < ApiVersion(1, 42) {
        attach.spec.stdin = true;
        attach.spec.stdout = true;
        attach.spec.stderr = true;
    }
    let opts = WsOptions {
        stdin: attach.spec.stdin,
        binary: req.version >= ApiVersion(1, 28),
    };
    // 404 for a missing container before the handshake is judged, as moby
    // looks the container up first.
    let query = req.param("id").to_string();
    req.daemon.with_engine(move |e| e.inspect(&query)).await?;
    let accept = websocket::accept_key(&req.headers, req.upgrade.as_ref())?;
    let Some(on_upgrade) = req.upgrade.take() else {
        return Err(ApiError::bad_request("the connection cannot be upgraded"));
    };
    let (_tty, source) = attach_source(&req, attach).await?;
    Ok(websocket::respond(accept, on_upgrade, opts, source))
}

/// The log replayed, then the live stream (`logs=1&stream=1`).
struct Replayed {
    logged: LoggedOutput,
    live: Box<dyn Source>,
}

impl Source for Replayed {
    fn next_output(&mut self) -> io::Result<Option<hutch_engine::containers::client::Output>> {
        match self.logged.lines.pop_front() {
            Some(out) => Ok(Some(out)),
            None => self.live.next_output(),
        }
    }

    fn input(&self) -> io::Result<hutch_engine::containers::client::Input> {
        self.live.input()
    }
}

/// The logged output of a container as a finished stream (`attach?logs=1`).
#[derive(Default)]
struct LoggedOutput {
    lines: std::collections::VecDeque<hutch_engine::containers::client::Output>,
}

impl LoggedOutput {
    async fn read(
        engine: &hutch_engine::containers::Engine,
        id: &str,
        stdout: bool,
        stderr: bool,
    ) -> Result<LoggedOutput, ApiError> {
        use hutch_engine::containers::client::Output;
        let engine = engine.clone();
        let id = id.to_string();
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines = std::collections::VecDeque::new();
            let opts = LogsOptions {
                stdout,
                stderr,
                ..LogsOptions::default()
            };
            engine.logs(&id, &opts, &mut |l| {
                lines.push_back(match l.stream {
                    LogStream::Stdout => Output::Stdout(l.message),
                    LogStream::Stderr => Output::Stderr(l.message),
                });
                Ok(())
            })?;
            Ok::<_, hutch_engine::containers::EngineError>(lines)
        })
        .await??;
        Ok(LoggedOutput { lines })
    }
}

impl Source for LoggedOutput {
    fn next_output(&mut self) -> io::Result<Option<hutch_engine::containers::client::Output>> {
        Ok(self.lines.pop_front())
    }

    fn input(&self) -> io::Result<hutch_engine::containers::client::Input> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "logged output takes no input",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_the_cli_spells_them() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q"), Ok(vec![0x10, 0x11]));
        assert_eq!(detach_keys("ctrl-@,a"), Ok(vec![0, b'a']));
        assert!(detach_keys("ctrl-pp").is_err());
    }

    #[test]
    fn timestamps_have_nine_digits() {
        assert_eq!(
            fixed_nanos("2024-01-02T03:04:05.5Z"),
            "2024-01-02T03:04:05.500000000Z"
        );
        assert_eq!(
            fixed_nanos("2024-01-02T03:04:05Z"),
            "2024-01-02T03:04:05.000000000Z"
        );
    }
}
