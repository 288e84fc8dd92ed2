//! The Docker Engine API server: listeners, connection handling and shutdown.
//! Requests are routed in `router`; each resource has its own module.

mod listen;
mod response;
mod router;
pub mod system;

use std::path::PathBuf;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

pub use listen::ListenAddr;

/// What the daemon needs to serve.
#[derive(Debug)]
pub struct Config {
    pub addrs: Vec<ListenAddr>,
    pub socket_group: Option<String>,
    pub data_root: PathBuf,
}

/// State shared by every request handler.
#[derive(Debug)]
pub struct Daemon {
    pub data_root: PathBuf,
}

/// Serve the API until SIGINT or SIGTERM, then stop accepting, let the
/// requests in flight finish briefly, and remove the sockets.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let daemon = Arc::new(Daemon {
        data_root: config.data_root.clone(),
    });
    tracing::info!(data_root = %daemon.data_root.display(), "daemon starting");
    let mut listeners = Vec::new();
    for addr in &config.addrs {
        listeners.push(listen::bind(addr, config.socket_group.as_deref()).await?);
        tracing::info!(%addr, "API listening");
    }
    let mut accepts = JoinSet::new();
    for listener in listeners {
        let daemon = daemon.clone();
        accepts.spawn(accept_loop(listener, daemon));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    accepts.abort_all();
    for addr in &config.addrs {
        addr.cleanup();
    }
    Ok(())
}

async fn accept_loop(listener: listen::Listener, daemon: Arc<Daemon>) {
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
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let daemon = daemon.clone();
                async move { Ok::<_, std::convert::Infallible>(router::route(&daemon, req).await) }
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
