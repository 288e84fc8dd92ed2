//! `--delegate-cgroups-v1`: a pod given writable cgroup v1 directories, as a
//! node would delegate them. Each controller's hierarchy gets a directory
//! named after the pod, chowned to pod root; pod init mounts a tmpfs on
//! /sys/fs/cgroup with those directories bound in at /sys/fs/cgroup/<name>.

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

/// At teardown (the pod's processes are gone): the directories and any
/// cgroups left inside, deepest first.
pub fn remove(pod: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for c in CONTROLLERS {
        let dir = host_dir(c, pod);
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
