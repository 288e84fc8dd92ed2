//! Per-container cgroups, when the pod delegates a writable hierarchy to us:
//! cgroup v2 (a writable cgroup whose `cgroup.subtree_control` enables the
//! controllers) or v1 (writable directories in the per-controller
//! hierarchies). Detection happens once at daemon start; without a usable
//! hierarchy limits stay unapplied (the API warns) and nothing here runs.

mod limits;
mod stats;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use limits::Limits;
pub use stats::Stats;

const ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers hutch uses, by the name of their hierarchy.
const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];

/// A delegated hierarchy hutch may create container cgroups in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cgroups {
    /// The base cgroup (ours, writable, controllers in subtree_control).
    V2 {
        base: PathBuf,
        controllers: Vec<String>,
    },
    /// Writable base directory per usable controller.
    V1 { bases: Vec<(String, PathBuf)> },
}

/// One container's cgroup: a directory per hierarchy (one for v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCgroup {
    pub v2: bool,
    /// (controller, directory); for v2 a single ("", dir).
    pub dirs: Vec<(String, PathBuf)>,
}

/// The controllers hutch writes limits with, in v2's names.
const V2_WANTED: [&str; 3] = ["memory", "pids", "cpu"];

/// The leaf hutch moves its cgroup's processes into before it enables
/// controllers (v2's no-internal-processes rule), as Docker-in-Docker does.
const V2_LEAF: &str = "init";

impl Cgroups {
    /// Finds a usable hierarchy, proving writability with a trial cgroup.
    /// On cgroup v2 it enables the memory, pids and cpu controllers for
    /// its children where the cgroup offers them; for that it moves the
    /// processes of its cgroup into a leaf (`init`), as Docker-in-Docker's
    /// entrypoint does. Run by the daemon at start.
    pub fn detect() -> Option<Cgroups> {
        Self::find(true)
    }

    /// What [`Cgroups::detect`] would find, changing nothing (`hutch doctor`).
    pub fn inspect() -> Option<Cgroups> {
        Self::find(false)
    }

    fn find(enable: bool) -> Option<Cgroups> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let root_is_v2 = nix::sys::statfs::statfs(ROOT)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
        if root_is_v2 {
            return find_v2(&own, enable);
        }
        let mut bases = Vec::new();
        for controller in V1_CONTROLLERS {
            // Co-mounted hierarchies (cpu,cpuacct) are found under either name.
            let mount = Path::new(ROOT).join(controller);
            if !mount.is_dir() || !mount.join("cgroup.procs").exists() {
                continue;
            }
            let rel = own_path(&own, |names| names.split(',').any(|n| n == controller));
            let base = own_dir(&mount, rel);
            if probe(&base) {
                bases.push((controller.to_string(), base));
            }
        }
        let usable = bases.iter().any(|(c, _)| c == "memory" || c == "pids");
        (usable).then_some(Cgroups::V1 { bases })
    }

    /// The limits that cannot be applied here, one warning per missing
    /// controller.
    pub fn unapplied(&self, limits: &Limits) -> Vec<String> {
        let version = self.version();
        limits
            .controllers()
            .into_iter()
            .filter(|c| !self.has(c))
            .map(|c| {
                let what = match c {
                    "memory" => "memory limit (--memory, --memory-swap)",
                    "cpu" => "CPU limit (--cpus, --cpu-quota, --cpu-shares)",
                    _ => "PIDs limit (--pids-limit)",
                };
                format!(
                    "{what} is not applied: the delegated cgroup v{version} hierarchy has no \
                     {c} controller"
                )
            })
            .collect()
    }

    pub fn version(&self) -> &'static str {
        match self {
            Cgroups::V2 { .. } => "2",
            Cgroups::V1 { .. } => "1",
        }
    }

    /// Whether a controller is available ("memory", "pids", "cpu", "freezer").
    pub fn has(&self, controller: &str) -> bool {
        match self {
            // v2 freezes with cgroup.freeze, no controller needed.
            Cgroups::V2 { controllers, .. } => {
                controller == "freezer" || controllers.iter().any(|c| c == controller)
            }
            Cgroups::V1 { bases, .. } => bases.iter().any(|(c, _)| c == controller),
        }
    }

    /// The container's cgroup paths (not created yet).
    pub fn container(&self, id: &str) -> ContainerCgroup {
        let name = format!("hutch-{id}");
        match self {
            Cgroups::V2 { base, .. } => ContainerCgroup {
                v2: true,
                dirs: vec![(String::new(), base.join(&name))],
            },
            Cgroups::V1 { bases } => ContainerCgroup {
                v2: false,
                dirs: bases
                    .iter()
                    .map(|(c, b)| (c.clone(), b.join(&name)))
                    .collect(),
            },
        }
    }
}

impl ContainerCgroup {
    /// Creates the directories (kept if they exist) and writes the limits.
    pub fn create(&self, limits: &Limits) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("creating cgroup {}: {e}", dir.display()),
                    ))
                }
                _ => {}
            }
        }
        self.apply(limits)
    }

    /// Writes the limits (also for `docker update` on a running container).
    pub fn apply(&self, limits: &Limits) -> io::Result<()> {
        for (file, value) in limits.files(self.v2) {
            if let Some(dir) = self.dir_for(file) {
                let path = dir.join(file);
                // Optional files (memsw without swap accounting) may be
                // absent, and so are a v2 controller's when it is not
                // enabled (the create warned about those limits).
                if !path.exists() && (self.v2 || limits::optional(file)) {
                    continue;
                }
                std::fs::write(&path, &value).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("writing {value:?} to {}: {e}", path.display()),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process joins the container through.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    /// Freezes (`true`) or thaws the container's processes and waits until
    /// the kernel reports the new state.
    pub fn freeze(&self, frozen: bool) -> io::Result<()> {
        let (file, value, want) = if self.v2 {
            ("cgroup.freeze", if frozen { "1" } else { "0" }, None)
        } else if frozen {
            ("freezer.state", "FROZEN", Some("FROZEN"))
        } else {
            ("freezer.state", "THAWED", Some("THAWED"))
        };
        let dir = self.dir_for(file).ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "no freezer cgroup is delegated")
        })?;
        std::fs::write(dir.join(file), value)?;
        for _ in 0..1000 {
            let done = match want {
                Some(want) => std::fs::read_to_string(dir.join(file))?.trim() == want,
                None => {
                    let events = std::fs::read_to_string(dir.join("cgroup.events"))?;
                    let expect = if frozen { "frozen 1" } else { "frozen 0" };
                    events.lines().any(|l| l == expect)
                }
            };
            if done {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the cgroup did not reach state {value}"),
        ))
    }

    /// Whether the freezer holds the container's processes.
    pub fn frozen(&self) -> bool {
        let file = if self.v2 {
            "cgroup.freeze"
        } else {
            "freezer.state"
        };
        self.dir_for(file)
            .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .is_some_and(|s| matches!(s.trim(), "1" | "FROZEN" | "FREEZING"))
    }

    /// How many of the container's processes the kernel OOM-killed (ever).
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        self.dir_for(file)
            .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|text| stats::keyed(&text, key))
            .unwrap_or(0)
    }

    pub fn stats(&self) -> Stats {
        stats::read_stats(self)
    }

    /// Removes the directories; the processes are gone by then (a cgroup
    /// emptied by a kill may stay busy for a moment).
    pub fn remove(&self) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            let mut last = Ok(());
            for _ in 0..50 {
                last = match std::fs::remove_dir(dir) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    other => other,
                };
                if last.is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            last.map_err(|e| io::Error::new(e.kind(), format!("removing {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// The directory holding an interface file (by its controller prefix).
    pub(crate) fn dir_for(&self, file: &str) -> Option<&Path> {
        if self.v2 {
            return self.dirs.first().map(|(_, d)| d.as_path());
        }
        let controller = file.split('.').next().unwrap_or_default();
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.as_path())
    }
}

/// Places `pid` in the cgroups behind `procs_files`. Called right after the
/// clone, while the process still has its parent's credentials (v1 lets a
/// non-root writer move only processes of its own UID).
pub fn join(procs_files: &[PathBuf], pid: i32) -> io::Result<()> {
    for file in procs_files {
        std::fs::write(file, pid.to_string()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("joining the container's cgroup {}: {e}", file.display()),
            )
        })?;
    }
    Ok(())
}

/// cgroup v2: our own cgroup, or its parent, whichever is writable. The
/// parent case covers a delegator that moved us into a leaf below the
/// delegated cgroup (Docker-in-Docker's entrypoint, or an earlier hutch).
/// A cgroup with controllers enabled for its children wins; without any,
/// the core of v2 still gives per-container cgroups, freezing and CPU usage.
fn find_v2(own: &str, enable: bool) -> Option<Cgroups> {
    let own_dir = own_dir(Path::new(ROOT), own_path(own, |c| c.is_empty()));
    let candidates: Vec<PathBuf> = [
        Some(own_dir.clone()),
        own_dir.parent().map(Path::to_path_buf),
    ]
    .into_iter()
    .flatten()
    .filter(|dir| dir.starts_with(ROOT))
    .collect();
    let enabled = |base: &Path| -> Vec<String> {
        words(&base.join("cgroup.subtree_control"))
            .into_iter()
            .filter(|c| V2_WANTED.contains(&c.as_str()))
            .collect()
    };
    if let Some(base) = candidates
        .iter()
        .find(|b| !enabled(b).is_empty() && probe(b))
    {
        return Some(Cgroups::V2 {
            controllers: words(&base.join("cgroup.subtree_control")),
            base: base.clone(),
        });
    }
    let base = candidates.into_iter().find(|b| probe(b))?;
    if enable {
        if let Err(e) = enable_controllers(&base) {
            tracing::warn!(
                "cgroup v2 controllers not enabled in {}: {e}",
                base.display()
            );
        }
    }
    Some(Cgroups::V2 {
        controllers: words(&base.join("cgroup.subtree_control")),
        base,
    })
}

/// Enables the wanted controllers `base` offers for its children. v2 lets
/// a cgroup with processes enable none: they move to the leaf first.
fn enable_controllers(base: &Path) -> io::Result<()> {
    let offered = words(&base.join("cgroup.controllers"));
    let enabled = words(&base.join("cgroup.subtree_control"));
    let missing: Vec<&str> = V2_WANTED
        .into_iter()
        .filter(|c| offered.iter().any(|o| o == c) && !enabled.iter().any(|e| e == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    move_to_leaf(base)?;
    let mut failed = Vec::new();
    for c in missing {
        // One at a time: a controller the delegator does not allow must not
        // keep the others off.
        if let Err(e) = std::fs::write(base.join("cgroup.subtree_control"), format!("+{c}")) {
            failed.push(format!("+{c}: {e}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(failed.join(", ")))
    }
}

/// Moves every process of `base` into `base/init` (made if missing),
/// rereading until none is left: processes may fork meanwhile.
fn move_to_leaf(base: &Path) -> io::Result<()> {
    let procs = base.join("cgroup.procs");
    if words(&procs).is_empty() {
        return Ok(());
    }
    let leaf = base.join(V2_LEAF);
    match std::fs::create_dir(&leaf) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    for _ in 0..10 {
        let pids = words(&procs);
        if pids.is_empty() {
            return Ok(());
        }
        // A process outside our pid namespace reads as 0 and cannot be
        // moved by us (writing 0 would move ourselves).
        if pids.iter().all(|p| p == "0") {
            return Err(io::Error::other(format!(
                "{} holds processes outside our pid namespace",
                base.display()
            )));
        }
        for pid in pids.into_iter().filter(|p| p != "0") {
            // One that exited meanwhile is fine.
            match std::fs::write(leaf.join("cgroup.procs"), &pid) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                other => other.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("moving process {pid} into {}: {e}", leaf.display()),
                    )
                })?,
            }
        }
    }
    Err(io::Error::other(format!(
        "{} keeps getting new processes",
        base.display()
    )))
}

/// The whitespace-separated words of a file (none if it is unreadable).
fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Our path in a hierarchy from /proc/self/cgroup: the line whose
/// controller list matches.
fn own_path(proc_cgroup: &str, matches: impl Fn(&str) -> bool) -> &str {
    proc_cgroup
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            matches(names).then_some(path)
        })
        .unwrap_or("/")
}

/// The directory of our cgroup under `mount`. In a cgroup namespace (or a
/// bind of a delegated directory) the path may not resolve: the mount's
/// root is then ours.
fn own_dir(mount: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    let dir = mount.join(rel);
    // A cgroup outside our namespace's root reads as "/../..": not below
    // the mount.
    let outside = Path::new(rel)
        .components()
        .any(|c| c == std::path::Component::ParentDir);
    if !rel.is_empty() && !outside && dir.is_dir() {
        dir
    } else {
        mount.to_path_buf()
    }
}

/// A trial sub-cgroup, created and removed again.
fn probe(base: &Path) -> bool {
    let dir = base.join(format!("hutch-probe-{}", std::process::id()));
    let made = std::fs::create_dir(&dir).is_ok();
    made && std::fs::remove_dir(&dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_paths_by_controller() {
        let text = "4:memory:/pod/x\n2:cpu,cpuacct:/a\n0::/unified\n";
        assert_eq!(own_path(text, |n| n == "memory"), "/pod/x");
        assert_eq!(
            own_path(text, |n| n.split(',').any(|c| c == "cpuacct")),
            "/a"
        );
        assert_eq!(own_path(text, |n| n.is_empty()), "/unified");
        assert_eq!(own_path(text, |n| n == "pids"), "/");
    }

    #[test]
    fn a_cgroup_outside_the_namespace_is_not_below_the_mount() {
        let tmp = std::env::temp_dir();
        // "/../.." would resolve to a directory above the mount.
        assert_eq!(own_dir(&tmp, "/../.."), tmp);
        assert_eq!(own_dir(&tmp, "/"), tmp);
        assert_eq!(own_dir(&tmp, "/no-such-cgroup"), tmp);
    }

    #[test]
    fn unapplied_limits_warn_per_missing_controller() {
        let bare = Cgroups::V2 {
            base: PathBuf::from("/sys/fs/cgroup"),
            controllers: Vec::new(),
        };
        // The core of v2 freezes without a controller.
        assert!(bare.has("freezer") && !bare.has("memory"));
        let limits = Limits {
            memory: 64 << 20,
            pids_limit: 50,
            ..Limits::default()
        };
        let warnings = bare.unapplied(&limits);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("memory limit (--memory, --memory-swap) is not applied"));
        assert!(warnings[0].ends_with("cgroup v2 hierarchy has no memory controller"));
        assert!(warnings[1].starts_with("PIDs limit (--pids-limit) is not applied"));
        assert!(bare.unapplied(&Limits::default()).is_empty());
        let some = Cgroups::V2 {
            base: PathBuf::from("/sys/fs/cgroup"),
            controllers: vec!["memory".into(), "cpu".into()],
        };
        let warnings = some.unapplied(&limits);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no pids controller"));
        let v1 = Cgroups::V1 {
            bases: vec![("memory".into(), PathBuf::from("/m"))],
        };
        assert_eq!(v1.unapplied(&limits).len(), 1);
    }

    #[test]
    fn v2_files_go_to_the_one_directory() {
        let cg = ContainerCgroup {
            v2: true,
            dirs: vec![(String::new(), PathBuf::from("/c"))],
        };
        assert_eq!(cg.dir_for("memory.max"), Some(Path::new("/c")));
        assert_eq!(cg.dir_for("cgroup.freeze"), Some(Path::new("/c")));
        assert_eq!(cg.procs_files(), [PathBuf::from("/c/cgroup.procs")]);
    }

    #[test]
    fn v1_files_go_to_their_controller() {
        let cg = ContainerCgroup {
            v2: false,
            dirs: vec![
                ("memory".into(), PathBuf::from("/m/c")),
                ("pids".into(), PathBuf::from("/p/c")),
            ],
        };
        assert_eq!(cg.dir_for("memory.limit_in_bytes"), Some(Path::new("/m/c")));
        assert_eq!(cg.dir_for("pids.max"), Some(Path::new("/p/c")));
        assert_eq!(cg.dir_for("cpu.shares"), None);
        assert_eq!(
            cg.procs_files(),
            [
                PathBuf::from("/m/c/cgroup.procs"),
                PathBuf::from("/p/c/cgroup.procs")
            ]
        );
    }
}
