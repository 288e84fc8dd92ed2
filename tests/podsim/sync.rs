//! Line messages between the shim and the processes it forks, over pipes.
//! Both ends are close-on-exec, so a child that execs successfully closes its
//! end, and the reader sees EOF.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use anyhow::{bail, Context};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::pipe2;

/// Creates a one-way channel.
pub fn channel() -> anyhow::Result<(Receiver, Sender)> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC).context("creating a pipe")?;
    Ok((
        Receiver {
            file: File::from(read),
            buf: Vec::new(),
        },
        Sender(File::from(write)),
    ))
}

/// The writing end.
pub struct Sender(File);

impl Sender {
    /// Sends one line (in one write, so lines from several writers never mix).
    pub fn send(&mut self, msg: &str) -> anyhow::Result<()> {
        let line = format!("{}\n", msg.replace('\n', " "));
        self.0.write_all(line.as_bytes()).context("sending to the shim")
    }

    pub fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The reading end.
pub struct Receiver {
    file: File,
    buf: Vec<u8>,
}

impl Receiver {
    /// The next line, or None once every writer has closed its end.
    pub fn recv(&mut self, deadline: Instant) -> anyhow::Result<Option<String>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..pos]).into_owned()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for a message");
            }
            let millis = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e).context("waiting for a message"),
            }
            let mut chunk = [0u8; 4096];
            let n = self.file.read(&mut chunk).context("reading a message")?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
