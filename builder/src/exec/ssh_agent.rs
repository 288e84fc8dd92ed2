//! `RUN --mount=type=ssh`: an SSH agent reached through a socket of the
//! build's own. The RUN never sees the agent's real socket (which belongs
//! to whoever started the agent, and whose mode the build must not
//! change): each mount gets a fresh listening socket in the build's
//! scratch directory, owned and moded as the mount asks, and each
//! connection to it is relayed to the agent. Where the agent lives is the
//! source's business: a local socket here (`hutch build --ssh`), the
//! client's session for buildx (in the API crate).

use std::collections::HashMap;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::SshSource;

/// The id BuildKit uses when neither `--ssh` nor the mount names one.
pub const DEFAULT_ID: &str = "default";

/// A fresh socket path in `dir` for agent `id` (numbered: an id is the
/// client's text, not a file name).
pub fn socket_path(dir: &Path, serial: &AtomicUsize) -> PathBuf {
    dir.join(format!(
        "ssh-{}.sock",
        serial.fetch_add(1, Ordering::SeqCst)
    ))
}

/// `--ssh ID=SOCKET` of `hutch build`: agents on local sockets.
#[derive(Debug, Default)]
pub struct LocalAgents {
    agents: HashMap<String, PathBuf>,
    serial: AtomicUsize,
    /// The relays started, stopped when this is dropped.
    relays: Mutex<Vec<(PathBuf, Arc<AtomicBool>)>>,
}

impl LocalAgents {
    /// `specs` as `docker build --ssh` takes them: `default`, `ID` (both
    /// the agent of `$SSH_AUTH_SOCK`) or `ID=SOCKET`. Key files (which
    /// buildx loads into an agent of its own) are refused.
    pub fn parse(specs: &[String], auth_sock: Option<&str>) -> Result<LocalAgents, String> {
        let mut agents = HashMap::new();
        for spec in specs {
            let (id, path) = match spec.split_once('=') {
                Some((id, path)) => (id.trim(), path.trim().to_owned()),
                None => {
                    let sock = auth_sock.filter(|s| !s.is_empty()).ok_or_else(|| {
                        format!("--ssh {spec}: SSH_AUTH_SOCK is not set (start ssh-agent, or pass --ssh {spec}=SOCKET)")
                    })?;
                    (spec.trim(), sock.to_owned())
                }
            };
            if id.is_empty() {
                return Err(format!("--ssh {spec}: empty id"));
            }
            if path.contains(',') {
                return Err(format!(
                    "--ssh {spec}: key files are not supported by hutch; add the keys to an \
                     ssh-agent and pass its socket"
                ));
            }
            let meta =
                std::fs::metadata(&path).map_err(|e| format!("--ssh {spec}: {path}: {e}"))?;
            if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
                return Err(format!(
                    "--ssh {spec}: {path} is not a socket (key files are not supported by \
                     hutch; add the keys to an ssh-agent and pass its socket)"
                ));
            }
            agents.insert(id.to_owned(), PathBuf::from(path));
        }
        Ok(LocalAgents {
            agents,
            serial: AtomicUsize::new(0),
            relays: Mutex::default(),
        })
    }
}

impl SshSource for LocalAgents {
    fn agent_socket(&self, id: &str, dir: &Path) -> Result<Option<PathBuf>, String> {
        let Some(agent) = self.agents.get(id) else {
            return Ok(None);
        };
        let path = socket_path(dir, &self.serial);
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let agent = agent.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("ssh-relay".into())
            .spawn(move || accept_loop(&listener, &agent, &stopped))
            .map_err(|e| format!("starting the agent relay: {e}"))?;
        self.relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.clone(), stop));
        Ok(Some(path))
    }
}

impl Drop for LocalAgents {
    fn drop(&mut self) {
        let relays = self.relays.get_mut().unwrap_or_else(|e| e.into_inner());
        for (path, stop) in relays.drain(..) {
            stop.store(true, Ordering::SeqCst);
            // Wakes the accept so the thread sees the flag (the socket may
            // already be gone with the scratch dir: then so is the thread's
            // reason to wait, but it waits on; harmless in a short-lived CLI).
            let _ = UnixStream::connect(&path);
        }
    }
}

fn accept_loop(listener: &UnixListener, agent: &Path, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%e, "ssh relay: accept");
                continue;
            }
        };
        match UnixStream::connect(agent) {
            Ok(upstream) => {
                if let Err(e) = relay(conn, upstream) {
                    tracing::debug!(%e, "ssh relay: starting a connection");
                }
            }
            Err(e) => tracing::warn!(%e, agent = %agent.display(), "ssh relay: the agent"),
        }
    }
}

/// Copies both ways until each side ends, on two threads.
fn relay(a: UnixStream, b: UnixStream) -> io::Result<()> {
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    std::thread::Builder::new()
        .name("ssh-relay-up".into())
        .spawn(move || pipe(a, b))?;
    std::thread::Builder::new()
        .name("ssh-relay-down".into())
        .spawn(move || pipe(b2, a2))?;
    Ok(())
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_mount_socket_relays_to_the_agent() {
        let dir = std::env::temp_dir().join(format!("hutch-ssh-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let agent_path = dir.join("agent");
        let agent = UnixListener::bind(&agent_path).expect("agent");
        // An "agent" that answers one request with its bytes reversed.
        let served = std::thread::spawn(move || {
            let (mut c, _) = agent.accept().expect("accept");
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).expect("read");
            buf.reverse();
            c.write_all(&buf).expect("write");
        });
        let spec = format!("default={}", agent_path.display());
        let agents = LocalAgents::parse(&[spec], None).expect("parses");
        let sock = agents
            .agent_socket(DEFAULT_ID, &dir)
            .expect("serves")
            .expect("known id");
        assert!(agents.agent_socket("other", &dir).expect("asks").is_none());
        let mut c = UnixStream::connect(&sock).expect("connect");
        c.write_all(b"hello").expect("send");
        let mut back = [0u8; 5];
        c.read_exact(&mut back).expect("answer");
        assert_eq!(&back, b"olleh");
        served.join().expect("agent thread");
        drop(agents);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn specs_that_are_not_agent_sockets_are_refused() {
        assert!(LocalAgents::parse(&["default".into()], None)
            .expect_err("no agent")
            .contains("SSH_AUTH_SOCK"));
        assert!(LocalAgents::parse(&["default=/etc/passwd".into()], None)
            .expect_err("a file")
            .contains("not a socket"));
        assert!(
            LocalAgents::parse(&["k=/a/id_rsa,/b/id_ed25519".into()], None)
                .expect_err("keys")
                .contains("key files")
        );
    }
}
