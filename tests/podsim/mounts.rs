//! The pod's filesystem view, built by pod init in its own mount namespace
//! (owned by the pod's user namespace, as runc builds it): fresh /proc and
//! /sys, a tmpfs /dev with the usual devices, tmpfs /run and /tmp, the data
//! directory at /var/lib/hutch, and containerd's masked and read-only paths.
//! Everything else is the host's filesystem, seen through the pod's ID map.
//!
//! Because every mount below is made inside the pod's user namespace, none is
//! locked for pod root (with CAP_SYS_ADMIN it may unmount them in a private
//! mount namespace), but all are locked in any user namespace nested deeper,
//! exactly as in a real pod.

use std::fs::{DirBuilder, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hutch_tests::podsim::{Device, DATA_ROOT};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;

use crate::sys;

/// containerd's default masked paths: files get /dev/null bound over them,
/// directories an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// containerd's default read-only paths: bound onto themselves, read-only.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes every container gets (bound from the host's /dev, as runc
/// does in a user namespace where mknod is not allowed).
const STANDARD_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// What pod init needs to build the view.
pub struct MountPlan<'a> {
    /// The data directory on the host, opened in this mount namespace by
    /// the pod setup process (pod root could not walk to it: its parent is
    /// mode 0700).
    pub data_dir: BorrowedFd<'a>,
    /// Requested devices (`--device`), opened by the pod setup process.
    pub devices: &'a [(Device, OwnedFd)],
    pub proc_unmasked: bool,
    /// cgroup2 on /sys/fs/cgroup read-write (a delegated cgroup v2).
    pub cgroup_writable: bool,
}

/// Builds the view in the caller's (fresh, pod-owned) mount namespace. The
/// caller must be pid 1 of the pod's pid namespace, for /proc.
pub fn setup(plan: &MountPlan<'_>) -> anyhow::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;
    mount_fs(
        "proc",
        "/proc",
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "",
    )?;
    mount_sys(plan.cgroup_writable)?;
    mount_dev(plan.devices)?;
    mount_fs(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=755",
    )?;
    mount_fs(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        "mode=1777",
    )?;
    bind_fd(plan.data_dir, Path::new(DATA_ROOT), MsFlags::MS_REC)
        .with_context(|| format!("mounting the data directory at {DATA_ROOT}"))?;
    if !plan.proc_unmasked {
        apply_readonly_paths()?;
        apply_masked_paths()?;
    }
    Ok(())
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: &str,
) -> anyhow::Result<()> {
    let data = (!data.is_empty()).then_some(data);
    mount(Some(source), target, Some(fstype), flags, data)
        .with_context(|| format!("mounting {fstype} on {target}"))
}

/// runc mounts a fresh sysfs when the pod's user namespace owns its network
/// namespace; otherwise the kernel refuses (EPERM) and runc falls back to a
/// recursive bind of the host's /sys. Either way read-only, with cgroup2 (of
/// the pod's cgroup namespace) on /sys/fs/cgroup, read-only too unless the
/// pod's cgroup is delegated.
fn mount_sys(cgroup_writable: bool) -> anyhow::Result<()> {
    let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("sysfs"), "/sys", Some("sysfs"), ro, None::<&str>) {
        Ok(()) => {}
        Err(Errno::EPERM) => {
            mount(
                Some("/sys"),
                "/sys",
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .context("binding the host's /sys")?;
            let attrs = libc::MOUNT_ATTR_RDONLY
                | libc::MOUNT_ATTR_NOSUID
                | libc::MOUNT_ATTR_NODEV
                | libc::MOUNT_ATTR_NOEXEC;
            sys::mount_setattr_recursive(Path::new("/sys"), attrs)
                .context("making the /sys bind read-only")?;
        }
        Err(e) => return Err(e).context("mounting sysfs on /sys"),
    }
    let cgroup_flags = if cgroup_writable {
        ro - MsFlags::MS_RDONLY
    } else {
        ro
    };
    mount_fs("cgroup2", "/sys/fs/cgroup", "cgroup2", cgroup_flags, "")
}

fn mount_dev(devices: &[(Device, OwnedFd)]) -> anyhow::Result<()> {
    // Open the host's nodes before the tmpfs hides them.
    let mut nodes: Vec<(PathBuf, BorrowedFd<'_>)> = Vec::new();
    let mut opened = Vec::new();
    for name in STANDARD_DEVICES {
        let path = format!("/dev/{name}");
        let fd = open(
            path.as_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening the host's {path}"))?;
        opened.push((PathBuf::from(path), fd));
    }
    nodes.extend(opened.iter().map(|(path, fd)| (path.clone(), fd.as_fd())));
    nodes.extend(
        devices
            .iter()
            .map(|(dev, fd)| (PathBuf::from(dev.path()), fd.as_fd())),
    );

    mount_fs(
        "tmpfs",
        "/dev",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        "mode=755,size=65536k",
    )?;
    for (path, fd) in &nodes {
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(path)
            .with_context(|| format!("creating the mount point {}", path.display()))?;
        bind_fd(*fd, path, MsFlags::empty())
            .with_context(|| format!("binding {}", path.display()))?;
    }

    make_dir("/dev/pts", 0o755)?;
    mount_fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    make_dir("/dev/shm", 0o1777)?;
    mount_fs(
        "shm",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "mode=1777,size=65536k",
    )?;
    make_dir("/dev/mqueue", 0o755)?;
    mount_fs(
        "mqueue",
        "/dev/mqueue",
        "mqueue",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        "",
    )?;
    for (link, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/core", "/proc/kcore"),
    ] {
        symlink(target, link).with_context(|| format!("linking {link}"))?;
    }
    Ok(())
}

fn make_dir(path: &str, mode: u32) -> anyhow::Result<()> {
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {path}"))
}

/// Bind-mounts what `fd` refers to onto `target`, through /proc/self/fd.
fn bind_fd(fd: BorrowedFd<'_>, target: &Path, extra: MsFlags) -> nix::Result<()> {
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND | extra,
        None::<&str>,
    )
}

fn apply_readonly_paths() -> anyhow::Result<()> {
    for path in READONLY_PATHS {
        if !exists(path)? {
            continue;
        }
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("binding {path} onto itself"))?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
            .with_context(|| format!("making {path} read-only"))?;
    }
    Ok(())
}

fn apply_masked_paths() -> anyhow::Result<()> {
    for path in MASKED_PATHS {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("looking at {path}")),
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .with_context(|| format!("masking {path}"))?;
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("masking {path}"))?;
        }
    }
    Ok(())
}

fn exists(path: &str) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("looking at {path}")),
    }
}
