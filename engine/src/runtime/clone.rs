//! Creating the container's init in its new namespaces.
//!
//! The helper that calls this is single-threaded, so the child may go on
//! running ordinary Rust code (allocating, formatting) until it execs: no
//! other thread can hold a lock that the copy would inherit locked. That is
//! why the daemon never calls this itself.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// The kernel's `struct clone_args` (linux/sched.h), first version fields.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of the clone we are on.
pub enum Forked {
    Parent { pid: Pid, pidfd: Option<OwnedFd> },
    Child,
}

/// Forks into new namespaces (`flags` are CLONE_NEW* flags, and maybe
/// CLONE_PARENT), fork-style: the child continues from here with a copy of
/// the address space. Uses clone3 for a pidfd and falls back to clone when
/// clone3 is unavailable or filtered (Docker's seccomp profile answers
/// ENOSYS to clone3).
pub fn fork_into(flags: CloneFlags) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    // clone3 refuses an exit signal with CLONE_PARENT: the child then
    // takes ours, which our parent expects of its children.
    let exit_signal = if flags.contains(CloneFlags::CLONE_PARENT) {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let args = CloneArgs {
        flags: flags.bits() as u64 | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with no stack behaves like fork; the
    // args struct lives across the call and `pidfd` points to a live c_int.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let ret = if ret < 0 {
        let err = io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return Err(err);
        }
        pidfd = -1;
        // SAFETY: legacy clone with a null stack and no CLONE_VM is a fork
        // with extra namespace flags.
        unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags.bits() as libc::c_long | libc::SIGCHLD as libc::c_long,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        }
    } else {
        ret
    };
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => {
            let pidfd = (pidfd >= 0).then(|| {
                // SAFETY: the kernel just gave us this pidfd and nothing else owns it.
                unsafe { OwnedFd::from_raw_fd(pidfd) }
            });
            Ok(Forked::Parent {
                pid: Pid::from_raw(pid as i32),
                pidfd,
            })
        }
    }
}

/// Forks a child whose parent is *our* parent (CLONE_PARENT): an exec
/// helper that joined a container's PID namespace uses it so the process it
/// starts there is reaped by the supervisor, not by the helper that exits.
pub fn fork_sibling() -> io::Result<Forked> {
    // SAFETY: legacy clone with a null stack and no CLONE_VM is a fork; the
    // caller is single-threaded.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_long,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as i32),
            pidfd: None,
        }),
    }
}
