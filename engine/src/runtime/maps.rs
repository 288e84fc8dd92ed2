//! Writing a child user namespace's ID maps from the parent side.
//!
//! The parent holds CAP_SETUID/CAP_SETGID over the child's namespace, so it
//! writes multi-line maps directly (never through newuidmap, which a pod does
//! not have), and it never writes `deny` to `setgroups`: images that run as
//! a user with supplementary groups need setgroups(2).

use std::fs::OpenOptions;
use std::io::{self, Write};

use nix::unistd::Pid;

use super::idmap::IdMap;

/// Writes `/proc/PID/uid_map` and `gid_map`. The child must be dumpable (a
/// non-dumpable task's /proc files belong to a user the parent cannot act
/// for), which the child ensures before it asks for its maps.
pub fn write_maps(pid: Pid, uid_map: &IdMap, gid_map: &IdMap) -> io::Result<()> {
    write_map(pid, "uid_map", &uid_map.proc_format())?;
    write_map(pid, "gid_map", &gid_map.proc_format())
}

fn write_map(pid: Pid, file: &str, text: &str) -> io::Result<()> {
    let path = format!("/proc/{pid}/{file}");
    // The kernel wants the whole map in a single write.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("writing {path} ({}): {e}", text.trim())))
}
