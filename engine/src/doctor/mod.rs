//! `hutch doctor`: inspects the environment hutch runs in and reports, per
//! requirement, ok / degraded / missing, what a missing piece blocks, and the
//! pod-spec or node fix. It also decides which paths the engine takes here
//! (`Choices`), which the daemon reports in `/info`.
//!
//! Every trial that touches namespaces or mounts runs in a short-lived forked
//! child (see `child`), and the storage trials work in a scratch directory on
//! the data root that is removed afterwards: the doctor leaves nothing behind.
//!
//! **Single-threaded callers only.** The probes fork without exec, which is
//! only sound in a process with one thread; `run` refuses (every trial then
//! reports the refusal) in any other. A multi-threaded caller such as the
//! daemon must run `hutch doctor --json` as a subprocess and parse its
//! output into a [`Report`]: [`report_from`] does both.

mod caps;
mod cgroup;
mod child;
mod devices;
mod emulation;
mod idmap;
mod idmapped;
mod misc;
mod netns;
mod overlay;
mod procfs;
mod programs;
pub mod report;
mod scratch;
mod status;
mod subprocess;
mod userns;

use std::path::Path;

use nix::unistd::geteuid;

pub use report::{
    Check, Choice, Choices, Environment, IdExtent, PrivateIdStorage, PseudoFsMode, Report,
    ResourceLimits, RootSwitch, Status, Uplink,
};

pub use subprocess::{report_from, SubprocessError};

use scratch::Scratch;
use status::ProcStatus;

/// Probes everything and returns the report. `data_root` need not exist: the
/// storage trials then run in the directory it would be created in.
pub fn run(data_root: &Path) -> Report {
    let status = ProcStatus::read();
    let root = geteuid().is_root();
    let uid_map = idmap::read_map("uid_map");
    let gid_map = idmap::read_map("gid_map");
    let kernel = misc::kernel_release();
    let probe_dir = overlay::existing_dir(data_root);
    let scratch = Scratch::create(&probe_dir);
    // Mount points for the trials that do not test storage: on the data root
    // when it is usable, so a broken data root does not hide what else works.
    let elsewhere = scratch
        .is_err()
        .then(|| Scratch::create(&std::env::temp_dir()));
    let mounts = elsewhere.as_ref().unwrap_or(&scratch);
    let owner = netns::owner();
    let cgroups = cgroup::version();

    let proc_outcome = procfs::probe_proc(mounts);
    let sys_outcome = procfs::probe_sys(mounts);
    let checks = vec![
        misc::check_kernel(&kernel),
        idmap::check("idmap.uid_map", "user ID", &uid_map, root),
        idmap::check("idmap.gid_map", "group ID", &gid_map, root),
        userns::check_max(),
        userns::check_create(&status),
        misc::check_apparmor(),
        misc::check_seccomp(&status, mounts.as_ref().ok()),
        misc::check_no_new_privs(&status),
        caps::check_sys_admin(&status),
        caps::check_net_admin(&status),
        overlay::check_data_root(data_root, &scratch),
        overlay::check_overlay(data_root, &scratch),
        idmapped::check_data_root(&scratch),
        idmapped::check_tmpfs(&scratch),
        procfs::check_proc(&proc_outcome),
        procfs::check_sys(&sys_outcome),
        devices::check_fuse(mounts),
        devices::check_tun(),
        netns::check_owner(&owner),
        netns::check_link(),
        cgroup::check_version(cgroups),
        cgroup::check_writable(cgroups),
        cgroup::check_delegated(cgroups),
        cgroup::check_containers(),
        programs::check_git(),
        emulation::check(mounts),
    ];
    drop(elsewhere);
    drop(scratch);

    let environment = Environment {
        kernel,
        uid_map: uid_map.clone(),
        gid_map: gid_map.clone(),
        euid: geteuid().as_raw(),
        netns_owner: owner.name().to_owned(),
        cgroup_version: cgroups.name().to_owned(),
        data_root_fs: overlay::fs_of(&probe_dir),
    };
    let choices = choose(&checks, &proc_outcome, &sys_outcome);
    Report {
        ok: !checks.iter().any(Check::fails_hard),
        data_root: data_root.to_owned(),
        environment,
        checks,
        choices,
    }
}

fn is_ok(checks: &[Check], id: &str) -> bool {
    checks.iter().any(|c| c.id == id && c.status == Status::Ok)
}

/// Why a check is not ok, for a choice's reason.
fn why_not(checks: &[Check], id: &str) -> String {
    checks
        .iter()
        .find(|c| c.id == id)
        .map(|c| format!("{}: {}", c.id, c.detail))
        .unwrap_or_else(|| format!("{id} not probed"))
}

fn choose(checks: &[Check], proc: &procfs::Outcome, sys: &procfs::Outcome) -> Choices {
    let ok = |id| is_ok(checks, id);
    let nested_userns = if ok("userns.create") {
        Choice::new(true, "child user namespaces can be created")
    } else {
        Choice::new(false, why_not(checks, "userns.create"))
    };
    // What a daemon started with --private-layers-tmpfs would use; without
    // the option (or the tmpfs) it makes shifted copies on the data root.
    let private_id_storage = if ok("idmap.tmpfs") {
        Choice::new(
            PrivateIdStorage::IdmappedTmpfsLayers,
            "an engine-owned tmpfs can be idmapped: with `hutch daemon --private-layers-tmpfs` \
             layers are copied there once (in memory) and idmapped per container; without it, \
             shifted copies per ID range on the data root",
        )
    } else {
        Choice::new(
            PrivateIdStorage::ShiftedCopy,
            why_not(checks, "idmap.tmpfs")
                + "; layers are copied per ID range with shifted owners on the data root",
        )
    };
    let uplink = if ok("netns.link") {
        Choice::new(
            Uplink::KernelVethNat,
            "links can be added to the pod's network namespace",
        )
    } else {
        let reason = ["caps.net_admin", "netns.owner", "netns.link"]
            .iter()
            .find(|id| !ok(id))
            .map(|id| why_not(checks, id))
            .unwrap_or_default();
        Choice::new(Uplink::L4Relay, reason)
    };
    let user_mode_network = if ok("devices.tun") {
        Choice::new(true, "/dev/net/tun works")
    } else {
        Choice::new(false, why_not(checks, "devices.tun"))
    };
    let pseudo = |outcome: &procfs::Outcome, id: &str| {
        let mode = outcome.mode();
        let reason = match mode {
            PseudoFsMode::Fresh => "mountable as is".to_owned(),
            PseudoFsMode::FreshAfterLiftingMasks => {
                "masked in the pod; mountable after the engine lifts the masks".to_owned()
            }
            PseudoFsMode::Shared => why_not(checks, id),
        };
        Choice::new(mode, reason)
    };
    let root_switch = if ok("misc.seccomp") {
        Choice::new(RootSwitch::PivotRoot, "pivot_root is allowed")
    } else {
        Choice::new(RootSwitch::MoveAndChroot, why_not(checks, "misc.seccomp"))
    };
    let resource_limits = if ok("cgroup.containers") {
        Choice::new(
            ResourceLimits::Enforced,
            "a delegated, writable cgroup hierarchy",
        )
    } else {
        let id = "cgroup.containers";
        Choice::new(ResourceLimits::WarnOnly, why_not(checks, id))
    };
    Choices {
        nested_userns,
        private_id_storage,
        uplink,
        user_mode_network,
        proc: pseudo(proc, "procfs.fresh"),
        sys: pseudo(sys, "sysfs.fresh"),
        root_switch,
        resource_limits,
    }
}
