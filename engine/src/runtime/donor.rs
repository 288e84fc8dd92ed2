//! Joining another container's namespaces (`--pid`/`--ipc container:<id>`).
//!
//! The donor's PID and IPC namespaces are owned by its user namespace, so
//! the container joins that too: only there may its init mount a /proc of
//! the shared PID namespace and an mqueue of the shared IPC namespace, and
//! only there can its root signal and trace the donor's processes as
//! Docker's shared namespaces let it. The supervisor must not join them
//! itself (it could never leave the donor's user namespace, and restarts
//! would need the donor's next one), so a short-lived intermediate joins
//! and clones the init as the supervisor's own child (CLONE_PARENT).

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::channel;
use super::clone::{fork_into, Forked};
use super::error::{Context, SetupError};
use super::spec::{Donor, IpcMode};

/// What the intermediate reports.
#[derive(Debug, Serialize, Deserialize)]
enum Joined {
    /// The init was cloned; its pidfd follows when `pidfd`.
    Cloned {
        pid: i32,
        pidfd: bool,
    },
    Failed {
        message: String,
    },
}

/// The namespaces joined from the donor: its user namespace always.
pub fn joined_flags(donor: &Donor, ipc: IpcMode) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if donor.pid_ns {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if ipc == IpcMode::Donor {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    flags
}

/// Clones the init into `flags` (new namespaces) after joining the donor's
/// ([`joined_flags`]). Like [`fork_into`], returns on both sides; the init
/// is our child. Must be called from a single-threaded process.
pub fn fork_joined(donor: &Donor, ipc: IpcMode, flags: CloneFlags) -> io::Result<Forked> {
    let join = joined_flags(donor, ipc);
    let pidfd = pidfd_open(donor.pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => io::Error::other(format!("container {} is not running", donor.id)),
        _ => io::Error::other(format!(
            "opening the process of container {}: {e}",
            donor.id
        )),
    })?;
    let (mut ours, mut theirs) = UnixStream::pair()?;
    // SAFETY: the caller is single-threaded, so the child may run ordinary
    // code; it ends in _exit unless it is the init.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(ours);
            let cloned = setns(pidfd.as_fd(), join)
                .map_err(|e| {
                    io::Error::other(format!(
                        "joining the namespaces of container {}: {e}",
                        donor.id
                    ))
                })
                .and_then(|()| fork_into(flags | CloneFlags::CLONE_PARENT));
            let report = match cloned {
                Ok(Forked::Child) => return Ok(Forked::Child),
                Ok(Forked::Parent { pid, pidfd }) => {
                    let sent = channel::send(
                        &mut theirs,
                        &Joined::Cloned {
                            pid: pid.as_raw(),
                            pidfd: pidfd.is_some(),
                        },
                    );
                    sent.and_then(|()| match pidfd {
                        Some(fd) => channel::send_fds(&theirs, &[fd]),
                        None => Ok(()),
                    })
                }
                Err(e) => channel::send(
                    &mut theirs,
                    &Joined::Failed {
                        message: e.to_string(),
                    },
                ),
            };
            // SAFETY: _exit ends this forked copy without running the
            // supervisor's destructors or atexit handlers.
            unsafe { libc::_exit(i32::from(report.is_err())) }
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let got = channel::recv::<Joined>(&mut ours);
            let result = match got {
                Ok(Some(Joined::Cloned { pid, pidfd })) => {
                    let pidfd = if pidfd {
                        channel::recv_fds(&ours, 1)?.pop()
                    } else {
                        None
                    };
                    Ok(Forked::Parent {
                        pid: Pid::from_raw(pid),
                        pidfd,
                    })
                }
                Ok(Some(Joined::Failed { message })) => Err(io::Error::other(message)),
                Ok(None) => Err(io::Error::other(
                    "the namespace joiner ended without a word",
                )),
                Err(e) => Err(e),
            };
            let _ = waitpid(child, None);
            result
        }
    }
}

/// pidfd_open(2): a handle on `pid` that cannot come to name another
/// process, through which setns joins several of its namespaces at once.
fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// In the init, a member of the donor's user namespace: a detached copy of
/// the donor's /dev/shm mount, for [`super::dev`] to attach as ours. A
/// mount can only be cloned from inside its own mount namespace, so we
/// step into the donor's and back into ours (both owned by the donor's
/// user namespace, where we hold CAP_SYS_ADMIN). Resolved through the
/// donor init's root, which may lie above its namespace's root.
pub fn clone_shm(donor_pid: i32) -> Result<OwnedFd, SetupError> {
    let open_ns = |path: &str| {
        open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("opening {path}"))
    };
    let ours = open_ns("/proc/self/ns/mnt")?;
    let theirs = open_ns(&format!("/proc/{donor_pid}/ns/mnt"))?;
    let root = open(
        format!("/proc/{donor_pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the shared container's root".to_string())?;
    setns(theirs.as_fd(), CloneFlags::CLONE_NEWNS)
        .ctx(|| "entering the shared container's mount namespace".to_string())?;
    let tree = crate::mount_api::clone_tree_at(root.as_fd(), Path::new("dev/shm"))
        .ctx(|| "cloning the shared container's /dev/shm".to_string());
    // Failing to return would leave the setup in the donor's mounts.
    setns(ours.as_fd(), CloneFlags::CLONE_NEWNS)
        .ctx(|| "returning to the container's mount namespace".to_string())?;
    tree
}
