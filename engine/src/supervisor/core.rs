//! The supervisor's state and its poll loop: one container process, its
//! streams, the clients on the socket, exec'd processes and the timers of
//! stop, restart and healthchecks.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::fdio::{read_some, FrameBuf, Read};
use super::launch::{self, Launched, Launching};
use super::restart;
use crate::containers::config::ContainerConfig;
use crate::containers::logfile::{LineSplitter, LogWriter};
use crate::containers::protocol::{self, Event, ExitInfo, Kind};
use crate::containers::state::{Health, State, Status};
use crate::containers::store::ContainerDir;
use crate::containers::timefmt;
use crate::procs;
use crate::runtime::helper::Failure;
use crate::runtime::ContainerSpec;

/// How long output may trail a process's exit before its streams are cut.
const DRAIN: Duration = Duration::from_millis(300);
/// A client that takes no output for this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a supervisor must have been idle (since its start or its
/// last event) before it lets go of the code pages it ran (see `trim`).
const SETTLE: Duration = Duration::from_secs(2);

pub struct Supervisor {
    pub(super) dir: ContainerDir,
    pub(super) config: ContainerConfig,
    pub(super) spec: ContainerSpec,
    pub(super) state: State,
    pub(super) log: LogWriter,
    pub(super) listener: UnixListener,
    pub(super) clients: BTreeMap<u64, Client>,
    next_client: u64,
    pub(super) container: Option<Proc>,
    pub(super) execs: BTreeMap<i32, super::execs::ExecSession>,
    pub(super) stop_deadline: Option<Instant>,
    pub(super) restart_at: Option<Instant>,
    backoff: Option<Duration>,
    pub(super) started: Instant,
    pub(super) health_next: Option<Instant>,
    signals: SignalFd,
    buf: Vec<u8>,
    /// The last run's mount namespace (see `Launched::mount_ns`), let go
    /// once the engine has been told everything.
    held_mount_ns: Option<OwnedFd>,
    /// When to let go of the start-up code's pages (see `trim`).
    release_code_at: Option<Instant>,
    /// The daemon stopped the container: no restart, though the policy
    /// stands (see [`Supervisor::stand_down_for_daemon`]).
    daemon_stopped: bool,
}

/// The container's running (or draining) process.
pub struct Proc {
    pub pid: Pid,
    pub out: Option<OwnedFd>,
    pub err: Option<OwnedFd>,
    pub console: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    split_out: LineSplitter,
    split_err: LineSplitter,
    /// Exit code and the end of the drain period, once it exited.
    exit: Option<(i32, Instant)>,
}

impl Proc {
    /// The exit code once the process exited (its output may still drain).
    pub fn exited(&self) -> Option<i32> {
        self.exit.map(|(code, _)| code)
    }
}

pub struct Client {
    pub stream: UnixStream,
    pub frames: FrameBuf,
    pub role: Role,
}

pub enum Role {
    /// Has not sent its request yet.
    New,
    Watch,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        keys: Vec<u8>,
        matched: usize,
    },
    /// Streams the exec'd process with this PID.
    Exec {
        pid: i32,
    },
}

#[derive(Clone, Copy)]
enum Source {
    Signals,
    Listener,
    Client(u64),
    Out,
    Err,
    Console,
    ExecOut(i32, super::execs::Pipe),
}

/// The container's log, and its socket bound in its directory (which
/// becomes our working directory, so a long data root cannot overflow
/// sun_path).
fn open_log_and_socket(
    dir: &ContainerDir,
    config: &ContainerConfig,
) -> Result<(LogWriter, UnixListener), Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Failure::runtime(format!("{what}: {e}"));
    let log = LogWriter::open(&dir.log(&config.id), config.options.log_config)
        .map_err(|e| fail("opening the log", &e))?;
    std::env::set_current_dir(&dir.path).map_err(|e| fail("entering the container dir", &e))?;
    let _ = std::fs::remove_file("sock");
    let listener = UnixListener::bind("sock").map_err(|e| fail("binding the socket", &e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| fail("socket", &e))?;
    Ok((log, listener))
}

impl Supervisor {
    /// Loads the container in `dir`, begins its start (see
    /// [`launch::begin`]: its init sets up and its network is plugged in
    /// while the rest of this runs) and binds its socket. Its command runs
    /// once [`Supervisor::launch_first`] releases it, so clients that must
    /// see its first byte attach before that. Records nothing: a start
    /// saves the state at once (and a failure with
    /// [`Supervisor::record_failed_prepare`]), a prime only once released.
    pub fn prepare(dir: ContainerDir) -> Result<(Supervisor, Launching), Failure> {
        let fail = |what: &str, e: &dyn std::fmt::Display| Failure::runtime(format!("{what}: {e}"));
        let config = dir
            .read_config()
            .map_err(|e| fail("reading config.json", &e))?;
        let spec = dir.read_spec().map_err(|e| fail("reading spec.json", &e))?;
        // Before any child of ours can exit unseen.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()
            .map_err(|e| fail("blocking SIGCHLD", &e))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| fail("signalfd", &e))?;
        let opts = &config.options;
        let launching = launch::begin(&spec, opts.tty, opts.open_stdin)?;
        let (log, listener) = match open_log_and_socket(&dir, &config) {
            Ok(r) => r,
            Err(f) => return Err(launching.abandon(f)),
        };
        let mut state = dir.read_state().unwrap_or_default();
        state.supervisor_pid = std::process::id() as i32;
        state.manually_stopped = false;
        Ok((
            Supervisor {
                dir,
                config,
                spec,
                state,
                log,
                listener,
                clients: BTreeMap::new(),
                next_client: 0,
                container: None,
                execs: BTreeMap::new(),
                stop_deadline: None,
                restart_at: None,
                backoff: None,
                started: Instant::now(),
                health_next: None,
                signals,
                buf: vec![0u8; 64 * 1024],
                held_mount_ns: None,
                release_code_at: None,
                daemon_stopped: false,
            },
            launching,
        ))
    }

    /// Records a failed [`Supervisor::prepare`] in `dir`'s state.json, as
    /// any failed first start is (see [`Supervisor::launch_first`]).
    pub fn record_failed_prepare(dir: &ContainerDir, f: &Failure) {
        let mut state = dir.read_state().unwrap_or_default();
        state.manually_stopped = false;
        state.supervisor_pid = 0;
        state.set_exited(f.code, f.message.clone(), timefmt::now());
        if let Err(e) = dir.write_state(&state) {
            tracing::error!(%e, "writing state.json");
        }
    }

    /// The first start of a prepared supervisor's container (`launching`
    /// from [`Supervisor::prepare`]); on failure the state file records it
    /// (as Docker records a failed start) and the supervisor is done (its
    /// socket removed).
    pub fn launch_first(&mut self, launching: Launching) -> Result<(), Failure> {
        self.finish_launch(launching).inspect_err(|_| {
            self.state.supervisor_pid = 0;
            self.save();
            let _ = std::fs::remove_file("sock");
        })
    }

    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// Starts (or restarts) the container's process and records it.
    fn launch(&mut self) -> Result<(), Failure> {
        if let Err(f) = self.refresh_donor() {
            return Err(self.failed_start(f));
        }
        let opts = &self.config.options;
        match launch::begin(&self.spec, opts.tty, opts.open_stdin) {
            Ok(launching) => self.finish_launch(launching),
            Err(f) => Err(self.failed_start(f)),
        }
    }

    /// Before a restart of our own: the donor's init as it runs now (the
    /// engine set it for the first start; the donor may have restarted).
    fn refresh_donor(&mut self) -> Result<(), Failure> {
        let Some(donor) = self.spec.namespaces.donor.as_mut() else {
            return Ok(());
        };
        let dir = match self.dir.path.parent() {
            Some(parent) => ContainerDir::new(parent.join(&donor.id)),
            None => return Err(Failure::runtime("the container directory has no parent")),
        };
        match dir.read_state() {
            Ok(s) if s.running && s.pid > 0 => {
                donor.pid = s.pid;
                Ok(())
            }
            _ => Err(Failure::runtime(format!(
                "container {} is not running",
                donor.id
            ))),
        }
    }

    /// Releases the begun start into the container's command and records
    /// the running process.
    fn finish_launch(&mut self, launching: Launching) -> Result<(), Failure> {
        let released = launching.release().map_err(|f| self.failed_start(f))?;
        // Written while the init loads its seccomp filter and execs (about
        // half a millisecond), not after: the engine reads it once told
        // the container started, which is after the exec.
        self.record_running(released.pid());
        let launched = released.wait_exec().map_err(|f| self.failed_start(f))?;
        self.adopt(launched);
        Ok(())
    }

    /// Records a start that failed (as Docker records it) and returns why.
    fn failed_start(&mut self, f: Failure) -> Failure {
        self.state
            .set_exited(f.code, f.message.clone(), timefmt::now());
        self.save();
        f
    }

    /// Records the container's process `pid` as running.
    fn record_running(&mut self, pid: Pid) {
        if self
            .config
            .healthcheck
            .as_ref()
            .and_then(|h| h.probe())
            .is_some()
        {
            self.state.health = Some(Health::default());
        }
        self.state.set_running(pid.as_raw(), timefmt::now());
        self.save();
    }

    fn adopt(&mut self, l: Launched) {
        let Launched {
            pid,
            stdout,
            stderr,
            console,
            stdin,
            mount_ns,
        } = l;
        self.held_mount_ns = mount_ns;
        self.container = Some(Proc {
            pid,
            out: stdout,
            err: stderr,
            console,
            stdin,
            split_out: LineSplitter::default(),
            split_err: LineSplitter::default(),
            exit: None,
        });
        self.started = Instant::now();
        self.release_code_at = Some(self.started + SETTLE);
        self.health_next = self
            .config
            .healthcheck
            .as_ref()
            .filter(|h| h.probe().is_some())
            .map(|h| Instant::now() + h.next_probe_in(Duration::ZERO, true));
    }

    /// Writes state.json; a failure is logged (there is no one to tell).
    pub(super) fn save(&self) {
        if let Err(e) = self.dir.write_state(&self.state) {
            tracing::error!(%e, "writing state.json");
        }
    }

    pub(super) fn add_client(&mut self, stream: UnixStream, role: Role) -> u64 {
        let id = self.next_client;
        self.next_client += 1;
        self.clients.insert(
            id,
            Client {
                stream,
                frames: FrameBuf::default(),
                role,
            },
        );
        id
    }

    /// Sends an event to every watcher.
    pub(super) fn broadcast(&mut self, event: &Event) {
        let mut gone = Vec::new();
        for (id, c) in &mut self.clients {
            if matches!(c.role, Role::Watch)
                && protocol::write_json(&mut c.stream, Kind::Event, event).is_err()
            {
                gone.push(*id);
            }
        }
        for id in gone {
            self.clients.remove(&id);
        }
    }

    fn finished(&self) -> bool {
        self.container.is_none() && self.restart_at.is_none() && self.execs.is_empty()
    }

    /// Serves until the container is done for good; returns the exit code
    /// of the supervisor.
    pub fn run(mut self) -> i32 {
        while !self.finished() {
            let (sources, mut fds) = self.poll_set();
            // Right before the wait, so that little code runs between the
            // release and the (long, when idle) poll.
            if self.release_code_at.is_some_and(|d| d <= Instant::now()) {
                self.release_code_at = None;
                super::trim::release_code_pages();
            }
            let timeout = self.next_deadline().map_or(-1, |d| {
                d.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32
                    + 1
            });
            // SAFETY: poll reads and writes `fds`, a live Vec of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 && Errno::last() != Errno::EINTR {
                tracing::error!(e = %Errno::last(), "poll");
                return 1;
            }
            if n > 0 {
                // Work faults code back in; let go of it again once idle.
                self.release_code_at = Some(Instant::now() + SETTLE);
            }
            for (source, pfd) in sources.iter().zip(&fds) {
                if pfd.revents != 0 {
                    self.dispatch(*source);
                }
            }
            self.timers();
        }
        self.state.supervisor_pid = 0;
        self.save();
        self.broadcast(&Event::Gone);
        let _ = std::fs::remove_file("sock");
        // Hang up first (the engine's removal of an `--rm` container waits
        // for it), then tear the container's mounts down.
        self.clients.clear();
        drop(self.held_mount_ns.take());
        0
    }

    fn poll_set(&self) -> (Vec<Source>, Vec<libc::pollfd>) {
        let mut sources = vec![Source::Signals, Source::Listener];
        let mut raw: Vec<RawFd> = vec![self.signals.as_raw_fd(), self.listener.as_raw_fd()];
        for (id, c) in &self.clients {
            sources.push(Source::Client(*id));
            raw.push(c.stream.as_raw_fd());
        }
        if let Some(p) = &self.container {
            for (fd, s) in [
                (&p.out, Source::Out),
                (&p.err, Source::Err),
                (&p.console, Source::Console),
            ] {
                if let Some(fd) = fd {
                    sources.push(s);
                    raw.push(fd.as_raw_fd());
                }
            }
        }
        for (pid, e) in &self.execs {
            for (pipe, fd) in e.outputs() {
                sources.push(Source::ExecOut(*pid, pipe));
                raw.push(fd);
            }
        }
        let fds = raw
            .into_iter()
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        (sources, fds)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let drain = self.container.as_ref().and_then(|p| p.exit.map(|(_, d)| d));
        [
            self.stop_deadline,
            self.restart_at,
            self.health_next,
            self.release_code_at,
            drain,
        ]
        .into_iter()
        .flatten()
        .chain(self.execs.values().filter_map(|e| e.deadline()))
        .min()
    }

    fn dispatch(&mut self, source: Source) {
        match source {
            Source::Signals => self.reap(),
            Source::Listener => {
                while let Ok((stream, _)) = self.listener.accept() {
                    configure_client(&stream);
                    self.add_client(stream, Role::New);
                }
            }
            Source::Client(id) => self.client_readable(id),
            Source::Out | Source::Err | Source::Console => self.container_output(source),
            Source::ExecOut(pid, pipe) => self.exec_output(pid, pipe),
        }
    }

    fn container_output(&mut self, source: Source) {
        let Some(p) = self.container.as_mut() else {
            return;
        };
        let (fd, stream) = match source {
            Source::Out => (&mut p.out, "stdout"),
            Source::Err => (&mut p.err, "stderr"),
            _ => (&mut p.console, "stdout"),
        };
        let Some(f) = fd.as_ref() else { return };
        let data = match read_some(f, &mut self.buf) {
            Read::Data(n) => self.buf[..n].to_vec(),
            Read::Again => return,
            Read::Closed => {
                *fd = None;
                let split = if stream == "stderr" {
                    &mut p.split_err
                } else {
                    &mut p.split_out
                };
                if let Some(rest) = split.finish() {
                    let _ = self.log.write(stream, &rest);
                }
                self.maybe_end_run();
                return;
            }
        };
        let split = if stream == "stderr" {
            &mut p.split_err
        } else {
            &mut p.split_out
        };
        for msg in split.feed(&data) {
            if let Err(e) = self.log.write(stream, &msg) {
                tracing::error!(%e, "writing the log");
            }
        }
        let kind = if stream == "stderr" {
            Kind::Stderr
        } else {
            Kind::Stdout
        };
        self.send_to_attachers(kind, &data);
    }

    fn send_to_attachers(&mut self, kind: Kind, data: &[u8]) {
        let mut gone = Vec::new();
        for (id, c) in &mut self.clients {
            if let Role::Attach { stdout, stderr, .. } = c.role {
                let wanted = if kind == Kind::Stderr { stderr } else { stdout };
                if wanted && protocol::write_frame(&mut c.stream, kind, data).is_err() {
                    gone.push(*id);
                }
            }
        }
        for id in gone {
            self.clients.remove(&id);
        }
    }

    /// Reaps every exited child: the container, exec'd processes, and
    /// orphans reparented to us.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(%e, "waitpid");
                    return;
                }
            };
            if self.container.as_ref().is_some_and(|p| p.pid == pid) {
                self.container_exited(code);
            } else if self.execs.contains_key(&pid.as_raw()) {
                self.exec_exited(pid.as_raw(), code);
            }
        }
    }

    /// The exit status goes to state.json before anything else happens.
    fn container_exited(&mut self, code: i32) {
        self.state.set_exited(code, String::new(), timefmt::now());
        self.save();
        // A container in a shared PID namespace has no namespace of its
        // own whose end takes what it started along: end it here.
        let shared_pid = self
            .spec
            .namespaces
            .donor
            .as_ref()
            .is_some_and(|d| d.pid_ns);
        let held = self.held_mount_ns.as_ref().filter(|_| shared_pid);
        if let Some(ns) = held.and_then(|fd| procs::MountNs::of_fd(fd.as_fd())) {
            let killed = procs::kill_members(ns);
            tracing::debug!(
                killed,
                "ended the processes left in the shared PID namespace"
            );
        }
        self.stop_deadline = None;
        self.health_next = None;
        if let Some(p) = self.container.as_mut() {
            p.exit = Some((code, Instant::now() + DRAIN));
            p.stdin = None;
        }
        self.maybe_end_run();
    }

    /// Once the process exited and its output is drained (or the drain
    /// period is over): flush the log, tell attachers and watchers, and
    /// apply the restart policy.
    fn maybe_end_run(&mut self) {
        let Some(p) = self.container.as_mut() else {
            return;
        };
        let Some((code, drain_end)) = p.exit else {
            return;
        };
        let open = p.out.is_some() || p.err.is_some() || p.console.is_some();
        if open && Instant::now() < drain_end {
            return;
        }
        let mut p = match self.container.take() {
            Some(p) => p,
            None => return,
        };
        for (split, stream) in [(&mut p.split_out, "stdout"), (&mut p.split_err, "stderr")] {
            if let Some(rest) = split.finish() {
                let _ = self.log.write(stream, &rest);
            }
        }
        self.end_attachers(code);
        self.broadcast(&Event::Die { code });
        let policy = self.config.options.restart_policy;
        if restart::should_restart(
            policy,
            code,
            self.state.restart_count,
            self.state.manually_stopped || self.daemon_stopped,
        ) {
            let delay = restart::next_delay(self.backoff, self.started.elapsed());
            self.backoff = Some(delay);
            self.restart_at = Some(Instant::now() + delay);
            self.state.status = Status::Restarting;
            self.state.restarting = true;
            self.save();
            self.broadcast(&Event::Restarting);
        }
    }

    fn end_attachers(&mut self, code: i32) {
        let ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.role, Role::Attach { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(mut c) = self.clients.remove(&id) {
                let _ = protocol::write_json(
                    &mut c.stream,
                    Kind::Exit,
                    &ExitInfo {
                        code,
                        detached: false,
                    },
                );
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if self.stop_deadline.is_some_and(|d| d <= now) {
            self.stop_deadline = None;
            if let Some(p) = &self.container {
                let _ = kill(p.pid, Signal::SIGKILL);
            }
        }
        if self.restart_at.is_some_and(|d| d <= now) {
            self.restart_at = None;
            self.state.restart_count += 1;
            match self.launch() {
                Ok(()) => {
                    let pid = self.state.pid;
                    self.broadcast(&Event::Start { pid });
                }
                Err(f) => {
                    tracing::warn!(%f, "restarting the container");
                    self.broadcast(&Event::Die { code: f.code });
                }
            }
        }
        if self.health_next.is_some_and(|d| d <= now) {
            self.probe_health();
        }

        self.maybe_end_run();
        self.finish_execs();
    }

    /// `docker stop` (or kill with `manual`): no more restarts.
    pub(super) fn stand_down(&mut self) {
        self.state.manually_stopped = true;
        self.cancel_restart();
    }

    /// The daemon stops the container (Docker without live-restore): no
    /// more restarts from this supervisor, which then exits, but the
    /// container is not recorded as stopped by a user, so the next daemon
    /// applies its policy (`unless-stopped` comes back, as with dockerd).
    pub(super) fn stand_down_for_daemon(&mut self) {
        self.daemon_stopped = true;
        self.cancel_restart();
    }

    fn cancel_restart(&mut self) {
        if self.restart_at.take().is_some() {
            self.state.status = Status::Exited;
            self.state.restarting = false;
        }
        self.save();
    }
}

/// Accepted sockets inherit O_NONBLOCK from the listener: writes must block
/// (briefly) instead of dropping frames.
pub(super) fn configure_client(stream: &UnixStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
}
