//! The engine's side of the supervisor protocol: one-shot requests, and
//! streams (attach, exec) as a blocking object the daemon can drive from a
//! thread.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{self, ExitInfo, Kind, Reply, Request};

/// Connects to a supervisor and sends `req`.
pub fn open(sock: &Path, req: &Request) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(sock)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    protocol::write_json(&mut s, Kind::Request, req)?;
    Ok(s)
}

/// Reads the reply that follows a request.
pub fn reply(s: &mut UnixStream) -> io::Result<Reply> {
    match protocol::read_frame(s)? {
        Some((Kind::Reply, payload)) => protocol::parse(&payload),
        Some((kind, _)) => Err(io::Error::other(format!("expected a reply, got {kind:?}"))),
        None => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}

/// One request, one reply.
pub fn call(sock: &Path, req: &Request) -> io::Result<Reply> {
    let mut s = open(sock, req)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    reply(&mut s)
}

/// What a stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The end: the process's exit code (or a detach).
    Exit(ExitInfo),
}

/// An attach or exec stream. Reading and writing may happen on two threads
/// ([`Stream::input`] gives the writing half).
#[derive(Debug)]
pub struct Stream {
    sock: UnixStream,
}

/// The stdin half of a [`Stream`].
#[derive(Debug)]
pub struct Input {
    sock: UnixStream,
}

impl Stream {
    pub(crate) fn new(sock: UnixStream) -> Stream {
        Stream { sock }
    }

    pub fn input(&self) -> io::Result<Input> {
        Ok(Input {
            sock: self.sock.try_clone()?,
        })
    }

    /// The next piece of output; `None` when the supervisor closed the
    /// stream without an exit code (it died).
    pub fn next_output(&mut self) -> io::Result<Option<Output>> {
        loop {
            match protocol::read_frame(&mut self.sock)? {
                Some((Kind::Stdout, p)) => return Ok(Some(Output::Stdout(p))),
                Some((Kind::Stderr, p)) => return Ok(Some(Output::Stderr(p))),
                Some((Kind::Exit, p)) => return Ok(Some(Output::Exit(protocol::parse(&p)?))),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

impl Input {
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        protocol::write_frame(&mut self.sock, Kind::Stdin, data)?;
        self.sock.flush()
    }

    /// Ends the whole stream (both directions): a reader blocked in
    /// [`Stream::next_output`] returns at once. For clients that went away.
    pub fn shutdown(&self) -> io::Result<()> {
        self.sock.shutdown(std::net::Shutdown::Both)
    }

    /// No more stdin (closes the process's stdin for exec and for
    /// `stdin_once` containers).
    pub fn close(&mut self) -> io::Result<()> {
        protocol::write_frame(&mut self.sock, Kind::StdinClose, &[])
    }
}
