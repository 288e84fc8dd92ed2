//! Exec: starting a further process in a running container (`docker exec`,
//! and healthcheck probes). Runs in the container's single-threaded
//! supervisor, which forks a helper that joins the container's namespaces
//! through its init's /proc entries, enters its root, and forks the process
//! as the supervisor's own child (CLONE_PARENT), so the supervisor reaps it
//! and records its exit status.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, fchdir, fork, ForkResult, Pid};

use super::channel::{self, InitMsg};
use super::clone::{fork_sibling, Forked};
use super::error::{Context, SetupError};
use super::helper::Failure;
use super::init::{apply_seccomp, close_other_fds, reset_signals, with_home};
use super::spec::ProcessSpec;
use super::stdio::{self, InitStdio};
use super::{exec, user};

/// A process started in a container.
#[derive(Debug)]
pub struct Spawned {
    /// Its PID in the supervisor's PID namespace; the supervisor's child.
    pub pid: Pid,
    /// The master end of its pty, when it has one.
    pub console: Option<OwnedFd>,
}

/// Namespaces joined, the user namespace first: joining it gives the
/// capabilities that joining the others (owned by it) needs.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
];

/// Starts `process` in the container whose init is `init`. Fails with
/// Docker's exit code (126, 127) when the command cannot be run; the
/// process has then already exited (the caller reaps it). Must be called
/// from a single-threaded process.
/// `cgroup_procs`: the container's cgroups, which the process joins.
pub fn spawn(
    init: Pid,
    process: &ProcessSpec,
    stdio: InitStdio,
    cgroup_procs: &[std::path::PathBuf],
) -> Result<Spawned, Failure> {
    super::seccomp::prepare(process.seccomp, &process.capabilities)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let (mut sock, child_sock) =
        UnixStream::pair().map_err(|e| Failure::runtime(format!("socketpair: {e}")))?;
    let tty = stdio.tty;
    // SAFETY: the supervisor is single-threaded, so the child may run
    // ordinary code.
    let helper = match unsafe { fork() }
        .map_err(|e| Failure::runtime(format!("forking the exec helper: {e}")))?
    {
        ForkResult::Child => {
            drop(sock);
            join_and_fork(init, process, child_sock, stdio, cgroup_procs)
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_sock);
    drop(stdio);
    let result = collect(&mut sock, tty);
    let status = waitpid(helper, None);
    result.map_err(|mut failure| {
        // A helper that ended without a report says how it ended, which is
        // what tells its failures apart (a signal, a failed report).
        if failure.message == NO_PROCESS {
            failure.message = format!("{NO_PROCESS} (the helper: {})", helper_end(status));
        }
        failure
    })
}

const NO_PROCESS: &str = "the exec helper ended without a process";

/// The helper's exit code when the process was forked but its PID could not
/// be reported.
const EXIT_REPORT_FAILED: i32 = 125;

fn helper_end(status: nix::Result<WaitStatus>) -> String {
    match status {
        Ok(WaitStatus::Exited(_, EXIT_REPORT_FAILED)) => {
            "the process was forked but reporting its PID failed".to_string()
        }
        Ok(WaitStatus::Exited(_, code)) => format!("exited with {code}"),
        Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed by {signal}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("not waited for: {e}"),
    }
}

/// Reads the helper's and the process's reports: its PID, its console, then
/// either the close of the socket (the exec happened) or a failure.
fn collect(sock: &mut UnixStream, tty: bool) -> Result<Spawned, Failure> {
    let mut pid = None;
    let mut console = None;
    loop {
        match channel::recv::<InitMsg>(sock) {
            Ok(Some(InitMsg::Spawned { pid: p })) => pid = Some(Pid::from_raw(p)),
            Ok(Some(InitMsg::Console)) if tty => {
                let mut fds = channel::recv_fds(sock, 1)
                    .map_err(|e| Failure::runtime(format!("receiving the console: {e}")))?;
                console = fds.pop();
            }
            Ok(Some(InitMsg::Failed { code, message })) => return Err(Failure { code, message }),
            Ok(None) => {
                return pid
                    .map(|pid| Spawned { pid, console })
                    .ok_or_else(|| Failure::runtime(NO_PROCESS))
            }
            Ok(Some(other)) => {
                return Err(Failure::runtime(format!(
                    "unexpected message from the exec helper: {other:?}"
                )))
            }
            Err(e) => {
                return Err(Failure::runtime(format!(
                    "reading from the exec helper: {e}"
                )))
            }
        }
    }
}

/// The helper: joins the namespaces, enters the root, forks the process as
/// the supervisor's child and reports its PID. Never returns.
fn join_and_fork(
    init: Pid,
    process: &ProcessSpec,
    mut sock: UnixStream,
    stdio: InitStdio,
    cgroup_procs: &[std::path::PathBuf],
) -> ! {
    // The helper joins the cgroups while it still sees them (and still has
    // the supervisor's credentials); the process inherits them.
    let result = crate::cgroups::join(cgroup_procs, std::process::id() as i32)
        .ctx(|| "joining the container's cgroup".to_string())
        .and_then(|()| join(init))
        .and_then(|()| fork_sibling().ctx(|| "forking the exec'd process".to_string()));
    let code = match result {
        Ok(Forked::Child) => {
            let err = match run_process(process, &mut sock, stdio) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            report_failure(&mut sock, &err)
        }
        Ok(Forked::Parent { pid, .. }) => {
            match channel::send(&mut sock, &InitMsg::Spawned { pid: pid.as_raw() }) {
                Ok(()) => 0,
                Err(_) => EXIT_REPORT_FAILED,
            }
        }
        Err(err) => report_failure(&mut sock, &err),
    };
    // SAFETY: ends the forked helper without running the supervisor's exit
    // handlers.
    unsafe { libc::_exit(code) }
}

fn report_failure(sock: &mut UnixStream, err: &SetupError) -> i32 {
    let code = err.exit_code();
    let _ = channel::send(
        sock,
        &InitMsg::Failed {
            code,
            message: err.to_string(),
        },
    );
    code
}

/// Joins every namespace of `init` that differs from ours, then its root.
fn join(init: Pid) -> Result<(), SetupError> {
    let root = open(
        format!("/proc/{init}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening the root of process {init}"))?;
    let mut fds = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{init}/ns/{name}");
        let same = match (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            (Err(e), _) => return Err(e).ctx(|| format!("reading {theirs}")),
            _ => false,
        };
        if !same {
            let fd = open(
                theirs.as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("opening {theirs}"))?;
            fds.push((*name, *flag, fd));
        }
    }
    for (name, flag, fd) in &fds {
        setns(fd.as_fd(), *flag).ctx(|| format!("joining the container's {name} namespace"))?;
    }
    // Through the init's root, not the mount namespace's: where the rootfs
    // was moved over / (no pivot_root), the namespace's root is underneath.
    fchdir(&root).ctx(|| "entering the container's root".to_string())?;
    chroot(".").ctx(|| "chroot into the container's root".to_string())?;
    chdir("/").ctx(|| "entering /".to_string())?;
    user::become_root()
}

/// The exec'd process, inside the container: streams, user, command.
fn run_process(
    process: &ProcessSpec,
    sock: &mut UnixStream,
    stdio: InitStdio,
) -> Result<Infallible, SetupError> {
    reset_signals()?;
    stdio::install(stdio, sock)?;
    let cwd = &process.cwd;
    chdir(cwd).ctx(|| format!("entering the working directory {}", cwd.display()))?;
    let creds = user::resolve(&process.user)?;
    let command = exec::resolve(&with_home(process, &creds.home))?;
    apply_seccomp(process)?;
    user::switch_user(process, &creds)?;
    close_other_fds(sock)?;
    Err(exec::exec(&command))
}
