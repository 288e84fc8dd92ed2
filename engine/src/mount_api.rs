//! The new mount API calls nix does not wrap: open_tree, mount_setattr and
//! move_mount. The doctor and the runtime make and attach idmapped mounts
//! with them; the runtime also carries another container's /dev/shm over
//! (`runtime::donor`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE).
pub fn clone_tree(path: &Path) -> Result<OwnedFd, Errno> {
    clone_tree_in(libc::AT_FDCWD, path)
}

/// [`clone_tree`] of `path` relative to the directory `dir`.
pub fn clone_tree_at(dir: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    clone_tree_in(dir.as_raw_fd(), path)
}

fn clone_tree_in(dir: libc::c_int, path: &Path) -> Result<OwnedFd, Errno> {
    let path = c_path(path)?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: open_tree reads a NUL-terminated path that outlives the call;
    // `dir` is AT_FDCWD or a descriptor the caller keeps open.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Idmaps a detached mount with the mapping of the user namespace `userns`.
pub fn set_idmap(mount: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::EBADF)?,
    };
    let empty = c"";
    // SAFETY: mount_setattr reads `attr` (size passed alongside) and an empty
    // path; both outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Attaches a detached mount at `target`.
pub fn attach(mount: BorrowedFd<'_>, target: &Path) -> Result<(), Errno> {
    let target = c_path(target)?;
    let empty = c"";
    // SAFETY: move_mount reads two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
