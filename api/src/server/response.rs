//! Response constructors: every response carries the headers moby adds to
//! all of them, and errors have Docker's `{"message": ...}` shape.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::system::API_VERSION;

pub type Body = Full<Bytes>;

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            with_type(status, body, "application/json")
        }
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("encoding response: {err}"),
        ),
    }
}

pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message });
    let mut bytes = body.to_string().into_bytes();
    bytes.push(b'\n');
    with_type(status, bytes, "application/json")
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    with_type(
        status,
        body.as_bytes().to_vec(),
        "text/plain; charset=utf-8",
    )
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
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
