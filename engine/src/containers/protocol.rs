//! The supervisor's wire protocol, spoken over its unix socket
//! (`<container dir>/sock`) by the engine and attach clients.
//!
//! Every message is a frame: one kind byte, a little-endian u32 length,
//! the payload. Requests, replies and events carry JSON; stream frames
//! carry raw bytes. A connection opens with one `Request`; what follows
//! depends on it (a `Reply`; a stream of events; or stream frames both
//! ways, ended by an `Exit` frame).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::runtime::ProcessSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Request = 1,
    Reply = 2,
    Event = 3,
    Stdin = 4,
    Stdout = 5,
    Stderr = 6,
    /// Client → supervisor: no more stdin.
    StdinClose = 7,
    /// Supervisor → client: the process ended; JSON [`ExitInfo`].
    Exit = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Reply,
            3 => Kind::Event,
            4 => Kind::Stdin,
            5 => Kind::Stdout,
            6 => Kind::Stderr,
            7 => Kind::StdinClose,
            8 => Kind::Exit,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Spare supervisor only, on its spawn socket: supervise the container
    /// in this directory and start it. Replies `Started` or `Failed`, then
    /// the connection carries events as `Watch` does. With `attachers`,
    /// it first binds the container's socket, replies `Ok`, and takes that
    /// many `Attach` clients before it starts the process.
    Run {
        dir: String,
        #[serde(default)]
        attachers: u32,
    },
    /// Spare supervisor only, on its spawn socket: begin the start of the
    /// created container in this directory (its init sets it up, its
    /// network is plugged in) and hold it there. Replies `Ok` (or
    /// `Failed`, recording nothing); a `Run` then releases it as a start
    /// would, and anything else (a closed socket) abandons it.
    Prime { dir: String },
    /// Receive an event frame for each state change until the supervisor
    /// exits.
    Watch,
    /// Send a signal to the container's init; `manual` stands the restart
    /// policy down (`docker kill`).
    Kill { signal: i32, manual: bool },
    /// `docker stop`: the signal, then SIGKILL after `timeout` seconds
    /// (negative: wait forever). With `by_daemon` the daemon stops it (its
    /// shutdown, or a restart that cannot give it its network back): no
    /// restart now, but not a manual stop either, so an `unless-stopped`
    /// container comes back with the next daemon.
    Stop {
        signal: i32,
        timeout: i64,
        #[serde(default)]
        by_daemon: bool,
    },
    /// Stream the container's stdio.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        /// Byte sequence that detaches (ctrl-p,ctrl-q by default), tty only.
        detach_keys: Vec<u8>,
    },
    /// Set the container's tty size.
    Resize { rows: u16, cols: u16 },
    /// Run a process in the container and stream its stdio.
    Exec {
        process: Box<ProcessSpec>,
        tty: bool,
        stdin: bool,
    },
    /// Set the tty size of an exec'd process.
    ResizeExec { pid: i32, rows: u16, cols: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Ok,
    Error {
        message: String,
    },
    /// The container (or exec'd process) runs with this PID.
    Started {
        pid: i32,
    },
    /// It could not be started; `code` is Docker's exit code for that.
    Failed {
        code: i32,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Start {
        pid: i32,
    },
    /// The container's process exited (state.json already says so).
    Die {
        code: i32,
    },
    /// The restart policy will start it again after a backoff.
    Restarting,
    HealthStatus {
        status: String,
    },
    ExecStart {
        pid: i32,
    },
    ExecDie {
        pid: i32,
        code: i32,
    },
    /// The supervisor is about to exit.
    Gone,
}

/// The payload of an `Exit` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: i32,
    /// Set when the stream ended by detaching, not by the process exiting.
    #[serde(default)]
    pub detached: bool,
}

const MAX_FRAME: u32 = 16 << 20;

pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind as u8);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

pub fn write_json<T: Serialize>(w: &mut impl Write, kind: Kind, value: &T) -> io::Result<()> {
    write_frame(
        w,
        kind,
        &serde_json::to_vec(value).map_err(io::Error::other)?,
    )
}

/// One frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(Kind, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let kind = Kind::from_u8(head[0])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown frame kind"))?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

pub fn parse<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> io::Result<T> {
    serde_json::from_slice(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() -> io::Result<()> {
        let mut buf = Vec::new();
        write_json(
            &mut buf,
            Kind::Request,
            &Request::Resize { rows: 24, cols: 80 },
        )?;
        write_frame(&mut buf, Kind::Stdout, b"hello\n")?;
        let mut r = &buf[..];
        let (k, p) = read_frame(&mut r)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        assert_eq!(k, Kind::Request);
        assert_eq!(
            parse::<Request>(&p)?,
            Request::Resize { rows: 24, cols: 80 }
        );
        assert_eq!(
            read_frame(&mut r)?,
            Some((Kind::Stdout, b"hello\n".to_vec()))
        );
        assert_eq!(read_frame(&mut r)?, None);
        Ok(())
    }
}
