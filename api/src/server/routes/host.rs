//! Facts about the host (the pod, as the daemon sees it) for `/version` and
//! `/info`. Each read failure degrades to an empty or zero value: a missing
//! /proc file must not fail `docker info`.

/// Go's name for this machine's architecture (Docker's `Arch` is `amd64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `uname -m` (Docker's `/info` `Architecture` is `x86_64`).
pub fn machine() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn ncpu() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64)
}

/// Total memory in bytes, from /proc/meminfo.
pub fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

pub fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64)
}

pub struct OsRelease {
    pub pretty_name: String,
    pub version_id: String,
}

/// The operating system the daemon runs on, from /etc/os-release.
pub fn os_release() -> OsRelease {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let pretty = field("PRETTY_NAME");
    OsRelease {
        pretty_name: if pretty.is_empty() {
            "Linux".to_owned()
        } else {
            pretty
        },
        version_id: field("VERSION_ID"),
    }
}
