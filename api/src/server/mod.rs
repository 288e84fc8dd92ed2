//! The Docker Engine API server: listeners, connection handling, shutdown,
//! and the state handlers share. Routing is in `router`; each Docker
//! resource has its module under `routes`; `error` is the one place domain
//! errors become HTTP statuses.

mod body_io;
mod buildkit;
mod doctor;
mod error;
mod events;
mod hijack;
mod listen;
mod query;
mod request;
mod response;
mod router;
mod routes;
mod tls;
pub mod version;
mod websocket;

use std::path::PathBuf;
use std::sync::Arc;

use hutch_engine::containers::{Engine, EngineError};
use hutch_images::registry::RegistrySettings;
use hutch_images::ImageStore;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

pub use doctor::DoctorProcess;
pub use events::EventBus;
pub use listen::ListenAddr;
pub use routes::host::go_arch;
pub use tls::TlsOptions;

use error::ApiError;

/// What the daemon needs to serve.
#[derive(Debug)]
pub struct Config {
    pub addrs: Vec<ListenAddr>,
    pub socket_group: Option<String>,
    /// TLS for TCP listeners.
    pub tls: Option<TlsOptions>,
    pub data_root: PathBuf,
    pub images: ImageStore,
    pub engine: Engine,
    /// Shared with the engine, which publishes container events into it.
    pub events: Arc<EventBus>,
    /// The doctor, started while the daemon was still in the pod's namespaces.
    pub doctor: DoctorProcess,
    /// Insecure registries, mirrors and the certs.d directory, from the
    /// daemon's flags, its config file and the environment.
    pub registry: RegistrySettings,
    /// Options of the config file that hutch ignores, for `/info`'s warnings.
    pub config_warnings: Vec<String>,
}

/// State shared by every request handler.
#[derive(Debug)]
pub struct Daemon {
    pub data_root: PathBuf,
    /// Stable across restarts (moby's engine ID), for `/info`.
    pub id: String,
    pub images: ImageStore,
    pub engine: Engine,
    pub events: Arc<EventBus>,
    pub doctor: doctor::DoctorCell,
    /// `docker run`'s attach requests waiting for the start.
    pub pending_attaches: hijack::PendingAttaches,
    pub registry: RegistrySettings,
    pub config_warnings: Vec<String>,
    /// BuildKit sessions and solves (`/session`, `/grpc`).
    pub buildkit: buildkit::BuildKit,
}

impl Daemon {
    /// Runs a blocking image-store operation on a blocking thread.
    pub async fn with_images<T, F>(&self, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&ImageStore) -> Result<T, hutch_images::ImageError> + Send + 'static,
    {
        let store = self.images.clone();
        Ok(tokio::task::spawn_blocking(move || op(&store)).await??)
    }

    /// Runs a (blocking) engine call on a blocking thread.
    pub async fn with_engine<T, F>(&self, op: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    {
        let engine = self.engine.clone();
        Ok(tokio::task::spawn_blocking(move || op(&engine)).await??)
    }
}

/// Serve the API until SIGINT or SIGTERM, then stop accepting and remove
/// the sockets.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    raise_fd_limit();
    let daemon = Arc::new(Daemon {
        id: doctor::engine_id(&config.data_root)?,
        doctor: doctor::DoctorCell::start(config.doctor),
        data_root: config.data_root.clone(),
        images: config.images,
        engine: config.engine,
        events: config.events,
        pending_attaches: hijack::PendingAttaches::default(),
        registry: config.registry,
        config_warnings: config.config_warnings,
        buildkit: buildkit::BuildKit::default(),
    });
    tracing::info!(data_root = %daemon.data_root.display(), "daemon starting");
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let mut listeners = Vec::new();
    for addr in &config.addrs {
        listeners.push(listen::bind(addr, config.socket_group.as_deref(), tls.as_ref()).await?);
        tracing::info!(%addr, "API listening");
    }
    let router = Arc::new(router::Router::new());
    let mut accepts = JoinSet::new();
    for listener in listeners {
        accepts.spawn(accept_loop(listener, daemon.clone(), router.clone()));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    accepts.abort_all();
    // Builds in flight are cancelled and clean up (RUN containers, mounts,
    // temp directories) before the process exits.
    let _ = tokio::task::spawn_blocking(|| {
        routes::build::cancel_all(std::time::Duration::from_secs(10))
    })
    .await;
    for addr in &config.addrs {
        addr.cleanup();
    }
    Ok(())
}

async fn accept_loop(listener: listen::Listener, daemon: Arc<Daemon>, router: Arc<router::Router>) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(err) => {
                // EMFILE and friends are transient: log and keep serving.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let daemon = daemon.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let stream = match stream.establish().await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%err, "connection refused during its TLS handshake");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let daemon = daemon.clone();
                let router = router.clone();
                async move {
                    // Arrival and answer times, to find where a client's
                    // time goes (`HUTCH_LOG=hutch::server=debug`).
                    let started = std::time::Instant::now();
                    let (method, path) = (req.method().clone(), req.uri().path().to_string());
                    tracing::debug!(%method, %path, "request");
                    let response = router.handle(daemon, req).await;
                    tracing::debug!(
                        %method,
                        %path,
                        status = response.status().as_u16(),
                        ms = started.elapsed().as_secs_f64() * 1000.0,
                        "answered"
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(err) = conn.await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
}

/// Every connection is a file descriptor: lift the soft limit to the hard
/// one so a burst of clients does not hit EMFILE at 1024 (dockerd does too).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(%err, soft, hard, "cannot raise the open-file limit");
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(%err, "cannot read the open-file limit"),
    }
}

/// dockerd's trap: once the shutdown has begun, `more` further SIGINT or
/// SIGTERM end the process at once (128 + the signal), without cleanup:
/// the next start deals with what is left, as after a crash.
pub async fn force_quit_after(more: usize) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    let mut seen = 0;
    loop {
        let number = tokio::select! {
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
        };
        seen += 1;
        if seen >= more {
            tracing::warn!(
                "forcing the shutdown without cleanup: {} signals received",
                more + 1
            );
            std::process::exit(128 + number);
        }
        tracing::info!(
            left = more - seen,
            "shutting down; more SIGINT/SIGTERM force it"
        );
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
