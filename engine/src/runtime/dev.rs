//! The container's /dev: a small tmpfs with the safe device nodes bound in
//! from the engine (a user namespace cannot mknod devices), a private devpts
//! instance, /dev/shm and /dev/mqueue (as the IPC mode has them).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::error::{Context, SetupError};
use super::mounts::{bind, in_root, mount_fs};
use super::safe_path::{fd_path, open_in_root, Kind};
use super::spec::DeviceSpec;

/// Device nodes every container gets, as Docker gives them.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The tmpfs a container's /dev is.
const DEV_FLAGS: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_STRICTATIME);
const DEV_DATA: &str = "mode=755,size=65536k";

/// What the container's /dev/shm and /dev/mqueue are (its `--ipc`).
#[derive(Debug)]
pub enum IpcMounts {
    /// A tmpfs and an mqueue instance of its own IPC namespace.
    Own,
    /// No /dev/shm (`--ipc none`).
    NoShm,
    /// The engine's, bound in: the container is in the engine's IPC
    /// namespace, whose mqueue it may not mount.
    Host,
    /// The donor container's /dev/shm, a detached copy of its mount
    /// ([`super::donor::clone_shm`]), and an mqueue of the donor's namespace.
    Donor(OwnedFd),
}

/// Builds /dev inside the rootfs at `root_path` (whose fd is `root`).
pub fn setup_dev(root: &OwnedFd, root_path: &Path, ipc: &IpcMounts) -> Result<(), SetupError> {
    let dev = open_in_root(root, Path::new("/dev"), Kind::Dir)?;
    mount_fs("tmpfs", &fd_path(&dev), "tmpfs", DEV_FLAGS, Some(DEV_DATA))?;
    // /dev is now our own tmpfs: paths under it hold no image symlinks.
    let sources: Vec<PathBuf> = DEVICES.iter().map(|n| Path::new("/dev").join(n)).collect();
    populate(&in_root(root_path, Path::new("/dev")), &sources, ipc)
}

/// Builds the container's /dev ahead, over this process's own /dev: in a
/// premade init (`helper::Premade`), whose mount table is a private copy
/// of the engine's, while it waits to learn its container. Nothing in /dev
/// depends on the container, and the ~0.3 ms this takes then falls in the
/// spare's idle time, not in a start. The setup moves it into the rootfs
/// (`mounts::move_staged`), which shows the engine's /dev again before
/// the container's bind mounts (whose sources may be under it) are made.
/// `Ok(false)`: staging failed and was taken down (the setup builds /dev
/// as usual); `Err`: it could not be taken down, and the engine's /dev is
/// hidden.
pub fn stage() -> Result<bool, SetupError> {
    // The engine's nodes, held before the tmpfs hides them.
    let mut nodes = Vec::with_capacity(DEVICES.len());
    for name in DEVICES {
        let path = Path::new("/dev").join(name);
        match open(&path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => nodes.push(fd),
            Err(_) => return Ok(false),
        }
    }
    let dev = Path::new("/dev");
    if mount_fs("tmpfs", dev, "tmpfs", DEV_FLAGS, Some(DEV_DATA)).is_err() {
        return Ok(false);
    }
    let sources: Vec<PathBuf> = nodes.iter().map(fd_path).collect();
    let built = populate(dev, &sources, &IpcMounts::Own);
    match built {
        Ok(()) => Ok(true),
        Err(_) => {
            umount2(dev, MntFlags::MNT_DETACH)
                .ctx(|| "taking down a half-built /dev".to_string())?;
            Ok(false)
        }
    }
}

/// Fills the fresh tmpfs at `dev`: the [`DEVICES`] (each bound from its
/// entry in `sources`), devpts, /dev/shm, /dev/mqueue and the usual links.
fn populate(dev: &Path, sources: &[PathBuf], ipc: &IpcMounts) -> Result<(), SetupError> {
    for (name, source) in DEVICES.iter().zip(sources) {
        let target = dev.join(name);
        super::mounts::ensure_file(&target)?;
        bind(source, &target, false)?;
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
    link(dev, "pts/ptmx", "ptmx")?;
    ipc_mounts(dev, ipc)?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        link(dev, target, name)?;
    }
    Ok(())
}

/// Binds the devices a container asked for (`--device`, `--privileged`)
/// after its mounts, as runc creates them after its mounts: each target is
/// resolved inside the rootfs, created as an empty file, and gets the
/// engine's node bound on it. The bind keeps the node's own mount, whose
/// devices the kernel lets a user namespace open; a node made in the
/// container's tmpfs could not be opened.
pub fn add_devices(root: &OwnedFd, devices: &[DeviceSpec]) -> Result<(), SetupError> {
    for d in devices {
        let target = open_in_root(root, &d.destination, Kind::File)?;
        mount(
            Some(&d.source),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| {
            format!(
                "adding device {} as {}",
                d.source.display(),
                d.destination.display()
            )
        })?;
    }
    Ok(())
}

/// /dev/shm and /dev/mqueue in the fresh /dev at `dev`.
fn ipc_mounts(dev: &Path, ipc: &IpcMounts) -> Result<(), SetupError> {
    let shm = dev.join("shm");
    let mqueue = dev.join("mqueue");
    let engine_dev = Path::new("/dev");
    match ipc {
        IpcMounts::NoShm => {}
        IpcMounts::Own => {
            super::mounts::ensure_dir(&shm)?;
            mount_fs(
                "shm",
                &shm,
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )?;
        }
        IpcMounts::Host => {
            super::mounts::ensure_dir(&shm)?;
            bind(&engine_dev.join("shm"), &shm, false)?;
        }
        IpcMounts::Donor(tree) => {
            super::mounts::ensure_dir(&shm)?;
            crate::mount_api::attach(tree.as_fd(), &shm)
                .ctx(|| "attaching the shared container's /dev/shm".to_string())?;
        }
    }
    super::mounts::ensure_dir(&mqueue)?;
    if matches!(ipc, IpcMounts::Host) {
        // Only a member of the IPC namespace's owner may mount its mqueue:
        // the engine's, when it has one.
        let theirs = engine_dev.join("mqueue");
        if is_mqueue(&theirs) {
            bind(&theirs, &mqueue, false)?;
        }
        return Ok(());
    }
    mount_fs(
        "mqueue",
        &mqueue,
        "mqueue",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

/// Whether an mqueue filesystem is mounted at `path`.
fn is_mqueue(path: &Path) -> bool {
    /// MQUEUE_MAGIC (linux/magic.h), which nix does not name.
    const MQUEUE_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x1980_2912);
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == MQUEUE_MAGIC)
}

fn link(dev: &Path, target: &str, name: &str) -> Result<(), SetupError> {
    symlink(target, dev.join(name)).ctx(|| format!("creating /dev/{name}"))
}
