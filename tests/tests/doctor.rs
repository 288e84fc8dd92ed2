//! `hutch doctor --json` inside simulated pods: each pod variant must be
//! reported as it is, and the probes must leave nothing behind.
//!
//! Needs the `hutch` binary built first (`cargo build --workspace`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{ensure, Context, Result};
use hutch_engine::doctor::{
    report_from, PrivateIdStorage, PseudoFsMode, Report, ResourceLimits, RootSwitch, Status, Uplink,
};
use hutch_tests::podsim::{hutch_bin, Device, NetnsOwner, Pod, PodSpec};

/// What the pod looks like from inside, before and after the doctor ran.
#[derive(Debug, PartialEq, Eq)]
struct Traces {
    /// Every path under the data root, with its mode, owner and size.
    data_root: BTreeMap<String, (u32, u32, u64)>,
    /// Mount points in the pod's mount namespace.
    mounts: Vec<String>,
    /// Network devices in the pod's netns.
    links: Vec<String>,
    /// Entries of the pod's cgroup directory.
    cgroup: Vec<String>,
}

fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, (u32, u32, u64)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let rel = path.strip_prefix(root)?.display().to_string();
        out.insert(rel, (meta.mode(), meta.uid(), meta.len()));
        if meta.is_dir() {
            walk(&path, root, out)?;
        }
    }
    Ok(())
}

fn pod_output(pod: &Pod, program: &str, args: &[&str]) -> Result<String> {
    let out = pod.exec(program).args(args).output()?;
    ensure!(out.status.success(), "{program} {args:?} failed: {out:?}");
    Ok(String::from_utf8(out.stdout)?)
}

fn traces(pod: &Pod) -> Result<Traces> {
    let mut data_root = BTreeMap::new();
    walk(pod.data_dir_host(), pod.data_dir_host(), &mut data_root)?;
    let mounts = pod_output(pod, "cat", &["/proc/self/mountinfo"])?
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .collect();
    let links = pod_output(pod, "cat", &["/proc/net/dev"])?
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_owned()))
        .collect();
    let cgroup = pod_output(pod, "ls", &["-A", "/sys/fs/cgroup"])?
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(Traces {
        data_root,
        mounts,
        links,
        cgroup,
    })
}

/// The hutch binary; integration tests do not build it themselves.
fn hutch() -> Result<PathBuf> {
    let bin = hutch_bin();
    ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    Ok(bin)
}

fn run_doctor(pod: &Pod, args: &[&str]) -> Result<Output> {
    Ok(pod.exec(hutch()?).arg("doctor").args(args).output()?)
}

/// Starts a pod, runs `hutch doctor --json` in it the way the daemon will
/// (`report_from`), checks that nothing was left behind, and returns the
/// parsed report.
fn doctor(spec: &PodSpec) -> Result<(Report, Pod)> {
    let pod = Pod::start(spec)?;
    let before = traces(&pod)?;
    let report = report_from(&mut pod.exec(hutch()?))?;
    let after = traces(&pod)?;
    assert_eq!(before, after, "the doctor left something behind");
    Ok((report, pod))
}

fn status(report: &Report, id: &str) -> Status {
    report
        .check(id)
        .unwrap_or_else(|| panic!("no check {id} in the report"))
        .status
}

/// Asserts the statuses of several checks, naming all mismatches at once.
fn expect(report: &Report, expected: &[(&str, Status)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(id, want)| status(report, id) != *want)
        .map(|(id, want)| {
            let check = report.check(id).expect("checked above");
            format!(
                "{id}: want {want:?}, got {:?} ({})",
                check.status, check.detail
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What holds in every pod variant.
fn expect_common(report: &Report, pod: &Pod) {
    use Status::*;
    expect(
        report,
        &[
            ("misc.kernel", Ok),
            ("idmap.uid_map", Ok),
            ("idmap.gid_map", Ok),
            ("userns.max", Ok),
            ("userns.create", Ok),
            ("storage.data_root", Ok),
            ("overlay.userxattr", Ok),
            ("idmap.data_root", Missing),
            ("idmap.tmpfs", Ok),
            ("misc.seccomp", Ok),
            ("cgroup.version", Ok),
            ("tools.git", Ok),
            ("emulation.qemu", Ok),
        ],
    );
    let emulation = report.check("emulation.qemu").expect("checked above");
    assert!(
        emulation
            .detail
            .contains("arm64 (/usr/bin/qemu-aarch64-static)"),
        "{}",
        emulation.detail
    );
    assert!(report.ok, "no hard requirement fails in a pod");
    for id in [
        "idmap.uid_map",
        "idmap.gid_map",
        "userns.create",
        "overlay.userxattr",
    ] {
        assert!(report.check(id).is_some_and(|c| c.hard), "{id} is hard");
    }
    let map = &report.environment.uid_map;
    assert_eq!(map.len(), 1, "{map:?}");
    assert_eq!(
        (map[0].inside, map[0].outside, map[0].count),
        (0, pod.base(), 65536)
    );
    assert_eq!(report.environment.euid, 0);
    assert_eq!(report.environment.data_root_fs, "ext4");
    assert_eq!(report.data_root, pod.data_root());
    assert_eq!(
        report.choices.private_id_storage.chosen,
        PrivateIdStorage::IdmappedTmpfsLayers
    );
    assert!(report.choices.nested_userns.chosen);
    assert_eq!(report.choices.root_switch.chosen, RootSwitch::PivotRoot);
    // Every non-ok check says what it blocks and how to fix it.
    for check in report.checks.iter().filter(|c| c.status != Ok) {
        assert!(check.blocks.is_some(), "{} has no `blocks`", check.id);
        assert!(check.fix.is_some(), "{} has no `fix`", check.id);
    }
}

#[test]
fn delegated_cgroups_v1_pod() -> Result<()> {
    let (report, _pod) = doctor(&PodSpec::new().delegate_cgroups_v1())?;
    expect(&report, &[("cgroup.containers", Status::Ok)]);
    let detail = report
        .check("cgroup.containers")
        .map(|c| c.detail.clone())
        .unwrap_or_default();
    assert_eq!(detail, "cgroup v1 with memory, cpu, pids, freezer");
    assert_eq!(
        report.choices.resource_limits.chosen,
        ResourceLimits::Enforced
    );
    Ok(())
}

#[test]
fn delegated_cgroups_v2_pod_without_controllers() -> Result<()> {
    let (report, pod) = doctor(&PodSpec::new().delegate_cgroups_v2())?;
    expect(
        &report,
        &[
            ("cgroup.version", Status::Ok),
            ("cgroup.writable", Status::Ok),
            ("cgroup.delegated", Status::Ok),
            ("cgroup.containers", Status::Degraded),
        ],
    );
    let detail = report
        .check("cgroup.containers")
        .map(|c| c.detail.clone())
        .unwrap_or_default();
    assert_eq!(
        detail,
        "cgroup v2 delegated with freezer; no memory, cpu, pids controller: those limits are \
         accepted with a warning"
    );
    assert_eq!(
        report.choices.resource_limits.chosen,
        ResourceLimits::WarnOnly
    );
    // The doctor changed nothing: no leaf, no controller, no probe left.
    let entries = pod.exec("/bin/ls").arg("/sys/fs/cgroup").output()?;
    let entries = String::from_utf8_lossy(&entries.stdout);
    assert!(
        !entries.contains("init") && !entries.contains("hutch-"),
        "{entries}"
    );
    Ok(())
}

#[test]
fn default_pod() -> Result<()> {
    let (report, pod) = doctor(&PodSpec::new())?;
    expect_common(&report, &pod);
    use Status::*;
    expect(
        &report,
        &[
            ("procfs.fresh", Missing),
            ("sysfs.fresh", Missing),
            ("caps.sys_admin", Missing),
            ("caps.net_admin", Missing),
            ("netns.owner", Ok),
            ("netns.link", Missing),
            ("devices.fuse", Missing),
            ("devices.tun", Missing),
            ("cgroup.writable", Missing),
            ("cgroup.containers", Missing),
        ],
    );
    assert_eq!(report.environment.netns_owner, "pod");
    assert_eq!(report.choices.proc.chosen, PseudoFsMode::Shared);
    assert_eq!(report.choices.sys.chosen, PseudoFsMode::Shared);
    assert_eq!(report.choices.uplink.chosen, Uplink::L4Relay);
    assert!(!report.choices.user_mode_network.chosen);
    assert_eq!(
        report.choices.resource_limits.chosen,
        ResourceLimits::WarnOnly
    );
    let proc_fix = report
        .check("procfs.fresh")
        .and_then(|c| c.fix.clone())
        .unwrap_or_default();
    assert!(proc_fix.contains("procMount: Unmasked"), "{proc_fix}");

    let out = run_doctor(&pod, &["--json"])?;
    assert_eq!(out.status.code(), Some(0), "no hard requirement fails");
    let again: Report = serde_json::from_slice(&out.stdout)?;
    assert_eq!(again.checks.len(), report.checks.len());

    // The human report: an aligned line per check, then blocks and fixes.
    let out = run_doctor(&pod, &[])?;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.lines()
            .any(|l| l.starts_with("OK ") && l.contains("child user namespace")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("MISSING ") && l.contains("/dev/fuse")),
        "{text}"
    );
    assert!(
        text.contains("blocks: the FUSE ID-shifting fallback"),
        "{text}"
    );
    assert!(text.contains("procMount: Unmasked"), "{text}");
    pod.stop()
}

#[test]
fn unmasked_proc() -> Result<()> {
    let (report, pod) = doctor(&PodSpec::new().proc_unmasked())?;
    expect_common(&report, &pod);
    use Status::*;
    expect(
        &report,
        &[
            ("procfs.fresh", Ok),
            ("sysfs.fresh", Ok),
            ("caps.sys_admin", Missing),
            ("netns.link", Missing),
        ],
    );
    // Unmasked: no masks at all, so no lifting is needed (or possible).
    assert_eq!(report.choices.proc.chosen, PseudoFsMode::Fresh);
    assert_eq!(report.choices.sys.chosen, PseudoFsMode::Fresh);
    pod.stop()
}

#[test]
fn sys_admin_and_net_admin() -> Result<()> {
    let spec = PodSpec::new().cap_add("SYS_ADMIN").cap_add("NET_ADMIN");
    let (report, pod) = doctor(&spec)?;
    expect_common(&report, &pod);
    use Status::*;
    expect(
        &report,
        &[
            ("caps.sys_admin", Ok),
            ("caps.net_admin", Ok),
            ("procfs.fresh", Ok),
            ("sysfs.fresh", Ok),
            ("netns.owner", Ok),
            ("netns.link", Ok),
            ("devices.fuse", Missing),
        ],
    );
    // /proc is masked in this pod: the fresh mount works only after lifting.
    assert_eq!(
        report.choices.proc.chosen,
        PseudoFsMode::FreshAfterLiftingMasks
    );
    assert_eq!(report.choices.uplink.chosen, Uplink::KernelVethNat);
    pod.stop()
}

#[test]
fn fuse_and_tun_devices() -> Result<()> {
    let spec = PodSpec::new().device(Device::Fuse).device(Device::Tun);
    let (report, pod) = doctor(&spec)?;
    expect_common(&report, &pod);
    use Status::*;
    expect(
        &report,
        &[
            ("devices.fuse", Ok),
            ("devices.tun", Ok),
            ("procfs.fresh", Missing),
            ("caps.net_admin", Missing),
        ],
    );
    assert!(report.choices.user_mode_network.chosen);
    pod.stop()
}

#[test]
fn netns_owned_by_the_node() -> Result<()> {
    let spec = PodSpec::new()
        .netns_owner(NetnsOwner::Initial)
        .cap_add("NET_ADMIN");
    let (report, pod) = doctor(&spec)?;
    expect_common(&report, &pod);
    use Status::*;
    expect(
        &report,
        &[
            ("caps.net_admin", Ok),
            ("netns.owner", Missing),
            ("netns.link", Missing),
        ],
    );
    assert_eq!(report.environment.netns_owner, "ancestor");
    assert_eq!(report.choices.uplink.chosen, Uplink::L4Relay);
    pod.stop()
}

/// A data root where overlay layers cannot live fails a hard requirement,
/// and the exit status says so.
#[test]
fn unusable_data_root_fails_hard() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let out = run_doctor(&pod, &["--json", "--data-root", "/sys/hutch"])?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Report = serde_json::from_slice(&out.stdout)?;
    assert!(!report.ok);
    expect(
        &report,
        &[
            ("storage.data_root", Status::Missing),
            ("overlay.userxattr", Status::Missing),
            ("userns.create", Status::Ok),
        ],
    );
    let failed: Vec<_> = report.hard_failures().map(|c| c.id.as_str()).collect();
    assert_eq!(failed, ["overlay.userxattr"]);
    pod.stop()
}

/// Without git (or QEMU) on the daemon's PATH the doctor says which builds
/// that disables and how to fix it; it is not a hard requirement.
#[test]
fn missing_git_is_reported_not_fatal() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let out = pod
        .exec(hutch()?)
        .env("PATH", "/nonexistent")
        .args(["doctor", "--json"])
        .output()?;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Report = serde_json::from_slice(&out.stdout)?;
    let git = report.check("tools.git").expect("a tools.git check");
    assert_eq!(git.status, Status::Missing);
    assert!(!git.hard);
    let blocks = git.blocks.clone().unwrap_or_default();
    assert!(blocks.contains("ADD of a git repository"), "{blocks}");
    let fix = git.fix.clone().unwrap_or_default();
    assert!(fix.contains("install git"), "{fix}");
    // Nor any emulator: other architectures' containers cannot run.
    let qemu = report
        .check("emulation.qemu")
        .expect("an emulation.qemu check");
    assert_eq!(qemu.status, Status::Missing);
    assert!(qemu.detail.contains("no QEMU emulator"), "{}", qemu.detail);
    assert!(!qemu.hard);
    let fix = qemu.fix.clone().unwrap_or_default();
    assert!(fix.contains("qemu-user-static"), "{fix}");
    pod.stop()
}
