//! The typed description of one container process: everything the runtime
//! helper needs to build it, and nothing about images or the HTTP API. The
//! daemon fills it from the image config and the request; the helper receives
//! it serialized over its control socket.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::binfmt::Binfmt;
use super::caps::DEFAULT_CAPABILITIES;
use super::idmap::IdMap;
use super::seccomp::Seccomp;

/// One container's process and environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's ID (for logs and error messages).
    pub id: String,
    pub rootfs: RootfsSpec,
    pub process: ProcessSpec,
    /// Hostname inside the container's UTS namespace.
    pub hostname: Option<String>,
    /// How container IDs map to the engine's IDs.
    pub id_map: IdMap,
    pub namespaces: NamespaceSpec,
    /// Paths hidden from the container (Docker's masked paths): files get
    /// /dev/null bound over them, directories an empty read-only tmpfs.
    pub masked_paths: Vec<PathBuf>,
    /// Paths bound read-only over themselves.
    pub readonly_paths: Vec<PathBuf>,
    /// Extra mounts (volumes, binds, tmpfs), applied after /proc, /dev and /sys.
    pub mounts: Vec<MountSpec>,
    /// The engine's network hook socket: called with the init's PID once
    /// the container (and its new netns) exists and before it starts, so
    /// the engine can plug its network interfaces in.
    #[serde(default)]
    pub network_hook: Option<PathBuf>,
    /// The container's `cgroup.procs` files (a delegated hierarchy): its
    /// init and exec'd processes are placed there right after their clone.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// Device nodes of the engine bound in after the mounts (`--device`,
    /// `--privileged`): a user namespace cannot mknod them.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Kernel parameters of the container's own namespaces, written once
    /// its network is plugged in, right before its command runs.
    #[serde(default)]
    pub sysctls: Vec<Sysctl>,
    /// The emulator that runs the container's binaries, when they are of
    /// another architecture (see [`super::binfmt`]).
    #[serde(default)]
    pub emulator: Option<Binfmt>,
}

/// One device node: the engine's `source` appears at `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub source: PathBuf,
    pub destination: PathBuf,
}

/// One `/proc/sys` setting, by its dotted name (`net.core.somaxconn`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
    /// The user asked for it, so failing to write it fails the start;
    /// Docker's own defaults are skipped when the kernel refuses them.
    pub required: bool,
}

/// The root filesystem: an overlay of read-only lower layers and a writable
/// upper directory, mounted on `target` inside the container's own mount
/// namespace (so it vanishes with the container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Lower layer directories, topmost first (overlayfs `lowerdir` order).
    pub lower: Vec<PathBuf>,
    /// Overlay upper directory (the container's changes).
    pub upper: PathBuf,
    /// Overlay work directory, on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Empty directory the overlay is mounted on.
    pub target: PathBuf,
    /// Make the root filesystem read-only (`--read-only`).
    pub readonly: bool,
    /// In private mode: the lower layers are copies already owned by the
    /// container's ID range, so they are mounted as they are instead of
    /// idmapped (a disk store, which the engine cannot idmap).
    #[serde(default)]
    pub lowers_shifted: bool,
}

/// The container's first process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv; `args[0]` is looked up in the container's PATH when it has no `/`.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Working directory inside the container; created when missing, as Docker does.
    pub cwd: PathBuf,
    #[serde(default)]
    pub user: User,
    /// Capability names (`CAP_CHOWN`, ...) for the bounding, permitted and
    /// effective sets.
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    pub rlimits: Vec<Rlimit>,
    /// `--init`: run a small init as PID 1 that reaps zombies and forwards
    /// signals, with the command as its child.
    #[serde(default)]
    pub init: bool,
    /// The seccomp filter (Docker's default profile unless unconfined).
    #[serde(default)]
    pub seccomp: Seccomp,
}

/// Who the container process runs as, as Docker takes it. The names are
/// resolved in the container, against its own /etc/passwd and /etc/group,
/// right before the exec (so a user the image's layers or the container
/// itself added is found).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    /// `--user`: empty for root, `name`, `uid`, `name:group` or `uid:gid`.
    pub name: String,
    /// `--group-add`: extra groups by name or GID.
    pub group_add: Vec<String>,
}

/// One resource limit, by its Docker name (`nofile`, `nproc`, `core`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Which namespaces the container gets. Mount and UTS are always new; user,
/// PID and IPC are new unless shared with a [`Donor`]; the rest depend on
/// the network mode and on the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSpec {
    pub network: NetworkMode,
    /// How /proc is provided.
    pub proc: ProcMode,
    /// `--pid`/`--ipc container:<id>`: the container whose namespaces this
    /// one joins.
    #[serde(default)]
    pub donor: Option<Donor>,
    #[serde(default)]
    pub ipc: IpcMode,
}

/// Another container whose namespaces a container joins. Its user
/// namespace is always joined with them: the PID and IPC namespaces are
/// owned by it, so only a member can mount their /proc and mqueue, and
/// only a member can signal and trace its processes as Docker's shared
/// namespaces allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Donor {
    /// Its container ID (for messages; the supervisor finds its state by it).
    pub id: String,
    /// Its init, by PID in the supervisor's PID namespace: set right
    /// before each start, as the donor may have restarted since.
    pub pid: i32,
    /// Join its PID namespace (`--pid container:`).
    pub pid_ns: bool,
}

/// The IPC namespace and what /dev/shm is (Docker's `--ipc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpcMode {
    /// A new namespace and a /dev/shm tmpfs of its own (`private`,
    /// `shareable`).
    #[default]
    Private,
    /// A new namespace and no /dev/shm (`none`).
    NoShm,
    /// The engine's namespace, its /dev/shm and /dev/mqueue bound in
    /// (`host`: the pod's).
    Host,
    /// The [`Donor`]'s namespace and its /dev/shm (`container:<id>`).
    Donor,
}

/// Network namespace choice (the bridge modes come with the networking work).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new, empty network namespace with only loopback (`--network none`).
    None,
    /// Stay in the engine's network namespace, the pod's (`--network host`).
    Host,
    /// Join the network namespace at this path (`/proc/PID/ns/net` or a bind).
    Join(PathBuf),
}

/// How the container's /proc is made. Either way the container has its own
/// PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcMode {
    /// A fresh procfs for the container's PID namespace: the normal case.
    Fresh,
    /// Degraded mode for pods whose /proc is masked and which cannot lift the
    /// masks: the kernel refuses a fresh procfs, so the engine's /proc (the
    /// pod's) is bound in, recursively, keeping the pod's masks. It lists the
    /// pod's processes by their pod PIDs; the container's own processes have
    /// other PIDs in its PID namespace, where nothing outside can be named.
    BindEngine,
}

/// An extra mount inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Bind a path of the engine's mount namespace.
    Bind {
        source: PathBuf,
        readonly: bool,
        recursive: bool,
    },
    /// A fresh tmpfs. `options` may hold flag words (`noexec`, `nosuid`,
    /// `nodev`, `ro`, ...) besides the data (`size=...,mode=...`).
    Tmpfs { options: String, readonly: bool },
    /// A user's bind or volume mount (`-v`, `--mount`), with Docker's
    /// options.
    UserBind(BindMount),
}

/// A bind a container asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BindMount {
    /// A path of the engine's mount namespace.
    pub source: PathBuf,
    pub readonly: bool,
    /// Bring the source's submounts along (rbind).
    pub recursive: bool,
    /// `rprivate` (when empty), `private`, `rshared`, `shared`, `rslave`,
    /// `slave`: set on the mount inside the container's mount namespace.
    pub propagation: String,
    /// For a recursive read-only bind: how its submounts become read-only.
    pub submounts: SubmountsReadonly,
    /// A volume: when its directory is empty, the image's content at the
    /// destination (files, owners, modes) is copied in before the mount.
    pub populate: bool,
    /// Mount this directory of `source` instead, resolved inside `source`
    /// (its symlinks cannot lead out of it): `volume-subpath`.
    pub subpath: String,
}

/// Docker 25's recursive read-only choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubmountsReadonly {
    /// Read-only where the kernel allows it (mount_setattr), else left.
    #[default]
    IfPossible,
    /// Left writable.
    Writable,
    /// Read-only, or the start fails.
    Required,
}

/// Docker's default masked paths inside a container.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths inside a container.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The PATH Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ProcessSpec {
    /// A process running `args` as root with Docker's defaults.
    pub fn new(args: Vec<String>) -> Self {
        ProcessSpec {
            args,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: PathBuf::from("/"),
            user: User::default(),
            capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
            no_new_privs: false,
            rlimits: Vec::new(),
            init: false,
            seccomp: Seccomp::Default,
        }
    }

    /// The container's PATH: the spec's `PATH=` entry, or Docker's default.
    pub fn path_var(&self) -> &str {
        self.env
            .iter()
            .rev()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
    }
}

impl ContainerSpec {
    /// A container with Docker's defaults around the given rootfs and process.
    pub fn new(id: &str, rootfs: RootfsSpec, process: ProcessSpec, id_map: IdMap) -> Self {
        ContainerSpec {
            id: id.to_string(),
            rootfs,
            process,
            hostname: Some(id.chars().take(12).collect()),
            id_map,
            namespaces: NamespaceSpec {
                network: NetworkMode::None,
                proc: ProcMode::Fresh,
                donor: None,
                ipc: IpcMode::Private,
            },
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            mounts: Vec::new(),
            network_hook: None,
            cgroup_procs: Vec::new(),
            devices: Vec::new(),
            sysctls: Vec::new(),
            emulator: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_var_prefers_the_last_path_entry_and_defaults_to_dockers() {
        let mut p = ProcessSpec::new(vec!["sh".into()]);
        p.env = vec!["A=1".into()];
        assert_eq!(p.path_var(), DEFAULT_PATH);
        p.env.push("PATH=/bin".into());
        p.env.push("PATH=/opt/bin:/bin".into());
        assert_eq!(p.path_var(), "/opt/bin:/bin");
    }

    #[test]
    fn spec_round_trips_through_json() -> Result<(), serde_json::Error> {
        let spec = ContainerSpec::new(
            "0123456789abcdef",
            RootfsSpec {
                lower: vec!["/l1".into(), "/l0".into()],
                upper: "/c/upper".into(),
                work: "/c/work".into(),
                target: "/c/rootfs".into(),
                readonly: true,
                lowers_shifted: false,
            },
            ProcessSpec::new(vec!["true".into()]),
            IdMap::identity(),
        );
        let back: ContainerSpec = serde_json::from_str(&serde_json::to_string(&spec)?)?;
        assert_eq!(back, spec);
        assert_eq!(back.hostname.as_deref(), Some("0123456789ab"));
        Ok(())
    }
}
