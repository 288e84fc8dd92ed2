//! Requests on the supervisor's socket: watch, kill, stop, attach, resize,
//! exec — and the stdin that attach and exec clients send.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};

use super::core::{configure_client, Role, Supervisor};
use super::fdio::{recv_some, write_some, Read};
use crate::containers::protocol::{self, ExitInfo, Kind, Reply, Request};
use crate::runtime::stdio;

impl Supervisor {
    pub(super) fn client_readable(&mut self, id: u64) {
        let mut buf = [0u8; 16 * 1024];
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        match recv_some(&c.stream, &mut buf) {
            Read::Data(n) => c.frames.push(&buf[..n]),
            Read::Again => return,
            Read::Closed => {
                self.client_closed(id);
                return;
            }
        }
        loop {
            let Some(c) = self.clients.get_mut(&id) else {
                return;
            };
            match c.frames.next() {
                Ok(Some((kind, payload))) => self.client_frame(id, kind, payload),
                Ok(None) => return,
                Err(_) => {
                    self.clients.remove(&id);
                    return;
                }
            }
        }
    }

    fn client_closed(&mut self, id: u64) {
        if let Some(c) = self.clients.remove(&id) {
            if let Role::Exec { pid } = c.role {
                if let Some(e) = self.execs.get_mut(&pid) {
                    e.client = None;
                    e.stdin = None;
                }
            }
        }
    }

    fn reply(&mut self, id: u64, reply: &Reply) {
        if let Some(c) = self.clients.get_mut(&id) {
            if protocol::write_json(&mut c.stream, Kind::Reply, reply).is_err() {
                self.clients.remove(&id);
            }
        }
    }

    fn client_frame(&mut self, id: u64, kind: Kind, payload: Vec<u8>) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        match (&c.role, kind) {
            (Role::New, Kind::Request) => match protocol::parse::<Request>(&payload) {
                Ok(req) => self.request(id, req),
                Err(e) => {
                    self.reply(
                        id,
                        &Reply::Error {
                            message: e.to_string(),
                        },
                    );
                    self.clients.remove(&id);
                }
            },
            (Role::Attach { .. }, Kind::Stdin) => self.attach_stdin(id, &payload),
            (Role::Attach { .. }, Kind::StdinClose) if self.config.options.stdin_once => {
                if let Some(p) = self.container.as_mut() {
                    p.stdin = None;
                }
            }
            (Role::Exec { pid }, Kind::Stdin) => {
                let pid = *pid;
                if let Some(fd) = self.execs.get(&pid).and_then(|e| e.stdin_fd()) {
                    let _ = write_some(&fd, &payload);
                }
            }
            (Role::Exec { pid }, Kind::StdinClose) => {
                let pid = *pid;
                if let Some(e) = self.execs.get_mut(&pid) {
                    e.stdin = None;
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, id: u64, req: Request) {
        let running = self
            .container
            .as_ref()
            .filter(|p| p.exited().is_none())
            .map(|p| p.pid);
        match req {
            Request::Run { .. } | Request::Prime { .. } => self.reply(
                id,
                &Reply::Error {
                    message: "this supervisor already runs a container".into(),
                },
            ),
            Request::Watch => {
                self.set_role(id, Role::Watch);
                self.reply(id, &Reply::Ok);
            }
            Request::Kill { signal, manual } => {
                if manual {
                    self.stand_down();
                }
                let reply = match (running, Signal::try_from(signal)) {
                    (None, _) => Reply::Error {
                        message: format!("container {} is not running", self.config.id),
                    },
                    (_, Err(_)) => Reply::Error {
                        message: format!("invalid signal {signal}"),
                    },
                    (Some(pid), Ok(sig)) => match kill(pid, sig) {
                        Ok(()) => Reply::Ok,
                        Err(e) => Reply::Error {
                            message: format!("signalling the container: {e}"),
                        },
                    },
                };
                self.reply(id, &reply);
            }
            Request::Stop {
                signal,
                timeout,
                by_daemon,
            } => {
                if by_daemon {
                    self.stand_down_for_daemon();
                } else {
                    self.stand_down();
                }
                if let Some(pid) = running {
                    let sig = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
                    let _ = kill(pid, sig);
                    self.stop_deadline = if timeout >= 0 {
                        Some(
                            std::time::Instant::now()
                                + std::time::Duration::from_secs(timeout as u64),
                        )
                    } else {
                        None
                    };
                }
                self.reply(id, &Reply::Ok);
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
                detach_keys,
            } => {
                if running.is_none() {
                    self.reply(
                        id,
                        &Reply::Error {
                            message: "cannot attach to a stopped container, start it first".into(),
                        },
                    );
                    return;
                }
                let role = self.attach_role(stdin, stdout, stderr, detach_keys);
                self.set_role(id, role);
                self.reply(id, &Reply::Ok);
            }
            Request::Resize { rows, cols } => {
                let reply = match self.container.as_ref().and_then(|p| p.console.as_ref()) {
                    Some(console) => match stdio::resize(console, rows, cols) {
                        Ok(()) => Reply::Ok,
                        Err(e) => Reply::Error {
                            message: e.to_string(),
                        },
                    },
                    // Without a terminal there is nothing to size: Docker
                    // (containerd's shim) answers such a resize with success.
                    None => Reply::Ok,
                };
                self.reply(id, &reply);
            }
            Request::Exec {
                process,
                tty,
                stdin,
            } => match running {
                Some(pid) => self.start_exec(id, pid, *process, tty, stdin),
                None => self.reply(
                    id,
                    &Reply::Error {
                        message: format!("container {} is not running", self.config.id),
                    },
                ),
            },
            Request::ResizeExec { pid, rows, cols } => {
                let reply = match self.execs.get(&pid).and_then(|e| e.console.as_ref()) {
                    Some(console) => match stdio::resize(console, rows, cols) {
                        Ok(()) => Reply::Ok,
                        Err(e) => Reply::Error {
                            message: e.to_string(),
                        },
                    },
                    None => Reply::Error {
                        message: format!("no exec with a tty has PID {pid}"),
                    },
                };
                self.reply(id, &reply);
            }
        }
    }

    fn attach_role(&self, stdin: bool, stdout: bool, stderr: bool, detach_keys: Vec<u8>) -> Role {
        Role::Attach {
            stdin,
            stdout,
            stderr,
            // Detach keys are read only from a terminal, as Docker does.
            keys: if self.config.options.tty {
                detach_keys
            } else {
                Vec::new()
            },
            matched: 0,
        }
    }

    /// Before the first launch: takes `count` attach clients (`docker run`
    /// attaches before it starts, and must see the first byte of output).
    /// Gives up on those that do not come within `limit`.
    pub(super) fn accept_attachers(&mut self, count: u32, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut taken = 0;
        while taken < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(taken, count, "attach clients did not come before the start");
                return;
            }
            let mut pfd = libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: poll reads and writes one live pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            let Ok((mut stream, _)) = self.listener.accept() else {
                continue;
            };
            configure_client(&stream);
            let _ = stream.set_read_timeout(Some(left));
            let request = match protocol::read_frame(&mut stream) {
                Ok(Some((Kind::Request, payload))) => protocol::parse::<Request>(&payload).ok(),
                _ => None,
            };
            let _ = stream.set_read_timeout(None);
            let Some(Request::Attach {
                stdin,
                stdout,
                stderr,
                detach_keys,
            }) = request
            else {
                let _ = protocol::write_json(
                    &mut stream,
                    Kind::Reply,
                    &Reply::Error {
                        message: "only attach requests are taken before the start".into(),
                    },
                );
                continue;
            };
            let role = self.attach_role(stdin, stdout, stderr, detach_keys);
            let id = self.add_client(stream, role);
            self.reply(id, &Reply::Ok);
            taken += 1;
        }
    }

    pub(super) fn set_role(&mut self, id: u64, role: Role) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.role = role;
        }
    }

    /// Stdin from an attach client, watching for the detach keys (tty only).
    fn attach_stdin(&mut self, id: u64, data: &[u8]) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Role::Attach {
            stdin,
            keys,
            matched,
            ..
        } = &mut c.role
        else {
            return;
        };
        if !*stdin {
            return;
        }
        let mut forward = Vec::with_capacity(data.len());
        let mut detach = false;
        for &b in data {
            if !keys.is_empty() && b == keys[*matched] {
                *matched += 1;
                if *matched == keys.len() {
                    detach = true;
                    break;
                }
                continue;
            }
            forward.extend_from_slice(&keys[..*matched]);
            *matched = 0;
            if !keys.is_empty() && b == keys[0] {
                *matched = 1;
                continue;
            }
            forward.push(b);
        }
        if let Some(p) = &self.container {
            if let Some(fd) = p.console.as_ref().or(p.stdin.as_ref()) {
                let _ = write_some(fd, &forward);
            }
        }
        if detach {
            if let Some(mut c) = self.clients.remove(&id) {
                let _ = protocol::write_json(
                    &mut c.stream,
                    Kind::Exit,
                    &ExitInfo {
                        code: 0,
                        detached: true,
                    },
                );
            }
        }
    }
}
