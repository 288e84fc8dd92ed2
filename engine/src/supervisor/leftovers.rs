//! A container in another container's PID namespace (`--pid container:`)
//! has no PID namespace of its own whose end takes its processes with it:
//! when its init exits, what it started would live on in the donor's. Docker
//! ends them through the container's cgroup; a pod may have none to give,
//! so they are found by the container's mount namespace, which every one
//! of its processes (execs too) is in, and killed.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sys::signal::{kill, Signal};
use nix::sys::stat::fstat;
use nix::unistd::Pid;

/// SIGKILLs every process in the mount namespace `ns`; returns how many.
pub fn kill_in_mount_ns(ns: &OwnedFd) -> usize {
    let Ok(st) = fstat(ns.as_fd()) else {
        return 0;
    };
    let target = (st.st_dev, st.st_ino);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let same = std::fs::metadata(entry.path().join("ns/mnt"))
            .is_ok_and(|m| (m.dev(), m.ino()) == target);
        if same && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}
