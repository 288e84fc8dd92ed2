//! Fresh procfs and sysfs mounts in a container's namespaces.
//!
//! The kernel refuses a new procfs (sysfs) in a user namespace while the
//! existing one has over-mounts hiding parts of it: the masks a runtime puts
//! on the pod's /proc (kcore, keys, timer_list, /proc/sys read-only ...) and
//! /sys (firmware). They are locked for any child user namespace, but the pod
//! root, which owns them, may unmount them in a private mount namespace when
//! it holds CAP_SYS_ADMIN. So each trial runs as is, then after lifting.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::child::{At, Failure, Sandbox};
use super::report::{Check, PseudoFsMode, Status};
use super::scratch::Scratch;

/// Mount points strictly below one of `tops` (e.g. /proc/kcore under /proc),
/// in the order they were mounted. Octal escapes (`\040`) are decoded.
pub fn mounts_below(mountinfo: &str, tops: &[&str]) -> Vec<String> {
    crate::mountinfo::mount_points(mountinfo)
        .filter(|point| {
            tops.iter().any(|top| {
                point
                    .strip_prefix(top)
                    .is_some_and(|rest| rest.starts_with('/'))
            })
        })
        .collect()
}

/// In a fresh private mount namespace of our own user namespace, unmounts
/// every mount below /proc and /sys, last mounted first. Needs CAP_SYS_ADMIN.
pub fn lift_masks() -> Result<(), Failure> {
    unshare(CloneFlags::CLONE_NEWNS).at("unshare(CLONE_NEWNS) in our own user namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .at("make / private")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").at("read mountinfo")?;
    for point in mounts_below(&mountinfo, &["/proc", "/sys"]).iter().rev() {
        match umount2(point.as_str(), MntFlags::MNT_DETACH) {
            // Already gone with a parent we detached.
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Failure::errno(format!("unmount the mask on {point}"), e)),
        }
    }
    Ok(())
}

/// The flags runtimes mount them with. They must also match the flags locked
/// on the pod's own mounts (a read-only /sys stays read-only).
fn proc_flags() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

fn mount_proc(dir: &Path) -> Result<(), Failure> {
    mount(Some("proc"), dir, Some("proc"), proc_flags(), None::<&str>).at("mount proc")
}

fn mount_sysfs(dir: &Path) -> Result<(), Failure> {
    mount(
        Some("sysfs"),
        dir,
        Some("sysfs"),
        proc_flags() | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .at("mount sysfs")
}

/// What the two trials for one pseudo filesystem found.
pub struct Outcome {
    pub as_is: Result<(), Failure>,
    /// None when not tried (the mount works as is).
    pub lifted: Option<Result<(), Failure>>,
}

impl Outcome {
    pub fn mode(&self) -> PseudoFsMode {
        match (&self.as_is, &self.lifted) {
            (Ok(()), _) => PseudoFsMode::Fresh,
            (Err(_), Some(Ok(()))) => PseudoFsMode::FreshAfterLiftingMasks,
            _ => PseudoFsMode::Shared,
        }
    }
}

/// Fresh procfs: a child user + mount + pid namespace (the new procfs shows
/// the pid namespace of the mounter, which it must own).
pub fn probe_proc(scratch: &Result<Scratch, Failure>) -> Outcome {
    probe(scratch, "proc", Sandbox::user().mount().pid(), mount_proc)
}

/// Fresh sysfs: a child user + mount + net namespace (sysfs shows the
/// network namespace of the mounter, which it must own).
pub fn probe_sys(scratch: &Result<Scratch, Failure>) -> Outcome {
    probe(scratch, "sys", Sandbox::user().mount().net(), mount_sysfs)
}

fn probe(
    scratch: &Result<Scratch, Failure>,
    name: &str,
    sandbox: Sandbox,
    mount_it: fn(&Path) -> Result<(), Failure>,
) -> Outcome {
    let dir = match scratch
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|s| s.dir(name))
    {
        Ok(dir) => dir,
        Err(failure) => {
            return Outcome {
                as_is: Err(failure),
                lifted: None,
            }
        }
    };
    let as_is = {
        let dir = dir.clone();
        sandbox.run(move || mount_it(&dir))
    };
    let lifted = as_is
        .is_err()
        .then(|| sandbox.lift_masks().run(move || mount_it(&dir)));
    Outcome { as_is, lifted }
}

fn describe(outcome: &Outcome, what: &str) -> String {
    match (&outcome.as_is, &outcome.lifted) {
        (Ok(()), _) => format!("a fresh {what} mounts in a child namespace as is"),
        (Err(e), Some(Ok(()))) => format!(
            "as is: {e}; after hutch lifts the masks over the pod's {what} (it holds \
             SYS_ADMIN): mounts"
        ),
        (Err(e), Some(Err(lift))) => format!("as is: {e}; after lifting the masks: {lift}"),
        (Err(e), None) => e.to_string(),
    }
}

const FIX_UNMASKED: &str = "\
spec:
  hostUsers: false          # required for procMount: Unmasked
  containers:
  - name: hutch
    securityContext:
      procMount: Unmasked
      # or let hutch lift the masks itself in its own mount namespace:
      # capabilities: {add: [SYS_ADMIN]}";

/// `procfs.fresh`.
pub fn check_proc(outcome: &Outcome) -> Check {
    Check::new(
        "procfs.fresh",
        "fresh /proc in a child namespace",
        status(outcome),
        describe(outcome, "/proc"),
    )
    .blocks(
        "a /proc of each container's own: they run in degraded proc mode, with their \
         own pid namespace but a bind of the pod's /proc, which lists the pod's \
         processes under their pod pids; its /proc/sys is read-only, so --sysctl is \
         not applied, nor Docker's net.ipv4.ip_unprivileged_port_start=0 (binding \
         ports below 1024 needs root in the container)",
    )
    .fix(FIX_UNMASKED)
}

/// `sysfs.fresh`.
pub fn check_sys(outcome: &Outcome) -> Check {
    Check::new(
        "sysfs.fresh",
        "fresh /sys in a child namespace",
        status(outcome),
        describe(outcome, "/sys"),
    )
    .blocks(
        "a /sys matching the container's own network namespace: containers get a \
         read-only bind of the pod's /sys",
    )
    .fix(FIX_UNMASKED)
}

fn status(outcome: &Outcome) -> Status {
    match outcome.mode() {
        PseudoFsMode::Fresh | PseudoFsMode::FreshAfterLiftingMasks => Status::Ok,
        PseudoFsMode::Shared => Status::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
2 1 0:30 / / rw,relatime - ext4 /dev/vda rw
30 2 0:40 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
31 30 0:41 /null /proc/kcore rw,nosuid - tmpfs tmpfs rw
32 30 0:40 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
33 2 0:42 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
34 33 0:43 / /sys/firmware ro,relatime - tmpfs tmpfs ro
35 33 0:44 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw
36 2 0:45 / /proc-like\\040dir rw - tmpfs tmpfs rw
37 2 0:46 / /data\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_the_masks_below_proc_and_sys() {
        assert_eq!(
            mounts_below(MOUNTINFO, &["/proc", "/sys"]),
            vec![
                "/proc/kcore",
                "/proc/sys",
                "/sys/firmware",
                "/sys/fs/cgroup"
            ]
        );
    }

    #[test]
    fn modes() {
        let denied = || Err(Failure::errno("mount proc", nix::errno::Errno::EPERM));
        let fresh = Outcome {
            as_is: Ok(()),
            lifted: None,
        };
        assert_eq!(fresh.mode(), PseudoFsMode::Fresh);
        let lifted = Outcome {
            as_is: denied(),
            lifted: Some(Ok(())),
        };
        assert_eq!(lifted.mode(), PseudoFsMode::FreshAfterLiftingMasks);
        assert_eq!(check_proc(&lifted).status, Status::Ok);
        let shared = Outcome {
            as_is: denied(),
            lifted: Some(denied()),
        };
        assert_eq!(shared.mode(), PseudoFsMode::Shared);
        let check = check_proc(&shared);
        assert_eq!(check.status, Status::Missing);
        assert!(check
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("procMount: Unmasked")));
    }
}
