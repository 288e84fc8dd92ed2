//! The few system calls podsim needs that nix does not wrap. Each `unsafe`
//! block here is one syscall on plain data.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::stat::fstat;

/// Ends the process at once, without running exit handlers or flushing
/// buffers that belong to the process it was forked from.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Applies `attr_set` (MOUNT_ATTR_* bits) to the mount at `path` and to every
/// mount below it, which a plain `MS_REMOUNT` cannot do.
pub fn mount_setattr_recursive(path: &Path, attr_set: u64) -> nix::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: c_path and attr outlive the call; the size passed matches attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(rc).map(drop)
}

/// Closes every file descriptor from `first` upward except those in `keep`,
/// so a forked process holds nothing of its parent's it did not ask for.
pub fn close_fds_from(first: RawFd, keep: &[RawFd]) -> nix::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= first).collect();
    keep.sort_unstable();
    let mut low = first;
    for fd in keep.into_iter().chain(std::iter::once(RawFd::MAX)) {
        if fd > low {
            let high = if fd == RawFd::MAX { libc::c_uint::MAX } else { (fd - 1) as libc::c_uint };
            // SAFETY: close_range only closes descriptors; none is borrowed here.
            let rc = unsafe { libc::close_range(low as libc::c_uint, high, 0) };
            Errno::result(rc)?;
        }
        low = fd.saturating_add(1);
    }
    Ok(())
}

/// Inode of the user namespace that owns namespace `ns` (NS_GET_USERNS).
/// Fails with EPERM when that owner lies outside the caller's user namespace.
pub fn owning_userns_inode(ns: BorrowedFd<'_>) -> nix::Result<u64> {
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor.
    let fd = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_USERNS) };
    let fd = Errno::result(fd)?;
    // SAFETY: the ioctl just returned this descriptor and nothing else owns it.
    let owner = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(fstat(&owner)?.st_ino)
}

/// Reads or changes the flags of a network interface (SIOCGIFFLAGS /
/// SIOCSIFFLAGS) through any socket of the network namespace.
pub fn interface_flags(sock: BorrowedFd<'_>, name: &str, set: Option<i16>) -> nix::Result<i16> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return Err(Errno::EINVAL);
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: req is a valid ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    Errno::result(rc)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let current = unsafe { req.ifr_ifru.ifru_flags };
    let Some(flags) = set else {
        return Ok(current);
    };
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: req is a valid ifreq naming the interface and its new flags.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    Errno::result(rc)?;
    Ok(flags)
}
