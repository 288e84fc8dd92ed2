//! Where podsim keeps things on the host.

use std::path::PathBuf;

/// Lock files and the range cursor.
pub fn run_dir() -> PathBuf {
    PathBuf::from("/run/podsim")
}

/// Per-pod directories on the host's disk (the node's emptyDir storage).
pub fn pods_dir() -> PathBuf {
    PathBuf::from("/var/tmp/podsim")
}

/// Directory of one pod: mode 0700, so no other pod can look into it.
pub fn pod_dir(pod_id: &str) -> PathBuf {
    pods_dir().join(pod_id)
}

/// Name of the data directory inside a pod's directory.
pub const DATA_DIR_NAME: &str = "data";
