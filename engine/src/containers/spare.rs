//! Spare supervisors, from the supervisor zygote (`hutch __supervise`, see
//! [`crate::supervisor::entry`]): the engine spawns the zygote once, and
//! each start takes the spare it keeps forked ahead, so starting a container
//! costs a message to a process that is already running instead of an exec
//! of the hutch binary.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::runtime::channel;

/// The byte that asks the zygote for a spare.
pub const SPARE_TAKE: u8 = 1;
/// The byte that has the zygote fork the next spare (sent once a start is
/// done, so the fork does not compete with it for the CPU).
pub const SPARE_REFILL: u8 = 2;

/// A detached supervisor waiting for its container; `sock` is its spawn
/// socket.
#[derive(Debug)]
pub struct Spare {
    pub sock: UnixStream,
}

/// The zygote, spawned on first use and again should it die.
#[derive(Debug, Clone)]
pub struct SparePool {
    exe: PathBuf,
    zygote: Arc<Mutex<Option<Zygote>>>,
}

#[derive(Debug)]
struct Zygote {
    child: Child,
    sock: UnixStream,
}

impl SparePool {
    pub fn new(exe: PathBuf) -> SparePool {
        SparePool {
            exe,
            zygote: Arc::new(Mutex::new(None)),
        }
    }

    /// A spare supervisor.
    pub fn take(&self) -> io::Result<Spare> {
        let mut zygote = self.zygote.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = None;
        // A zygote that died (killed, or the engine's namespace changed
        // under it) is replaced once.
        for _ in 0..2 {
            if zygote.is_none() {
                *zygote = Some(Zygote::spawn(&self.exe)?);
            }
            let Some(z) = zygote.as_mut() else { continue };
            match z.request() {
                Ok(sock) => return Ok(Spare { sock }),
                Err(e) => {
                    tracing::warn!(%e, "the supervisor zygote failed; spawning another");
                    if let Some(mut dead) = zygote.take() {
                        let _ = dead.child.kill();
                        let _ = dead.child.wait();
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no supervisor zygote")))
    }

    /// Has a spare ready for the next start: spawns the zygote ahead of the
    /// first start (it forks its first spare right away), or asks the
    /// running one to fork the next spare. A lost request only makes the
    /// next [`SparePool::take`] wait for the fork.
    pub fn refill(&self) {
        let mut zygote = self.zygote.lock().unwrap_or_else(|p| p.into_inner());
        match zygote.as_mut() {
            None => match Zygote::spawn(&self.exe) {
                Ok(z) => *zygote = Some(z),
                Err(e) => tracing::warn!(%e, "spawning the supervisor zygote"),
            },
            Some(z) => {
                if let Err(e) = z.sock.write_all(&[SPARE_REFILL]) {
                    tracing::debug!(%e, "asking the zygote for the next spare");
                }
            }
        }
    }
}

impl Zygote {
    fn spawn(exe: &PathBuf) -> io::Result<Zygote> {
        let (ours, theirs) = UnixStream::pair()?;
        let child = Command::new(exe)
            .arg("__supervise")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Zygote { child, sock: ours })
    }

    /// Asks for a spare: one byte out, the spare's socket back.
    fn request(&mut self) -> io::Result<UnixStream> {
        self.sock.write_all(&[SPARE_TAKE])?;
        let mut fds = channel::recv_fds(&self.sock, 1)?;
        fds.pop()
            .map(UnixStream::from)
            .ok_or_else(|| io::Error::other("the supervisor zygote sent no socket"))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        // Closing the socket ends the zygote; reap it.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}
