//! The description of a running pod that `podsim start` writes to
//! `DIR/pod.json`. The simulator writes it; `podsim exec`, `podsim sidecar`
//! and the [`Pod`](super::Pod) client read it, so the format lives here once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Size of a pod's ID range: uid/gid 0-65535 inside, as the kubelet allocates.
pub const ID_RANGE_SIZE: u32 = 65536;

/// Where the pod's data directory (an emptyDir on the node's disk) is mounted.
pub const DATA_ROOT: &str = "/var/lib/hutch";

/// The capabilities containerd gives a Kubernetes container by default.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Which user namespace owns the pod's network namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetnsOwner {
    /// Created inside the pod's user namespace, as containerd 2.x does: pod
    /// root with NET_ADMIN may configure it.
    #[default]
    Pod,
    /// Created by the node in the initial user namespace (containerd 1.x,
    /// CRI-O): pod root cannot add links or routes, whatever its capabilities.
    Initial,
}

impl NetnsOwner {
    /// The spelling used on podsim's command line and in pod.json.
    pub fn as_str(self) -> &'static str {
        match self {
            NetnsOwner::Pod => "pod",
            NetnsOwner::Initial => "initial",
        }
    }
}

impl fmt::Display for NetnsOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetnsOwner {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pod" => Ok(NetnsOwner::Pod),
            "initial" => Ok(NetnsOwner::Initial),
            other => Err(format!(
                "unknown netns owner {other:?} (expected pod or initial)"
            )),
        }
    }
}

/// A host device node a pod may be given (by a device plugin, in a real cluster).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// `/dev/fuse`.
    Fuse,
    /// `/dev/net/tun`.
    Tun,
}

impl Device {
    /// The spelling used on podsim's command line and in pod.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Fuse => "fuse",
            Device::Tun => "tun",
        }
    }

    /// The device node's path, on the host and inside the pod alike.
    pub fn path(self) -> &'static str {
        match self {
            Device::Fuse => "/dev/fuse",
            Device::Tun => "/dev/net/tun",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fuse" => Ok(Device::Fuse),
            "tun" => Ok(Device::Tun),
            other => Err(format!("unknown device {other:?} (expected fuse or tun)")),
        }
    }
}

/// Inode numbers of the pod's namespaces (as in `/proc/PID/ns/*` links).
/// `exec` and `sidecar` compare them with what they open, so a recycled pid
/// can never send a command into the wrong place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub user: u64,
    pub mnt: u64,
    pub pid: u64,
    pub net: u64,
    pub uts: u64,
    pub ipc: u64,
    pub cgroup: u64,
}

impl Namespaces {
    /// The names of the kinds, as in /proc/PID/ns/.
    pub const KINDS: [&'static str; 7] = ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup"];

    /// The inode of namespace `kind` (`net`, `user`, ...).
    pub fn by_kind(&self, kind: &str) -> Option<u64> {
        Some(match kind {
            "user" => self.user,
            "mnt" => self.mnt,
            "pid" => self.pid,
            "net" => self.net,
            "uts" => self.uts,
            "ipc" => self.ipc,
            "cgroup" => self.cgroup,
            _ => return None,
        })
    }

    /// Builds the set from a lookup of each kind.
    pub fn try_from_fn<E>(mut inode: impl FnMut(&str) -> Result<u64, E>) -> Result<Namespaces, E> {
        Ok(Namespaces {
            user: inode("user")?,
            mnt: inode("mnt")?,
            pid: inode("pid")?,
            net: inode("net")?,
            uts: inode("uts")?,
            ipc: inode("ipc")?,
            cgroup: inode("cgroup")?,
        })
    }
}

/// Everything a client needs to know about a running pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// Short random id; the hostname is `podsim-<id>`.
    pub id: String,
    pub hostname: String,
    /// The `podsim start` process holding the pod.
    pub shim_pid: i32,
    /// Host pid of the pod's pid 1.
    pub init_pid: i32,
    /// First host uid/gid of the pod's range (a multiple of 65536).
    pub base: u32,
    /// Capability bounding set of every pod process, `CAP_*` names.
    pub caps: Vec<String>,
    pub netns_owner: NetnsOwner,
    pub proc_unmasked: bool,
    pub devices: Vec<Device>,
    /// Host path of the pod's data directory (the emptyDir).
    pub data_dir_host: PathBuf,
    /// Where that directory is mounted inside the pod.
    pub data_root: PathBuf,
    pub namespaces: Namespaces,
    /// Host path of the pod's delegated cgroup v2 directory, which `exec`
    /// places its processes in (as runc exec joins the container's cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_v2_host: Option<PathBuf>,
}

impl PodInfo {
    /// The file name inside a state directory.
    pub const FILE: &'static str = "pod.json";

    /// Path of pod.json inside `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(Self::FILE)
    }

    /// Reads `state_dir/pod.json`.
    pub fn read(state_dir: &Path) -> anyhow::Result<PodInfo> {
        let path = Self::path(state_dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (is the pod running?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The bounding set as a bit mask, as `CapBnd:` in /proc/PID/status shows it.
    pub fn cap_mask(&self) -> anyhow::Result<u64> {
        cap_mask(&self.caps)
    }
}

/// Bit of a capability given by its `CAP_*` or bare name (`SYS_ADMIN`).
pub fn cap_bit(name: &str) -> anyhow::Result<u64> {
    let canonical = canonical_cap_name(name);
    let cap: caps::Capability = canonical
        .parse()
        .map_err(|e| anyhow::anyhow!("unknown capability {name:?}: {e}"))?;
    Ok(cap.bitmask())
}

/// `sys_admin` and `SYS_ADMIN` both become `CAP_SYS_ADMIN`.
pub fn canonical_cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// OR of the bits of `names`.
pub fn cap_mask<S: AsRef<str>>(names: &[S]) -> anyhow::Result<u64> {
    names
        .iter()
        .try_fold(0u64, |mask, name| Ok(mask | cap_bit(name.as_ref())?))
}
