//! Typed messages over a unix socket: between the runtime helper and the
//! container's init (sync points during setup), and between the engine and
//! the helper (control). Each message is a 4-byte little-endian length and
//! its JSON. Both ends are blocking and single-threaded.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use serde::{Deserialize, Serialize};

use super::spec::ContainerSpec;

/// Setup messages between the helper (parent) and the container init (child).
#[derive(Debug, Serialize, Deserialize)]
pub enum InitMsg {
    /// Parent → child: the uid/gid maps are written. With `idmap_layers`
    /// (private mode), the child clones its lower layers into detached
    /// mounts and sends their fds back ([`send_fds`]) to be idmapped.
    MapsWritten { idmap_layers: bool },
    /// Parent → child: the layer mounts it sent are idmapped.
    LayersIdmapped,
    /// Child → parent: the container is set up and waits for `Start`.
    Ready,
    /// Parent → child: exec the container's process now.
    Start,
    /// Child → parent: setup or exec failed; the child exits with `code`.
    Failed { code: i32, message: String },
    /// Child → parent: the master end of the container's pty follows
    /// ([`send_fds`], one fd).
    Console,
    /// Parent → premade child: become this container; the stdio fds
    /// marked present follow ([`send_fds`], in this order).
    Assign {
        spec: Box<ContainerSpec>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Exec helper → supervisor: the exec'd process was forked with this PID
    /// (in the supervisor's PID namespace).
    Spawned { pid: i32 },
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

/// The kernel's limit of fds per SCM_RIGHTS message is 253.
const FDS_PER_MESSAGE: usize = 200;

/// Passes `fds` to the peer (SCM_RIGHTS), in messages of one byte each.
pub fn send_fds(sock: &UnixStream, fds: &[OwnedFd]) -> io::Result<()> {
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        let raw: Vec<RawFd> = chunk.iter().map(AsRawFd::as_raw_fd).collect();
        let iov = [IoSlice::new(b"F")];
        sendmsg::<()>(
            sock.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )?;
    }
    Ok(())
}

/// Receives `count` fds sent with [`send_fds`], close-on-exec.
pub fn recv_fds(sock: &UnixStream, count: usize) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::with_capacity(count);
    while fds.len() < count {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        let mut space = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        if msg.bytes == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: SCM_RIGHTS just installed these fds in this
                // process; nothing else owns them.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
    }
    Ok(fds)
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

    #[test]
    fn fds_pass_after_a_message_in_chunks() -> io::Result<()> {
        let (mut a, mut b) = UnixStream::pair()?;
        let files: Vec<OwnedFd> = (0..FDS_PER_MESSAGE + 3)
            .map(|_| std::fs::File::open("/dev/null").map(OwnedFd::from))
            .collect::<io::Result<_>>()?;
        send(&mut a, &InitMsg::MapsWritten { idmap_layers: true })?;
        send_fds(&a, &files)?;
        send(&mut a, &InitMsg::Start)?;
        match recv::<InitMsg>(&mut b)? {
            Some(InitMsg::MapsWritten { idmap_layers: true }) => {
                let got = recv_fds(&b, files.len())?;
                assert_eq!(got.len(), files.len());
                let target = std::fs::read_link(format!("/proc/self/fd/{}", got[0].as_raw_fd()))?;
                assert_eq!(target, std::path::Path::new("/dev/null"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(recv::<InitMsg>(&mut b)?, Some(InitMsg::Start)));
        Ok(())
    }
}
