//! A container process's standard streams: pipes or files the caller
//! passes in, or a pseudo-terminal opened *inside* the container (on its own
//! devpts instance, so `tty` names a path the container can see) whose
//! master end travels back to the supervisor over the sync socket.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, setsid};

use super::channel::{self, InitMsg};
use super::error::{Context, SetupError};

/// What the process's 0, 1 and 2 become. `None` keeps the caller's stream.
/// With `tty`, all three are the slave end of a new pty and the streams
/// given here are ignored.
#[derive(Debug, Default)]
pub struct InitStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub tty: bool,
}

/// Installs the streams in the current process (a container process, after
/// it entered the container's root). With a tty, opens the pty from the
/// container's /dev/ptmx, makes it the controlling terminal of a new session
/// and sends the master end over `sock` (an [`InitMsg::Console`] message and
/// the fd).
pub fn install(stdio: InitStdio, sock: &mut UnixStream) -> Result<(), SetupError> {
    if !stdio.tty {
        if let Some(fd) = &stdio.stdin {
            dup2_stdin(fd).ctx(|| "setting stdin".to_string())?;
        }
        if let Some(fd) = &stdio.stdout {
            dup2_stdout(fd).ctx(|| "setting stdout".to_string())?;
        }
        if let Some(fd) = &stdio.stderr {
            dup2_stderr(fd).ctx(|| "setting stderr".to_string())?;
        }
        return Ok(());
    }
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "opening /dev/ptmx".to_string())?;
    grantpt(&master).ctx(|| "grantpt".to_string())?;
    unlockpt(&master).ctx(|| "unlockpt".to_string())?;
    let name = ptsname_r(&master).ctx(|| "ptsname".to_string())?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening {name}"))?;
    setsid().ctx(|| "setsid".to_string())?;
    // SAFETY: TIOCSCTTY on a pty slave fd we own; the argument is an int.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "TIOCSCTTY".to_string());
    }
    dup2_stdin(slave.as_fd()).ctx(|| "setting stdin to the tty".to_string())?;
    dup2_stdout(slave.as_fd()).ctx(|| "setting stdout to the tty".to_string())?;
    dup2_stderr(slave.as_fd()).ctx(|| "setting stderr to the tty".to_string())?;
    channel::send(sock, &InitMsg::Console).ctx(|| "announcing the console".to_string())?;
    let master = OwnedFd::from(master);
    channel::send_fds(sock, std::slice::from_ref(&master)).ctx(|| "sending the console".to_string())
}

/// Sets a terminal's window size (`docker resize`).
pub fn resize(tty: &impl AsFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
    if unsafe { libc::ioctl(tty.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
