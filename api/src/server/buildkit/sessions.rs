//! The client sessions open on `/session`: each is an HTTP/2 connection on
//! which hutch is the gRPC client and the BuildKit client (buildx) serves
//! the files of its local sources, credentials and the like. A solve names
//! its session by ID; the session may arrive just after the solve (buildx
//! dials both at once), so a lookup waits for it a while.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use hutch_images::registry::AuthConfig;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper::HeaderMap;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::h2c;
use super::proto::filesync::auth_client::AuthClient;
use super::proto::filesync::CredentialsRequest;
use hyper::Response;

/// How long a solve waits for the session it names to be dialled.
const ARRIVAL: Duration = Duration::from_secs(10);

/// One client session.
#[derive(Clone)]
pub struct Session {
    pub id: String,
    /// The gRPC methods the client serves (`/moby.filesync.v1.FileSync/DiffCopy`).
    pub methods: Vec<String>,
    pub channel: Channel,
}

impl Session {
    pub fn serves(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// The client's credentials for the registry `domain`, from the
    /// session's `Auth` service, which answers from the CLI's config and
    /// credential helpers (none when it has none or does not serve it).
    /// Docker Hub is asked for as BuildKit's resolver names it.
    pub async fn credentials(&self, domain: &str) -> Option<AuthConfig> {
        if !self.serves(CREDENTIALS) {
            return None;
        }
        let host = if domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            domain
        };
        let mut client = AuthClient::with_origin(self.channel.clone(), origin());
        let answer = client
            .credentials(CredentialsRequest {
                host: host.to_owned(),
            })
            .await
            .ok()?
            .into_inner();
        match (answer.username.is_empty(), answer.secret.is_empty()) {
            (_, true) => None,
            // A secret without a user name is an identity token.
            (true, false) => Some(AuthConfig {
                identity_token: Some(answer.secret),
                ..AuthConfig::default()
            }),
            (false, false) => Some(AuthConfig {
                username: Some(answer.username),
                password: Some(answer.secret),
                ..AuthConfig::default()
            }),
        }
    }
}

const CREDENTIALS: &str = "/moby.filesync.v1.Auth/Credentials";

#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    arrived: Notify,
}

impl Sessions {
    /// The session `id`, waiting up to 10 s for it to be dialled.
    pub async fn get(&self, id: &str) -> Result<Session, ApiError> {
        let deadline = tokio::time::Instant::now() + ARRIVAL;
        loop {
            let notified = self.arrived.notified();
            if let Some(s) = self.open.lock().ok().and_then(|m| m.get(id).cloned()) {
                return Ok(s);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ApiError::bad_request(format!(
                    "no active session for {id}: context deadline exceeded"
                )));
            }
        }
    }

    fn insert(&self, session: Session) {
        if let Ok(mut m) = self.open.lock() {
            m.insert(session.id.clone(), session);
        }
        self.arrived.notify_waiters();
    }

    fn remove(&self, id: &str) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(id);
        }
    }
}

/// `POST /session`: takes the connection over and keeps the session
/// registered for as long as the client holds it open.
pub async fn open(mut req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let upgrade = h2c::take(&mut req)?;
    let id = header(&req.headers, "X-Docker-Expose-Session-Uuid")
        .ok_or_else(|| ApiError::bad_request("no session ID (X-Docker-Expose-Session-Uuid)"))?;
    let name = header(&req.headers, "X-Docker-Expose-Session-Name").unwrap_or_default();
    let methods = req
        .headers
        .get_all("X-Docker-Expose-Session-Grpc-Method")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.trim().to_owned())
        .collect();
    let daemon = req.daemon.clone();
    Ok(h2c::switch(upgrade, move |io| async move {
        let (send, conn) = match handshake(io).await {
            Ok(parts) => parts,
            Err(err) => {
                tracing::debug!(%err, "session HTTP/2 handshake failed");
                return;
            }
        };
        tracing::debug!(%id, %name, "session open");
        daemon.buildkit.sessions.insert(Session {
            id: id.clone(),
            methods,
            channel: Channel(send),
        });
        if let Err(err) = conn.await {
            tracing::debug!(%err, %id, "session connection ended");
        }
        daemon.buildkit.sessions.remove(&id);
        tracing::debug!(%id, "session closed");
    }))
}

type Connection =
    hyper::client::conn::http2::Connection<Upgraded, tonic::body::Body, TokioExecutor>;

async fn handshake(
    io: Upgraded,
) -> Result<(SendRequest<tonic::body::Body>, Connection), hyper::Error> {
    hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A session's HTTP/2 connection as the tower service tonic's generated
/// clients call through.
#[derive(Clone)]
pub struct Channel(SendRequest<tonic::body::Body>);

type ResponseFuture = Pin<
    Box<
        dyn Future<Output = Result<hyper::http::Response<hyper::body::Incoming>, hyper::Error>>
            + Send,
    >,
>;

impl tower::Service<hyper::http::Request<tonic::body::Body>> for Channel {
    type Response = hyper::http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// The origin tonic's clients put in their requests' URIs (HTTP/2 needs a
/// scheme and authority; the peer ignores them).
pub fn origin() -> hyper::http::Uri {
    hyper::http::Uri::from_static("http://buildkit-session")
}
