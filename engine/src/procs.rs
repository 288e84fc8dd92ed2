//! A container's processes, found through /proc.
//!
//! Not by PID namespace: in the degraded proc mode (a pod whose /proc is
//! masked) the container's PIDs are not the ones /proc shows, and with
//! `--pid container:` the namespace is shared with the donor. Docker lists
//! the container's cgroup, which a pod may not have. Every process of a
//! container (its init's and every exec's) is in the container's mount
//! namespace, so that is the key; descendants count too, since one may
//! have made a mount namespace of its own.
//!
//! `docker top`/`stats` list them; the supervisor kills them when a
//! container in a shared PID namespace ends (nothing else would).

use std::collections::HashSet;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A mount namespace, by the identity of its nsfs inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountNs {
    dev: u64,
    ino: u64,
}

impl MountNs {
    /// The mount namespace `pid` is in (`None` once it has exited).
    pub fn of_pid(pid: i32) -> Option<MountNs> {
        let m = std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok()?;
        Some(MountNs {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The mount namespace a held `/proc/<pid>/ns/mnt` descriptor names
    /// (it outlives the processes that were in it).
    pub fn of_fd(fd: BorrowedFd<'_>) -> Option<MountNs> {
        let st = nix::sys::stat::fstat(fd).ok()?;
        Some(MountNs {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// The PIDs of the processes in `ns` and of their descendants, in /proc's
/// order.
pub fn members(ns: MountNs) -> Vec<i32> {
    let all: Vec<(i32, i32)> = match std::fs::read_dir("/proc") {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| Some((pid, parent(pid)?)))
            .collect(),
        Err(_) => return Vec::new(),
    };
    let mut found: HashSet<i32> = all
        .iter()
        .filter(|(pid, _)| MountNs::of_pid(*pid) == Some(ns))
        .map(|(pid, _)| *pid)
        .collect();
    // Parents come before children in /proc only until PIDs wrap: repeat
    // until nothing is added.
    let mut grew = !found.is_empty();
    while grew {
        grew = false;
        for (pid, ppid) in &all {
            if !found.contains(pid) && found.contains(ppid) {
                found.insert(*pid);
                grew = true;
            }
        }
    }
    all.into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| found.contains(pid))
        .collect()
}

/// SIGKILLs every member of `ns` (see [`members`]) and returns how many
/// were signalled. A few passes, so that what forked while the first one
/// was killing goes too; a killed process leaves the namespace at once (a
/// zombie has none), so a pass finding nobody ends it. Not found: a
/// process that made a mount namespace of its own and whose parent has
/// already exited (it was reparented outside); only a cgroup would hold it.
pub fn kill_members(ns: MountNs) -> usize {
    const PASSES: usize = 4;
    let mut killed = 0;
    for _ in 0..PASSES {
        let round = members(ns)
            .into_iter()
            .filter(|pid| kill(Pid::from_raw(*pid), Signal::SIGKILL).is_ok())
            .count();
        if round == 0 {
            break;
        }
        killed += round;
    }
    killed
}

/// The parent PID from `/proc/<pid>/stat` (`None` once it has exited).
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_children_are_members_of_its_namespace() {
        let me = std::process::id() as i32;
        let Some(ns) = MountNs::of_pid(me) else {
            panic!("/proc/self/ns/mnt is not readable");
        };
        let mut child = match std::process::Command::new("sleep").arg("30").spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start sleep: {e}"),
        };
        let pids = members(ns);
        let _ = child.kill();
        let _ = child.wait();
        assert!(pids.contains(&me), "{me} not in {pids:?}");
        assert!(pids.contains(&(child.id() as i32)), "child not in {pids:?}");
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id() as i32));
    }

    #[test]
    fn a_held_namespace_fd_names_the_same_namespace() {
        let fd = match std::fs::File::open("/proc/self/ns/mnt") {
            Ok(f) => f,
            Err(e) => panic!("cannot open /proc/self/ns/mnt: {e}"),
        };
        use std::os::fd::AsFd;
        assert_eq!(
            MountNs::of_fd(fd.as_fd()),
            MountNs::of_pid(std::process::id() as i32)
        );
    }
}
