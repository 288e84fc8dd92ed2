//! Opening a running pod's namespaces from the host, through its init's
//! /proc/PID/ns links, checked against the inodes pod.json recorded, so a
//! pod that is gone (and a pid that was recycled) is an error, never a
//! command run in the wrong place.

use std::fs::File;
use std::os::fd::OwnedFd;

use anyhow::{bail, Context};
use hutch_tests::podsim::{procscan, Namespaces, PodInfo};
use nix::sched::CloneFlags;
use nix::sys::stat::fstat;
use nix::unistd::Pid;

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
    let expected = info
        .namespaces
        .by_kind(kind)
        .with_context(|| format!("unknown namespace kind {kind}"))?;
    let gone = || {
        format!(
            "pod {} is not running (its init, pid {}, is gone)",
            info.id, info.init_pid
        )
    };
    let file = File::open(format!("/proc/{}/ns/{kind}", info.init_pid)).with_context(gone)?;
    let inode = fstat(&file).context("inspecting a namespace")?.st_ino;
    if inode != expected {
        bail!("{}", gone());
    }
    Ok(OwnedFd::from(file))
}

/// Inodes of a process's namespaces.
pub fn inodes_of(pid: Pid) -> anyhow::Result<Namespaces> {
    Namespaces::try_from_fn(|kind| {
        procscan::ns_inode(pid.as_raw(), kind)
            .with_context(|| format!("reading /proc/{pid}/ns/{kind}"))
    })
}

/// Descriptors on every namespace of a pod, which the shim holds for the
/// pod's whole life and through teardown. They matter for one reason: the
/// kernel hands a dead namespace's inode number to the next namespace
/// created, and teardown recognises the pod's leftovers by these numbers.
/// Held, the numbers cannot be recycled, so "lives in the pod's pid
/// namespace" can never match a process of a pod created meanwhile.
pub struct Held {
    pub inodes: Namespaces,
    _fds: Vec<OwnedFd>,
}

/// Opens and holds all namespaces of `pid`.
pub fn hold(pid: Pid) -> anyhow::Result<Held> {
    let mut fds = Vec::new();
    let inodes = Namespaces::try_from_fn(|kind| -> anyhow::Result<u64> {
        let file = File::open(format!("/proc/{pid}/ns/{kind}"))
            .with_context(|| format!("opening /proc/{pid}/ns/{kind}"))?;
        let inode = fstat(&file).context("inspecting a namespace")?.st_ino;
        fds.push(OwnedFd::from(file));
        Ok(inode)
    })?;
    Ok(Held { inodes, _fds: fds })
}
