//! The engine namespace: before any thread starts, `hutch daemon` (and each
//! daemonless command that runs containers) moves into a user namespace of
//! its own that maps the pod's whole ID range 1:1, plus a mount namespace.
//! There the engine holds every capability it needs (mounting overlay,
//! tmpfs, proc) without the pod granting any, and containers become child
//! user namespaces of it.
//!
//! The maps are written by the process's parent half, which stays behind in
//! the pod's namespaces (holding CAP_SETUID/CAP_SETGID there) as a small
//! supervisor that forwards signals and, later, does what only the pod's
//! namespaces allow (binding low ports, the uplink).
//!
//! Outside a pod, as real root of the initial user namespace, the 65536 IDs
//! come from `/etc/subuid`/`/etc/subgid` (user `hutch`) or `--userns-base`,
//! so host root is never mapped into a container.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use caps::{CapSet, Capability};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getuid, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid};

use crate::runtime::ProcMode;

/// IDs the engine namespace maps.
pub const ENGINE_IDS: u32 = 65536;
/// Marks the engine namespace for processes started inside it (the runtime
/// helpers): its value is the namespace's inode, so it cannot be inherited
/// into the wrong namespace by accident.
const MARKER_ENV: &str = "HUTCH_ENGINE_USERNS";
/// The user whose subordinate IDs hutch takes outside a pod.
pub const SUBID_USER: &str = "hutch";

/// Shown in `hutch doctor`, `/info` and each container create when the
/// containers cannot have their own /proc.
pub const DEGRADED_PROC_WARNING: &str = "the pod's /proc is masked and hutch cannot lift the masks \
(the pod lacks CAP_SYS_ADMIN): containers have their own PID namespace but see the pod's /proc, \
with the pod's process IDs and its processes listed. Set securityContext.procMount: Unmasked, or add \
CAP_SYS_ADMIN to the pod, for a /proc of their own";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "the engine namespace must be created before any thread starts ({0} threads are running)"
    )]
    Threaded(usize),
    #[error("hutch must run as root of its pod (uid 0), not uid {0}")]
    NotRoot(u32),
    #[error(
        "this user namespace maps fewer than 65536 IDs ({0}); hutch needs a pod with its own \
         user namespace (hostUsers: false) or real root"
    )]
    TooFewIds(u64),
    #[error(
        "no subordinate IDs for user {SUBID_USER:?} in {file} (need a range of 65536); add one \
         (usermod --add-subuids) or pass --userns-base"
    )]
    NoSubIds { file: &'static str },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Options for entering the engine namespace.
#[derive(Debug, Clone, Default)]
pub struct BootstrapOptions {
    /// Outside a pod: first host ID of the engine's 65536 (overrides
    /// /etc/subuid and /etc/subgid).
    pub userns_base: Option<u32>,
}

/// What the engine namespace offers containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineNamespace {
    /// How containers get their /proc here.
    pub proc_mode: ProcMode,
    /// Whether the pod's /proc masks were lifted on the way in.
    pub masks_lifted: bool,
    /// Warnings to pass on to users (degraded mode).
    pub warnings: Vec<String>,
}

/// Moves this process into the engine namespace (or notices it is already
/// there). In the calling process this returns in the child half, inside
/// the namespace; the parent half never returns: it waits for the child,
/// forwards signals to it and exits with its status.
pub fn enter(opts: &BootstrapOptions) -> Result<EngineNamespace, BootstrapError> {
    if in_engine_namespace() {
        make_undumpable();
        return Ok(describe(false));
    }
    let threads = thread_count();
    if threads > 1 {
        return Err(BootstrapError::Threaded(threads));
    }
    let uid = getuid().as_raw();
    if uid != 0 {
        return Err(BootstrapError::NotRoot(uid));
    }
    let (uid_base, gid_base) = outer_bases(opts)?;
    let masks_lifted = lift_proc_masks()?;

    let (mut parent_end, mut child_end) =
        UnixStream::pair().map_err(|source| BootstrapError::Io {
            what: "socketpair".into(),
            source,
        })?;
    // SAFETY: the process is single-threaded (checked above), so the child
    // may go on running arbitrary code.
    match unsafe { fork() }.map_err(|source| BootstrapError::Sys {
        what: "fork",
        source,
    })? {
        ForkResult::Child => {
            drop(parent_end);
            unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|source| {
                BootstrapError::Sys {
                    what: "creating the engine user and mount namespaces",
                    source,
                }
            })?;
            sync(&mut child_end, "asking for the engine ID maps")?;
            // Only now: the parent needed our /proc files to write the maps.
            make_undumpable();
            become_engine_root()?;
            mark_engine_namespace();
            // The socket stays open: the engine asks the parent for what
            // only the pod's namespaces allow (see `network::podside`).
            let _ = POD_PARENT.set(crate::network::PodParent::new(child_end));
            Ok(describe(masks_lifted))
        }
        ForkResult::Parent { child } => {
            make_undumpable();
            drop(child_end);
            let mut byte = [0u8; 1];
            let ready = parent_end.read_exact(&mut byte);
            let written = ready.is_ok()
                && write_engine_maps(child, uid_base, gid_base)
                    .inspect_err(|e| tracing::error!(%e, "writing the engine ID maps"))
                    .is_ok();
            if written {
                let _ = parent_end.write_all(&[1]);
            } else {
                let _ = kill(child, Signal::SIGKILL);
            }
            std::process::exit(supervise(child, parent_end))
        }
    }
}

/// True inside the engine namespace (set up by [`enter`] in this process or
/// an ancestor).
pub fn in_engine_namespace() -> bool {
    match (std::env::var(MARKER_ENV), userns_id()) {
        (Ok(marked), Some(current)) => marked == current,
        _ => false,
    }
}

/// Makes this process non-dumpable, so that its `/proc/PID` files that
/// give a process away (`root`, `cwd`, `fd`, `environ`, `mem`, `maps`) and
/// ptrace(2) need CAP_SYS_PTRACE over the user namespace it was exec'd in,
/// which no container holds. The kernel already refuses them to a process
/// in another user namespace without that capability; this also covers the
/// engine's own forks while they join a container's user namespace (exec
/// helpers, which hold the supervisor's descriptors until they exec).
/// Core dumps of engine processes are given up with it. A child whose ID
/// maps are written from outside makes itself dumpable again; an exec
/// resets the flag.
pub fn make_undumpable() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%e, "PR_SET_DUMPABLE 0");
    }
}

/// The /proc mode containers get in the current mount namespace.
pub fn proc_mode() -> ProcMode {
    if proc_masks().is_empty() {
        ProcMode::Fresh
    } else {
        ProcMode::BindEngine
    }
}

fn describe(masks_lifted: bool) -> EngineNamespace {
    let proc_mode = proc_mode();
    let warnings = match proc_mode {
        ProcMode::Fresh => Vec::new(),
        ProcMode::BindEngine => vec![DEGRADED_PROC_WARNING.to_string()],
    };
    EngineNamespace {
        proc_mode,
        masks_lifted,
        warnings,
    }
}

/// Takes on the engine namespace's root IDs. In a pod that changes nothing;
/// as host root the process would otherwise keep host UID 0, which the
/// engine namespace does not map, and could create no containers.
fn become_engine_root() -> Result<(), BootstrapError> {
    let sys = |what| move |source| BootstrapError::Sys { what, source };
    let (uid, gid) = (Uid::from_raw(0), Gid::from_raw(0));
    setresgid(gid, gid, gid).map_err(sys("setresgid(0) in the engine namespace"))?;
    setgroups(&[]).map_err(sys("setgroups in the engine namespace"))?;
    setresuid(uid, uid, uid).map_err(sys("setresuid(0) in the engine namespace"))
}

fn sync(sock: &mut UnixStream, what: &'static str) -> Result<(), BootstrapError> {
    let io = |source| BootstrapError::Io {
        what: what.to_string(),
        source,
    };
    sock.write_all(&[1]).map_err(io)?;
    let mut byte = [0u8; 1];
    sock.read_exact(&mut byte).map_err(io)
}

fn userns_id() -> Option<String> {
    fs::read_link("/proc/self/ns/user")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn mark_engine_namespace() {
    if let Some(id) = userns_id() {
        // The process is still single-threaded: nothing reads the
        // environment concurrently.
        std::env::set_var(MARKER_ENV, id);
    }
}

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// As real root of the initial user namespace (not in a pod): the host
/// UID and GID that will be the engine's root. Directories the engine must
/// write (data root, socket directory) have to belong to them, because host
/// root is not mapped into the engine's namespace. `None` in a pod, where
/// the engine's root is the pod's root.
pub fn host_root_ids(opts: &BootstrapOptions) -> Result<Option<(u32, u32)>, BootstrapError> {
    let uid_map = read("/proc/self/uid_map")?;
    if parse_map(&uid_map) == [(0, 0, u32::MAX as u64)] {
        return outer_bases(opts).map(Some);
    }
    Ok(None)
}

/// The first outer UID and GID of the engine's 65536 IDs.
fn outer_bases(opts: &BootstrapOptions) -> Result<(u32, u32), BootstrapError> {
    let uid_map = read("/proc/self/uid_map")?;
    let lines = parse_map(&uid_map);
    if lines == [(0, 0, u32::MAX as u64)] {
        // Real root of the initial user namespace: never map host root.
        if let Some(base) = opts.userns_base {
            return Ok((base, base));
        }
        let uid = subid_base(&read("/etc/subuid").unwrap_or_default(), SUBID_USER).ok_or(
            BootstrapError::NoSubIds {
                file: "/etc/subuid",
            },
        )?;
        let gid = subid_base(&read("/etc/subgid").unwrap_or_default(), SUBID_USER).ok_or(
            BootstrapError::NoSubIds {
                file: "/etc/subgid",
            },
        )?;
        return Ok((uid, gid));
    }
    // In a pod: the pod's IDs 0-65535 must all be mapped.
    let covered = lines
        .iter()
        .find(|(inside, _, _)| *inside == 0)
        .map_or(0, |(_, _, count)| *count);
    if covered < ENGINE_IDS as u64 {
        return Err(BootstrapError::TooFewIds(covered));
    }
    Ok((0, 0))
}

fn write_engine_maps(child: Pid, uid_base: u32, gid_base: u32) -> std::io::Result<()> {
    fs::write(
        format!("/proc/{child}/uid_map"),
        format!("0 {uid_base} {ENGINE_IDS}\n"),
    )?;
    fs::write(
        format!("/proc/{child}/gid_map"),
        format!("0 {gid_base} {ENGINE_IDS}\n"),
    )
}

/// The engine's link to the parent half, in the engine process.
static POD_PARENT: std::sync::OnceLock<crate::network::PodParent> = std::sync::OnceLock::new();

/// The pod-level parent, when this process entered the engine namespace
/// itself (the daemon and daemonless commands do).
pub fn pod_parent() -> Option<&'static crate::network::PodParent> {
    POD_PARENT.get()
}

/// The parent half: wait for the engine, forwarding termination signals,
/// and serve its requests for the pod's namespaces on a second thread.
fn supervise(child: Pid, requests: UnixStream) -> i32 {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ] {
        set.add(sig);
    }
    if set.thread_block().is_err() {
        return wait_exit(child);
    }
    // Spawned after blocking, so the signals stay with the main thread.
    let served = std::thread::Builder::new()
        .name("hutch-pod".into())
        .spawn(move || crate::network::podside::serve(requests));
    if let Err(e) = served {
        tracing::warn!(%e, "cannot serve the engine's pod-level requests");
    }
    loop {
        // Every child is reaped, not only the engine: the daemon's doctor
        // was spawned from this process before the fork (the engine reads
        // its report from the pipes) and would stay a zombie.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => {}
                Err(_) => return 1,
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = kill(child, sig);
            }
        }
    }
}

fn wait_exit(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(_) => return 1,
        }
    }
}

/// Mount points that hide parts of /proc (the pod's masked and read-only
/// paths). Mounts on permanently empty directories such as binfmt_misc do
/// not count: the kernel does not hold those against a new procfs.
pub fn proc_masks() -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    masks_in_mountinfo(&text)
}

fn masks_in_mountinfo(text: &str) -> Vec<String> {
    crate::mountinfo::mount_points(text)
        .filter(|mp| mp.starts_with("/proc/") && mp != "/proc/sys/fs/binfmt_misc")
        .collect()
}

/// With CAP_SYS_ADMIN over the pod's mount namespace, unmounts the /proc
/// masks in a private mount namespace of this process, so the engine and
/// its containers can mount fresh procfs instances (the masks are not
/// locked for the pod's own root). Containers get Docker's masks again.
fn lift_proc_masks() -> Result<bool, BootstrapError> {
    let masks = proc_masks();
    if masks.is_empty()
        || !caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false)
    {
        return Ok(false);
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(|source| BootstrapError::Sys {
        what: "creating a private mount namespace to lift the /proc masks",
        source,
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|source| BootstrapError::Sys {
        what: "making / a slave mount",
        source,
    })?;
    let mut masks = masks;
    // Deepest first, so stacked masks come off in order.
    masks.sort_by_key(|m| std::cmp::Reverse(m.matches('/').count()));
    for mask in &masks {
        if let Err(e) = umount2(mask.as_str(), MntFlags::MNT_DETACH) {
            tracing::warn!(%mask, %e, "could not lift a /proc mask");
        }
    }
    Ok(proc_masks().is_empty())
}

fn read(path: &str) -> Result<String, BootstrapError> {
    fs::read_to_string(path).map_err(|source| BootstrapError::Io {
        what: format!("reading {path}"),
        source,
    })
}

/// `(inside, outside, count)` lines of a uid_map/gid_map.
fn parse_map(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(str::parse::<u64>);
            Some((f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?))
        })
        .collect()
}

/// The start of `user`'s first subordinate range of at least 65536 IDs.
fn subid_base(text: &str, user: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (name, start, count) = (f.next()?, f.next()?, f.next()?);
        let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u64>().ok()?);
        (name == user && count >= ENGINE_IDS as u64).then_some(start)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_read_for_the_hutch_user() {
        let text = "alice:100000:65536\nhutch:165536:1000\nhutch:231072:65536\n";
        assert_eq!(subid_base(text, "hutch"), Some(231072));
        assert_eq!(subid_base(text, "bob"), None);
    }

    #[test]
    fn maps_are_parsed() {
        assert_eq!(
            parse_map("         0          0 4294967295\n"),
            vec![(0, 0, 4294967295)]
        );
        assert_eq!(parse_map("0 131072 65536\n"), vec![(0, 131072, 65536)]);
    }

    #[test]
    fn proc_masks_are_found_in_mountinfo() {
        let text = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw
23 22 0:5 /null /proc/kcore rw - devtmpfs udev rw
24 22 0:21 /sys /proc/sys ro - proc proc rw
25 24 0:40 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
26 1 0:22 / /sys ro - sysfs sysfs ro
27 1 0:23 / /mnt/a\\040b rw - tmpfs tmpfs rw
";
        assert_eq!(masks_in_mountinfo(text), vec!["/proc/kcore", "/proc/sys"]);
    }
}
