//! Small mount helpers shared by the rootfs, /dev and /proc setup.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use std::os::fd::OwnedFd;

use super::error::{Context, SetupError};
use super::safe_path::{fd_path, open_in_root, Kind};

/// `path` inside `root`, for an absolute container path.
pub fn in_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// mount(2) with an error that names the target.
pub fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    mount(Some(source), target, Some(fstype), flags, data)
        .ctx(|| format!("mounting {fstype} on {}", target.display()))
}

/// Bind-mounts `source` on `target` (recursively if asked).
pub fn bind(source: &Path, target: &Path, recursive: bool) -> Result<(), SetupError> {
    let flags = if recursive {
        MsFlags::MS_BIND | MsFlags::MS_REC
    } else {
        MsFlags::MS_BIND
    };
    mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .ctx(|| format!("bind-mounting {} on {}", source.display(), target.display()))
}

/// Makes the mount at `target` read-only, keeping its other flags: in a user
/// namespace the kernel refuses a remount that would clear a locked flag
/// (nosuid, nodev, noexec, atime flags) inherited from the parent namespace.
pub fn remount_readonly(target: &Path) -> Result<(), SetupError> {
    let current = statvfs(target)
        .ctx(|| format!("reading the mount flags of {}", target.display()))?
        .flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .ctx(|| format!("remounting {} read-only", target.display()))
}

/// Creates an empty regular file to bind a file over (a no-op if it exists).
pub fn ensure_file(path: &Path) -> Result<(), SetupError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    }
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(path)
        .map(drop)
        .ctx(|| format!("creating {}", path.display()))
}

pub fn ensure_dir(path: &Path) -> Result<(), SetupError> {
    fs::create_dir_all(path).ctx(|| format!("creating {}", path.display()))
}

/// Moves the mount at `path` (in this process's view) onto `path` inside
/// the rootfs whose fd is `root`: a tree a premade init built ahead over
/// its own copy of the engine's (`dev::stage`, `proc::stage_sys`). The
/// engine's mount at `path` shows again behind it.
pub fn move_staged(root: &OwnedFd, path: &Path) -> Result<(), SetupError> {
    let target = open_in_root(root, path, Kind::Dir)?;
    mount(
        Some(path),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .ctx(|| format!("moving the prepared {} into the container", path.display()))
}
