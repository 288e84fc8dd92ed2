//! Small fd helpers for the supervisor's poll loop: pipes, non-blocking
//! reads, and incremental frame parsing on non-blocking sockets.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::pipe2;

use crate::containers::protocol::{self, Kind};

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(pipe2(OFlag::O_CLOEXEC)?)
}

pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// What a non-blocking read gave.
pub enum Read {
    Data(usize),
    /// Nothing right now.
    Again,
    /// End of stream (EOF, or EIO from a pty whose other end closed).
    Closed,
}

pub fn read_some(fd: &impl AsFd, buf: &mut [u8]) -> Read {
    loop {
        match nix::unistd::read(fd.as_fd(), buf) {
            Ok(0) => return Read::Closed,
            Ok(n) => return Read::Data(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Read::Again,
            Err(_) => return Read::Closed,
        }
    }
}

/// Writes what the fd takes now; a full pipe drops the rest (a process that
/// does not read its stdin must not stall its supervisor).
pub fn write_some(fd: &impl AsFd, data: &[u8]) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        match nix::unistd::write(fd.as_fd(), rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => {
                tracing::warn!(
                    dropped = rest.len(),
                    fd = fd.as_fd().as_raw_fd(),
                    "stdin full"
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Frames arriving in pieces on a non-blocking socket.
#[derive(Debug, Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one has arrived.
    pub fn next(&mut self) -> io::Result<Option<(Kind, Vec<u8>)>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = self.buf.drain(..5 + len).collect();
        let mut r = &frame[..];
        protocol::read_frame(&mut r)
    }
}

/// A non-blocking read from a (blocking) socket: writes to it stay
/// blocking, bounded by its send timeout.
pub fn recv_some(sock: &impl AsFd, buf: &mut [u8]) -> Read {
    use nix::sys::socket::{recv, MsgFlags};
    loop {
        match recv(sock.as_fd().as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return Read::Closed,
            Ok(n) => return Read::Data(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Read::Again,
            Err(_) => return Read::Closed,
        }
    }
}
