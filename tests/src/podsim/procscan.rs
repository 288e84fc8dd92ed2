//! Reading /proc for processes by uid and by namespace: how podsim proves a
//! pod left nothing behind, and how tests can check the same from outside.

use std::io;
use std::path::Path;

/// One process as /proc/PID/status describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// The `Name:` line (the kernel's 15-character comm).
    pub name: String,
    /// The `State:` letter: R, S, D, Z, ...
    pub state: char,
    /// Real, effective, saved and filesystem uid, as seen from podsim's
    /// (the initial) user namespace.
    pub uids: [u32; 4],
}

impl ProcessInfo {
    /// Zombies and dying tasks hold no namespaces and run nothing; they only
    /// wait for their parent to reap them.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Whether any of its uids lies in `[base, base + size)`.
    pub fn has_uid_in(&self, base: u32, size: u32) -> bool {
        self.uids
            .iter()
            .any(|&uid| uid >= base && uid - base < size)
    }
}

/// Pids of all processes (thread group leaders) currently in /proc.
pub fn all_pids() -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Parses /proc/PID/status.
pub fn process_info(pid: i32) -> io::Result<ProcessInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(pid, &text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc status"))
}

fn parse_status(pid: i32, text: &str) -> Option<ProcessInfo> {
    let mut name = None;
    let mut state = None;
    let mut uids = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Name:") {
            name = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("State:") {
            state = rest.trim().chars().next();
        } else if let Some(rest) = line.strip_prefix("Uid:") {
            let parsed: Vec<u32> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            uids = <[u32; 4]>::try_from(parsed).ok();
        }
    }
    Some(ProcessInfo {
        pid,
        name: name?,
        state: state?,
        uids: uids?,
    })
}

/// Live processes with any uid in `[base, base + size)`.
pub fn live_processes_in_uid_range(base: u32, size: u32) -> Vec<ProcessInfo> {
    all_pids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| process_info(pid).ok())
        .filter(|p| p.is_live() && p.has_uid_in(base, size))
        .collect()
}

/// When the process started, in clock ticks after boot (field 22 of
/// /proc/PID/stat): with the pid, it names one process even if pids recycle.
pub fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat"))
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses; it ends at the
    // last ')'. Field 3 (state) follows, so field 22 is the 20th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Inode of a namespace link such as `/proc/PID/ns/net`.
pub fn ns_inode_of(link: &Path) -> io::Result<u64> {
    let target = std::fs::read_link(link)?;
    parse_ns_link(&target.to_string_lossy())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a namespace link"))
}

/// Inode of namespace `kind` (`net`, `user`, ...) of process `pid`.
pub fn ns_inode(pid: i32, kind: &str) -> io::Result<u64> {
    ns_inode_of(Path::new(&format!("/proc/{pid}/ns/{kind}")))
}

/// `net:[4026531840]` -> 4026531840.
pub fn parse_ns_link(link: &str) -> Option<u64> {
    let (_, rest) = link.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_ns_links() {
        let status = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1310720\t1310720\t1310720\t1310720\n";
        let info = parse_status(7, status).expect("valid status");
        assert_eq!(info.name, "sleep");
        assert_eq!(info.state, 'S');
        assert!(info.is_live());
        assert!(info.has_uid_in(1310720, 65536));
        assert!(!info.has_uid_in(1376256, 65536));
        assert!(!info.has_uid_in(0, 1310720));
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("/dev/null"), None);
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200";
        assert_eq!(parse_start_time(stat), Some(98765));
    }
}
