//! How a supervisor comes to be. The engine spawns one `hutch __supervise`
//! process, the *zygote*, which keeps one spare supervisor forked ahead of
//! time. A start asks the zygote for a spare and gets the spare's socket
//! back at once; once the start is done the engine asks for the next one
//! (`SPARE_REFILL`), so that fork does not compete with the start for the
//! CPU. So a start is a message
//! to processes that are already running (no exec of the hutch binary on
//! the start path, and the next spare costs a fork, not an exec), and every
//! supervisor shares the pages the zygote's exec and start-up dirtied (the
//! binary's relocations, libc's state) instead of holding its own copies.
//!
//! A spare detaches at once (a second fork, setsid: reparented to the pod's
//! init, never the engine's or the zygote's to reap) and waits on its
//! socket for the container directory to run. The zygote ends when the
//! engine closes its socket; supervisors live on without it.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{open, OFlag};
use nix::sys::prctl;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{dup2_stdin, fork, setsid, ForkResult};

use super::core::{Role, Supervisor};
use super::launch::Launching;
use crate::containers::protocol::{self, Kind, Reply, Request};
use crate::containers::spare::SPARE_REFILL;
use crate::containers::store::ContainerDir;
use crate::runtime::caps::DEFAULT_CAPABILITIES;
use crate::runtime::channel;
use crate::runtime::helper::Failure;
use crate::runtime::seccomp::{self, Seccomp};

/// How long a start waits for the attach clients it announced.
const ATTACH_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// `hutch __supervise`: the zygote; `control` (its stdin) is its socket to
/// the engine. Each `SPARE_TAKE` byte the engine sends asks for one spare,
/// answered with the spare's socket (SCM_RIGHTS); `SPARE_REFILL` has it
/// fork the next spare ahead. Returns the process's exit code.
pub fn main(control: OwnedFd) -> i32 {
    // Out of reach of same-UID processes (see `make_undumpable`); forks
    // inherit it, and a container's init makes itself dumpable for its maps.
    crate::bootstrap::make_undumpable();
    // SAFETY: setting dispositions to SIG_IGN installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
    }
    let mut control = UnixStream::from(control);
    // Every spare inherits the default seccomp program compiled.
    let defaults: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if let Err(e) = seccomp::prepare(Seccomp::Default, &defaults) {
        tracing::warn!(%e, "compiling the default seccomp profile");
    }
    // So is what the kernel allows for /sys (a refused mount is slow).
    crate::runtime::probe_fresh_sysfs();
    // libseccomp's working memory is freed but would stay in the heap,
    // which every spare inherits and dirties again as it allocates: give
    // it back first.
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let mut ready = fork_spare(&control).ok();
    loop {
        let mut byte = [0u8; 1];
        match control.read(&mut byte) {
            Ok(1) if byte[0] == SPARE_REFILL => {
                // The start that took the last spare is done: fork the next
                // one now, not while that start still needed the CPU.
                if ready.is_none() {
                    ready = fork_spare(&control).ok();
                }
                continue;
            }
            Ok(1) => {}
            // The engine is gone: so are we (the ready spare sees its
            // socket close and ends too).
            _ => return 0,
        }
        let spare = match ready.take() {
            Some(s) => s,
            None => match fork_spare(&control) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(%e, "forking a spare supervisor");
                    return 1;
                }
            },
        };
        if channel::send_fds(&control, &[spare]).is_err() {
            return 0;
        }
    }
}

/// Forks a detached spare; returns the engine's end of its socket.
fn fork_spare(zygote: &UnixStream) -> std::io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    // SAFETY: the zygote is single-threaded, so the child may run ordinary
    // code.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(theirs);
            // The first half exits at once; the spare is its child.
            let _ = waitpid(child, None);
            Ok(ours.into())
        }
        ForkResult::Child => {
            drop(ours);
            let code = detach(zygote).map_or(1, |()| spare(theirs));
            std::process::exit(code)
        }
    }
}

/// In the forked child: leaves the zygote's socket (fd 0 becomes
/// /dev/null), forks again so the zygote can reap the first half, and
/// starts a session of its own, so the engine's terminal and process group
/// signals do not reach it and it is reparented to the pod's init (or
/// subreaper).
fn detach(zygote: &UnixStream) -> nix::Result<()> {
    let null = open("/dev/null", OFlag::O_RDWR, Mode::empty())?;
    if zygote.as_raw_fd() == 0 {
        dup2_stdin(&null)?;
    }
    drop(null);
    // SAFETY: still single-threaded.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    let _ = setsid();
    // Orphans of exec helpers come to us.
    let _ = prctl::set_child_subreaper(true);
    Ok(())
}

/// A spare: waits for its container, then supervises it. Returns the exit
/// code of the supervisor process.
fn spare(control: UnixStream) -> i32 {
    let mut control = control;
    // While idle: the next container's namespaces, made ahead.
    if let Err(e) = crate::runtime::helper::premake() {
        tracing::debug!(%e, "no premade init: the start will clone one");
    }
    match read_request(&mut control) {
        Some(Request::Run { dir, attachers }) => {
            let dir = ContainerDir::new(dir);
            match Supervisor::prepare(dir.clone()) {
                Ok((sup, launching)) => {
                    sup.save();
                    run(control, sup, launching, attachers)
                }
                Err(f) => {
                    Supervisor::record_failed_prepare(&dir, &f);
                    fail(&mut control, f)
                }
            }
        }
        Some(Request::Prime { dir }) => primed(control, ContainerDir::new(dir)),
        // The engine (or the zygote holding us ready) went away unused.
        _ => 0,
    }
}

fn read_request(control: &mut UnixStream) -> Option<Request> {
    match protocol::read_frame(control) {
        Ok(Some((Kind::Request, payload))) => protocol::parse::<Request>(&payload).ok(),
        _ => None,
    }
}

/// A primed spare (see [`Request::Prime`]): the container's start begun
/// and held until the engine's `Run` releases it. Anything else (the
/// engine dropping the prime, or going away) abandons it: the init is
/// killed, nothing of the start is recorded.
fn primed(mut control: UnixStream, dir: ContainerDir) -> i32 {
    let (sup, launching) = match Supervisor::prepare(dir) {
        Ok(p) => p,
        // The engine starts it the usual way, which records the failure.
        Err(f) => return fail(&mut control, f),
    };
    if protocol::write_json(&mut control, Kind::Reply, &Reply::Ok).is_err() {
        launching.withdraw();
        let _ = std::fs::remove_file("sock");
        return 0;
    }
    match read_request(&mut control) {
        Some(Request::Run { attachers, .. }) => {
            sup.save();
            run(control, sup, launching, attachers)
        }
        _ => {
            launching.withdraw();
            let _ = std::fs::remove_file("sock");
            0
        }
    }
}

/// Takes the attach clients, releases the container into its command and
/// supervises it.
fn run(mut control: UnixStream, mut sup: Supervisor, launching: Launching, attachers: u32) -> i32 {
    if attachers > 0 {
        // Listening: the attach clients may connect now, while the
        // container is set up.
        if protocol::write_json(&mut control, Kind::Reply, &Reply::Ok).is_ok() {
            sup.accept_attachers(attachers, ATTACH_WINDOW);
        }
    }
    match sup.launch_first(launching) {
        Ok(()) => {
            let pid = sup.pid();
            if protocol::write_json(&mut control, Kind::Reply, &Reply::Started { pid }).is_ok() {
                let _ = control.set_write_timeout(Some(std::time::Duration::from_secs(5)));
                sup.add_client(control, Role::Watch);
            }
            sup.run()
        }
        Err(f) => fail(&mut control, f),
    }
}

fn fail(control: &mut UnixStream, f: Failure) -> i32 {
    let _ = protocol::write_json(
        control,
        Kind::Reply,
        &Reply::Failed {
            code: f.code,
            message: f.message,
        },
    );
    0
}
