//! The runtime helper: a single-threaded process (a hidden mode of the hutch
//! binary) that clones a container's init, writes its ID maps, releases it on
//! start and reaps it. The daemon talks to it over a control socket; it is
//! also the seed of the per-container supervisor.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chown, Gid, Pid, Uid};

use super::channel::{self, ControlMsg, InitMsg};
use super::clone::{fork_into, Forked};
use super::donor;
use super::idmap::IdMap;
use super::idmapped::idmap_layers;
use super::init;
use super::maps::write_maps;
use super::seccomp;
use super::spec::{ContainerSpec, IpcMode, NetworkMode};
use super::stdio::InitStdio;

/// Exit code Docker records when the runtime itself fails.
pub const EXIT_RUNTIME_ERROR: i32 = 125;

/// A failure with the exit code Docker would record for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_RUNTIME_ERROR,
            message: message.into(),
        }
    }
}

/// A container whose init is set up and waits for start.
#[derive(Debug)]
pub struct Created {
    pub pid: Pid,
    pub pidfd: Option<OwnedFd>,
    /// The master end of the container's pty, when it has one.
    pub console: Option<OwnedFd>,
    sock: UnixStream,
    /// `Start` was queued during the setup (see [`Spawned::start_when_ready`]).
    start_sent: bool,
}

/// The namespaces a container gets from its spec. The PID namespace is
/// new in both /proc modes: with the pod's /proc bound in (degraded mode)
/// the container still cannot name, and so cannot signal, any process
/// outside it. Those it shares with a donor container are joined instead
/// (see [`donor::joined_flags`]); `--ipc host` stays in the engine's.
pub fn clone_flags(spec: &ContainerSpec) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID;
    if let Some(d) = &spec.namespaces.donor {
        flags -= donor::joined_flags(d, spec.namespaces.ipc);
    }
    if spec.namespaces.ipc == IpcMode::Host {
        flags -= CloneFlags::CLONE_NEWIPC;
    }
    if spec.namespaces.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    // With a cgroup of its own the init makes its cgroup namespace once it
    // has been moved there, so that cgroup is its "/" (as in Docker).
    if spec.cgroup_procs.is_empty() {
        flags |= CloneFlags::CLONE_NEWCGROUP;
    }
    flags
}

/// Creates the container: clone, maps, and the init's setup up to the point
/// where it waits for [`start`]. Must be called from a single-threaded process.
pub fn create(spec: &ContainerSpec, stdio: InitStdio) -> Result<Created, Failure> {
    spawn(spec, stdio)?.ready()
}

/// A container whose init is doing its setup (see [`spawn`]).
#[derive(Debug)]
pub struct Spawned {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    sock: UnixStream,
    start_sent: bool,
    /// Idmapped layers (private mode on the tmpfs store): the init's setup
    /// has a further exchange with us, so `Start` cannot be queued ahead.
    idmaps_layers: bool,
}

/// The first half of [`create`]: the init is cloned (or the premade one
/// assigned), has its maps (and in private mode its idmapped layers) and
/// is doing its setup. What the caller does before [`Spawned::ready`]
/// (plugging the container's network into its netns, taking its attach
/// clients) runs alongside that setup instead of after it.
pub fn spawn(spec: &ContainerSpec, stdio: InitStdio) -> Result<Spawned, Failure> {
    spec.id_map
        .validate()
        .map_err(|e| Failure::runtime(e.to_string()))?;
    // One that does not fit is ended here (dropped).
    if let Some(premade) = take_premade().filter(|p| p.fits(spec)) {
        match premade.assign(spec, &stdio) {
            Ok(spawned) => {
                drop(stdio);
                return Ok(spawned);
            }
            Err(e) => tracing::debug!(%e, "the premade init is unusable; cloning one"),
        }
    }
    if let NetworkMode::Join(path) = &spec.namespaces.network {
        // Joining must happen here: inside its new user namespace the init
        // holds no capability over a network namespace the engine owns.
        let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Failure::runtime(format!("opening {}: {e}", path.display())))?;
        setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Failure::runtime(format!("joining {}: {e}", path.display())))?;
    }
    // Compiled here (cached), so the init only loads it.
    seccomp::prepare(spec.process.seccomp, &spec.process.capabilities)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let (mut sock, child_sock) =
        UnixStream::pair().map_err(|e| Failure::runtime(format!("socketpair: {e}")))?;
    let forked = match &spec.namespaces.donor {
        None => fork_into(clone_flags(spec)),
        Some(d) => donor::fork_joined(d, spec.namespaces.ipc, clone_flags(spec)),
    }
    .map_err(|e| Failure::runtime(format!("cloning the container process: {e}")))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(sock);
            init::run(spec, child_sock, stdio)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_sock);
    drop(stdio);
    let fail = |failure: Failure| {
        end_init(pid);
        failure
    };
    // Before the maps: the init still has our credentials, which v1
    // requires of a non-root writer.
    crate::cgroups::join(&spec.cgroup_procs, pid.as_raw())
        .map_err(|e| fail(Failure::runtime(e.to_string())))?;
    // A joined user namespace has its maps (the donor's, identity too).
    if spec.namespaces.donor.is_none() {
        write_maps(pid, &spec.id_map, &spec.id_map)
            .map_err(|e| fail(Failure::runtime(e.to_string())))?;
    }
    let private = !spec.id_map.is_identity();
    let idmap_layers = private && !spec.rootfs.lowers_shifted;
    if private && !idmap_layers {
        // Shifted copies: the init mounts them as they are, as soon as it
        // hears from us, over an upper dir its root must own by then.
        chown_upper(spec).map_err(fail)?;
    }
    channel::send(&mut sock, &InitMsg::MapsWritten { idmap_layers })
        .map_err(|e| fail(Failure::runtime(format!("signalling the init: {e}"))))?;
    if idmap_layers {
        private_rootfs(spec, pid, &mut sock).map_err(fail)?;
    }
    Ok(Spawned {
        pid,
        pidfd,
        sock,
        start_sent: false,
        idmaps_layers: idmap_layers,
    })
}

/// An init made ahead of its container by an idle spare supervisor: cloned
/// into new namespaces of every kind, its identity ID maps written, waiting
/// to be told which container it is ([`InitMsg::Assign`]). Making the
/// namespaces (the network namespace above all) is the largest single
/// cost of a start; a start that fits the premade init skips it. One that
/// does not fit (a private ID map, a joined network namespace, a cgroup of
/// its own, a seccomp profile not compiled before the spare was forked)
/// ends it and clones as before. Its mount namespace is a copy of the
/// engine's from when it was made, which is all a container sees of it
/// before it pivots into its own root: the engine mounts nothing a
/// container needs after start-up.
#[derive(Debug)]
pub struct Premade {
    pid: Pid,
    pidfd: Option<OwnedFd>,
    /// None once assigned (the init is the container's then, not ours to end).
    sock: Option<UnixStream>,
}

/// The premade init of this supervisor process, if any.
static PREMADE: std::sync::Mutex<Option<Premade>> = std::sync::Mutex::new(None);

/// The namespaces a premade init has: what a container gets without a
/// joined network namespace or a cgroup of its own.
fn premade_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWCGROUP
}

/// Makes this process's premade init (see [`Premade`]). Must be called
/// from a single-threaded process, which then reaps the init.
pub fn premake() -> Result<(), Failure> {
    let (sock, child_sock) =
        UnixStream::pair().map_err(|e| Failure::runtime(format!("socketpair: {e}")))?;
    let forked = fork_into(premade_flags())
        .map_err(|e| Failure::runtime(format!("cloning a premade init: {e}")))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(sock);
            init::run_premade(child_sock)
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    drop(child_sock);
    let mut premade = Premade {
        pid,
        pidfd,
        sock: Some(sock),
    };
    // On failure `premade` is dropped, which ends the init.
    let identity = IdMap::identity();
    write_maps(pid, &identity, &identity).map_err(|e| Failure::runtime(e.to_string()))?;
    if let Some(sock) = premade.sock.as_mut() {
        channel::send(
            sock,
            &InitMsg::MapsWritten {
                idmap_layers: false,
            },
        )
        .map_err(|e| Failure::runtime(format!("signalling the premade init: {e}")))?;
    }
    *PREMADE.lock().unwrap_or_else(|p| p.into_inner()) = Some(premade);
    Ok(())
}

fn take_premade() -> Option<Premade> {
    PREMADE.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl Premade {
    /// Whether `spec`'s container can be this init.
    fn fits(&self, spec: &ContainerSpec) -> bool {
        clone_flags(spec) == premade_flags()
            && spec.namespaces.ipc == IpcMode::Private
            && spec.id_map.is_identity()
            && seccomp::is_prepared(spec.process.seccomp, &spec.process.capabilities)
    }

    /// Tells the init its container and hands it its stdio (our copies
    /// stay with the caller, who closes them).
    fn assign(mut self, spec: &ContainerSpec, stdio: &InitStdio) -> Result<Spawned, Failure> {
        let sock = self
            .sock
            .as_mut()
            .ok_or_else(|| Failure::runtime("the premade init was assigned already"))?;
        let fail = |what: &str, e: std::io::Error| {
            Failure::runtime(format!("{what} to the premade init: {e}"))
        };
        channel::send(
            sock,
            &InitMsg::Assign {
                spec: Box::new(spec.clone()),
                tty: stdio.tty,
                stdin: stdio.stdin.is_some(),
                stdout: stdio.stdout.is_some(),
                stderr: stdio.stderr.is_some(),
            },
        )
        .map_err(|e| fail("sending the container", e))?;
        let fds: Vec<OwnedFd> = [&stdio.stdin, &stdio.stdout, &stdio.stderr]
            .into_iter()
            .flatten()
            .map(|fd| fd.try_clone())
            .collect::<Result<_, _>>()
            .map_err(|e| fail("duplicating the stdio", e))?;
        if !fds.is_empty() {
            channel::send_fds(sock, &fds).map_err(|e| fail("sending the stdio", e))?;
        }
        let sock = self
            .sock
            .take()
            .ok_or_else(|| Failure::runtime("the premade init was assigned already"))?;
        Ok(Spawned {
            pid: self.pid,
            pidfd: self.pidfd.take(),
            sock,
            start_sent: false,
            idmaps_layers: false,
        })
    }
}

impl Drop for Premade {
    /// An unassigned premade init is ours to end.
    fn drop(&mut self) {
        if self.sock.is_some() {
            end_init(self.pid);
        }
    }
}

/// Kills and reaps an init that will not be started: it is ours to reap
/// whatever went wrong.
fn end_init(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
    let _ = waitpid(pid, None);
}

impl Spawned {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Queues `Start` now, so the init goes from its setup to the exec
    /// without waiting for a round trip through us ([`start`] then only
    /// waits for the exec): one wake-up of each process less, which a busy
    /// machine makes costly. For a caller whose work is done, typically
    /// before the setup's end; with idmapped layers it does nothing (that setup
    /// has a further exchange with us). An init whose setup failed
    /// meanwhile is gone and cannot take it: then [`Spawned::ready`]
    /// reports why.
    pub fn start_when_ready(&mut self) {
        if self.idmaps_layers || self.start_sent {
            return;
        }
        if channel::send(&mut self.sock, &InitMsg::Start).is_ok() {
            self.start_sent = true;
        }
    }

    /// Waits for the end of the init's setup.
    pub fn ready(mut self) -> Result<Created, Failure> {
        let pid = self.pid;
        let fail = |failure: Failure| {
            end_init(pid);
            failure
        };
        let mut console = None;
        loop {
            match channel::recv::<InitMsg>(&mut self.sock) {
                Ok(Some(InitMsg::Ready)) => {
                    return Ok(Created {
                        pid,
                        pidfd: self.pidfd,
                        console,
                        sock: self.sock,
                        start_sent: self.start_sent,
                    })
                }
                Ok(Some(InitMsg::Console)) => {
                    let mut fds = channel::recv_fds(&self.sock, 1).map_err(|e| {
                        fail(Failure::runtime(format!("receiving the console: {e}")))
                    })?;
                    console = fds.pop();
                }
                Ok(Some(InitMsg::Failed { code, message })) => {
                    return Err(fail(Failure { code, message }))
                }
                Ok(other) => {
                    return Err(fail(Failure::runtime(format!(
                        "container init ended its setup with {other:?}"
                    ))))
                }
                Err(e) => {
                    return Err(fail(Failure::runtime(format!(
                        "reading from the init: {e}"
                    ))))
                }
            }
        }
    }

    /// Gives the container up after `ours` (a failure of the caller's
    /// work during the setup) and ends the init. If the init's setup
    /// failed first, that failure is the cause and is returned instead:
    /// a network hook, say, fails too once the init is gone.
    pub fn abandon(mut self, ours: Failure) -> Failure {
        let _ = kill(self.pid, Signal::SIGKILL);
        // The kill closed the init's end: what it sent before is all there is.
        let mut theirs = None;
        while let Ok(Some(msg)) = channel::recv::<InitMsg>(&mut self.sock) {
            if let InitMsg::Failed { code, message } = msg {
                theirs = Some(Failure { code, message });
                break;
            }
        }
        let _ = waitpid(self.pid, None);
        theirs.unwrap_or(ours)
    }
}

/// In private mode with idmapped layers, does the rootfs work only the
/// engine can: idmaps the detached layer mounts the init sends with the
/// container's (already written) maps, so image files belong to the
/// container's root, and chowns the upper and work directories to that
/// root, who mounts the overlay. Layers the kernel will not idmap (a disk
/// store) fail here; the engine gives such a container shifted copies
/// instead. In identity mode none of this is needed: the layers are the
/// engine root's, which is the container's root too.
fn private_rootfs(spec: &ContainerSpec, pid: Pid, sock: &mut UnixStream) -> Result<(), Failure> {
    let trees = channel::recv_fds(sock, spec.rootfs.lower.len())
        .map_err(|e| Failure::runtime(format!("receiving the layer mounts: {e}")))?;
    let userns = open(
        format!("/proc/{pid}/ns/user").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::runtime(format!("opening the container's user namespace: {e}")))?;

    idmap_layers(&spec.rootfs.lower, &trees, &userns)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    chown_upper(spec)?;
    channel::send(sock, &InitMsg::LayersIdmapped)
        .map_err(|e| Failure::runtime(format!("signalling the init: {e}")))
}

/// Gives a private-mode container's upper and work directories to its
/// root, who mounts the overlay.
fn chown_upper(spec: &ContainerSpec) -> Result<(), Failure> {
    let root = spec
        .id_map
        .to_engine(0)
        .ok_or_else(|| Failure::runtime("the container's ID map does not map its root (ID 0)"))?;
    for dir in [&spec.rootfs.upper, &spec.rootfs.work] {
        chown(dir, Some(Uid::from_raw(root)), Some(Gid::from_raw(root)))
            .map_err(|e| Failure::runtime(format!("chown {} to {root}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Releases the init into the container's command. `Ok` once the exec has
/// happened (the init's close-on-exec socket closed without a word).
pub fn start(created: &mut Created) -> Result<(), Failure> {
    let pid = created.pid;
    if !created.start_sent {
        channel::send(&mut created.sock, &InitMsg::Start)
            .map_err(|e| Failure::runtime(format!("starting the container: {e}")))?;
    }
    match channel::recv::<InitMsg>(&mut created.sock) {
        Ok(None) => Ok(()),
        Ok(Some(InitMsg::Failed { code, message })) => {
            let _ = waitpid(pid, None);
            Err(Failure { code, message })
        }
        Ok(Some(other)) => Err(Failure::runtime(format!(
            "unexpected message from the init: {other:?}"
        ))),
        Err(e) => Err(Failure::runtime(format!("reading from the init: {e}"))),
    }
}

/// Waits for the container's init and returns its exit code as Docker
/// reports it (128 + signal for a killed process).
pub fn wait(pid: Pid) -> Result<i32, Failure> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Failure::runtime(format!("waiting for {pid}: {e}"))),
        }
    }
}

/// Serves one container over the control socket: Create, Start, then
/// reports its exit. Returns the helper's own exit code.
pub fn serve(mut control: UnixStream) -> i32 {
    crate::bootstrap::make_undumpable();
    let spec = match channel::recv::<ControlMsg>(&mut control) {
        Ok(Some(ControlMsg::Create(spec))) => spec,
        other => {
            tracing::error!(?other, "runtime helper: expected a Create message");
            return EXIT_RUNTIME_ERROR;
        }
    };
    let stdin = open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok();
    let stdio = InitStdio {
        stdin,
        ..InitStdio::default()
    };
    let mut created = match create(&spec, stdio) {
        Ok(c) => c,
        Err(f) => {
            let _ = channel::send(
                &mut control,
                &ControlMsg::Failed {
                    code: f.code,
                    message: f.message,
                },
            );
            return f.code;
        }
    };
    let reply = ControlMsg::Created {
        pid: created.pid.as_raw(),
    };
    if channel::send(&mut control, &reply).is_err() {
        return abandon(&created);
    }
    match channel::recv::<ControlMsg>(&mut control) {
        Ok(Some(ControlMsg::Start)) => {}
        _ => return abandon(&created),
    }
    if let Err(f) = start(&mut created) {
        let _ = channel::send(
            &mut control,
            &ControlMsg::Failed {
                code: f.code,
                message: f.message,
            },
        );
        return 0;
    }
    let _ = channel::send(&mut control, &ControlMsg::Started);
    let code = match wait(created.pid) {
        Ok(code) => code,
        Err(f) => {
            tracing::error!(%f, "runtime helper");
            return EXIT_RUNTIME_ERROR;
        }
    };
    // The engine may have gone away meanwhile; the exit code then waits for
    // the supervisor's state file (a later step).
    let _ = channel::send(&mut control, &ControlMsg::Exited { code });
    0
}

/// The engine went away before starting the container: remove it.
fn abandon(created: &Created) -> i32 {
    let _ = kill(created.pid, Signal::SIGKILL);
    let _ = waitpid(created.pid, None);
    EXIT_RUNTIME_ERROR
}
