//! The shim: the host-root process that creates a pod, holds it, and tears
//! it down (`podsim start` and `podsim run`), like containerd's shim.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use hutch_tests::podsim::PodInfo;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{read, Pid};

use crate::cli::PodOpts;
use crate::create::{self, CreatedPod};
use crate::spec::PodConfig;
use crate::teardown;

/// Signals the shim handles itself: they must never kill it mid-way and
/// leave a pod behind. Blocked from the start; children unblock them.
pub fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ] {
        set.add(sig);
    }
    set.thread_block().context("blocking signals")?;
    Ok(set)
}

/// Writes `state/pod.json` atomically.
pub fn write_pod_info(state: &Path, pod: &CreatedPod) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let path = PodInfo::path(state);
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_string_pretty(&pod.info()).context("encoding pod.json")?;
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// `podsim start`: returns the exit status (0 when teardown was clean).
pub fn start(opts: &PodOpts, state: &Path) -> anyhow::Result<i32> {
    let signals = block_signals()?;
    let config = PodConfig::from_opts(opts)?;
    let pod = create::create(&config)?;
    let ready = write_pod_info(state, &pod).and_then(|()| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").and_then(|()| out.flush()).context("writing to stdout")
    });
    let (stop, exited) = match ready {
        Ok(()) => hold(&pod, &signals)?,
        Err(e) => (Stop::Failed(format!("{e:#}")), false),
    };
    let mut report = teardown::teardown(pod, Some(state), exited);
    if let Stop::Failed(why) = stop {
        report.problems.insert(0, why);
    }
    let mut out = std::io::stdout().lock();
    for line in report.lines() {
        // Best effort: the reader may be gone (that is what stopped us).
        let _ = writeln!(out, "{line}");
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// Why the shim stopped holding the pod.
enum Stop {
    Asked,
    Failed(String),
}

/// Holds the pod until stdin reaches EOF, a stop signal arrives, or the pod
/// dies on its own. Returns why, and whether the pod setup process was reaped.
fn hold(pod: &CreatedPod, signals: &SigSet) -> anyhow::Result<(Stop, bool)> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).context("creating a signalfd")?;
    let stdin = std::io::stdin();
    let mut buf = [0u8; 512];
    loop {
        let mut fds = [
            PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting on stdin and signals"),
        }
        let stdin_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        let signal_ready = fds[1].revents().unwrap_or(PollFlags::empty());
        if stdin_ready.contains(PollFlags::POLLNVAL) {
            return Ok((Stop::Asked, false));
        }
        if !stdin_ready.is_empty() {
            match read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => return Ok((Stop::Asked, false)),
                Ok(_) => {} // Input is ignored; only its end matters.
            }
        }
        if !signal_ready.is_empty() {
            let Some(info) = sfd.read_signal().context("reading a signal")? else {
                continue;
            };
            if info.ssi_signo != Signal::SIGCHLD as u32 {
                return Ok((Stop::Asked, false));
            }
            match waitpid(pod.setup_pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    return Ok((
                        Stop::Failed(format!("the pod died on its own ({status:?})")),
                        true,
                    ))
                }
                Err(Errno::ECHILD) => {
                    return Ok((Stop::Failed("the pod died on its own".to_string()), true))
                }
                Err(e) => return Err(e).context("checking on the pod"),
            }
        }
    }
}

/// `podsim run`: creates a pod, runs `cmd` in it through `podsim exec`, and
/// tears it down. Returns the command's status; a failed teardown turns a
/// success into 125.
pub fn run(opts: &PodOpts, cmd: &[OsString]) -> anyhow::Result<i32> {
    let signals = block_signals()?;
    let config = PodConfig::from_opts(opts)?;
    let state = tempfile::Builder::new()
        .prefix("podsim-run-")
        .tempdir()
        .context("creating a state directory")?;
    let pod = create::create(&config)?;
    let outcome = write_pod_info(state.path(), &pod).and_then(|()| {
        let exe = std::env::current_exe().context("locating podsim")?;
        // The child starts with signals unblocked (std resets the mask).
        let child = Command::new(exe)
            .arg("exec")
            .arg("--state")
            .arg(state.path())
            .arg("--")
            .args(cmd)
            .spawn()
            .context("starting podsim exec")?;
        crate::exec::wait_forwarding(Pid::from_raw(child.id() as i32), &signals)
    });
    let report = teardown::teardown(pod, Some(state.path()), false);
    if !report.is_clean() || !report.notes.is_empty() {
        for line in report.lines() {
            eprintln!("podsim: {line}");
        }
    }
    let code = outcome?;
    Ok(if report.is_clean() || code != 0 { code } else { 125 })
}
