//! The doctor's data model: what `hutch doctor --json` prints and what the
//! daemon parses back (it runs the doctor as a subprocess, see the module
//! docs of `doctor`). Everything here is plain data; the probes fill it in.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How far one requirement is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fully available.
    Ok,
    /// Usable, but something around it is missing; hutch works with less.
    Degraded,
    /// Not available; `blocks` says what that disables.
    Missing,
}

impl Status {
    /// The word the human report prints.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Degraded => "DEGRADED",
            Status::Missing => "MISSING",
        }
    }
}

/// One requirement, as probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier, e.g. `userns.create`. Scripts and tests key on it.
    pub id: String,
    /// Short human title.
    pub title: String,
    pub status: Status,
    /// A hard requirement: hutch cannot run when it is `missing`.
    pub hard: bool,
    /// What was observed (values read, the errno of a failed trial).
    pub detail: String,
    /// What is disabled while this is not `ok`.
    pub blocks: Option<String>,
    /// How to fix it: a pod-spec YAML snippet or a node setting.
    pub fix: Option<String>,
}

impl Check {
    pub fn new(id: &str, title: &str, status: Status, detail: impl Into<String>) -> Self {
        Check {
            id: id.to_owned(),
            title: title.to_owned(),
            status,
            hard: false,
            detail: detail.into(),
            blocks: None,
            fix: None,
        }
    }

    /// Marks the check as a hard requirement.
    pub fn hard(mut self) -> Self {
        self.hard = true;
        self
    }

    /// What is disabled; only kept when the status is not `ok`.
    pub fn blocks(mut self, what: impl Into<String>) -> Self {
        if self.status != Status::Ok {
            self.blocks = Some(what.into());
        }
        self
    }

    /// How to fix it; only kept when the status is not `ok`.
    pub fn fix(mut self, how: impl Into<String>) -> Self {
        if self.status != Status::Ok {
            self.fix = Some(how.into());
        }
        self
    }

    /// A hard requirement that is missing (a degraded one still lets hutch run).
    pub fn fails_hard(&self) -> bool {
        self.hard && self.status == Status::Missing
    }
}

/// One line of an ID map (/proc/self/uid_map): `count` IDs from `inside`
/// (ours) are `outside` in the parent user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdExtent {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Facts about the environment that are not pass/fail by themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// `uname -r`.
    pub kernel: String,
    /// /proc/self/uid_map and gid_map.
    pub uid_map: Vec<IdExtent>,
    pub gid_map: Vec<IdExtent>,
    /// Effective user ID inside our own user namespace.
    pub euid: u32,
    /// Who owns the network namespace we run in: `pod` (our own user
    /// namespace) or `ancestor` (the node's initial one, or another above us).
    pub netns_owner: String,
    /// `v2`, `v1`, `hybrid` or `none`.
    pub cgroup_version: String,
    /// Filesystem type of the data root (or of the directory it would be
    /// created in), e.g. `ext4`, `xfs`, `tmpfs`, `overlayfs`.
    pub data_root_fs: String,
}

/// One path the daemon takes where several exist, and why it took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice<T> {
    pub chosen: T,
    pub reason: String,
}

impl<T> Choice<T> {
    pub fn new(chosen: T, reason: impl Into<String>) -> Self {
        Choice {
            chosen,
            reason: reason.into(),
        }
    }
}

/// Where containers with a private ID range get their shifted rootfs from
/// (DESIGN.md, "Storage and ID mapping"; docs/architecture.md says why
/// idmapping the data root itself and the FUSE overlay are not among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivateIdStorage {
    /// Layers copied into an engine-owned tmpfs and idmapped there
    /// (`hutch daemon --private-layers-tmpfs`).
    IdmappedTmpfsLayers,
    /// A copy of the layers per (layer, ID map) with shifted owners, on the
    /// data root.
    ShiftedCopy,
}

/// How the bridge network reaches the pod's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Uplink {
    /// A veth into the pod netns, routing and NAT by the kernel.
    KernelVethNat,
    /// The transparent layer-4 relay: no capability, no device.
    L4Relay,
}

/// How containers get /proc (and, alike, /sys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PseudoFsMode {
    /// A fresh mount in the container's namespaces, as is.
    Fresh,
    /// A fresh mount after the engine lifted the masks over the pod's copy.
    FreshAfterLiftingMasks,
    /// No fresh mount possible: a bind of the pod's own (for /proc this
    /// means containers, in pid namespaces of their own, see the pod's pids).
    Shared,
}

/// How the container's root is switched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootSwitch {
    PivotRoot,
    /// `MS_MOVE` of the rootfs onto / and `chroot`, where seccomp forbids
    /// pivot_root.
    MoveAndChroot,
}

/// Whether `--memory`, `--cpus`, `--pids-limit` and friends take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceLimits {
    Enforced,
    /// Accepted and ignored, with a warning.
    WarnOnly,
}

/// The paths hutch takes in this environment; the daemon reuses this for
/// `/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices {
    /// Containers can get a nested user namespace of their own.
    pub nested_userns: Choice<bool>,
    pub private_id_storage: Choice<PrivateIdStorage>,
    pub uplink: Choice<Uplink>,
    /// pasta/slirp4netns are usable (a tun device is present).
    pub user_mode_network: Choice<bool>,
    pub proc: Choice<PseudoFsMode>,
    pub sys: Choice<PseudoFsMode>,
    pub root_switch: Choice<RootSwitch>,
    pub resource_limits: Choice<ResourceLimits>,
}

/// The whole doctor report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// No hard requirement failed: hutch can run here.
    pub ok: bool,
    /// The data root as asked for.
    pub data_root: PathBuf,
    pub environment: Environment,
    pub checks: Vec<Check>,
    pub choices: Choices,
}

impl Report {
    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Hard requirements that are not met.
    pub fn hard_failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.fails_hard())
    }
}
