//! Starting the container's process with the supervisor's stdio: pipes for
//! stdout and stderr (and stdin with `-i`), or a pty opened inside the
//! container with `-t`.

use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::fdio::{pipe, set_nonblocking};
use crate::runtime::helper::{self, Failure};
use crate::runtime::{ContainerSpec, InitStdio};

/// The supervisor's ends of a started container's streams.
#[derive(Debug)]
pub struct Launched {
    pub pid: Pid,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// The pty master (input and output) with a tty.
    pub console: Option<OwnedFd>,
    /// Where stdin goes, with `open_stdin` and no tty.
    pub stdin: Option<OwnedFd>,
    /// The container's mount namespace, held so that its teardown (every
    /// mount unmounted, an RCU grace period waited for) happens when we
    /// let go of it after the exit has been reported, not in the exiting
    /// process before its parent even learns of the exit.
    pub mount_ns: Option<OwnedFd>,
}

/// Creates and starts the container. Must run in the single-threaded
/// supervisor.
pub fn launch(spec: &ContainerSpec, tty: bool, open_stdin: bool) -> Result<Launched, Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("container stdio: {e}"));
    let mut ours = Launched {
        pid: Pid::from_raw(0),
        stdout: None,
        stderr: None,
        console: None,
        stdin: None,
        mount_ns: None,
    };
    let stdio = if tty {
        InitStdio {
            tty: true,
            ..InitStdio::default()
        }
    } else {
        let (out_r, out_w) = pipe().map_err(io)?;
        let (err_r, err_w) = pipe().map_err(io)?;
        set_nonblocking(&out_r).map_err(io)?;
        set_nonblocking(&err_r).map_err(io)?;
        ours.stdout = Some(out_r);
        ours.stderr = Some(err_r);
        let stdin = if open_stdin {
            let (in_r, in_w) = pipe().map_err(io)?;
            set_nonblocking(&in_w).map_err(io)?;
            ours.stdin = Some(in_w);
            in_r
        } else {
            open(
                "/dev/null",
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Failure::runtime(format!("opening /dev/null: {e}")))?
        };
        InitStdio {
            stdin: Some(stdin),
            stdout: Some(out_w),
            stderr: Some(err_w),
            tty: false,
        }
    };
    // The network hook plugs the container in while its init does its
    // setup (both take about a millisecond); without one the init need
    // not wait for us at all.
    let mut created = match &spec.network_hook {
        Some(hook) => {
            let mut spawned = helper::spawn(spec, stdio)?;
            ours.mount_ns = mount_ns_of(spawned.pid());
            let pid = spawned.pid().as_raw();
            if let Err(message) = crate::containers::networking::call_hook(hook, &spec.id, pid) {
                return Err(spawned.abandon(Failure::runtime(message)));
            }
            spawned.start_when_ready();
            spawned.ready()?
        }
        None => {
            let created = helper::create_and_start(spec, stdio)?;
            ours.mount_ns = mount_ns_of(created.pid);
            created
        }
    };
    if let Some(console) = created.console.take() {
        set_nonblocking(&console).map_err(io)?;
        ours.console = Some(console);
    }
    helper::start(&mut created)?;
    ours.pid = created.pid;
    Ok(ours)
}

/// The container's mount namespace (see [`Launched::mount_ns`]). Best
/// effort: without it the exit only reports a little later.
fn mount_ns_of(pid: Pid) -> Option<OwnedFd> {
    open(
        format!("/proc/{pid}/ns/mnt").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
}
