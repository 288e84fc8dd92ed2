//! `podsim self-check`: creates a pod and proves, one line per property, that
//! it is what podsim promises. Most checks run inside the pod (`podsim
//! __check-inside`, exec'd like any command); the rest look from the host.

pub mod inside;
pub mod probe;

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use hutch_tests::podsim::{procscan, Device, Namespaces, NetnsOwner, DATA_ROOT};
use nix::sys::statfs::{statfs, EXT4_SUPER_MAGIC};
use serde::{Deserialize, Serialize};

use crate::cli::PodOpts;
use crate::create::{self, CreatedPod};
use crate::spec::PodConfig;
use crate::{podns, shim, sys, teardown};

/// One property and its verdict.
pub struct Check {
    pub ok: bool,
    pub name: String,
    pub detail: String,
}

impl Check {
    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check {
            ok: true,
            name: name.to_string(),
            detail: detail.into(),
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>) -> Check {
        Check {
            ok: false,
            name: name.to_string(),
            detail: detail.into(),
        }
    }

    /// `ok` when `good`, else `FAIL`, with the same detail.
    pub fn verdict(name: &str, good: bool, detail: impl Into<String>) -> Check {
        if good {
            Check::ok(name, detail)
        } else {
            Check::fail(name, detail)
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok { "ok" } else { "FAIL" };
        write!(f, "{verdict:<4} {}: {}", self.name, self.detail)
    }
}

/// What the checks inside the pod must find: the pod's spec and the host's
/// view, which the inside cannot see for itself.
#[derive(Serialize, Deserialize)]
pub struct Expect {
    pub base: u32,
    pub hostname: String,
    pub cap_mask: u64,
    pub netns_owner: NetnsOwner,
    pub proc_unmasked: bool,
    /// "v1", "v2" for a delegated hierarchy, "" without.
    #[serde(default)]
    pub cgroups: String,
    pub devices: Vec<Device>,
    pub host_namespaces: Namespaces,
    /// Port the sidecar probe listens on, on the pod's 127.0.0.1.
    pub probe_port: u16,
    /// File the inside writes in the data root, for the host to look at.
    pub marker: String,
}

const MARKER: &str = ".podsim-self-check";

/// Runs every check; returns 0 when all pass, 1 otherwise.
pub fn run(opts: &PodOpts) -> anyhow::Result<i32> {
    let _signals = shim::block_signals()?;
    let config = PodConfig::from_opts(opts)?;
    let state = tempfile::Builder::new()
        .prefix("podsim-check-")
        .tempdir()
        .context("creating a state directory")?;
    let pod = create::create(&config)?;
    let mut checks = vec![Check::ok(
        "startup",
        format!(
            "pod {} (uid base {}) ready in {:.1} ms",
            pod.id,
            pod.base(),
            pod.startup.as_secs_f64() * 1000.0
        ),
    )];
    for note in &pod.notes {
        checks.push(Check::ok("note", note.clone()));
    }
    let mut probe = None;
    if let Err(err) = check_running_pod(&pod, state.path(), &mut checks, &mut probe) {
        checks.push(Check::fail("self-check", format!("{err:#}")));
    }
    let base = pod.base();
    let data_dir = pod.data_dir.clone();
    let report = teardown::teardown(pod, Some(state.path()), false);
    if let Some(mut probe) = probe {
        // Teardown killed it; reap it.
        let _ = probe.wait();
    }
    checks.push(teardown_check(&report, base, &data_dir));

    let mut out = std::io::stdout().lock();
    for check in &checks {
        writeln!(out, "{check}").context("writing to stdout")?;
    }
    Ok(if checks.iter().all(|c| c.ok) { 0 } else { 1 })
}

fn check_running_pod(
    pod: &CreatedPod,
    state: &Path,
    checks: &mut Vec<Check>,
    probe_slot: &mut Option<Child>,
) -> anyhow::Result<()> {
    shim::write_pod_info(state, pod)?;
    let exe = std::env::current_exe().context("locating podsim")?;
    let host = podns::inodes_of(nix::unistd::getpid())?;

    checks.push(host_view(pod));
    checks.push(data_dir_on_host(pod));
    checks.push(netns_owner_from_host(pod, &host));

    let mut probe = Command::new(&exe)
        .arg("sidecar")
        .arg("--state")
        .arg(state)
        .arg("--")
        .arg(&exe)
        .arg("__sidecar-probe")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the sidecar probe")?;
    let stdout = probe.stdout.take().context("probe stdout")?;
    let probe_pid = probe.id() as i32;
    *probe_slot = Some(probe);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .context("reading the probe's port")?;
    let probe_port: u16 = line
        .trim()
        .parse()
        .with_context(|| format!("the sidecar probe did not start ({:?})", line.trim()))?;
    checks.push(sidecar_from_host(pod, &host, probe_pid));

    let expect = Expect {
        base: pod.base(),
        hostname: pod.hostname.clone(),
        cap_mask: pod.info().cap_mask()?,
        netns_owner: pod.config.netns_owner,
        proc_unmasked: pod.config.proc_unmasked,
        cgroups: if pod.config.delegate_cgroups_v2 {
            "v2"
        } else if pod.config.delegate_cgroups_v1 {
            "v1"
        } else {
            ""
        }
        .to_string(),
        devices: pod.config.devices.clone(),
        host_namespaces: host,
        probe_port,
        marker: MARKER.to_string(),
    };
    let out = Command::new(&exe)
        .arg("exec")
        .arg("--state")
        .arg(state)
        .arg("--self-exe")
        .arg("--")
        .arg("__check-inside")
        .arg("--expect")
        .arg(serde_json::to_string(&expect).context("encoding expectations")?)
        .stdin(Stdio::null())
        .output()
        .context("running the inside checks")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut inside_failed = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ok") {
            checks.push(parse_line(true, rest));
        } else if let Some(rest) = line.strip_prefix("FAIL") {
            inside_failed = true;
            checks.push(parse_line(false, rest));
        }
    }
    if !out.status.success() && !inside_failed {
        checks.push(Check::fail(
            "inside",
            format!(
                "podsim __check-inside failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    checks.push(marker_ownership(pod));
    Ok(())
}

fn parse_line(ok: bool, rest: &str) -> Check {
    let (name, detail) = rest.trim().split_once(": ").unwrap_or((rest.trim(), ""));
    Check {
        ok,
        name: name.to_string(),
        detail: detail.to_string(),
    }
}

/// Pod init, seen from the host, runs as the range's first uid.
fn host_view(pod: &CreatedPod) -> Check {
    match procscan::process_info(pod.init_pid.as_raw()) {
        Ok(p) => Check::verdict(
            "host-view",
            p.uids.iter().all(|&u| u == pod.base()),
            format!("pod init is host pid {} with host uids {:?}", p.pid, p.uids),
        ),
        Err(e) => Check::fail("host-view", format!("reading pod init's status: {e}")),
    }
}

fn data_dir_on_host(pod: &CreatedPod) -> Check {
    let meta = match std::fs::metadata(&pod.data_dir) {
        Ok(meta) => meta,
        Err(e) => return Check::fail("data-dir-host", format!("{}: {e}", pod.data_dir.display())),
    };
    let ext4 = statfs(&pod.data_dir)
        .map(|s| s.filesystem_type() == EXT4_SUPER_MAGIC)
        .unwrap_or(false);
    Check::verdict(
        "data-dir-host",
        meta.uid() == pod.base() && meta.gid() == pod.base() && ext4,
        format!(
            "{} owned {}:{} on {}",
            pod.data_dir.display(),
            meta.uid(),
            meta.gid(),
            if ext4 { "ext4" } else { "not ext4" }
        ),
    )
}

/// NS_GET_USERNS from the host: which user namespace owns the pod's netns.
fn netns_owner_from_host(pod: &CreatedPod, host: &Namespaces) -> Check {
    let owner = std::fs::File::open(format!("/proc/{}/ns/net", pod.init_pid))
        .map_err(|e| e.to_string())
        .and_then(|f| sys::owning_userns_inode(f.as_fd()).map_err(|e| e.to_string()));
    let (expected, label) = match pod.config.netns_owner {
        NetnsOwner::Pod => (pod.namespaces.inodes.user, "the pod's user namespace"),
        NetnsOwner::Initial => (host.user, "the initial user namespace"),
    };
    match owner {
        Ok(inode) => Check::verdict(
            "netns-owner-host",
            inode == expected,
            format!("from the host, the pod's netns is owned by user ns {inode} (want {label}, {expected})"),
        ),
        Err(e) => Check::fail("netns-owner-host", format!("NS_GET_USERNS: {e}")),
    }
}

/// The sidecar is host root, in the pod's netns and the host's mount ns.
fn sidecar_from_host(pod: &CreatedPod, host: &Namespaces, pid: i32) -> Check {
    let uids = procscan::process_info(pid).map(|p| p.uids);
    let net = procscan::ns_inode(pid, "net");
    let mnt = procscan::ns_inode(pid, "mnt");
    match (uids, net, mnt) {
        (Ok(uids), Ok(net), Ok(mnt)) => Check::verdict(
            "sidecar-host",
            uids == [0; 4] && net == pod.namespaces.inodes.net && mnt == host.mnt,
            format!(
                "sidecar pid {pid}: host uids {uids:?}, {} netns, {} mount ns",
                if net == pod.namespaces.inodes.net {
                    "the pod's"
                } else {
                    "NOT the pod's"
                },
                if mnt == host.mnt {
                    "the host's"
                } else {
                    "NOT the host's"
                },
            ),
        ),
        _ => Check::fail("sidecar-host", format!("cannot inspect sidecar pid {pid}")),
    }
}

/// The file written inside as uid 0 lands on the host as the range's base.
fn marker_ownership(pod: &CreatedPod) -> Check {
    let path = pod.data_dir.join(MARKER);
    match std::fs::metadata(&path) {
        Ok(meta) => Check::verdict(
            "data-ownership",
            meta.uid() == pod.base() && meta.gid() == pod.base(),
            format!(
                "{DATA_ROOT}/{MARKER}, written as pod root, is {}:{} on the host",
                meta.uid(),
                meta.gid()
            ),
        ),
        Err(e) => Check::fail("data-ownership", format!("{}: {e}", path.display())),
    }
}

fn teardown_check(report: &teardown::Report, base: u32, data_dir: &Path) -> Check {
    let mut problems = report.problems.clone();
    let range = procscan::live_processes_in_uid_range(base, hutch_tests::podsim::ID_RANGE_SIZE);
    if !range.is_empty() {
        problems.push(format!(
            "{} process(es) still in the uid range",
            range.len()
        ));
    }
    if data_dir.exists() {
        problems.push(format!("{} still exists", data_dir.display()));
    }
    if problems.is_empty() {
        Check::ok(
            "teardown",
            "nothing left: no process in the uid range or the pod's namespaces, netns unreferenced, data removed",
        )
    } else {
        Check::fail("teardown", problems.join("; "))
    }
}
