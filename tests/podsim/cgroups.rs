//! `--delegate-cgroups-v1`: a pod given writable cgroup v1 directories, as a
//! node would delegate them. Each controller's hierarchy gets a directory
//! named after the pod, chowned to pod root; pod init mounts a tmpfs on
//! /sys/fs/cgroup with those directories bound in at /sys/fs/cgroup/<name>.
//!
//! `--delegate-cgroups-v2`: a pod given a writable cgroup v2 directory, as a
//! delegating runtime does (systemd's `Delegate=yes`, containerd with
//! cgroupns): `podsim/podsim-<id>` under the host's cgroup2 mount, the directory
//! and the files of /sys/kernel/cgroup/delegate chowned to pod root. The
//! pod's processes are placed in it before its cgroup namespace is created,
//! so the namespace is rooted there, and pod init mounts cgroup2 read-write
//! on /sys/fs/cgroup: the pod sees its cgroup as `0::/`, as real pods do.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chown, Gid, Uid};

/// The controllers delegated (hutch's memory, CPU, PIDs and freezer).
pub const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];

fn host_dir(controller: &str, pod: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup").join(controller).join(pod)
}

/// As host root: creates the pod's directories, owned by pod root (`base`).
pub fn delegate(pod: &str, base: u32) -> anyhow::Result<()> {
    let owner = (Some(Uid::from_raw(base)), Some(Gid::from_raw(base)));
    for c in CONTROLLERS {
        let dir = host_dir(c, pod);
        std::fs::create_dir(&dir)
            .with_context(|| format!("creating the delegated cgroup {}", dir.display()))?;
        chown(&dir, owner.0, owner.1).with_context(|| format!("chown {}", dir.display()))?;
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            chown(&path, owner.0, owner.1).with_context(|| format!("chown {}", path.display()))?;
        }
    }
    Ok(())
}

/// Opens the directories (before the pod's /sys hides the host's).
pub fn open_dirs(pod: &str) -> anyhow::Result<Vec<(&'static str, OwnedFd)>> {
    CONTROLLERS
        .iter()
        .map(|&c| {
            let dir = host_dir(c, pod);
            open(
                &dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("opening {}", dir.display()))
            .map(|fd| (c, fd))
        })
        .collect()
}

/// In pod init, after /sys: the tmpfs and the binds.
pub fn mount_in_pod(dirs: &[(&'static str, OwnedFd)]) -> anyhow::Result<()> {
    mount(
        Some("tmpfs"),
        "/sys/fs/cgroup",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .context("mounting a tmpfs on /sys/fs/cgroup")?;
    for (c, fd) in dirs {
        let target = Path::new("/sys/fs/cgroup").join(c);
        std::fs::create_dir(&target).with_context(|| format!("mkdir {}", target.display()))?;
        let source = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd())
        );
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("binding the delegated cgroup on {}", target.display()))?;
    }
    Ok(())
}

/// The host's cgroup2 mount. On this kind of host (v1 controllers, cgroup2
/// beside them) it is /sys/fs/cgroup/unified; on a unified host, the root.
pub fn v2_root() -> anyhow::Result<PathBuf> {
    for dir in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let is_v2 = nix::sys::statfs::statfs(dir)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        if is_v2 {
            return Ok(PathBuf::from(dir));
        }
    }
    anyhow::bail!("the host has no cgroup2 mount (/sys/fs/cgroup/unified or /sys/fs/cgroup)")
}

/// The host cgroup holding the pods' v2 cgroups. Kept for good: default
/// pods see the host's cgroup2 root, and a directory appearing or going
/// there with every v2 pod would show in their view (the doctor tests
/// compare it before and after).
const V2_PARENT: &str = "podsim";

/// The pod's v2 cgroup on the host.
pub fn v2_host_dir(pod: &str) -> anyhow::Result<PathBuf> {
    Ok(v2_root()?.join(V2_PARENT).join(pod))
}

/// The files a delegator hands over with the directory (the kernel's list;
/// the documented three if it has none).
fn delegated_files() -> Vec<String> {
    let listed = std::fs::read_to_string("/sys/kernel/cgroup/delegate").unwrap_or_default();
    let files: Vec<String> = listed.split_whitespace().map(str::to_string).collect();
    if files.is_empty() {
        ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"]
            .map(str::to_string)
            .to_vec()
    } else {
        files
    }
}

/// As host root: creates the pod's v2 cgroup, delegated to pod root.
pub fn delegate_v2(pod: &str, base: u32) -> anyhow::Result<PathBuf> {
    let owner = (Some(Uid::from_raw(base)), Some(Gid::from_raw(base)));
    let dir = v2_host_dir(pod)?;
    if let Some(parent) = dir.parent() {
        match std::fs::create_dir(parent) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("creating {}", parent.display()))
            }
            _ => {}
        }
    }
    std::fs::create_dir(&dir)
        .with_context(|| format!("creating the delegated cgroup {}", dir.display()))?;
    chown(&dir, owner.0, owner.1).with_context(|| format!("chown {}", dir.display()))?;
    for file in delegated_files() {
        let path = dir.join(file);
        if path.exists() {
            chown(&path, owner.0, owner.1).with_context(|| format!("chown {}", path.display()))?;
        }
    }
    Ok(dir)
}

/// As host root: moves `pid` into the pod's v2 cgroup (`dir`).
pub fn join_v2(dir: &Path, pid: i32) -> anyhow::Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string())
        .with_context(|| format!("moving {pid} into {}", procs.display()))
}

/// At teardown (the pod's processes are gone): the directories and any
/// cgroups left inside, deepest first.
pub fn remove(pod: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let v2 = v2_host_dir(pod).ok();
    for dir in CONTROLLERS.iter().map(|c| host_dir(c, pod)).chain(v2) {
        if dir.exists() {
            if let Err(e) = remove_tree(&dir) {
                problems.push(format!("removing {}: {e}", dir.display()));
            }
        }
    }
    problems
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    // A cgroup just emptied by a kill may be busy for a moment.
    let mut last = Ok(());
    for _ in 0..100 {
        last = std::fs::remove_dir(dir);
        if last.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    last
}
