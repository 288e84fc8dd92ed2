//! Opening a running pod's namespaces from the host, through its init's
//! /proc/PID/ns links, checked against the inodes pod.json recorded, so a
//! pod that is gone (and a pid that was recycled) is an error, never a
//! command run in the wrong place.

use std::fs::File;
use std::os::fd::OwnedFd;

use anyhow::{bail, Context};
use hutch_tests::podsim::PodInfo;
use nix::sched::CloneFlags;
use nix::sys::stat::fstat;

/// The namespaces `exec` joins, in the order it joins them: net first, while
/// still host root (a node-owned netns is out of pod root's reach), then the
/// user namespace, then the ones the pod's user namespace owns.
pub const EXEC_ORDER: [(&str, CloneFlags); 7] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
];

/// Opens namespace `kind` of the pod.
pub fn open(info: &PodInfo, kind: &str) -> anyhow::Result<OwnedFd> {
    let expected = match kind {
        "net" => info.namespaces.net,
        "user" => info.namespaces.user,
        "mnt" => info.namespaces.mnt,
        "uts" => info.namespaces.uts,
        "ipc" => info.namespaces.ipc,
        "cgroup" => info.namespaces.cgroup,
        "pid" => info.namespaces.pid,
        other => bail!("unknown namespace kind {other}"),
    };
    let gone = || format!("pod {} is not running (its init, pid {}, is gone)", info.id, info.init_pid);
    let file = File::open(format!("/proc/{}/ns/{kind}", info.init_pid)).with_context(gone)?;
    let inode = fstat(&file).context("inspecting a namespace")?.st_ino;
    if inode != expected {
        bail!("{}", gone());
    }
    Ok(OwnedFd::from(file))
}
