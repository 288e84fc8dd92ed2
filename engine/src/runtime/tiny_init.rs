//! `--init`: the container's PID 1 stays this small piece of hutch (already
//! inside the container, so no binary has to be bound in or be runnable
//! against the image's libc) and runs the command as its child, as
//! docker-init (tini) does: it reaps every orphan the kernel hands it,
//! forwards the signals it receives to the command, and exits with the
//! command's status once the command ends.

use std::convert::Infallible;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::channel::{self, InitMsg};
use super::error::{Context, SetupError};
use super::exec::{self, Command};
use super::init::close_other_fds;
use super::passwd::Credentials;
use super::spec::ProcessSpec;
use super::user;

/// Forks the command and becomes its init. Returns only on a setup error
/// before the fork; afterwards this process ends with the command's status.
pub fn run(
    process: &ProcessSpec,
    creds: &Credentials,
    command: &Command,
    sock: &mut UnixStream,
) -> Result<Infallible, SetupError> {
    // As docker-init runs: with the container's user, capabilities, limits
    // and no_new_privs, which the command inherits across the fork. Before,
    // PID 1 kept every capability of the container's user namespace, so a
    // container given CAP_SYS_PTRACE could borrow them by tracing it; now
    // tracing it gains nothing. (It stays dumpable, as docker-init is: a
    // container joining its namespaces, `--ipc container:`, opens them
    // from inside the shared user namespace. Its binary, hutch's, cannot
    // be written while this very process runs it: ETXTBSY.)
    user::switch_user(process, creds)?;
    // Block everything first, so no signal is lost between the fork and the
    // wait loop; the child unblocks before its exec.
    // PID 1 of its namespace gets the orphans anyway; as tini does, be the
    // subreaper too, should it ever run as another PID.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let all = SigSet::all();
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), Some(&mut old))
        .ctx(|| "blocking signals in the init".to_string())?;
    // SAFETY: the container process is single-threaded (a fork of the
    // single-threaded supervisor), so the child may run ordinary code.
    match unsafe { fork() }.ctx(|| "forking the command under --init".to_string())? {
        ForkResult::Child => {
            let err = match command_child(command, sock, &old) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            let code = err.exit_code();
            let _ = channel::send(
                sock,
                &InitMsg::Failed {
                    code,
                    message: err.to_string(),
                },
            );
            // SAFETY: ends the forked child without running exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            // Our copy of the sync socket must go, so that the supervisor
            // sees it close when the command's exec closes the other copy.
            // SAFETY: close_range only closes fds; nothing above 2 is used
            // by the init from here on.
            unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
            let code = reap_until(child, &all);
            // SAFETY: ends the init with the command's status.
            unsafe { libc::_exit(code) }
        }
    }
}

fn command_child(
    command: &Command,
    sock: &UnixStream,
    mask: &SigSet,
) -> Result<Infallible, SetupError> {
    mask.thread_set_mask()
        .ctx(|| "restoring the signal mask".to_string())?;
    close_other_fds(sock)?;
    Err(exec::exec(command))
}

/// Waits for signals: SIGCHLD reaps every exited child, anything else goes
/// to the command. Returns the command's exit code, Docker style.
fn reap_until(child: Pid, signals: &SigSet) -> i32 {
    loop {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return 125,
            }
        }
        match signals.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                // The command may have exited already: best effort.
                let _ = kill(child, sig);
            }
        }
    }
}
