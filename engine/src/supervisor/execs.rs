//! Processes exec'd into the running container, for `docker exec` clients
//! and for healthcheck probes. Each one's exit code is known (reaped here)
//! before its client sees the end of its output.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::core::{Role, Supervisor};
use super::fdio::{pipe, read_some, set_nonblocking, Read};
use super::health::{self, MAX_OUTPUT, PROBE_FAILED};
use crate::containers::protocol::{self, Event, ExitInfo, Kind, Reply};
use crate::containers::state::HealthLog;
use crate::containers::timefmt;
use crate::runtime::enter;
use crate::runtime::helper::Failure;
use crate::runtime::{InitStdio, ProcessSpec};

/// How long an exec'd process's output may trail its exit.
const DRAIN: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    Out,
    Err,
    Console,
}

pub struct ExecSession {
    /// The client streaming it (none for probes, or once it left).
    pub client: Option<u64>,
    pub out: Option<OwnedFd>,
    pub err: Option<OwnedFd>,
    pub console: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    /// Exit code and the end of the drain period.
    exit: Option<(i32, Instant)>,
    probe: Option<Probe>,
}

struct Probe {
    start: String,
    deadline: Instant,
    timeout: Duration,
    timed_out: bool,
    output: Vec<u8>,
}

impl ExecSession {
    pub fn outputs(&self) -> Vec<(Pipe, RawFd)> {
        [
            (Pipe::Out, &self.out),
            (Pipe::Err, &self.err),
            (Pipe::Console, &self.console),
        ]
        .into_iter()
        .filter_map(|(p, fd)| fd.as_ref().map(|fd| (p, fd.as_raw_fd())))
        .collect()
    }

    pub fn deadline(&self) -> Option<Instant> {
        let probe = self
            .probe
            .as_ref()
            .filter(|p| !p.timed_out)
            .map(|p| p.deadline);
        [probe, self.exit.map(|(_, d)| d)]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn stdin_fd(&self) -> Option<BorrowedFd<'_>> {
        self.console
            .as_ref()
            .or(self.stdin.as_ref())
            .map(|fd| fd.as_fd())
    }

    fn done(&self) -> bool {
        match self.exit {
            Some((_, drain_end)) => {
                (self.out.is_none() && self.err.is_none() && self.console.is_none())
                    || Instant::now() >= drain_end
            }
            None => false,
        }
    }
}

/// Pipes (or a tty) for an exec'd process: ours and theirs.
fn exec_stdio(tty: bool, stdin: bool) -> std::io::Result<(ExecSession, InitStdio)> {
    let mut s = ExecSession {
        client: None,
        out: None,
        err: None,
        console: None,
        stdin: None,
        exit: None,
        probe: None,
    };
    if tty {
        return Ok((
            s,
            InitStdio {
                tty: true,
                ..InitStdio::default()
            },
        ));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    set_nonblocking(&out_r)?;
    set_nonblocking(&err_r)?;
    s.out = Some(out_r);
    s.err = Some(err_r);
    let theirs_in = if stdin {
        let (r, w) = pipe()?;
        set_nonblocking(&w)?;
        s.stdin = Some(w);
        r
    } else {
        open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?
    };
    Ok((
        s,
        InitStdio {
            stdin: Some(theirs_in),
            stdout: Some(out_w),
            stderr: Some(err_w),
            tty: false,
        },
    ))
}

fn spawn(
    init: Pid,
    process: &ProcessSpec,
    tty: bool,
    stdin: bool,
    cgroup_procs: &[std::path::PathBuf],
) -> Result<(Pid, ExecSession), Failure> {
    let (mut session, theirs) =
        exec_stdio(tty, stdin).map_err(|e| Failure::runtime(format!("exec stdio: {e}")))?;
    let spawned = enter::spawn(init, process, theirs, cgroup_procs)?;
    if let Some(console) = spawned.console {
        let _ = set_nonblocking(&console);
        session.console = Some(console);
    }
    Ok((spawned.pid, session))
}

impl Supervisor {
    pub(super) fn start_exec(
        &mut self,
        client: u64,
        init: Pid,
        process: ProcessSpec,
        tty: bool,
        stdin: bool,
    ) {
        match spawn(init, &process, tty, stdin, &self.spec.cgroup_procs) {
            Ok((pid, mut session)) => {
                session.client = Some(client);
                self.execs.insert(pid.as_raw(), session);
                self.set_role(client, Role::Exec { pid: pid.as_raw() });
                if let Some(c) = self.clients.get_mut(&client) {
                    let _ = protocol::write_json(
                        &mut c.stream,
                        Kind::Reply,
                        &Reply::Started { pid: pid.as_raw() },
                    );
                }
                self.broadcast(&Event::ExecStart { pid: pid.as_raw() });
            }
            Err(f) => {
                if let Some(mut c) = self.clients.remove(&client) {
                    let _ = protocol::write_json(
                        &mut c.stream,
                        Kind::Reply,
                        &Reply::Failed {
                            code: f.code,
                            message: f.message,
                        },
                    );
                }
            }
        }
    }

    /// Starts the healthcheck probe unless one is still running.
    pub(super) fn probe_health(&mut self) {
        let Some(hc) = self.config.healthcheck.clone() else {
            self.health_next = None;
            return;
        };
        let starting = self
            .state
            .health
            .as_ref()
            .is_none_or(|h| h.status == crate::containers::state::HealthStatus::Starting);
        self.health_next =
            Some(Instant::now() + hc.next_probe_in(self.started.elapsed(), starting));
        if self.execs.values().any(|e| e.probe.is_some()) {
            return;
        }
        let (Some(args), Some(init)) = (hc.probe(), self.container.as_ref().map(|p| p.pid)) else {
            return;
        };
        let mut process = self.spec.process.clone();
        process.args = args;
        process.init = false;
        let start = timefmt::now();
        match spawn(init, &process, false, false, &self.spec.cgroup_procs) {
            Ok((pid, mut session)) => {
                session.probe = Some(Probe {
                    start,
                    deadline: Instant::now() + hc.timeout(),
                    timeout: hc.timeout(),
                    timed_out: false,
                    output: Vec::new(),
                });
                self.execs.insert(pid.as_raw(), session);
            }
            Err(f) => self.record_probe(HealthLog {
                start,
                end: timefmt::now(),
                exit_code: PROBE_FAILED,
                output: f.message,
            }),
        }
    }

    fn record_probe(&mut self, log: HealthLog) {
        let Some(hc) = &self.config.healthcheck else {
            return;
        };
        let in_start_period = self.started.elapsed() < hc.start_period();
        let retries = hc.retries();
        let Some(health) = self.state.health.as_mut() else {
            return;
        };
        let changed = health::record(health, log, retries, in_start_period);
        let status = health.status.as_str().to_string();
        self.save();
        if changed {
            self.broadcast(&Event::HealthStatus { status });
        }
    }

    pub(super) fn exec_output(&mut self, pid: i32, pipe: Pipe) {
        let mut buf = [0u8; 16 * 1024];
        let Some(e) = self.execs.get_mut(&pid) else {
            return;
        };
        let fd = match pipe {
            Pipe::Out => &mut e.out,
            Pipe::Err => &mut e.err,
            Pipe::Console => &mut e.console,
        };
        let Some(f) = fd.as_ref() else { return };
        let n = match read_some(f, &mut buf) {
            Read::Data(n) => n,
            Read::Again => return,
            Read::Closed => {
                *fd = None;
                return;
            }
        };
        if let Some(probe) = e.probe.as_mut() {
            let room = MAX_OUTPUT.saturating_sub(probe.output.len());
            probe.output.extend_from_slice(&buf[..n.min(room)]);
            return;
        }
        let kind = if pipe == Pipe::Err {
            Kind::Stderr
        } else {
            Kind::Stdout
        };
        if let Some(id) = e.client {
            let gone = match self.clients.get_mut(&id) {
                Some(c) => protocol::write_frame(&mut c.stream, kind, &buf[..n]).is_err(),
                None => true,
            };
            if gone {
                self.clients.remove(&id);
                if let Some(e) = self.execs.get_mut(&pid) {
                    e.client = None;
                }
            }
        }
    }

    pub(super) fn exec_exited(&mut self, pid: i32, code: i32) {
        if let Some(e) = self.execs.get_mut(&pid) {
            e.exit = Some((code, Instant::now() + DRAIN));
            e.stdin = None;
        }
    }

    /// Ends sessions whose process exited and whose output is drained: the
    /// client gets the exit code last. Also kills probes past their timeout.
    pub(super) fn finish_execs(&mut self) {
        let now = Instant::now();
        for (pid, e) in &mut self.execs {
            if let Some(p) = e.probe.as_mut() {
                if !p.timed_out && e.exit.is_none() && now >= p.deadline {
                    p.timed_out = true;
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                }
            }
        }
        let done: Vec<i32> = self
            .execs
            .iter()
            .filter(|(_, e)| e.done())
            .map(|(pid, _)| *pid)
            .collect();
        for pid in done {
            let Some(e) = self.execs.remove(&pid) else {
                continue;
            };
            let code = e.exit.map_or(PROBE_FAILED, |(c, _)| c);
            if let Some(p) = e.probe {
                let (exit_code, output) = if p.timed_out {
                    (PROBE_FAILED, health::timeout_message(p.timeout))
                } else {
                    (code, String::from_utf8_lossy(&p.output).into_owned())
                };
                self.record_probe(HealthLog {
                    start: p.start,
                    end: timefmt::now(),
                    exit_code,
                    output,
                });
                continue;
            }
            if let Some(id) = e.client {
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
            self.broadcast(&Event::ExecDie { pid, code });
        }
    }
}
