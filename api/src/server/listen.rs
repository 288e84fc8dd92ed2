//! Listen addresses as dockerd spells them (`-H unix:///path`, `-H tcp://host:port`).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_rustls::TlsAcceptor;

/// How long a TLS client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl ListenAddr {
    pub fn parse(spec: &str) -> anyhow::Result<Self> {
        if let Some(path) = spec.strip_prefix("unix://") {
            if path.is_empty() {
                bail!("invalid host {spec:?}: unix:// needs a socket path");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = spec.strip_prefix("tcp://") {
            if !addr.contains(':') {
                bail!("invalid host {spec:?}: tcp:// needs HOST:PORT");
            }
            return Ok(Self::Tcp(addr.to_string()));
        }
        if spec.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(spec)));
        }
        bail!("invalid host {spec:?}: expected unix:///path or tcp://host:port")
    }

    /// Remove what binding left on disk.
    pub fn cleanup(&self) {
        if let Self::Unix(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener, Option<TlsAcceptor>),
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// An accepted connection; TLS ones still need their handshake, which runs
/// in the connection's own task so a slow client cannot stall `accept`.
pub enum Accepted {
    Ready(Box<dyn Stream>),
    Tls(TlsAcceptor, TcpStream),
}

impl Accepted {
    pub async fn establish(self) -> std::io::Result<Box<dyn Stream>> {
        match self {
            Self::Ready(stream) => Ok(stream),
            Self::Tls(acceptor, tcp) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(stream) => Ok(Box::new(stream?)),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                }
            }
        }
    }
}

impl Listener {
    pub async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Self::Unix(l) => Ok(Accepted::Ready(Box::new(l.accept().await?.0))),
            Self::Tcp(l, tls) => {
                let (stream, _) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(match tls {
                    Some(acceptor) => Accepted::Tls(acceptor.clone(), stream),
                    None => Accepted::Ready(Box::new(stream)),
                })
            }
        }
    }
}

pub async fn bind(
    addr: &ListenAddr,
    group: Option<&str>,
    tls: Option<&TlsAcceptor>,
) -> anyhow::Result<Listener> {
    match addr {
        ListenAddr::Unix(path) => bind_unix(path, group).map(Listener::Unix),
        ListenAddr::Tcp(hostport) => {
            if tls.is_none() {
                tracing::warn!(
                    %hostport,
                    "listening on TCP without TLS: anyone who can reach this port controls \
                     the engine (use --tlsverify)"
                );
            }
            let l = TcpListener::bind(hostport)
                .await
                .with_context(|| format!("binding tcp://{hostport}"))?;
            Ok(Listener::Tcp(l, tls.cloned()))
        }
    }
}

fn bind_unix(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        // A socket file left by a daemon that died is stale; one that still
        // answers belongs to a live daemon, which we must not steal from.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another daemon is already listening on {}; stop it or pass -H",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if let Some(group) = group {
        let gid = match nix::unistd::Group::from_name(group) {
            Ok(Some(g)) => g.gid,
            Ok(None) => match group.parse::<u32>() {
                Ok(n) => nix::unistd::Gid::from_raw(n),
                Err(_) => bail!("socket group {group:?} does not exist"),
            },
            Err(err) => bail!("looking up group {group:?}: {err}"),
        };
        nix::unistd::chown(path, None, Some(gid))
            .with_context(|| format!("giving {} to group {group}", path.display()))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockerd_spellings() {
        assert_eq!(
            ListenAddr::parse("unix:///run/hutch/hutch.sock").ok(),
            Some(ListenAddr::Unix("/run/hutch/hutch.sock".into()))
        );
        assert_eq!(
            ListenAddr::parse("tcp://0.0.0.0:2376").ok(),
            Some(ListenAddr::Tcp("0.0.0.0:2376".into()))
        );
        assert!(ListenAddr::parse("unix://").is_err());
        assert!(ListenAddr::parse("tcp://nohost").is_err());
        assert!(ListenAddr::parse("fd://").is_err());
    }
}
