//! Typed messages over a unix socket: between the runtime helper and the
//! container's init (sync points during setup), and between the engine and
//! the helper (control). Each message is a 4-byte little-endian length and
//! its JSON. Both ends are blocking and single-threaded.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use super::spec::ContainerSpec;

/// Setup messages between the helper (parent) and the container init (child).
#[derive(Debug, Serialize, Deserialize)]
pub enum InitMsg {
    /// Parent → child: the uid/gid maps are written.
    MapsWritten,
    /// Child → parent: the container is set up and waits for `Start`.
    Ready,
    /// Parent → child: exec the container's process now.
    Start,
    /// Child → parent: setup or exec failed; the child exits with `code`.
    Failed { code: i32, message: String },
}

/// Control messages between the engine and a runtime helper.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControlMsg {
    /// Engine → helper: create this container.
    Create(Box<ContainerSpec>),
    /// Helper → engine: created; `pid` is the init in the engine's PID namespace.
    Created { pid: i32 },
    /// Engine → helper: start the created container.
    Start,
    /// Helper → engine: the container's process has been exec'd.
    Started,
    /// Helper → engine: creating or starting failed. `code` is the exit code
    /// Docker records for the failure (126, 127, or 125 for runtime errors).
    Failed { code: i32, message: String },
    /// Helper → engine: the container exited with this Docker exit code.
    Exited { code: i32 },
}

const MAX_MESSAGE: u32 = 16 << 20;

pub fn send<T: Serialize>(sock: &mut UnixStream, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    sock.write_all(&frame)
}

/// Receives one message; `Ok(None)` when the peer closed the socket (for the
/// init's socket that means its exec succeeded: the socket is close-on-exec).
pub fn recv<T: for<'de> Deserialize<'de>>(sock: &mut UnixStream) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match sock.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is too large"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_a_socketpair_and_eof_is_none() -> io::Result<()> {
        let (mut a, mut b) = UnixStream::pair()?;
        send(
            &mut a,
            &InitMsg::Failed {
                code: 127,
                message: "exec: \"x\": executable file not found in $PATH".into(),
            },
        )?;
        match recv::<InitMsg>(&mut b)? {
            Some(InitMsg::Failed { code, message }) => {
                assert_eq!(code, 127);
                assert!(message.contains("not found"));
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(a);
        assert!(recv::<InitMsg>(&mut b)?.is_none());
        Ok(())
    }
}
