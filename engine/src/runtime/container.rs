//! The engine's typed API to the runtime: create, start, wait, kill and
//! delete containers. Each container is built by a runtime helper process
//! (`hutch __runtime create`), so the multi-threaded daemon only ever
//! spawns a program and never forks Rust code of its own.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::channel::{self, ControlMsg};
use super::spec::{ContainerSpec, RootfsSpec};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("starting the runtime helper {helper}: {source}")]
    Spawn {
        helper: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to the runtime helper: {0}")]
    Control(#[source] io::Error),
    #[error("the runtime helper broke the protocol: {0}")]
    Protocol(String),
    /// The container could not be created or started; `code` is the exit
    /// code Docker records (125 runtime error, 126 cannot exec, 127 not found).
    #[error("{message}")]
    Failed { code: i32, message: String },
    #[error("removing {path}: {source}")]
    Cleanup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("signalling the container: {0}")]
    Signal(#[source] nix::Error),
}

/// Spawns runtime helpers.
#[derive(Debug, Clone)]
pub struct Runtime {
    helper: PathBuf,
}

/// Where the container's output goes until supervision and logs land.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Runtime {
    /// Runtime helpers are `helper __runtime create` (the hutch binary).
    pub fn new(helper: impl Into<PathBuf>) -> Self {
        Runtime {
            helper: helper.into(),
        }
    }

    /// Uses the running executable as the helper (the hutch binary).
    pub fn from_current_exe() -> io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?))
    }

    /// Creates the container: its init is set up in its namespaces and waits
    /// for [`Container::start`].
    pub fn create(&self, spec: &ContainerSpec, output: Output) -> Result<Container, RuntimeError> {
        let (control, theirs) = UnixStream::pair().map_err(RuntimeError::Control)?;
        let stdio = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::inherit, Stdio::from);
        let helper = Command::new(&self.helper)
            .args(["__runtime", "create"])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(stdio(output.stdout))
            .stderr(stdio(output.stderr))
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                helper: self.helper.clone(),
                source,
            })?;
        let mut container = Container {
            id: spec.id.clone(),
            pid: Pid::from_raw(0),
            control,
            helper,
            rootfs: spec.rootfs.clone(),
            exit_code: None,
        };
        channel::send(
            &mut container.control,
            &ControlMsg::Create(Box::new(spec.clone())),
        )
        .map_err(RuntimeError::Control)?;
        match container.recv()? {
            ControlMsg::Created { pid } => {
                container.pid = Pid::from_raw(pid);
                Ok(container)
            }
            ControlMsg::Failed { code, message } => {
                let _ = container.helper.wait();
                Err(RuntimeError::Failed { code, message })
            }
            other => Err(RuntimeError::Protocol(format!("{other:?} after Create"))),
        }
    }
}

/// A created container and its runtime helper.
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: Pid,
    control: UnixStream,
    helper: Child,
    rootfs: RootfsSpec,
    exit_code: Option<i32>,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's PID in the engine's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Execs the container's command. A command that cannot be run fails
    /// with Docker's exit code and message (127, 126), and the container is
    /// then already exited with that code.
    pub fn start(&mut self) -> Result<(), RuntimeError> {
        channel::send(&mut self.control, &ControlMsg::Start).map_err(RuntimeError::Control)?;
        match self.recv()? {
            ControlMsg::Started => Ok(()),
            ControlMsg::Failed { code, message } => {
                self.exit_code = Some(code);
                Err(RuntimeError::Failed { code, message })
            }
            other => Err(RuntimeError::Protocol(format!("{other:?} after Start"))),
        }
    }

    /// Blocks until the container exits; returns Docker's exit code.
    pub fn wait(&mut self) -> Result<i32, RuntimeError> {
        if let Some(code) = self.exit_code {
            return Ok(code);
        }
        match self.recv()? {
            ControlMsg::Exited { code } => {
                self.exit_code = Some(code);
                Ok(code)
            }
            other => Err(RuntimeError::Protocol(format!("{other:?} while waiting"))),
        }
    }

    /// Sends a signal to the container's init.
    pub fn kill(&self, signal: Signal) -> Result<(), RuntimeError> {
        if self.exit_code.is_some() {
            return Ok(());
        }
        kill(self.pid, signal).map_err(RuntimeError::Signal)
    }

    /// Removes the container: kills it if it still runs, reaps its helper,
    /// and deletes its upper, work and mount-point directories. Its mounts
    /// lived only in its own mount namespace and are gone with it.
    pub fn delete(mut self) -> Result<(), RuntimeError> {
        if self.exit_code.is_none() {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
        drop(self.control);
        let _ = self.helper.wait();
        for dir in [&self.rootfs.upper, &self.rootfs.work, &self.rootfs.target] {
            remove_dir(dir)?;
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<ControlMsg, RuntimeError> {
        channel::recv::<ControlMsg>(&mut self.control)
            .map_err(RuntimeError::Control)?
            .ok_or_else(|| RuntimeError::Protocol("the runtime helper exited unexpectedly".into()))
    }
}

fn remove_dir(dir: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(RuntimeError::Cleanup {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}
