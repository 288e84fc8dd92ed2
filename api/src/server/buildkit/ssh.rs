//! `--ssh` through buildx: the client's session serves its SSH agents by id
//! (`moby.sshforward.v1.SSH`). A RUN's `--mount=type=ssh` gets a socket of
//! the build's own (see the builder's `ssh_agent`); each connection a RUN
//! makes to it becomes one `ForwardAgent` stream to the client, with the id
//! in the `buildkit.ssh.id` metadata, as BuildKit's daemon does. The agent
//! and its keys stay on the client's machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use hutch_builder::exec::ssh_agent::socket_path;
use hutch_builder::exec::SshSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use super::proto::sshforward::ssh_client::SshClient;
use super::proto::sshforward::{BytesMessage, CheckAgentRequest};
use super::sessions::{self, Session};

const FORWARD_AGENT: &str = "/moby.sshforward.v1.SSH/ForwardAgent";
const ID_KEY: &str = "buildkit.ssh.id";
/// Bytes read from the RUN's connection per message.
const CHUNK: usize = 32 << 10;

pub struct SessionAgents {
    session: Session,
    runtime: Handle,
    serial: AtomicUsize,
    /// Ids asked of the client, and whether it has them.
    checked: Mutex<HashMap<String, bool>>,
    /// The sockets' accept loops, stopped when the build drops this.
    listeners: Mutex<Vec<AbortHandle>>,
}

impl std::fmt::Debug for SessionAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAgents")
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

impl SessionAgents {
    /// The agents of `session`. Call on the runtime: the builder asks from
    /// its own thread, through this runtime's handle.
    pub fn new(session: Session) -> SessionAgents {
        SessionAgents {
            session,
            runtime: Handle::current(),
            serial: AtomicUsize::new(0),
            checked: Mutex::default(),
            listeners: Mutex::default(),
        }
    }

    /// Whether the client forwards agent `id`.
    fn has(&self, id: &str) -> Result<bool, String> {
        if !self.session.serves(FORWARD_AGENT) {
            return Ok(false);
        }
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = checked.get(id) {
            return Ok(*known);
        }
        let mut client = SshClient::with_origin(self.session.channel.clone(), sessions::origin());
        let asked = self
            .runtime
            .block_on(client.check_agent(CheckAgentRequest { id: id.to_owned() }));
        // Any refusal means the client has no such agent (buildx answers
        // an unknown id with a plain error), as BuildKit reads it.
        let has = match asked {
            Ok(_) => true,
            Err(status) => {
                tracing::debug!(id, error = %status.message(), "the client has no such SSH agent");
                false
            }
        };
        checked.insert(id.to_owned(), has);
        Ok(has)
    }
}

impl SshSource for SessionAgents {
    fn agent_socket(&self, id: &str, dir: &Path) -> Result<Option<PathBuf>, String> {
        if !self.has(id)? {
            return Ok(None);
        }
        let path = socket_path(dir, &self.serial);
        let listener = {
            let _runtime = self.runtime.enter();
            UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?
        };
        let task = self
            .runtime
            .spawn(accept(listener, self.session.clone(), id.to_owned()));
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task.abort_handle());
        Ok(Some(path))
    }
}

impl Drop for SessionAgents {
    fn drop(&mut self) {
        let listeners = self.listeners.get_mut().unwrap_or_else(|e| e.into_inner());
        for task in listeners.drain(..) {
            task.abort();
        }
    }
}

async fn accept(listener: UnixListener, session: Session, id: String) {
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                tracing::debug!(%e, "ssh agent socket: accept");
                return;
            }
        };
        let (session, id) = (session.clone(), id.clone());
        tokio::spawn(async move {
            if let Err(e) = forward(conn, &session, &id).await {
                tracing::debug!(error = %e.message(), "ssh agent connection");
            }
        });
    }
}

/// Relays one connection to the client's agent `id` until both sides end.
async fn forward(conn: UnixStream, session: &Session, id: &str) -> Result<(), Status> {
    let (mut from_run, mut to_run) = conn.into_split();
    let (tx, rx) = mpsc::channel::<BytesMessage>(8);
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut request = Request::new(outgoing);
    let value: MetadataValue<_> = id
        .parse()
        .map_err(|_| Status::invalid_argument(format!("SSH id {id:?} cannot be sent")))?;
    request.metadata_mut().insert(ID_KEY, value);
    // The RUN's bytes must flow before the response starts: the client
    // sends its headers only once its agent has something to say, which
    // is after our request.
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_run.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = BytesMessage {
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the sender ends the request stream: the client's side
        // of the agent connection closes.
    });
    let mut client = SshClient::with_origin(session.channel.clone(), sessions::origin());
    let mut incoming = match client.forward_agent(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            up.abort();
            return Err(status);
        }
    };
    let down = async {
        while let Some(msg) = incoming.message().await? {
            to_run
                .write_all(&msg.data)
                .await
                .map_err(|e| Status::aborted(e.to_string()))?;
        }
        Ok::<(), Status>(())
    }
    .await;
    let _ = to_run.shutdown().await;
    // The reader ends when the RUN closes its side.
    let _ = up.await;
    down
}
