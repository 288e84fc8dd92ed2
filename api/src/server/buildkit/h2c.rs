//! The connection takeover BuildKit clients ask for: `POST /grpc` or
//! `POST /session` with `Connection: Upgrade`, `Upgrade: h2c`, answered
//! `101 Switching Protocols` (moby's grpc and session routers hijack the
//! same way); HTTP/2 then runs on the bare connection. On `/grpc` the
//! client speaks first, as a gRPC client; on `/session` the roles turn
//! round and the daemon calls the services the client exposes.

use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Response, StatusCode};

use super::super::error::ApiError;
use super::super::hijack::wants_upgrade;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};

/// Checks the request asks for h2c and takes its upgrade future.
pub fn take(req: &mut ApiRequest) -> Result<OnUpgrade, ApiError> {
    let h2c = req
        .headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("h2c"));
    match req.upgrade.take() {
        Some(upgrade) if h2c && wants_upgrade(&req.headers) => Ok(upgrade),
        _ => Err(ApiError::bad_request(
            "this endpoint needs a connection upgrade to h2c \
             (Connection: Upgrade, Upgrade: h2c)",
        )),
    }
}

/// The `101` answer; `then` gets the connection once it has gone out.
pub fn switch<F, Fut>(upgrade: OnUpgrade, then: F) -> Response<Body>
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut resp = response::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = resp.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("h2c"));
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => then(io).await,
            Err(err) => tracing::debug!(%err, "the h2c upgrade did not complete"),
        }
    });
    resp
}
