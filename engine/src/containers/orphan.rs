//! A container process whose supervisor died (killed, OOM) keeps running:
//! the init clears its parent-death signal once started, so that a
//! supervisor's end never takes the container with it. When the engine
//! finds such a supervisor gone it records the container as exited, and a
//! restart policy may start it again; the old process must end first, or
//! two would run (on the same rootfs directories). It is found by the PID
//! its state recorded, and recognised by its start time, so a PID reused
//! by another process is left alone.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::timefmt;

/// How far before the recorded start the process may have been created
/// (the init is cloned before its setup, networking and exec; StartedAt is
/// written once it runs), and after it (the boot time's 1 s resolution).
const BEFORE: f64 = 30.0;
const AFTER: f64 = 2.0;

/// What became of the recorded process.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// It was still there and got SIGKILL.
    Killed,
    /// No such process, or one that started at another time.
    NotThere,
}

/// Ends the container process `pid` recorded as started at `started_at`
/// (RFC 3339), if it is still that process.
pub fn end(pid: i32, started_at: &str) -> std::io::Result<Ended> {
    end_in(Path::new("/proc"), pid, started_at, |p| {
        kill(Pid::from_raw(p), Signal::SIGKILL).map_err(std::io::Error::from)
    })
}

fn end_in(
    proc: &Path,
    pid: i32,
    started_at: &str,
    signal: impl FnOnce(i32) -> std::io::Result<()>,
) -> std::io::Result<Ended> {
    if pid <= 0 {
        return Ok(Ended::NotThere);
    }
    let Some(recorded) = timefmt::parse(started_at) else {
        return Ok(Ended::NotThere);
    };
    let recorded = recorded.timestamp() as f64 + f64::from(recorded.timestamp_subsec_nanos()) / 1e9;
    let Some(started) = process_start(proc, pid) else {
        return Ok(Ended::NotThere);
    };
    if started < recorded - BEFORE || started > recorded + AFTER {
        return Ok(Ended::NotThere);
    }
    match signal(pid) {
        Ok(()) => Ok(Ended::Killed),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(Ended::NotThere),
        Err(e) => Err(e),
    }
}

/// A process's start as Unix seconds: the boot time plus its start in
/// clock ticks since boot (`/proc/PID/stat` field 22).
fn process_start(proc: &Path, pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string(proc.join("stat"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&h| h > 0)? as f64;
    Some(boot + ticks / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(pid: i32, start_ticks: u64, boot: u64) -> std::io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join(pid.to_string()))?;
        let mut fields = vec!["0".to_string(); 40];
        fields[19] = start_ticks.to_string();
        std::fs::write(
            dir.path().join(pid.to_string()).join("stat"),
            format!("{pid} (sleep (x) y) {}", fields.join(" ")),
        )?;
        std::fs::write(dir.path().join("stat"), format!("cpu 1 2\nbtime {boot}\n"))?;
        Ok(dir)
    }

    #[test]
    fn only_the_recorded_process_is_ended() -> std::io::Result<()> {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        // Booted at 1700000000, started 100.5 s later.
        let proc = fake_proc(42, 100 * hz + hz / 2, 1_700_000_000)?;
        let at = "2023-11-14T22:15:00.9Z"; // 1700000100.9
        let mut sent = None;
        let ended = end_in(proc.path(), 42, at, |p| {
            sent = Some(p);
            Ok(())
        })?;
        assert_eq!((ended, sent), (Ended::Killed, Some(42)));
        // The PID now belongs to a process started an hour later.
        let later = "2023-11-14T21:15:00Z";
        let ended = end_in(proc.path(), 42, later, |_| panic!("signalled"))?;
        assert_eq!(ended, Ended::NotThere);
        // No such process.
        let ended = end_in(proc.path(), 43, at, |_| panic!("signalled"))?;
        assert_eq!(ended, Ended::NotThere);
        // Gone between the check and the signal.
        let ended = end_in(proc.path(), 42, at, |_| {
            Err(std::io::Error::from_raw_os_error(libc::ESRCH))
        })?;
        assert_eq!(ended, Ended::NotThere);
        Ok(())
    }
}
