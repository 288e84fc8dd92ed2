//! `--sysctl`: kernel parameters that belong to one of the container's own
//! namespaces, which its root may set in a user namespace. Which names are
//! accepted follows runc (Docker's runtime), so a name Docker refuses is
//! refused here too, with runc's words.
//!
//! They are written from the init after the start message, not during the
//! setup: the engine plugs the network interfaces in while the setup runs,
//! and `net.ipv4.conf.eth0.*` needs eth0. By then `/proc/sys` is read-only
//! (Docker's read-only paths), so the setup keeps a directory fd of the
//! writable `/proc/sys` under that bind for the write, and drops it before
//! the command runs.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;

use super::error::{Context, SetupError};
use super::spec::Sysctl;

/// IPC namespace parameters outside `fs.mqueue.*` (runc's list).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Checks that `name` belongs to a namespace the container has of its own
/// (it always has its own UTS namespace; its IPC namespace unless
/// `host_ipc`, its network namespace unless `host_network`; one shared
/// with another container counts as its own, as in runc). `Err` is the
/// message for the user.
pub fn check(name: &str, host_network: bool, host_ipc: bool) -> Result<(), String> {
    if path_of(name).is_none() {
        return Err(format!("sysctl {name:?} is not a valid sysctl name"));
    }
    // runc also takes the slash-separated form.
    let dotted = name.replace('/', ".");
    let name = dotted.as_str();
    if IPC_SYSCTLS.contains(&name) || name.starts_with("fs.mqueue.") {
        if host_ipc {
            return Err(format!(
                "sysctl {name:?} is not allowed in the hosts ipc namespace"
            ));
        }
        return Ok(());
    }
    if name.starts_with("net.") {
        if host_network {
            return Err(format!(
                "sysctl {name:?} not allowed in host network namespace"
            ));
        }
        return Ok(());
    }
    match name {
        "kernel.domainname" => Ok(()),
        "kernel.hostname" => Err(format!(
            "sysctl {name:?} is not allowed as it conflicts with the OCI \"hostname\" field"
        )),
        _ => Err(format!(
            "sysctl {name:?} is not in a separate kernel namespace"
        )),
    }
}

/// The file under `/proc/sys` for a dotted (`net.ipv4.ip_forward`) or
/// slashed (`net/ipv4/conf/eth0.100/forwarding`) name; `None` for one
/// that could name anything else (empty, `.` or `..` parts).
fn path_of(name: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = if name.contains('/') {
        name.split('/').collect()
    } else {
        name.split('.').collect()
    };
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return None;
    }
    Some(parts.iter().collect())
}

/// The container's `/proc/sys`, opened while it is still writable.
pub fn open_dir() -> Result<OwnedFd, SetupError> {
    open(
        Path::new("/proc/sys"),
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening /proc/sys".to_string())
}

/// Writes each setting through `dir` (from [`open_dir`]). A required one
/// that fails ends the start; a default the kernel refuses is skipped.
pub fn apply(dir: &OwnedFd, sysctls: &[Sysctl]) -> Result<(), SetupError> {
    for s in sysctls {
        match write_one(dir, s) {
            Err(e) if s.required => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn write_one(dir: &OwnedFd, s: &Sysctl) -> Result<(), SetupError> {
    let what = || format!("setting sysctl {}={}", s.name, s.value);
    let path = path_of(&s.name).ok_or_else(|| SetupError::Invalid(what()))?;
    let fd = openat(
        dir.as_fd(),
        &path,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(what)?;
    // One write: the kernel parses what a single write gives it.
    File::from(fd).write_all(s.value.as_bytes()).ctx(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_containers_own_namespaces_are_accepted() {
        for name in [
            "net.core.somaxconn",
            "net.ipv4.conf.all.src_valid_mark",
            "net/ipv4/conf/eth0.100/forwarding",
            "kernel.shmmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "kernel.domainname",
        ] {
            assert_eq!(check(name, false, false), Ok(()), "{name}");
        }
    }

    #[test]
    fn other_names_are_refused_with_runcs_words() {
        let err = |name: &str, host: bool| check(name, host, false).err().unwrap_or_default();
        assert!(err("kernel.pid_max", false).contains("is not in a separate kernel namespace"));
        assert!(err("vm.swappiness", false).contains("is not in a separate kernel namespace"));
        assert!(err("net.core.somaxconn", true).contains("not allowed in host network namespace"));
        assert!(err("kernel.hostname", false).contains("conflicts with the OCI"));
        assert!(err("net..x", false).contains("not a valid sysctl name"));
        assert!(err("net/../../etc", false).contains("not a valid sysctl name"));
        assert!(err("", false).contains("not a valid sysctl name"));
        let ipc = check("kernel.shmmax", false, true)
            .err()
            .unwrap_or_default();
        assert!(
            ipc.contains("is not allowed in the hosts ipc namespace"),
            "{ipc}"
        );
        assert_eq!(check("net.core.somaxconn", false, true), Ok(()));
    }

    #[test]
    fn names_become_paths_under_proc_sys() {
        assert_eq!(
            path_of("net.ipv4.ip_forward"),
            Some(PathBuf::from("net/ipv4/ip_forward"))
        );
        assert_eq!(
            path_of("net/ipv4/conf/eth0.100/forwarding"),
            Some(PathBuf::from("net/ipv4/conf/eth0.100/forwarding"))
        );
        assert_eq!(path_of("/net/x"), None);
    }
}
