//! Tearing a pod down and proving nothing is left: no process with a uid in
//! the pod's range or living in one of its namespaces, no reference to its
//! network namespace, no data directory.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use hutch_tests::podsim::procscan::{self, ProcessInfo};
use hutch_tests::podsim::{Namespaces, PodInfo, ID_RANGE_SIZE};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

use crate::create::CreatedPod;
use crate::sidecar;

/// How long pod init's death may take to empty the pid namespace.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stragglers (exec processes whose command just died) get to exit
/// on their own before they are killed.
const GRACE: Duration = Duration::from_millis(200);
/// How long killing stragglers may take.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What teardown did and what it found.
#[derive(Debug, Default)]
pub struct Report {
    /// Things done on the way that are not failures.
    pub notes: Vec<String>,
    /// Things left behind: any of these fails the teardown.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The report as lines: `note: ...`, `leftover: ...`, then a verdict.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.notes.iter().map(|n| format!("note: {n}")).collect();
        lines.extend(self.problems.iter().map(|p| format!("leftover: {p}")));
        lines.push(if self.is_clean() {
            "teardown: ok".to_string()
        } else {
            format!("teardown: FAIL ({} problem(s))", self.problems.len())
        });
        lines
    }
}

/// Kills the pod and its sidecars, removes its data, and verifies.
/// `exited` says whether the shim already reaped the pod setup process.
pub fn teardown(pod: CreatedPod, state: Option<&Path>, exited: bool) -> Report {
    let mut report = Report::default();
    let base = pod.base();
    if let Some(state) = state {
        report.notes.extend(sidecar::kill_registered(state));
    }
    // Pod init is pid 1 of the pod: its death kills every process of the
    // pod's pid namespace. The setup process exits with it.
    match kill(pod.init_pid, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => report.problems.push(format!("killing pod init: {e}")),
    }
    if !exited {
        if let Err(problem) = wait_exit(pod.setup_pid, EXIT_TIMEOUT) {
            report.problems.push(problem);
        }
    }
    let ns = pod.namespaces.inodes;
    sweep(base, &ns, &mut report);
    // The node's reference to its netns goes last, as the CNI DEL would.
    drop(pod.node_netns);

    for p in pod_processes(base, &ns) {
        report
            .problems
            .push(format!("process {} ({}) {}", p.0.pid, p.0.name, p.1));
    }
    report.problems.extend(netns_references(ns.net));
    if pod.config.delegate_cgroups_v1 || pod.config.delegate_cgroups_v2 {
        report
            .problems
            .extend(crate::cgroups::remove(&pod.hostname));
    }
    // Only now may the kernel recycle the namespaces' inode numbers.
    drop(pod.namespaces);

    if let Err(e) = std::fs::remove_dir_all(&pod.pod_dir) {
        report
            .problems
            .push(format!("removing {}: {e}", pod.pod_dir.display()));
    }
    if pod.pod_dir.exists() {
        report
            .problems
            .push(format!("{} still exists", pod.pod_dir.display()));
    }
    if let Some(state) = state {
        for leftover in [PodInfo::path(state), state.join("sidecars")] {
            // Best effort: these are podsim's own bookkeeping files.
            let _ = std::fs::remove_file(&leftover).or_else(|_| std::fs::remove_dir_all(&leftover));
        }
    }
    if report.is_clean() {
        if let Err(e) = pod.lease.release() {
            report
                .problems
                .push(format!("releasing the ID range: {e:#}"));
        }
    }
    // Otherwise the lease is dropped with the pod's id still in its lock
    // file, and the next holder of the range cleans up after us.
    report
}

fn wait_exit(pid: Pid, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                return Ok(())
            }
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the pod setup process: {e}")),
        }
        if Instant::now() > deadline {
            // Best effort: report the timeout whatever happens.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(format!("the pod did not die within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for stragglers to go, then kills what remains.
fn sweep(base: u32, ns: &Namespaces, report: &mut Report) {
    let start = Instant::now();
    let mut killed = HashSet::new();
    loop {
        let found = pod_processes(base, ns);
        if found.is_empty() || start.elapsed() > SWEEP_TIMEOUT {
            return;
        }
        if start.elapsed() > GRACE {
            for (p, why) in found {
                // Best effort: verification below reports survivors.
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
                if killed.insert(p.pid) {
                    report
                        .notes
                        .push(format!("killed straggler {} ({}) {why}", p.pid, p.name));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Live processes that belong to the pod, with the reason.
pub fn pod_processes(base: u32, ns: &Namespaces) -> Vec<(ProcessInfo, &'static str)> {
    let me = getpid().as_raw();
    let mut found = Vec::new();
    for pid in procscan::all_pids().unwrap_or_default() {
        if pid == me {
            continue;
        }
        let Ok(p) = procscan::process_info(pid) else {
            continue;
        };
        if !p.is_live() {
            continue;
        }
        let why = if p.has_uid_in(base, ID_RANGE_SIZE) {
            Some("has a uid in the pod's range")
        } else {
            let inode = |kind| procscan::ns_inode(pid, kind).ok();
            if inode("net") == Some(ns.net) {
                Some("lives in the pod's netns")
            } else if inode("pid") == Some(ns.pid) {
                Some("lives in the pod's pid namespace")
            } else if inode("user") == Some(ns.user) {
                Some("lives in the pod's user namespace")
            } else if inode("mnt") == Some(ns.mnt) {
                Some("lives in the pod's mount namespace")
            } else {
                None
            }
        };
        if let Some(why) = why {
            found.push((p, why));
        }
    }
    found
}

/// Anything on the host still holding the pod's netns: an open descriptor
/// or an nsfs bind mount (in any mount namespace).
pub fn netns_references(inode: u64) -> Vec<String> {
    let needle = format!("net:[{inode}]");
    let mut refs = Vec::new();
    let mut seen_mount_ns = HashSet::new();
    let me = getpid().as_raw();
    for pid in procscan::all_pids().unwrap_or_default() {
        // The shim's own hold on the namespaces is not a leftover.
        if pid == me {
            continue;
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                let target = std::fs::read_link(fd.path()).unwrap_or_default();
                if target.as_os_str() == needle.as_str() {
                    refs.push(format!(
                        "pid {pid} holds the pod's netns open (fd {})",
                        fd.file_name().to_string_lossy()
                    ));
                }
            }
        }
        let Ok(mnt) = procscan::ns_inode(pid, "mnt") else {
            continue;
        };
        if !seen_mount_ns.insert(mnt) {
            continue;
        }
        let mountinfo =
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.get(3) == Some(&needle.as_str()) {
                let at = fields.get(4).copied().unwrap_or("?");
                refs.push(format!(
                    "the pod's netns is bind-mounted at {at} (mount ns of pid {pid})"
                ));
            }
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_ends_with_a_verdict() {
        let mut report = Report::default();
        report
            .notes
            .push("killed sidecar 7 and its process group".to_string());
        assert_eq!(
            report.lines(),
            [
                "note: killed sidecar 7 and its process group",
                "teardown: ok"
            ]
        );
        report
            .problems
            .push("process 9 (sleep) has a uid in the pod's range".to_string());
        assert!(!report.is_clean());
        assert_eq!(
            report.lines().last().map(String::as_str),
            Some("teardown: FAIL (1 problem(s))")
        );
    }
}
