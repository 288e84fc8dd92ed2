//! Cgroups: which version, and whether the pod's cgroup is delegated to us
//! and writable (resource limits for containers need both).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{self, FsType};
use nix::unistd::geteuid;

use super::child::{At, Sandbox};
use super::report::{Check, Status};

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    Hybrid,
    V1,
    None,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "v2",
            Version::Hybrid => "hybrid",
            Version::V1 => "v1",
            Version::None => "none",
        }
    }
}

/// The version from the filesystem types of /sys/fs/cgroup and of
/// /sys/fs/cgroup/unified (where hybrid setups mount cgroup2).
pub fn classify(root: Option<FsType>, unified: Option<FsType>) -> Version {
    match (root, unified) {
        (Some(fs), _) if fs == statfs::CGROUP2_SUPER_MAGIC => Version::V2,
        (Some(fs), Some(u)) if fs == statfs::TMPFS_MAGIC && u == statfs::CGROUP2_SUPER_MAGIC => {
            Version::Hybrid
        }
        (Some(fs), _) if fs == statfs::TMPFS_MAGIC => Version::V1,
        _ => Version::None,
    }
}

pub fn version() -> Version {
    let fs = |p: &str| statfs::statfs(p).ok().map(|s| s.filesystem_type());
    classify(fs(ROOT), fs("/sys/fs/cgroup/unified"))
}

/// Our cgroup v2 path from /proc/self/cgroup (the `0::` line).
pub fn own_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The directory of our cgroup. In a cgroup namespace whose root differs
/// from the mounted one the path does not resolve; then the mount's root is
/// the best guess (runtimes mount the container's own cgroup there).
fn own_dir() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = own_path(&text).unwrap_or("/").trim_start_matches('/');
    let dir = Path::new(ROOT).join(rel);
    if !rel.is_empty() && dir.is_dir() {
        dir
    } else {
        PathBuf::from(ROOT)
    }
}

const FIX_WRITABLE: &str = "\
# node, containerd >= 2.1 (config.toml): a runtime handler with a writable cgroupfs
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.hutch]
  runtime_type = 'io.containerd.runc.v2'
  cgroup_writable = true
# cluster: a RuntimeClass for it, and in the pod:
spec:
  runtimeClassName: hutch";

/// `cgroup.version`.
pub fn check_version(version: Version) -> Check {
    let (status, detail) = match version {
        Version::V2 => (Status::Ok, "cgroup v2 (unified)"),
        Version::Hybrid => (
            Status::Degraded,
            "hybrid: v1 controllers, v2 unified only for tracking",
        ),
        Version::V1 => (Status::Degraded, "cgroup v1"),
        Version::None => (Status::Missing, "no cgroup filesystem at /sys/fs/cgroup"),
    };
    Check::new("cgroup.version", "cgroup version", status, detail)
        .blocks("nothing by itself: limits need a delegated hierarchy (cgroup.containers), v1 or v2")
        .fix("# node: boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1, the default on current distributions)")
}

/// `cgroup.delegated`: our cgroup directory and its interface files are ours.
pub fn check_delegated(version: Version) -> Check {
    let dir = own_dir();
    let euid = geteuid().as_raw();
    let owners: Vec<(String, Option<u32>)> = ["", "cgroup.procs", "cgroup.subtree_control"]
        .iter()
        .map(|f| {
            let path = if f.is_empty() {
                dir.clone()
            } else {
                dir.join(f)
            };
            (
                path.display().to_string(),
                std::fs::metadata(&path).ok().map(|m| m.uid()),
            )
        })
        .collect();
    let ours = version == Version::V2 && owners.iter().all(|(_, uid)| *uid == Some(euid));
    let detail = owners
        .iter()
        .map(|(p, uid)| match uid {
            Some(uid) => format!("{p} owned by {uid}"),
            None => format!("{p} missing"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let status = if ours { Status::Ok } else { Status::Missing };
    Check::new("cgroup.delegated", "cgroup delegated to us", status, detail)
        .blocks("resource limits (--memory, --cpus, --pids-limit): accepted with a warning only")
        .fix(FIX_WRITABLE)
}

/// `cgroup.writable`: a trial sub-cgroup, created and removed again.
pub fn check_writable(version: Version) -> Check {
    let dir = own_dir();
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    let outcome = if version == Version::None {
        Err(super::child::Failure::other(
            "cgroup",
            "no cgroup filesystem",
        ))
    } else {
        let probe_dir = dir.join(format!("hutch-doctor-{}", std::process::id()));
        Sandbox::here().run(move || {
            std::fs::create_dir(&probe_dir).at("mkdir a sub-cgroup")?;
            std::fs::remove_dir(&probe_dir).at("remove the sub-cgroup")
        })
    };
    let (status, detail) = match outcome {
        Ok(()) => (
            Status::Ok,
            format!(
                "{} accepts sub-cgroups; controllers: {}",
                dir.display(),
                if controllers.is_empty() {
                    "none"
                } else {
                    &controllers
                }
            ),
        ),
        Err(failure) => (Status::Missing, format!("{}: {failure}", dir.display())),
    };
    Check::new("cgroup.writable", "writable cgroup", status, detail)
        .blocks("resource limits (--memory, --cpus, --pids-limit): accepted with a warning only")
        .fix(FIX_WRITABLE)
}

/// `cgroup.containers`: what the daemon will use for per-container
/// cgroups ([`crate::cgroups::Cgroups::detect`]).
pub fn check_containers() -> Check {
    let (status, detail) = match crate::cgroups::Cgroups::inspect() {
        Some(c) => {
            let names: Vec<&str> = ["memory", "cpu", "pids", "freezer"]
                .into_iter()
                .filter(|n| c.has(n))
                .collect();
            let lacking: Vec<&str> = ["memory", "cpu", "pids"]
                .into_iter()
                .filter(|n| !c.has(n))
                .collect();
            if lacking.is_empty() {
                (
                    Status::Ok,
                    format!("cgroup v{} with {}", c.version(), names.join(", ")),
                )
            } else {
                // Containers still get cgroups (pause, CPU usage), but the
                // lacking controllers' limits are only warned about.
                (
                    Status::Degraded,
                    format!(
                        "cgroup v{} delegated with {}; no {} controller: those limits are \
                         accepted with a warning",
                        c.version(),
                        if names.is_empty() {
                            "no controllers".to_string()
                        } else {
                            names.join(", ")
                        },
                        lacking.join(", ")
                    ),
                )
            }
        }
        None => (
            Status::Missing,
            "no writable cgroup v2, nor cgroup v1 with the memory or pids controller".to_string(),
        ),
    };
    Check::new("cgroup.containers", "per-container cgroups", status, detail)
        .blocks("resource limits (--memory, --cpus, --pids-limit), stats from cgroups, pause")
        .fix(FIX_WRITABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_filesystem_types() {
        let v2 = Some(statfs::CGROUP2_SUPER_MAGIC);
        let tmpfs = Some(statfs::TMPFS_MAGIC);
        assert_eq!(classify(v2, None), Version::V2);
        assert_eq!(classify(tmpfs, v2), Version::Hybrid);
        assert_eq!(classify(tmpfs, None), Version::V1);
        assert_eq!(classify(None, None), Version::None);
        assert_eq!(classify(Some(statfs::SYSFS_MAGIC), None), Version::None);
    }

    #[test]
    fn own_path_from_proc_self_cgroup() {
        assert_eq!(own_path("0::/\n"), Some("/"));
        assert_eq!(
            own_path("12:memory:/kubepods/x\n0::/kubepods.slice/pod1/ctr\n"),
            Some("/kubepods.slice/pod1/ctr")
        );
        assert_eq!(own_path("4:pids:/x\n"), None);
    }
}
