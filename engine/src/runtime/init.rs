//! The container's init, from the clone until its execve. This runs in the
//! forked copy of the single-threaded helper, inside the new namespaces.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{chdir, sethostname};

use super::channel::{self, InitMsg};
use super::error::{Context, SetupError};
use super::spec::{ContainerSpec, IpcMode, NetworkMode, ProcessSpec};
use super::stdio::{self, InitStdio};
use super::{
    binfmt, dev, donor, exec, idmapped, mounts, proc, rootfs, seccomp, sysctl, tiny_init, user,
};

/// Runs the setup and execs the container's command; on failure reports to
/// the helper and exits with Docker's code for it. Never returns.
pub fn run(spec: &ContainerSpec, mut sock: UnixStream, stdio: InitStdio) -> ! {
    let result = prologue(&mut sock).and_then(|idmap_layers| {
        setup_and_exec(spec, &mut sock, stdio, idmap_layers, Staged::default())
    });
    report(result, sock)
}

/// A premade init (see `helper::Premade`): gets its namespaces and maps
/// before anyone knows which container it will be, then waits to be told
/// (an [`InitMsg::Assign`] and the stdio it names) and goes on as [`run`].
pub fn run_premade(mut sock: UnixStream) -> ! {
    let result = prologue(&mut sock).and_then(|idmap_layers| {
        if idmap_layers {
            return Err(SetupError::Invalid(
                "a premade init cannot take private-mode layers".into(),
            ));
        }
        // While nobody waits: what is the same for every container.
        let staged = Staged {
            dev: dev::stage()?,
            sys: proc::stage_sys()?,
        };
        let (spec, stdio) = expect_assignment(&mut sock)?;
        setup_and_exec(&spec, &mut sock, stdio, false, staged)
    });
    report(result, sock)
}

/// Reports a setup that ended (it only ever ends in failure) and exits
/// with Docker's code for it.
fn report(result: Result<Infallible, SetupError>, mut sock: UnixStream) -> ! {
    let err = match result {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = err.exit_code();
    // The helper may be gone already; exiting is all that is left then.
    let _ = channel::send(
        &mut sock,
        &InitMsg::Failed {
            code,
            message: err.to_string(),
        },
    );
    // SAFETY: _exit ends this forked copy without running the helper's
    // atexit handlers or flushing buffers it shares with the helper.
    unsafe { libc::_exit(code) }
}

/// What every init does first: a clean signal state, our /proc files kept
/// ours for the helper to write the ID maps (and death with the helper
/// during setup), the maps, root in the new user namespace, and a mount
/// table that propagates nothing back. True when
/// the lower layers are to be idmapped (private mode).
fn prologue(sock: &mut UnixStream) -> Result<bool, SetupError> {
    reset_signals()?;
    prctl::set_dumpable(true).ctx(|| "PR_SET_DUMPABLE".to_string())?;
    prctl::set_pdeathsig(Signal::SIGKILL).ctx(|| "PR_SET_PDEATHSIG".to_string())?;
    let idmap_layers = expect_maps(sock)?;
    user::become_root()?;
    // Before any mount of ours (a premade init's staging included), so
    // none propagates back to the engine.
    rootfs::isolate_propagation()?;
    Ok(idmap_layers)
}

/// A premade init's container: its spec, then the stdio fds it names.
fn expect_assignment(sock: &mut UnixStream) -> Result<(ContainerSpec, InitStdio), SetupError> {
    let (spec, tty, present) =
        match channel::recv::<InitMsg>(sock).ctx(|| "waiting for a container".to_string())? {
            Some(InitMsg::Assign {
                spec,
                tty,
                stdin,
                stdout,
                stderr,
            }) => (spec, tty, [stdin, stdout, stderr]),
            other => {
                return Err(SetupError::Invalid(format!(
                    "waiting for a container: unexpected {other:?}"
                )))
            }
        };
    let count = present.iter().filter(|p| **p).count();
    let mut fds = channel::recv_fds(sock, count)
        .ctx(|| "receiving the container's stdio".to_string())?
        .into_iter();
    let mut next = |present: bool| if present { fds.next() } else { None };
    let stdio = InitStdio {
        stdin: next(present[0]),
        stdout: next(present[1]),
        stderr: next(present[2]),
        tty,
    };
    Ok((*spec, stdio))
}

/// What a premade init built before it knew its container, for the setup
/// to move into the rootfs instead of building.
#[derive(Debug, Default, Clone, Copy)]
struct Staged {
    dev: bool,
    sys: bool,
}

fn setup_and_exec(
    spec: &ContainerSpec,
    sock: &mut UnixStream,
    stdio: InitStdio,
    idmap_layers: bool,
    staged: Staged,
) -> Result<Infallible, SetupError> {
    if !spec.cgroup_procs.is_empty() {
        // The helper moved us into our cgroup before the maps.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "creating the cgroup namespace".to_string())?;
    }
    let layer_fds = if idmap_layers {
        idmapped_layers(sock, &spec.rootfs.lower)?
    } else {
        Vec::new()
    };
    if let Some(name) = &spec.hostname {
        sethostname(name).ctx(|| format!("setting hostname {name}"))?;
    }

    let root = rootfs::mount_overlay(&spec.rootfs, &lower_paths(&spec.rootfs.lower, &layer_fds))?;
    drop(layer_fds);
    let target = &spec.rootfs.target;
    proc::setup_proc(&root, spec.namespaces.proc)?;
    if let Some(emulator) = &spec.emulator {
        binfmt::install(&root, emulator)?;
    }
    if staged.dev {
        mounts::move_staged(&root, Path::new("/dev"))?;
    } else {
        dev::setup_dev(&root, target, &ipc_mounts(spec)?)?;
    }
    if staged.sys {
        mounts::move_staged(&root, Path::new("/sys"))?;
    } else {
        proc::setup_sys(&root, spec.namespaces.network == NetworkMode::None)?;
    }
    rootfs::apply_mounts(&root, &spec.mounts)?;
    dev::add_devices(&root, &spec.devices)?;
    drop(root);
    rootfs::enter(target)?;
    // From here on every path resolves inside the container.
    stdio::install(stdio, sock)?;
    // Before the read-only paths cover it (see `sysctl`).
    let sysctl_dir = if spec.sysctls.is_empty() {
        None
    } else {
        Some(sysctl::open_dir()?)
    };
    proc::mask_paths(Path::new("/"), &spec.masked_paths)?;
    proc::readonly_paths(Path::new("/"), &spec.readonly_paths)?;
    // Docker creates a missing working directory even on a read-only rootfs.
    let cwd = &spec.process.cwd;
    std::fs::create_dir_all(cwd)
        .ctx(|| format!("creating the working directory {}", cwd.display()))?;
    if spec.rootfs.readonly {
        rootfs::make_readonly()?;
    }
    chdir(cwd).ctx(|| format!("entering the working directory {}", cwd.display()))?;
    let creds = user::resolve(&spec.process.user)?;
    let command = exec::resolve(&with_home(&spec.process, &creds.home))?;

    // Right after the setup, which needs syscalls the profile forbids, and
    // while we still hold CAP_SYS_ADMIN, which loading it needs. Before
    // `Ready`, not after `Start`: the load (~0.25 ms: the kernel checks,
    // converts and JITs the program) then overlaps the network plug the
    // start may still be waiting for. What follows needs only syscalls the
    // profile allows (the socket, prctl, the user switch, close_range,
    // execve).
    apply_seccomp(&spec.process)?;
    channel::send(sock, &InitMsg::Ready).ctx(|| "reporting ready".to_string())?;
    expect_start(sock)?;
    // The network is plugged in once the start comes.
    if let Some(dir) = sysctl_dir {
        sysctl::apply(&dir, &spec.sysctls)?;
    }
    // The supervisor may be restarted while the container runs: do not tie
    // the container's life to it past this point.
    prctl::set_pdeathsig(None).ctx(|| "clearing PR_SET_PDEATHSIG".to_string())?;
    if spec.process.init {
        return tiny_init::run(&spec.process, &creds, &command, sock);
    }
    user::switch_user(&spec.process, &creds)?;
    close_other_fds(sock)?;
    Err(exec::exec(&command))
}

/// What /dev/shm and /dev/mqueue are to be, by the spec's IPC mode.
fn ipc_mounts(spec: &ContainerSpec) -> Result<dev::IpcMounts, SetupError> {
    Ok(match (spec.namespaces.ipc, &spec.namespaces.donor) {
        (IpcMode::Private, _) => dev::IpcMounts::Own,
        (IpcMode::NoShm, _) => dev::IpcMounts::NoShm,
        (IpcMode::Host, _) => dev::IpcMounts::Host,
        (IpcMode::Donor, Some(d)) => dev::IpcMounts::Donor(donor::clone_shm(d.pid)?),
        (IpcMode::Donor, None) => {
            return Err(SetupError::Invalid(
                "the IPC namespace is to be shared, but with no container".into(),
            ))
        }
    })
}

/// Loads the process's seccomp filter.
pub fn apply_seccomp(process: &ProcessSpec) -> Result<(), SetupError> {
    seccomp::apply(process.seccomp, &process.capabilities)
        .map_err(|e| SetupError::Invalid(e.to_string()))
}

/// Gives the container's processes the signal state of a fresh process: the
/// supervisor blocks SIGCHLD and ignores SIGPIPE, and both would survive
/// the exec.
pub fn reset_signals() -> Result<(), SetupError> {
    use nix::sys::signal::{signal, SigHandler, SigSet};
    SigSet::empty()
        .thread_set_mask()
        .ctx(|| "clearing the signal mask".to_string())?;
    for sig in [Signal::SIGPIPE, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { signal(sig, SigHandler::SigDfl) }.ctx(|| format!("resetting {sig}"))?;
    }
    Ok(())
}

/// The process with `HOME` set to the user's home unless the image or the
/// request set one, as Docker does.
pub fn with_home(process: &ProcessSpec, home: &str) -> ProcessSpec {
    let mut process = process.clone();
    if !process.env.iter().any(|kv| kv.starts_with("HOME=")) {
        process.env.push(format!("HOME={home}"));
    }
    process
}

/// Waits for the helper to write our ID maps; true when the lower layers
/// are to be idmapped (private mode).
fn expect_maps(sock: &mut UnixStream) -> Result<bool, SetupError> {
    match channel::recv::<InitMsg>(sock).ctx(|| "waiting for the ID maps".to_string())? {
        Some(InitMsg::MapsWritten { idmap_layers }) => Ok(idmap_layers),
        other => Err(SetupError::Invalid(format!(
            "waiting for the ID maps: unexpected {other:?}"
        ))),
    }
}

/// Clones the lower layers into detached mounts of our own and has the
/// helper idmap them (see `idmapped`); if it cannot, it reports the refusal
/// and ends us.
fn idmapped_layers(sock: &mut UnixStream, layers: &[PathBuf]) -> Result<Vec<OwnedFd>, SetupError> {
    let trees = layers
        .iter()
        .map(|l| idmapped::clone_layer(l).ctx(|| format!("cloning layer {}", l.display())))
        .collect::<Result<Vec<_>, _>>()?;
    channel::send_fds(sock, &trees).ctx(|| "sending the layer mounts".to_string())?;
    match channel::recv::<InitMsg>(sock).ctx(|| "waiting for the idmapped layers".to_string())? {
        Some(InitMsg::LayersIdmapped) => Ok(trees),
        other => Err(SetupError::Invalid(format!(
            "waiting for the idmapped layers: unexpected {other:?}"
        ))),
    }
}

/// The overlay's lower directories: the idmapped layer mounts when the
/// helper sent them (reached through our fd links), else the layer paths.
fn lower_paths(layers: &[PathBuf], fds: &[OwnedFd]) -> Vec<PathBuf> {
    if fds.is_empty() {
        return layers.to_vec();
    }
    fds.iter()
        .map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
        .collect()
}

fn expect_start(sock: &mut UnixStream) -> Result<(), SetupError> {
    match channel::recv::<InitMsg>(sock).ctx(|| "waiting for start".to_string())? {
        Some(InitMsg::Start) => Ok(()),
        other => Err(SetupError::Invalid(format!(
            "waiting for start: unexpected {other:?}"
        ))),
    }
}

/// Marks every fd above 2 close-on-exec, so the container's first process
/// starts with exactly 0, 1 and 2 (no engine fd leaks, the CVE-2024-21626
/// class). The sync socket is among them: its closing on exec tells the
/// helper that the exec succeeded.
pub fn close_other_fds(sock: &UnixStream) -> Result<(), SetupError> {
    debug_assert!(sock.as_raw_fd() > 2);
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds.
    let ret = unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "close_range".to_string());
    }
    Ok(())
}
