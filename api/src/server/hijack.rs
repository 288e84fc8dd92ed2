//! Attach and exec streams on the client's connection. Docker clients ask
//! to take the connection over (`Connection: Upgrade`, `Upgrade: tcp`):
//! they get `101 UPGRADED` and raw bytes both ways, stdin in and the
//! process's output out — framed with 8-byte headers without a tty, raw
//! with one. Clients that do not ask (dockerode) get a plain `200` whose
//! body streams the output.
//!
//! The engine's streams block, so each session has one blocking thread
//! reading output and one writing stdin; the async side only moves bytes.
//! Stdin's EOF (a TCP half-close) closes the process's stdin and output
//! keeps flowing; a client gone for good shuts the engine stream down, so
//! no thread waits on a container nobody watches.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use hutch_engine::containers::client::{Input, Output, Stream};
use hutch_engine::containers::{AttachSpec, ExecStream};
use hyper::ext::ReasonPhrase;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::response::{self, Body};
use super::version::ApiVersion;

/// Output chunks in flight between the engine and the client.
const OUTPUT_DEPTH: usize = 32;

/// Stream type bytes of Docker's multiplexed frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout = 1,
    Stderr = 2,
}

/// One frame of Docker's multiplexed stream: type, three zero bytes, the
/// payload's length as big-endian u32, the payload.
pub fn frame(kind: StreamKind, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(kind as u8);
    b.put_bytes(0, 3);
    b.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    b.put_slice(payload);
    b.freeze()
}

/// The content type moby announces: framed output is marked as such from
/// API 1.42.
pub fn content_type(tty: bool, version: ApiVersion) -> &'static str {
    if !tty && version >= ApiVersion(1, 42) {
        "application/vnd.docker.multiplexed-stream"
    } else {
        "application/vnd.docker.raw-stream"
    }
}

/// True when the client asked to take the connection over.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    headers.contains_key(UPGRADE) && has(CONNECTION, "upgrade")
}

/// An engine stream a session reads output from and writes stdin to.
pub trait Source: Send + 'static {
    fn next_output(&mut self) -> io::Result<Option<Output>>;
    fn input(&self) -> io::Result<Input>;
}

impl Source for Stream {
    fn next_output(&mut self) -> io::Result<Option<Output>> {
        Stream::next_output(self)
    }
    fn input(&self) -> io::Result<Input> {
        Stream::input(self)
    }
}

impl Source for ExecStream {
    fn next_output(&mut self) -> io::Result<Option<Output>> {
        ExecStream::next_output(self)
    }
    fn input(&self) -> io::Result<Input> {
        ExecStream::input(self)
    }
}

/// A source still on its way (an attach waiting for the start).
pub type PendingSource = std::pin::Pin<Box<dyn Future<Output = Option<Box<dyn Source>>> + Send>>;

/// How a session is shaped.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    /// Raw output (a tty) instead of framed.
    pub tty: bool,
    /// Forward the client's bytes to the process's stdin.
    pub stdin: bool,
    pub content_type: &'static str,
}

/// Answers an attach or exec start: `101` and the session on the taken-over
/// connection when the client asked for it, else `200` streaming output.
/// `source` may still be pending (an attach before the start): the answer
/// goes out at once, the output follows when it resolves; `None` ends the
/// session without output.
pub fn respond<F>(
    upgrade: Option<OnUpgrade>,
    headers: &HeaderMap,
    opts: SessionOptions,
    source: F,
) -> Response<Body>
where
    F: Future<Output = Option<Box<dyn Source>>> + Send + 'static,
{
    match upgrade.filter(|_| wants_upgrade(headers)) {
        Some(on_upgrade) => {
            let mut resp = response::empty(StatusCode::SWITCHING_PROTOCOLS);
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(opts.content_type));
            h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
            h.insert(UPGRADE, HeaderValue::from_static("tcp"));
            resp.extensions_mut()
                .insert(ReasonPhrase::from_static(b"UPGRADED"));
            tokio::spawn(async move {
                let io = match on_upgrade.await {
                    Ok(io) => TokioIo::new(io),
                    Err(err) => {
                        tracing::debug!(%err, "the connection was not taken over");
                        return;
                    }
                };
                if let Some(source) = source.await {
                    upgraded_session(io, source, opts).await;
                }
            });
            resp
        }
        None => {
            let (resp, tx) = response::stream(opts.content_type);
            tokio::spawn(async move {
                if let Some(source) = source.await {
                    body_session(tx, source, opts).await;
                }
            });
            resp
        }
    }
}

/// Output read on a blocking thread, handed over through a channel; the
/// returned input half (for engine streams) lets the caller end the stream
/// early.
pub(super) fn read_output(mut source: Box<dyn Source>) -> (mpsc::Receiver<Output>, Option<Input>) {
    let killer = source.input().ok();
    let (tx, rx) = mpsc::channel(OUTPUT_DEPTH);
    tokio::task::spawn_blocking(move || loop {
        let out = match source.next_output() {
            Ok(Some(out)) => out,
            Ok(None) | Err(_) => return,
        };
        let end = matches!(out, Output::Exit(_));
        if tx.blocking_send(out).is_err() || end {
            return;
        }
    });
    (rx, killer)
}

/// The bytes a piece of output becomes on the wire; `None` at its end.
fn encode(out: Output, tty: bool) -> Option<Bytes> {
    let (kind, data) = match out {
        Output::Stdout(d) => (StreamKind::Stdout, d),
        Output::Stderr(d) => (StreamKind::Stderr, d),
        Output::Exit(_) => return None,
    };
    Some(if tty {
        Bytes::from(data)
    } else {
        frame(kind, &data)
    })
}

async fn upgraded_session<S>(io: S, source: Box<dyn Source>, opts: SessionOptions)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let stdin = if opts.stdin {
        source.input().ok()
    } else {
        None
    };
    let (mut rx, killer) = read_output(source);
    let (rd, mut wr) = tokio::io::split(io);
    let stdin_task = stdin.map(|input| tokio::spawn(forward_stdin(rd, input)));
    while let Some(out) = rx.recv().await {
        let Some(bytes) = encode(out, opts.tty) else {
            break;
        };
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            // The client is gone: stop the engine's side too.
            break;
        }
    }
    // The end of output: tell the client with a half-close, as moby does.
    let _ = wr.shutdown().await;
    if let Some(task) = stdin_task {
        task.abort();
    }
    drop(rx);
    if let Some(killer) = killer {
        let _ = killer.shutdown();
    }
}

/// The client's bytes to the process's stdin; the client's EOF closes
/// the process's stdin.
async fn forward_stdin<R>(mut rd: R, input: Input)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let writer = StdinWriter::start(input);
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !writer.write(buf[..n].to_vec()).await {
                    break;
                }
            }
        }
    }
    writer.finish().await;
}

/// The process's stdin, written on a blocking thread (the engine's input
/// blocks); `finish` ends it, which closes the process's stdin where the
/// container asks for that (`StdinOnce`).
pub(super) struct StdinWriter {
    tx: mpsc::Sender<Option<Vec<u8>>>,
    thread: tokio::task::JoinHandle<()>,
}

impl StdinWriter {
    pub(super) fn start(input: Input) -> StdinWriter {
        let (tx, mut rx) = mpsc::channel::<Option<Vec<u8>>>(8);
        let thread = tokio::task::spawn_blocking(move || {
            let mut input = input;
            while let Some(chunk) = rx.blocking_recv() {
                match chunk {
                    Some(data) => {
                        if input.write(&data).is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = input.close();
                        return;
                    }
                }
            }
        });
        StdinWriter { tx, thread }
    }

    /// False once the process's stdin is gone.
    pub(super) async fn write(&self, data: Vec<u8>) -> bool {
        self.tx.send(Some(data)).await.is_ok()
    }

    pub(super) async fn finish(self) {
        let _ = self.tx.send(None).await;
        drop(self.tx);
        let _ = self.thread.await;
    }
}

async fn body_session(tx: mpsc::Sender<Bytes>, source: Box<dyn Source>, opts: SessionOptions) {
    let (mut rx, killer) = read_output(source);
    loop {
        tokio::select! {
            // The client hung up: stop at once, not at the next output.
            _ = tx.closed() => break,
            out = rx.recv() => {
                let Some(bytes) = out.and_then(|o| encode(o, opts.tty)) else {
                    break;
                };
                if tx.send(bytes).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(rx);
    if let Some(killer) = killer {
        let _ = killer.shutdown();
    }
}

/// Attach requests for containers not started yet: `docker run` attaches
/// first, then starts. The start hands each its stream, connected before
/// the process runs, so no output is missed.
#[derive(Debug, Default)]
pub struct PendingAttaches {
    by_container: Mutex<HashMap<String, Vec<PendingAttach>>>,
}

#[derive(Debug)]
pub struct PendingAttach {
    pub spec: AttachSpec,
    pub tx: oneshot::Sender<Stream>,
}

impl PendingAttaches {
    /// Registers an attach; the receiver gets its stream at the start (or
    /// an error if the container never starts).
    pub fn add(&self, id: &str, spec: AttachSpec) -> oneshot::Receiver<Stream> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.by_container.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(id.to_string()).or_default();
        // Clients that hung up meanwhile need no stream.
        list.retain(|p| !p.tx.is_closed());
        list.push(PendingAttach { spec, tx });
        rx
    }

    /// The attaches waiting for this container's start, still wanted.
    pub fn take(&self, id: &str) -> Vec<PendingAttach> {
        let mut map = self.by_container.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.tx.is_closed())
            .collect()
    }

    /// Forgets a removed container's waiters (their clients see the end).
    pub fn drop_container(&self, id: &str) {
        let mut map = self.by_container.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_dockers_header() {
        let f = frame(StreamKind::Stderr, b"hi\n");
        assert_eq!(&f[..], b"\x02\x00\x00\x00\x00\x00\x00\x03hi\n");
        assert_eq!(frame(StreamKind::Stdout, &[0u8; 300])[6..8], [1, 44]);
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("tcp"));
        assert!(!wants_upgrade(&h));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(wants_upgrade(&h));
        assert_eq!(
            content_type(false, ApiVersion(1, 50)),
            "application/vnd.docker.multiplexed-stream"
        );
        assert_eq!(
            content_type(true, ApiVersion(1, 50)),
            "application/vnd.docker.raw-stream"
        );
        assert_eq!(
            content_type(false, ApiVersion(1, 41)),
            "application/vnd.docker.raw-stream"
        );
    }
}
