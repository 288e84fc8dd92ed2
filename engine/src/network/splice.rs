//! Moving bytes between two TCP sockets without copying them through user
//! space: splice(2) through a pipe, one thread per direction. A half-close
//! on one side is passed on as a write shutdown on the other.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{splice, SpliceFFlags};
use nix::unistd::pipe2;

/// Bytes moved per splice call, and the pipe's capacity (asked for; a
/// smaller pipe-max-size keeps the default 64 KiB): fewer, larger moves.
const CHUNK: usize = 1 << 20;

/// Relays `a` ⇄ `b` until both directions are done; returns at once, the
/// work continues on two threads.
pub fn relay(a: TcpStream, b: TcpStream) {
    let spawn = |from: TcpStream, to: TcpStream| {
        std::thread::Builder::new()
            .name("hutch-splice".into())
            .spawn(move || {
                if let Err(e) = pump(&from, &to) {
                    tracing::debug!(%e, "relay direction ended");
                    let _ = from.shutdown(Shutdown::Read);
                }
                let _ = to.shutdown(Shutdown::Write);
            })
    };
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    if spawn(a, b).is_err() || spawn(b2, a2).is_err() {
        tracing::warn!("could not start a relay thread");
    }
}

/// Moves everything from `from` to `to` until EOF.
fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let (rd, wr): (OwnedFd, OwnedFd) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let _ = nix::fcntl::fcntl(
        &wr,
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(CHUNK as libc::c_int),
    );
    // No SPLICE_F_MORE: on a socket it corks like MSG_MORE, and a small
    // request or reply would wait for the 200 ms cork timer at every hop.
    let flags = SpliceFFlags::SPLICE_F_MOVE;
    loop {
        let n = splice(from.as_fd(), None, wr.as_fd(), None, CHUNK, flags)?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let m = splice(rd.as_fd(), None, to.as_fd(), None, left, flags)?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn bytes_and_half_closes_cross_the_relay() -> io::Result<()> {
        let front = TcpListener::bind("127.0.0.1:0")?;
        let back = TcpListener::bind("127.0.0.1:0")?;
        let mut client = TcpStream::connect(front.local_addr()?)?;
        let (accepted, _) = front.accept()?;
        let upstream = TcpStream::connect(back.local_addr()?)?;
        let (mut server, _) = back.accept()?;
        relay(accepted, upstream);
        let data = vec![7u8; 3 << 20];
        client.write_all(&data)?;
        client.shutdown(Shutdown::Write)?;
        let mut got = Vec::new();
        server.read_to_end(&mut got)?;
        assert_eq!(got.len(), data.len());
        server.write_all(b"done")?;
        drop(server);
        let mut reply = String::new();
        client.read_to_string(&mut reply)?;
        assert_eq!(reply, "done");
        Ok(())
    }
}
