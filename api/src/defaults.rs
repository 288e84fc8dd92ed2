//! Default locations. They need no configuration: in a pod (or as root) the
//! daemon uses the paths an emptyDir and a shared socket volume are usually
//! mounted at; as an ordinary user it uses the XDG directories, as rootless
//! Docker does.

use std::path::PathBuf;

/// The data root used when `--data-root` is not given.
pub fn data_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/hutch");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hutch");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/hutch"),
        None => PathBuf::from("/var/lib/hutch"),
    }
}

/// The socket the daemon listens on when no `-H` is given, and that the CLI
/// talks to.
pub fn socket_path() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/hutch/hutch.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("hutch/hutch.sock"),
        None => PathBuf::from(format!("/tmp/hutch-{}/hutch.sock", nix::unistd::geteuid())),
    }
}

/// The directory of the default socket, which hutch creates and owns.
pub fn socket_dir() -> PathBuf {
    socket_path()
        .parent()
        .map_or_else(|| PathBuf::from("/run/hutch"), PathBuf::from)
}
