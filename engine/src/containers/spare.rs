//! Spare supervisors: one `hutch __supervise` process spawned ahead of each
//! start, so starting a container costs a message to a process that is
//! already running instead of an exec of the hutch binary.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// A detached supervisor waiting for its container; `sock` is its spawn
/// socket.
#[derive(Debug)]
pub struct Spare {
    pub sock: UnixStream,
}

/// Keeps one spare ready.
#[derive(Debug, Clone)]
pub struct SparePool {
    exe: PathBuf,
    ready: Arc<Mutex<Option<Spare>>>,
}

impl SparePool {
    pub fn new(exe: PathBuf) -> SparePool {
        SparePool {
            exe,
            ready: Arc::new(Mutex::new(None)),
        }
    }

    /// A spare: the ready one, else a new one; a replacement is spawned in
    /// the background.
    pub fn take(&self) -> io::Result<Spare> {
        let ready = self.ready.lock().ok().and_then(|mut r| r.take());
        let spare = match ready {
            Some(s) => s,
            None => spawn(&self.exe)?,
        };
        self.refill();
        Ok(spare)
    }

    /// Spawns the next spare on a thread.
    pub fn refill(&self) {
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("spare-supervisor".into())
            .stack_size(64 * 1024)
            .spawn(move || match spawn(&pool.exe) {
                Ok(spare) => {
                    if let Ok(mut r) = pool.ready.lock() {
                        if r.is_none() {
                            *r = Some(spare);
                        }
                    }
                }
                Err(e) => tracing::warn!(%e, "spawning a spare supervisor"),
            });
        if let Err(e) = spawned {
            tracing::warn!(%e, "starting the spare supervisor thread");
        }
    }
}

/// Starts `exe __supervise` and waits for its first half to exit (the
/// supervisor proper is its detached child).
fn spawn(exe: &PathBuf) -> io::Result<Spare> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut child = Command::new(exe)
        .arg("__supervise")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let status = child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "__supervise exited with {status}"
        )));
    }
    Ok(Spare { sock: ours })
}
