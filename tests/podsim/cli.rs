//! podsim's command line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use hutch_tests::podsim::{Device, NetnsOwner};

/// Simulates a Kubernetes `hostUsers: false` pod (containerd 2.x + runc) for
/// hutch's tests. Run as host root.
#[derive(Parser, Debug)]
#[command(name = "podsim")]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Create a pod, run CMD in it as pod root, tear it down; exit with CMD's status.
    Run {
        #[command(flatten)]
        pod: PodOpts,
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Create a pod, write DIR/pod.json, print `ready`, and hold the pod until
    /// stdin reaches EOF or SIGTERM/SIGINT arrives; then tear it down.
    Start {
        #[command(flatten)]
        pod: PodOpts,
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
    },
    /// Run CMD as root inside the pod (all its namespaces and capabilities).
    Exec {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Run podsim itself (CMD is then its arguments), whatever path the
        /// pod can or cannot reach.
        #[arg(long, hide = true)]
        self_exe: bool,
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Run CMD as host root in the pod's network namespace only.
    Sidecar {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<OsString>,
    },
    /// Create a pod, check every property it promises, tear it down.
    SelfCheck {
        #[command(flatten)]
        pod: PodOpts,
    },
    /// The pod's pid 1.
    #[command(name = "__pod-init", hide = true)]
    PodInit,
    /// self-check's probes, run inside the pod.
    #[command(name = "__check-inside", hide = true)]
    CheckInside {
        #[arg(long)]
        expect: String,
    },
    /// self-check's sidecar: serves its own uid_map on 127.0.0.1.
    #[command(name = "__sidecar-probe", hide = true)]
    SidecarProbe,
}

/// What kind of pod to create.
#[derive(Args, Clone, Debug)]
pub struct PodOpts {
    /// Add a capability to the pod's bounding set (SYS_ADMIN, NET_ADMIN, ...).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// procMount: Unmasked (no masked or read-only paths).
    #[arg(long)]
    pub proc_unmasked: bool,
    /// Who owns the pod's network namespace: the pod's user namespace
    /// (containerd 2.x) or the initial one (the node).
    #[arg(long, value_name = "pod|initial", default_value = "pod")]
    pub netns_owner: NetnsOwner,
    /// Expose a host device in the pod's /dev.
    #[arg(long = "device", value_name = "fuse|tun")]
    pub devices: Vec<Device>,
    /// Delegate writable cgroup v1 directories (memory, cpu, cpuacct,
    /// pids, freezer), owned by pod root, at /sys/fs/cgroup/<controller>.
    #[arg(long)]
    pub delegate_cgroups_v1: bool,
    /// Delegate a writable cgroup v2 directory, owned by pod root, as the
    /// root of the pod's cgroup namespace (cgroup2 on /sys/fs/cgroup).
    #[arg(long, conflicts_with = "delegate_cgroups_v1")]
    pub delegate_cgroups_v2: bool,
}
