//! `ApiRequest`: what a handler gets — the daemon, the path parameters the
//! route captured, the parsed query, headers, and the body, with the body
//! readers every JSON endpoint shares (size limit, content type, moby's
//! messages for malformed JSON).

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

use super::body_io::{self, BodyReader};
use super::error::ApiError;
use super::query::Query;
use super::version::ApiVersion;
use super::Daemon;

/// Largest JSON request body accepted (container create bodies are a few KiB).
pub const MAX_JSON_BODY: usize = 4 << 20;

pub struct ApiRequest {
    pub daemon: Arc<Daemon>,
    pub method: Method,
    pub version: ApiVersion,
    pub params: Vec<(&'static str, String)>,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Incoming,
    /// Resolves to the connection once a `101` answer has gone out
    /// (attach and exec take the connection over).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl ApiRequest {
    /// A path parameter the route captured (`{name}` in its pattern).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    /// The body as JSON, read as moby's `httputils.ReadJSON`: an explicit
    /// non-JSON content type, an empty body or malformed JSON are 400s;
    /// unknown fields are ignored.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        check_json_content_type(&self.headers)?;
        let bytes = read_limited(self.body, MAX_JSON_BODY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "invalid JSON: got EOF while reading request body",
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }

    /// An optional JSON body (`POST /commit`'s config): empty or `null` is
    /// `None`; malformed JSON is a 400.
    pub async fn optional_json<T: DeserializeOwned>(self) -> Result<Option<T>, ApiError> {
        check_json_content_type(&self.headers)?;
        let bytes = read_limited(self.body, MAX_JSON_BODY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice::<Option<T>>(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }

    /// The body as a blocking reader (for archives of any size).
    pub fn body_reader(self) -> BodyReader {
        body_io::body_reader(self.body)
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let media = text.split(';').next().unwrap_or_default().trim();
    if media.is_empty() || media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "unsupported Content-Type header ({text}): must be 'application/json'"
    )))
}

async fn read_limited(body: Incoming, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {limit} byte limit"),
        )),
        Err(err) => Err(ApiError::bad_request(format!(
            "reading the request body: {err}"
        ))),
    }
}
