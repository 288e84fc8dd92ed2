//! /proc and /sys inside the container, and Docker's masked and read-only
//! paths over them.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::mount::{umount2, MntFlags, MsFlags};

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

/// Set (by the supervisor zygote, before it forks any spare) once a probe
/// found that the kernel refuses a fresh sysfs here: the containers it
/// starts then bind the engine's /sys at once instead of trying first, a
/// refused mount costing ~0.5 ms of each start (the kernel walks the mount
/// table looking for a fully visible sysfs).
static FRESH_SYSFS_REFUSED: AtomicBool = AtomicBool::new(false);

/// Tries, in a throwaway child with its own user, mount and network
/// namespaces (as a container's init has), whether a fresh sysfs mounts;
/// remembers a refusal for [`setup_sys`]. Must run single-threaded.
pub fn probe_fresh_sysfs() {
    use super::clone::{fork_into, Forked};
    use nix::sched::CloneFlags;
    use nix::sys::wait::{waitpid, WaitStatus};
    let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET;
    match fork_into(flags) {
        Ok(Forked::Child) => {
            // Over /sys in this private copy of the mount table: nothing
            // to create, and nobody else sees it.
            let ok = mount_fs(
                "sysfs",
                Path::new("/sys"),
                "sysfs",
                PROC_FLAGS | MsFlags::MS_RDONLY,
                None,
            )
            .is_ok();
            // SAFETY: _exit ends the forked copy without running the
            // parent's atexit handlers or flushing its buffers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(Forked::Parent { pid, .. }) => {
            if let Ok(WaitStatus::Exited(_, 1)) = waitpid(pid, None) {
                FRESH_SYSFS_REFUSED.store(true, Ordering::Relaxed);
            }
        }
        // Unknown: containers try for themselves.
        Err(e) => tracing::debug!(%e, "probing for a fresh sysfs"),
    }
}

/// Mounts /sys read-only: a fresh sysfs when the container has its own
/// network namespace and the kernel allows it, else the engine's /sys bound
/// in recursively (sysfs shows the network devices of the mounter's netns).
pub fn setup_sys(root: &OwnedFd, own_netns: bool) -> Result<(), SetupError> {
    let sys = open_in_root(root, Path::new("/sys"), Kind::Dir)?;
    if own_netns && fresh_sysfs(&fd_path(&sys)) {
        return Ok(());
    }
    bind(Path::new("/sys"), &fd_path(&sys), true)?;
    // Reopen: the fd still points at the directory under the new mount.
    let sys = open_in_root(root, Path::new("/sys"), Kind::Dir)?;
    remount_readonly(&fd_path(&sys))
}

/// Mounts a fresh read-only sysfs on `target`, unless the kernel is known
/// to refuse it or does; false then.
fn fresh_sysfs(target: &Path) -> bool {
    if FRESH_SYSFS_REFUSED.load(Ordering::Relaxed) {
        return false;
    }
    match mount_fs(
        "sysfs",
        target,
        "sysfs",
        PROC_FLAGS | MsFlags::MS_RDONLY,
        None,
    ) {
        Ok(()) => true,
        // EPERM where the pod's /sys has masks; ENOENT seen from nested
        // user namespaces on 6.18. The engine's /sys is the fallback.
        Err(e) => {
            tracing::debug!(%e, "fresh sysfs refused; binding the engine's /sys");
            false
        }
    }
}

/// Builds the container's /sys ahead (as [`setup_sys`] would for a
/// container with its own network namespace, which a premade init has)
/// over this process's own /sys, for [`super::mounts::move_staged`]; see
/// `dev::stage`. `Ok(false)`: nothing was left mounted, the setup mounts
/// /sys as usual.
pub fn stage_sys() -> Result<bool, SetupError> {
    let sys = Path::new("/sys");
    if fresh_sysfs(sys) {
        return Ok(true);
    }
    if bind(sys, sys, true).is_err() {
        return Ok(false);
    }
    if remount_readonly(sys).is_ok() {
        return Ok(true);
    }
    umount2(sys, MntFlags::MNT_DETACH).ctx(|| "taking down a half-built /sys".to_string())?;
    Ok(false)
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
