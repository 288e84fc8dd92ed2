//! Starting the container's process with the supervisor's stdio: pipes for
//! stdout and stderr (and stdin with `-i`), or a pty opened inside the
//! container with `-t`.

use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::fdio::{pipe, set_nonblocking};
use crate::containers::networking::HookCall;
use crate::runtime::helper::{self, Created, Failure, Spawned};
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

/// A start under way (see [`begin`]): the container's init doing its
/// setup and, with a network hook, the engine plugging it in meanwhile.
pub struct Launching {
    spawned: Spawned,
    hook: Option<HookCall>,
    ours: Launched,
}

/// A container released into its command (`Start` sent), its exec under
/// way (see [`Launching::release`]).
pub struct Released {
    created: Created,
    ours: Launched,
}

/// Begins a start: the init is made (or the premade one assigned) and sets
/// the container up, and the network hook is asked to plug it in, both
/// while the caller goes on (reading the rest of its state, taking its
/// attach clients). Nothing runs the container's command before
/// [`Launching::release`].
pub fn begin(spec: &ContainerSpec, tty: bool, open_stdin: bool) -> Result<Launching, Failure> {
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
    let spawned = helper::spawn(spec, stdio)?;
    ours.mount_ns = mount_ns_of(spawned.pid());
    // The plug (about a millisecond) runs alongside the init's setup (about
    // as long) instead of after it.
    let hook = match &spec.network_hook {
        Some(path) => match HookCall::send(path, &spec.id, spawned.pid().as_raw()) {
            Ok(call) => Some(call),
            Err(message) => return Err(spawned.abandon(Failure::runtime(message))),
        },
        None => None,
    };
    Ok(Launching {
        spawned,
        hook,
        ours,
    })
}

impl Launching {
    /// Waits for the plug and the setup, then releases the init into the
    /// container's command; [`Released::wait_exec`] waits for the exec.
    pub fn release(self) -> Result<Released, Failure> {
        let Launching {
            mut spawned,
            hook,
            mut ours,
        } = self;
        if let Some(call) = hook {
            if let Err(message) = call.answer() {
                return Err(spawned.abandon(Failure::runtime(message)));
            }
        }
        spawned.start_when_ready();
        let mut created = spawned.ready()?;
        if let Some(console) = created.console.take() {
            set_nonblocking(&console)
                .map_err(|e| Failure::runtime(format!("container console: {e}")))?;
            ours.console = Some(console);
        }
        ours.pid = created.pid;
        Ok(Released { created, ours })
    }

    /// Gives the start up after the caller's `failure`, ending the init
    /// (see [`Spawned::abandon`]).
    pub fn abandon(self, failure: Failure) -> Failure {
        self.spawned.abandon(failure)
    }

    /// Gives up a start that will not be released (a dropped prime): waits
    /// for the network hook's answer first, so that the engine's unplug,
    /// which follows our hang-up, cannot overtake the plug; then ends the
    /// init.
    pub fn withdraw(self) {
        let Launching { spawned, hook, .. } = self;
        if let Some(call) = hook {
            let _ = call.answer();
        }
        spawned.abandon(Failure::runtime("the prime was dropped"));
    }
}

impl Released {
    pub fn pid(&self) -> Pid {
        self.created.pid
    }

    /// Waits until the init has exec'd the container's command.
    pub fn wait_exec(mut self) -> Result<Launched, Failure> {
        helper::start(&mut self.created)?;
        Ok(self.ours)
    }
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
