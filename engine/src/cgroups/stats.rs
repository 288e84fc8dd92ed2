//! What `docker stats` shows, read from the container's cgroup.

use super::ContainerCgroup;

/// Memory in bytes, CPU in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_usage: u64,
    /// `None`: unlimited.
    pub memory_limit: Option<u64>,
    /// Page cache (Docker subtracts it from usage).
    pub memory_cache: u64,
    pub cpu_usage_ns: u64,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
}

fn read(dir: Option<&std::path::Path>, file: &str) -> Option<String> {
    std::fs::read_to_string(dir?.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

fn number(text: Option<String>) -> Option<u64> {
    text?.parse().ok()
}

/// The value of `key` in a "key value" per line file.
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The resident memory of the processes in a cgroup (`/proc/PID/statm`),
/// for a v2 cgroup without the memory controller.
fn resident(dir: Option<&std::path::Path>) -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64);
    read(dir, "cgroup.procs")
        .unwrap_or_default()
        .lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{}/statm", pid.trim())).ok())
        .filter_map(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        * page
}

pub(super) fn read_stats(cg: &ContainerCgroup) -> Stats {
    let at = |file: &str| cg.dir_for(file);
    if cg.v2 {
        let stat = read(at("memory.stat"), "memory.stat").unwrap_or_default();
        // cpu.stat's usage is core v2: there with or without the cpu controller.
        let cpu = read(at("cpu.stat"), "cpu.stat").unwrap_or_default();
        let dir = at("cgroup.procs");
        // Without the memory or pids controller their files are absent:
        // the cgroup's own process lists still say what runs in it.
        let memory = number(read(dir, "memory.current")).unwrap_or_else(|| resident(dir));
        let pids = number(read(dir, "pids.current"))
            .unwrap_or_else(|| read(dir, "cgroup.threads").map_or(0, |t| t.lines().count() as u64));
        Stats {
            memory_usage: memory,
            memory_limit: number(read(at("memory.max"), "memory.max")),
            memory_cache: keyed(&stat, "inactive_file").unwrap_or(0),
            cpu_usage_ns: keyed(&cpu, "usage_usec").unwrap_or(0) * 1000,
            pids_current: pids,
            pids_limit: number(read(at("pids.max"), "pids.max")),
        }
    } else {
        let stat = read(at("memory.stat"), "memory.stat").unwrap_or_default();
        // An unlimited v1 limit reads as a huge page-aligned number.
        let limit = number(read(at("memory.limit_in_bytes"), "memory.limit_in_bytes"))
            .filter(|&l| l < (1 << 62));
        Stats {
            memory_usage: number(read(at("memory.usage_in_bytes"), "memory.usage_in_bytes"))
                .unwrap_or(0),
            memory_limit: limit,
            memory_cache: keyed(&stat, "total_inactive_file").unwrap_or(0),
            cpu_usage_ns: number(read(at("cpuacct.usage"), "cpuacct.usage")).unwrap_or(0),
            pids_current: number(read(at("pids.current"), "pids.current")).unwrap_or(0),
            pids_limit: number(read(at("pids.max"), "pids.max")),
        }
    }
}
