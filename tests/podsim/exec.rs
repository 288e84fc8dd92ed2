//! `podsim exec`: run a command as root inside the pod, like `kubectl exec`
//! (runc joining the container's namespaces): the pod's namespaces, uid/gid 0
//! with groups [0], the pod's capability bounding set, and the caller's
//! environment.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::Context;
use hutch_tests::podsim::PodInfo;
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::setns;
use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{
    execvp, fexecve, fork, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid,
};

use crate::{caps, podns, spec, sys};

/// Signals the exec process passes on to the command.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Runs `cmd` in the pod and returns its exit status (128+N for a death by
/// signal N). With `self_exe`, `cmd` are arguments to podsim itself.
pub fn run(state: &Path, self_exe: bool, cmd: &[OsString]) -> anyhow::Result<i32> {
    let info = PodInfo::read(state)?;
    let namespaces = podns::EXEC_ORDER
        .iter()
        .map(|(kind, flag)| Ok((*flag, podns::open(&info, kind)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let exe = if self_exe {
        let fd = open(
            "/proc/self/exe",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("opening podsim's own binary")?;
        Some(fd)
    } else {
        None
    };
    let argv = argv(self_exe, cmd)?;
    let env = environment()?;
    let cwd = std::env::current_dir().ok();

    // As runc exec: the command goes into the pod's cgroup. This process
    // joins it while still host root, so the fork inherits it, and leaves
    // again after the fork through a descriptor opened now (cgroup2 checks
    // the opener's credentials), so the pod's cgroup holds only processes
    // of the pod's pid namespace.
    let leave = match &info.cgroup_v2_host {
        Some(dir) => {
            let procs = crate::cgroups::v2_root()?.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&procs)
                .with_context(|| format!("opening {}", procs.display()))?;
            crate::cgroups::join_v2(dir, nix::unistd::getpid().as_raw())?;
            Some(file)
        }
        None => None,
    };
    for (flag, fd) in &namespaces {
        setns(fd.as_fd(), *flag).with_context(|| format!("joining the pod's {flag:?}"))?;
    }
    drop(namespaces);
    become_pod_root(&info)?;
    // The caller's working directory, if the pod can enter it; else "/".
    if let Some(cwd) = cwd {
        // Best effort: setns already moved us to the pod's "/".
        let _ = std::env::set_current_dir(cwd);
    }

    let mut signals = SigSet::empty();
    signals.add(Signal::SIGCHLD);
    for sig in FORWARDED {
        signals.add(sig);
    }
    signals.thread_block().context("blocking signals")?;
    // SAFETY: podsim is single-threaded.
    match unsafe { fork() }.context("forking the command")? {
        ForkResult::Child => exec_command(exe.as_ref(), &argv, &env),
        ForkResult::Parent { child } => {
            if let Some(mut file) = leave {
                // "0": the writer itself. A failure leaves this process
                // in the pod's cgroup, which is no reason to abandon the
                // command.
                if let Err(e) = std::io::Write::write_all(&mut file, b"0") {
                    eprintln!("podsim: leaving the pod's cgroup: {e}");
                }
            }
            wait_forwarding(child, &signals)
        }
    }
}

fn become_pod_root(info: &PodInfo) -> anyhow::Result<()> {
    let (gid, uid) = (Gid::from_raw(0), Uid::from_raw(0));
    setresgid(gid, gid, gid).context("becoming gid 0")?;
    setgroups(&[gid]).context("setting groups to [0]")?;
    setresuid(uid, uid, uid).context("becoming uid 0")?;
    caps::confine(&spec::cap_set(&info.caps)?)
}

fn argv(self_exe: bool, cmd: &[OsString]) -> anyhow::Result<Vec<CString>> {
    let program = self_exe.then(|| OsString::from("podsim"));
    program
        .iter()
        .chain(cmd)
        .map(|arg| CString::new(arg.as_bytes()).context("argument contains a NUL byte"))
        .collect()
}

fn environment() -> anyhow::Result<Vec<CString>> {
    std::env::vars_os()
        .map(|(key, value)| {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).context("environment contains a NUL byte")
        })
        .collect()
}

/// The command's process, in the pod's pid namespace; never returns.
fn exec_command(exe: Option<&OwnedFd>, argv: &[CString], env: &[CString]) -> ! {
    if let Err(e) = SigSet::empty().thread_set_mask() {
        eprintln!("podsim exec: unblocking signals: {e}");
        sys::exit_now(126);
    }
    // If the exec process is killed, its command must not live on unseen.
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("podsim exec: setting the parent-death signal: {e}");
        sys::exit_now(126);
    }
    let err = match exe {
        Some(fd) => {
            let Err(e) = fexecve(fd, argv, env);
            e
        }
        None => match argv.first() {
            Some(program) => {
                let Err(e) = execvp(program, argv);
                e
            }
            None => Errno::EINVAL,
        },
    };
    let name = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    eprintln!("podsim exec: {name}: {}", err.desc());
    sys::exit_now(if err == Errno::ENOENT { 127 } else { 126 })
}

/// Waits for `child`, passing on forwarded signals; returns its exit status.
pub fn wait_forwarding(child: Pid, signals: &SigSet) -> anyhow::Result<i32> {
    loop {
        let sig = signals.wait().context("waiting for signals")?;
        if sig != Signal::SIGCHLD {
            // Best effort: the child may have just exited.
            let _ = kill(child, sig);
            continue;
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for the command"),
        }
    }
}
