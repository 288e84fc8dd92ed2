//! Running one probe in a short-lived forked child.
//!
//! A trial that changes namespaces or mounts must not touch the process that
//! reports: the child unshares what the trial needs, runs it, sends the outcome
//! back over a pipe as JSON and exits. Its mounts die with its mount
//! namespace, its links with its network namespace. Forking without exec is
//! only sound in a single-threaded process, which is why the doctor refuses to
//! run in any other (see the `doctor` module docs).

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::idmap;
use super::procfs::lift_masks;

/// How long one probe may take before it is killed. Probes are syscalls, not
/// work: anything this slow is stuck (e.g. on a FUSE mount nobody serves).
const TIMEOUT: Duration = Duration::from_secs(15);

/// Why a trial did not succeed: the step that failed and the errno.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub step: String,
    pub errno: Option<i32>,
    pub message: String,
}

impl Failure {
    pub fn errno(step: impl Into<String>, errno: Errno) -> Self {
        Failure {
            step: step.into(),
            errno: Some(errno as i32),
            message: format!("{errno}"),
        }
    }

    pub fn other(step: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            step: step.into(),
            errno: None,
            message: message.into(),
        }
    }

    /// The failure carries exactly this errno.
    pub fn is(&self, errno: Errno) -> bool {
        self.errno == Some(errno as i32)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

/// Names the step a syscall result belongs to.
pub trait At<T> {
    fn at(self, step: &str) -> Result<T, Failure>;
}

impl<T> At<T> for Result<T, Errno> {
    fn at(self, step: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::errno(step, e))
    }
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, step: &str) -> Result<T, Failure> {
        self.map_err(|e| match e.raw_os_error() {
            Some(code) => Failure::errno(step, Errno::from_raw(code)),
            None => Failure::other(step, e.to_string()),
        })
    }
}

/// The namespaces a probe's child runs in.
#[derive(Debug, Clone, Copy)]
pub struct Sandbox {
    /// First, still in our own user namespace: a private mount namespace
    /// with the masks over /proc and /sys unmounted (needs CAP_SYS_ADMIN).
    lift_masks: bool,
    /// A child user namespace mapping our whole ID range 1:1, as the
    /// engine's own namespace will.
    user: bool,
    /// Namespaces unshared after that (mount, pid, net).
    namespaces: CloneFlags,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            lift_masks: false,
            user: false,
            namespaces: CloneFlags::empty(),
        }
    }
}

impl Sandbox {
    /// A plain child in our own namespaces.
    pub fn here() -> Self {
        Sandbox::default()
    }

    /// A child in a new user namespace that maps our range 1:1.
    pub fn user() -> Self {
        Sandbox {
            user: true,
            ..Sandbox::default()
        }
    }

    pub fn lift_masks(mut self) -> Self {
        self.lift_masks = true;
        self
    }

    /// A new mount namespace (made recursively private).
    pub fn mount(mut self) -> Self {
        self.namespaces |= CloneFlags::CLONE_NEWNS;
        self
    }

    /// A new pid namespace: the probe runs as its pid 1.
    pub fn pid(mut self) -> Self {
        self.namespaces |= CloneFlags::CLONE_NEWPID;
        self
    }

    pub fn net(mut self) -> Self {
        self.namespaces |= CloneFlags::CLONE_NEWNET;
        self
    }

    /// Runs `probe` in a forked child inside these namespaces and returns
    /// what it returned. Setup failures come back as a `Failure` naming the
    /// step (e.g. `unshare(CLONE_NEWUSER)`).
    pub fn run<T, F>(&self, probe: F) -> Result<T, Failure>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Result<T, Failure>,
    {
        ensure_single_threaded()?;
        let (result_r, result_w) = pipe2(OFlag::O_CLOEXEC).at("pipe")?;
        let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).at("pipe")?;
        let (mapped_r, mapped_w) = pipe2(OFlag::O_CLOEXEC).at("pipe")?;
        // SAFETY: the process is single-threaded (checked above), so the
        // child may allocate and run ordinary Rust code before it exits.
        match unsafe { fork() }.at("fork")? {
            ForkResult::Child => {
                drop((result_r, ready_r, mapped_w));
                self.child_main(ready_w, mapped_r, result_w, probe)
            }
            ForkResult::Parent { child } => {
                drop((result_w, ready_w, mapped_r));
                let outcome = self.parent(child, ready_r, mapped_w, result_r);
                if outcome.is_err() {
                    // Already gone when it finished; a stuck child is killed.
                    let _ = kill(child, Signal::SIGKILL);
                }
                let _ = waitpid(child, None);
                outcome?
            }
        }
    }

    fn parent<T: DeserializeOwned>(
        &self,
        child: Pid,
        ready_r: OwnedFd,
        mapped_w: OwnedFd,
        result_r: OwnedFd,
    ) -> Result<Result<T, Failure>, Failure> {
        let deadline = Instant::now() + TIMEOUT;
        if self.user {
            let mut byte = [0u8; 1];
            // EOF instead of the byte: the child failed before, and its
            // result says where.
            if read_until(&ready_r, &mut byte, deadline)? == 1 {
                idmap::map_child(child)?;
                std::fs::File::from(mapped_w)
                    .write_all(b"1")
                    .at("tell the child its maps are written")?;
            }
        }
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match read_until(&result_r, &mut chunk, deadline)? {
                0 => break,
                n => bytes.extend_from_slice(&chunk[..n]),
            }
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::other("read the probe's result", format!("child died ({e})")))
    }

    fn child_main<T, F>(
        &self,
        ready_w: OwnedFd,
        mapped_r: OwnedFd,
        result_w: OwnedFd,
        probe: F,
    ) -> !
    where
        T: Serialize,
        F: FnOnce() -> Result<T, Failure>,
    {
        // If the doctor dies, so does its probe.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        let outcome = match self.enter(ready_w, mapped_r) {
            Err(failure) => Err(failure),
            Ok(()) if self.namespaces.contains(CloneFlags::CLONE_NEWPID) => {
                run_as_pid1(&result_w, probe)
            }
            Ok(()) => guarded(probe),
        };
        send(&result_w, &outcome);
        // SAFETY: _exit only ends the process; skipping atexit handlers and
        // destructors is what a forked child must do.
        unsafe { libc::_exit(0) }
    }

    /// Enters the namespaces, in the child.
    fn enter(&self, ready_w: OwnedFd, mapped_r: OwnedFd) -> Result<(), Failure> {
        if self.lift_masks {
            lift_masks()?;
        }
        if self.user {
            unshare(CloneFlags::CLONE_NEWUSER).at("unshare(CLONE_NEWUSER)")?;
            std::fs::File::from(ready_w)
                .write_all(b"1")
                .at("ask for ID maps")?;
            let mut byte = [0u8; 1];
            let n = std::fs::File::from(mapped_r)
                .read(&mut byte)
                .at("wait for ID maps")?;
            if n != 1 {
                return Err(Failure::other("wait for ID maps", "parent gave up"));
            }
        }
        if !self.namespaces.is_empty() {
            unshare(self.namespaces).at(&format!("unshare({})", flag_names(self.namespaces)))?;
        }
        if self.namespaces.contains(CloneFlags::CLONE_NEWNS) {
            // Nothing the probe mounts may propagate back to the pod.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .at("make / private")?;
        }
        Ok(())
    }
}

/// After unshare(CLONE_NEWPID) only children join the new pid namespace: the
/// probe runs in a grandchild (pid 1 there), which writes the result itself.
fn run_as_pid1<T, F>(result_w: &OwnedFd, probe: F) -> Result<T, Failure>
where
    T: Serialize,
    F: FnOnce() -> Result<T, Failure>,
{
    // SAFETY: still single-threaded: this is the doctor's forked child.
    match unsafe { fork() }.at("fork into the new pid namespace")? {
        ForkResult::Child => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            send(result_w, &guarded(probe));
            // SAFETY: ends the grandchild without running the parent's
            // destructors twice.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            let _ = waitpid(child, None);
            // SAFETY: the grandchild has written the result; this child has
            // nothing more to say.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Runs the probe, turning a panic into a failure instead of a lost child.
fn guarded<T, F>(probe: F) -> Result<T, Failure>
where
    F: FnOnce() -> Result<T, Failure>,
{
    panic::catch_unwind(AssertUnwindSafe(probe))
        .unwrap_or_else(|_| Err(Failure::other("probe", "panicked")))
}

fn send<T: Serialize>(result_w: &OwnedFd, outcome: &Result<T, Failure>) {
    if let Ok(bytes) = serde_json::to_vec(outcome) {
        // The parent reads to EOF; a failed write shows there as a dead child.
        let _ = nix::unistd::write(result_w, &bytes);
    }
}

/// Reads what is there, waiting at most until `deadline`. 0 means EOF.
fn read_until(fd: &OwnedFd, buf: &mut [u8], deadline: Instant) -> Result<usize, Failure> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::other("wait for the probe", "timed out"));
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Failure::errno("poll", e)),
        }
        match nix::unistd::read(fd, buf) {
            Err(Errno::EINTR) => continue,
            other => return other.at("read from the probe"),
        }
    }
}

/// Forking Rust code without exec is only sound with one thread.
fn ensure_single_threaded() -> Result<(), Failure> {
    let threads = std::fs::read_dir("/proc/self/task")
        .at("count threads")?
        .count();
    if threads == 1 {
        Ok(())
    } else {
        Err(Failure::other(
            "fork a probe",
            format!("the process has {threads} threads; run `hutch doctor --json` as a subprocess"),
        ))
    }
}

fn flag_names(flags: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
    ];
    names
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join("|")
}
