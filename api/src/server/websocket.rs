//! Attach over a WebSocket (`GET /containers/{id}/attach/ws`), as moby
//! serves it: the connection is upgraded with the RFC 6455 handshake, then
//! each piece of the container's output goes out as one message — raw
//! bytes, never the 8-byte multiplexed frames, stdout and stderr alike;
//! binary messages from API 1.28, text ones before (moby's switch). Every
//! data message the client sends (text or binary) is stdin. When the output
//! ends the server sends a normal Close; a client that closes or vanishes
//! ends its stdin (which closes the process's stdin for `StdinOnce`
//! containers, as a hijacked attach's half-close does) and the session, the
//! container keeps running.
//!
//! The output comes from the same engine sources as the hijacked attach
//! (`hijack::Source`, read on a blocking thread by `hijack::read_output`);
//! tokio-tungstenite does the framing, masking, ping/pong and close
//! handshake.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hutch_engine::containers::client::Output;
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::error::ApiError;
use super::hijack::{self, Source, StdinWriter};
use super::response::{self, Body};

/// How long a closing server waits for the client's Close in reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a WebSocket attach is shaped.
#[derive(Debug, Clone, Copy)]
pub struct WsOptions {
    /// Forward the client's messages to the process's stdin.
    pub stdin: bool,
    /// Binary messages (API >= 1.28); text messages before.
    pub binary: bool,
}

/// The `Sec-WebSocket-Accept` answer to a valid upgrade request, or a 400
/// saying what is missing.
pub fn accept_key(headers: &HeaderMap, upgrade: Option<&OnUpgrade>) -> Result<String, ApiError> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let key = headers.get(SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes);
    let (true, true, Some(key), Some(_)) = (
        has_token(UPGRADE, "websocket"),
        has_token(CONNECTION, "upgrade"),
        key.filter(|k| !k.is_empty()),
        upgrade,
    ) else {
        return Err(ApiError::bad_request(
            "this endpoint serves attach over a WebSocket: the request must be a WebSocket \
             upgrade (Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Key, \
             Sec-WebSocket-Version: 13); for a plain stream use POST /containers/{id}/attach",
        ));
    };
    let version = headers
        .get(SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    if version != "13" {
        return Err(ApiError::bad_request(format!(
            "unsupported WebSocket version {version:?}: this server speaks version 13"
        )));
    }
    Ok(derive_accept_key(key))
}

/// The `101 Switching Protocols` answer; the session runs on the upgraded
/// connection once `source` resolves (`None`: closed at once).
pub fn respond<F>(
    accept: String,
    on_upgrade: OnUpgrade,
    opts: WsOptions,
    source: F,
) -> Response<Body>
where
    F: Future<Output = Option<Box<dyn Source>>> + Send + 'static,
{
    let mut resp = response::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(err) => {
                tracing::debug!(%err, "the websocket upgrade did not complete");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        match source.await {
            Some(source) => session(ws, source, opts).await,
            None => close(ws).await,
        }
    });
    resp
}

/// One message of output.
fn message(data: Vec<u8>, binary: bool) -> Message {
    if binary {
        Message::Binary(data.into())
    } else {
        // Output need not be UTF-8; moby sends it as it is in a text frame.
        Message::Frame(Frame::message(data, OpCode::Data(Data::Text), true))
    }
}

async fn session<S>(ws: WebSocketStream<S>, source: Box<dyn Source>, opts: WsOptions)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stdin = if opts.stdin {
        source.input().ok()
    } else {
        None
    };
    let (mut output, killer) = hijack::read_output(source);
    let (mut sink, mut incoming) = ws.split();
    let stdin = stdin.map(StdinWriter::start);
    let mut client_closed = false;
    loop {
        tokio::select! {
            out = output.recv() => match out {
                Some(Output::Stdout(data) | Output::Stderr(data)) => {
                    if sink.send(message(data, opts.binary)).await.is_err() {
                        break;
                    }
                }
                // The process exited (or detached): say goodbye properly.
                Some(Output::Exit(_)) | None => break,
            },
            msg = incoming.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if let Some(stdin) = &stdin {
                        stdin.write(data.to_vec()).await;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    if let Some(stdin) = &stdin {
                        stdin.write(text.as_bytes().to_vec()).await;
                    }
                }
                // tungstenite answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    client_closed = true;
                    break;
                }
                // Gone without a Close.
                Some(Err(_)) | None => {
                    client_closed = true;
                    break;
                }
            },
        }
    }
    if let Some(stdin) = stdin {
        stdin.finish().await;
    }
    if !client_closed {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        // Let the client's Close arrive, briefly, so the TCP close is clean.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(msg)) = incoming.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    } else {
        // Completes the close handshake the client started.
        let _ = sink.close().await;
    }
    drop(output);
    if let Some(killer) = killer {
        let _ = killer.shutdown();
    }
}

/// A session with nothing to send: just a normal Close.
async fn close<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_needs_every_header() {
        let mut h = HeaderMap::new();
        assert!(accept_key(&h, None).is_err());
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        // No upgradable connection (the OnUpgrade is absent): refused.
        assert!(accept_key(&h, None).is_err());
    }

    #[test]
    fn rfc_6455_sample_key() {
        // The example in RFC 6455 section 1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
