//! `podsim __pod-init`: the pod's pid 1, playing the pause container's part.
//! It holds the pod's namespaces open and reaps every orphan that the
//! kernel reparents to it.

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Reaps children forever; the pod ends when the shim kills this process.
pub fn run() -> anyhow::Result<()> {
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    // Blocked, SIGCHLD stays pending between reaping and waiting: no lost wakeup.
    chld.thread_block().context("blocking SIGCHLD")?;
    loop {
        reap_all()?;
        chld.wait().context("waiting for SIGCHLD")?;
    }
}

fn reap_all() -> anyhow::Result<()> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("reaping"),
        }
    }
}
