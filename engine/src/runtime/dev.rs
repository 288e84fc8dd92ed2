//! The container's /dev: a small tmpfs with the safe device nodes bound in
//! from the engine (a user namespace cannot mknod devices), a private devpts
//! instance, /dev/shm and /dev/mqueue.

use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::MsFlags;

use super::error::{Context, SetupError};
use super::mounts::{bind, in_root, mount_fs};
use super::safe_path::{fd_path, open_in_root, Kind};

/// Device nodes every container gets, as Docker gives them.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Builds /dev inside the rootfs at `root_path` (whose fd is `root`).
pub fn setup_dev(root: &OwnedFd, root_path: &Path) -> Result<(), SetupError> {
    let dev = open_in_root(root, Path::new("/dev"), Kind::Dir)?;
    mount_fs(
        "tmpfs",
        &fd_path(&dev),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    // /dev is now our own tmpfs: paths under it hold no image symlinks.
    let dev = in_root(root_path, Path::new("/dev"));
    for name in DEVICES {
        let target = dev.join(name);
        super::mounts::ensure_file(&target)?;
        bind(&Path::new("/dev").join(name), &target, false)?;
    }
    let pts = dev.join("pts");
    super::mounts::ensure_dir(&pts)?;
    mount_fs(
        "devpts",
        &pts,
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .or_else(|_| {
        // gid=5 (tty) is not mapped in every ID map; fall back without it.
        mount_fs(
            "devpts",
            &pts,
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
    })?;
    link(&dev, "pts/ptmx", "ptmx")?;
    let shm = dev.join("shm");
    super::mounts::ensure_dir(&shm)?;
    mount_fs(
        "shm",
        &shm,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )?;
    let mqueue = dev.join("mqueue");
    super::mounts::ensure_dir(&mqueue)?;
    mount_fs(
        "mqueue",
        &mqueue,
        "mqueue",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        link(&dev, target, name)?;
    }
    Ok(())
}

fn link(dev: &Path, target: &str, name: &str) -> Result<(), SetupError> {
    symlink(target, dev.join(name)).ctx(|| format!("creating /dev/{name}"))
}
