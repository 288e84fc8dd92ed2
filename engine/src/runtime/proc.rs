//! /proc and /sys inside the container, and Docker's masked and read-only
//! paths over them.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::error::{Context, SetupError};
use super::mounts::{bind, in_root, mount_fs, remount_readonly};
use super::safe_path::{fd_path, open_in_root, Kind};
use super::spec::ProcMode;

const PROC_FLAGS: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounts /proc: a fresh procfs for the container's PID namespace, or in the
/// degraded mode the engine's own /proc with everything under it (the pod's
/// masks included).
pub fn setup_proc(root: &OwnedFd, mode: ProcMode) -> Result<(), SetupError> {
    let target = open_in_root(root, Path::new("/proc"), Kind::Dir)?;
    match mode {
        ProcMode::Fresh => mount_fs("proc", &fd_path(&target), "proc", PROC_FLAGS, None),
        ProcMode::BindEngine => bind(Path::new("/proc"), &fd_path(&target), true),
    }
}

/// Mounts /sys read-only: a fresh sysfs when the container has its own
/// network namespace and the kernel allows it, else the engine's /sys bound
/// in recursively (sysfs shows the network devices of the mounter's netns).
pub fn setup_sys(root: &OwnedFd, own_netns: bool) -> Result<(), SetupError> {
    let sys = open_in_root(root, Path::new("/sys"), Kind::Dir)?;
    let target = fd_path(&sys);
    if own_netns {
        match mount_fs(
            "sysfs",
            &target,
            "sysfs",
            PROC_FLAGS | MsFlags::MS_RDONLY,
            None,
        ) {
            Ok(()) => return Ok(()),
            // EPERM where the pod's /sys has masks; ENOENT seen from nested
            // user namespaces on 6.18. The engine's /sys is the fallback.
            Err(e) => tracing::debug!(%e, "fresh sysfs refused; binding the engine's /sys"),
        }
    }
    bind(Path::new("/sys"), &target, true)?;
    // Reopen: the fd still points at the directory under the new mount.
    let sys = open_in_root(root, Path::new("/sys"), Kind::Dir)?;
    remount_readonly(&fd_path(&sys))
}

/// Hides `paths` (container view, under the rootfs at `root_path`):
/// directories get an empty read-only tmpfs, files /dev/null. Paths the
/// kernel does not have are skipped. Runs after /proc, /sys and /dev exist.
pub fn mask_paths(root_path: &Path, paths: &[PathBuf]) -> Result<(), SetupError> {
    let null = in_root(root_path, Path::new("/dev/null"));
    for path in paths {
        let target = in_root(root_path, path);
        match std::fs::metadata(&target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx(|| format!("masking {}", path.display())),
            Ok(md) if md.is_dir() => mount_fs(
                "tmpfs",
                &target,
                "tmpfs",
                MsFlags::MS_RDONLY,
                Some("size=0"),
            )?,
            Ok(_) => bind(&null, &target, false)?,
        }
    }
    Ok(())
}

/// Binds each of `paths` over itself read-only; missing ones are skipped.
pub fn readonly_paths(root_path: &Path, paths: &[PathBuf]) -> Result<(), SetupError> {
    for path in paths {
        let target = in_root(root_path, path);
        if !target.exists() {
            continue;
        }
        bind(&target, &target, true)?;
        remount_readonly(&target)?;
    }
    Ok(())
}
