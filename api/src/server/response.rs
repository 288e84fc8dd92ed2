//! Response constructors. Every response carries the headers moby adds to
//! all of them; errors have Docker's `{"message": ...}` shape; streams
//! (events, save, load progress) are bodies fed through a channel, so the
//! headers go out at once and a client that hangs up stops the producer.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::version::API_VERSION;

pub type Body = BoxBody<Bytes, Infallible>;

/// Messages a stream may buffer before its producer waits for the client.
const STREAM_DEPTH: usize = 16;

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            with_type(
                status,
                Full::new(Bytes::from(body)).boxed(),
                "application/json",
            )
        }
        Err(err) => error(&ApiError::internal(format!("encoding response: {err}"))),
    }
}

pub fn error(err: &ApiError) -> Response<Body> {
    // A 304 carries no body (moby sends none).
    if err.status == StatusCode::NOT_MODIFIED {
        return empty(err.status);
    }
    let mut body = serde_json::json!({ "message": err.message })
        .to_string()
        .into_bytes();
    body.push(b'\n');
    with_type(
        err.status,
        Full::new(Bytes::from(body)).boxed(),
        "application/json",
    )
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(
        status,
        Full::new(Bytes::from_static(body.as_bytes())).boxed(),
        "text/plain; charset=utf-8",
    )
}

/// A finished JSON message stream (`json_line`s), sent in one piece.
pub fn json_messages(body: Vec<u8>) -> Response<Body> {
    with_type(
        StatusCode::OK,
        Full::new(Bytes::from(body)).boxed(),
        "application/json",
    )
}

/// A status with no body (201 after tag, 204 after delete, ...).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Empty::new().boxed());
    *resp.status_mut() = status;
    resp
}

/// A streamed body: the producer writes into the returned sender until it is
/// done or `send` fails (the client went away).
pub fn stream(content_type: &'static str) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(STREAM_DEPTH);
    let resp = with_type(StatusCode::OK, ChannelBody { rx }.boxed(), content_type);
    (resp, tx)
}

fn with_type(status: StatusCode, body: Body, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Headers moby's middleware adds to every response.
pub fn add_common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("hutch/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
}

/// A body whose chunks arrive on a channel; it ends when every sender is
/// dropped. Dropping it (the connection closed) makes the senders fail.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// One message of a JSON stream (`{...}\r\n`, as moby's `jsonmessage`).
pub fn json_line<T: serde::Serialize>(value: &T) -> Bytes {
    let mut line = serde_json::to_vec(value).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("encoding a message: {e}") })
            .to_string()
            .into_bytes()
    });
    line.extend_from_slice(b"\r\n");
    Bytes::from(line)
}
