//! How a supervisor comes to be: the daemon keeps one *spare* supervisor
//! spawned ahead of time (so the exec of the hutch binary is off the start
//! path); it detaches into its own session at once and waits on its spawn
//! socket for the container directory to run.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nix::sys::prctl;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, setsid, ForkResult};

use super::core::{Role, Supervisor};
use crate::containers::protocol::{self, Kind, Reply, Request};
use crate::containers::store::ContainerDir;

/// `hutch __supervise`: `control` is the spawn socket (its stdin). Returns
/// the process's exit code; the spawned process itself returns at once
/// (its child carries on detached).
pub fn main(control: OwnedFd) -> i32 {
    // SAFETY: called first thing in a freshly exec'd, single-threaded process.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            tracing::error!(%e, "supervisor: fork");
            return 1;
        }
    }
    // Out of reach of same-UID processes (see `make_undumpable`); the
    // container's init makes itself dumpable for its ID maps.
    crate::bootstrap::make_undumpable();
    // Our own session: the daemon's terminal and process group signals do
    // not reach us, and our parent is gone, so we are reparented to the
    // pod's init (or subreaper), not left for the daemon to reap.
    let _ = setsid();
    // Orphans of exec helpers come to us.
    let _ = prctl::set_child_subreaper(true);
    // SAFETY: setting dispositions to SIG_IGN installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
    }
    let mut control = UnixStream::from(control);
    let dir = match protocol::read_frame(&mut control) {
        Ok(Some((Kind::Request, payload))) => match protocol::parse::<Request>(&payload) {
            Ok(Request::Run { dir }) => dir,
            _ => return 1,
        },
        // The daemon went away without using us.
        _ => return 0,
    };
    match Supervisor::start(ContainerDir::new(dir)) {
        Ok(mut sup) => {
            let pid = sup.pid();
            if protocol::write_json(&mut control, Kind::Reply, &Reply::Started { pid }).is_ok() {
                let _ = control.set_write_timeout(Some(std::time::Duration::from_secs(5)));
                sup.add_client(control, Role::Watch);
            }
            sup.run()
        }
        Err(f) => {
            let _ = protocol::write_json(
                &mut control,
                Kind::Reply,
                &Reply::Failed {
                    code: f.code,
                    message: f.message,
                },
            );
            0
        }
    }
}
