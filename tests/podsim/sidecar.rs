//! `podsim sidecar`: run a command as host root in the pod's network
//! namespace only (host mounts, host filesystem, host credentials), for
//! fixtures such as a registry the pod reaches on 127.0.0.1.
//!
//! Each sidecar leads its own process group and registers itself in the
//! state directory (`sidecars/<pid>`, holding its start time), so teardown
//! can kill it and its children even though podsim did not spawn it.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hutch_tests::podsim::{procscan, PodInfo};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{execvp, getpid, setpgid, Pid};

use crate::podns;

/// Joins the pod's netns and execs `cmd`; returns only on failure.
pub fn run(state: &Path, cmd: &[OsString]) -> anyhow::Result<Infallible> {
    let info = PodInfo::read(state)?;
    let netns = podns::open(&info, "net")?;
    let argv = cmd
        .iter()
        .map(|arg| CString::new(arg.as_bytes()).context("argument contains a NUL byte"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let program = argv.first().context("no command given")?;

    setpgid(Pid::from_raw(0), Pid::from_raw(0)).context("starting a process group")?;
    let me = getpid().as_raw();
    let entry = registry(state).join(me.to_string());
    std::fs::create_dir_all(registry(state)).context("creating the sidecar registry")?;
    let started = procscan::start_time(me).context("reading my start time")?;
    std::fs::write(&entry, started.to_string()).context("registering the sidecar")?;

    setns(&netns, CloneFlags::CLONE_NEWNET).context("joining the pod's netns")?;
    drop(netns);
    let Err(err) = execvp(program, &argv);
    // Best effort: teardown checks the start time before killing anyway.
    let _ = std::fs::remove_file(&entry);
    Err(err).with_context(|| format!("executing {}", program.to_string_lossy()))
}

fn registry(state: &Path) -> PathBuf {
    state.join("sidecars")
}

/// Kills every registered sidecar that is still the process it was, with
/// its process group. Returns what it did, for the teardown report.
pub fn kill_registered(state: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    let Ok(entries) = std::fs::read_dir(registry(state)) else {
        return notes;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let recorded = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let alive = procscan::start_time(pid)
            .map(|t| t.to_string() == recorded.trim())
            .unwrap_or(false);
        if alive {
            // Best effort: the group may be gone already; the sweep that
            // follows catches anything left in the pod's netns.
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            notes.push(format!("killed sidecar {pid} and its process group"));
        }
    }
    notes
}
