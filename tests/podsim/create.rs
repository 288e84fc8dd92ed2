//! Creating a pod: its namespaces, ID maps and pid 1, in the order
//! containerd and runc create them.
//!
//! ```text
//! shim (host root, single-threaded)
//!  └─ pod setup (A): joins the node's netns first for `--netns-owner initial`,
//!     │  unshare(USER); the shim writes uid_map/gid_map "0 BASE 65536";
//!     │  unshare(NS); becomes uid/gid 0; unshare(UTS|IPC|CGROUP|PID [|NET]);
//!     │  lo up
//!     └─ pod init (B, pid 1): mounts, hostname, capabilities, then execs
//!        `podsim __pod-init`
//! ```
//! A stays as B's parent and exits with it. Parent-death signals chain B to A
//! and A to the shim, so a shim killed outright takes its pod with it.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::{DirBuilder, File};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hutch_tests::podsim::{Device, NetnsOwner, PodInfo, DATA_ROOT, ID_RANGE_SIZE};
use nix::fcntl::{open, OFlag, AT_FDCWD};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::stat::{fchmodat, mknod, stat, FchmodatFlags, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{
    chown, dup2_stdin, dup2_stdout, fexecve, fork, getpid, getppid, setgroups, sethostname,
    setresgid, setresuid, ForkResult, Gid, Pid, Uid,
};

use crate::idrange::{self, BaseLease};
use crate::spec::PodConfig;
use crate::sync::{self, Receiver, Sender};
use crate::{caps, layout, mounts, net, podns, sys};

/// How long pod creation may take before podsim gives up.
const CREATE_TIMEOUT: Duration = Duration::from_secs(20);

/// A pod that exists, with everything teardown needs to remove it.
pub struct CreatedPod {
    pub id: String,
    pub hostname: String,
    pub config: PodConfig,
    pub lease: BaseLease,
    /// A: the pod setup process, parent of pod init.
    pub setup_pid: Pid,
    /// B: pod init, pid 1 of the pod.
    pub init_pid: Pid,
    /// The pod's namespaces, held open until teardown has finished.
    pub namespaces: podns::Held,
    /// The shim's reference to a node-made netns (`--netns-owner initial`),
    /// as the node keeps /var/run/netns/cni-*.
    pub node_netns: Option<OwnedFd>,
    pub pod_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Time from the start of creation until pod init was running.
    pub startup: Duration,
    /// Remarks worth showing (stale state cleaned up on the way).
    pub notes: Vec<String>,
}

impl CreatedPod {
    pub fn base(&self) -> u32 {
        self.lease.base
    }

    /// What pod.json records.
    pub fn info(&self) -> PodInfo {
        PodInfo {
            id: self.id.clone(),
            hostname: self.hostname.clone(),
            shim_pid: getpid().as_raw(),
            init_pid: self.init_pid.as_raw(),
            base: self.base(),
            caps: self.config.cap_names(),
            netns_owner: self.config.netns_owner,
            proc_unmasked: self.config.proc_unmasked,
            devices: self.config.devices.clone(),
            data_dir_host: self.data_dir.clone(),
            data_root: PathBuf::from(DATA_ROOT),
            namespaces: self.namespaces.inodes,
            cgroup_v2_host: self
                .config
                .delegate_cgroups_v2
                .then(|| crate::cgroups::v2_host_dir(&self.hostname).ok())
                .flatten(),
        }
    }
}

/// Creates a pod. The caller must be single-threaded host root.
pub fn create(config: &PodConfig) -> anyhow::Result<CreatedPod> {
    let started = Instant::now();
    let id = random_id()?;
    let mut notes = Vec::new();
    let lease = idrange::allocate(&id, &mut notes)?;
    let pod_dir = layout::pod_dir(&id);
    let data_dir = pod_dir.join(layout::DATA_DIR_NAME);
    if config.delegate_cgroups_v1 {
        if let Err(e) = crate::cgroups::delegate(&format!("podsim-{id}"), lease.base) {
            crate::cgroups::remove(&format!("podsim-{id}"));
            let _ = lease.release();
            return Err(e);
        }
    }
    if config.delegate_cgroups_v2 {
        if let Err(e) = crate::cgroups::delegate_v2(&format!("podsim-{id}"), lease.base) {
            crate::cgroups::remove(&format!("podsim-{id}"));
            let _ = lease.release();
            return Err(e);
        }
    }
    let mut pod = PendingPod {
        hostname: format!("podsim-{id}"),
        id,
        lease: Some(lease),
        pod_dir,
        data_dir,
    };
    match pod.bring_up(config, started) {
        Ok(running) => Ok(CreatedPod {
            id: pod.id.clone(),
            hostname: pod.hostname.clone(),
            config: config.clone(),
            lease: pod.lease.take().context("lease taken twice")?,
            setup_pid: running.setup_pid,
            init_pid: running.init_pid,
            namespaces: running.namespaces,
            node_netns: running.node_netns,
            pod_dir: pod.pod_dir.clone(),
            data_dir: pod.data_dir.clone(),
            startup: started.elapsed(),
            notes,
        }),
        Err(err) => {
            // Best effort: the error being returned says what went wrong.
            let _ = std::fs::remove_dir_all(&pod.pod_dir);
            crate::cgroups::remove(&pod.hostname);
            if let Some(lease) = pod.lease.take() {
                let _ = lease.release();
            }
            Err(err)
        }
    }
}

/// A pod being created: what must be cleaned up if creation fails.
struct PendingPod {
    id: String,
    hostname: String,
    lease: Option<BaseLease>,
    pod_dir: PathBuf,
    data_dir: PathBuf,
}

/// The processes and namespaces of a pod that came up.
struct Running {
    setup_pid: Pid,
    init_pid: Pid,
    namespaces: podns::Held,
    node_netns: Option<OwnedFd>,
}

impl PendingPod {
    fn base(&self) -> anyhow::Result<u32> {
        Ok(self.lease.as_ref().context("no ID range")?.base)
    }

    fn bring_up(&mut self, config: &PodConfig, started: Instant) -> anyhow::Result<Running> {
        let base = self.base()?;
        self.make_dirs(config, base)?;
        let exe_fd = open(
            "/proc/self/exe",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context("opening podsim's own binary")?;
        let node_netns = match config.netns_owner {
            NetnsOwner::Initial => Some(net::create_node_netns()?),
            NetnsOwner::Pod => None,
        };
        let (to_setup_rx, mut to_setup_tx) = sync::channel()?;
        let (mut from_pod_rx, from_pod_tx) = sync::channel()?;
        let shim = getpid();

        // SAFETY: podsim is single-threaded, so the child may run any code.
        let setup_pid = match unsafe { fork() }.context("forking the pod setup process")? {
            ForkResult::Child => {
                drop(to_setup_tx);
                drop(from_pod_rx);
                let ctx = SetupCtx {
                    shim,
                    config,
                    hostname: &self.hostname,
                    node_netns: node_netns.as_ref(),
                    data_dir: &self.data_dir,
                    pod_dir: &self.pod_dir,
                    exe_fd: &exe_fd,
                };
                pod_setup_process(ctx, to_setup_rx, from_pod_tx)
            }
            ForkResult::Parent { child } => child,
        };
        drop(to_setup_rx);
        drop(from_pod_tx);

        let deadline = started + CREATE_TIMEOUT;
        let cgroup_v2 = if config.delegate_cgroups_v2 {
            Some(crate::cgroups::v2_host_dir(&self.hostname)?)
        } else {
            None
        };
        let result = self.handshake(
            setup_pid,
            base,
            cgroup_v2.as_deref(),
            &mut to_setup_tx,
            &mut from_pod_rx,
            deadline,
        );
        match result {
            Ok((init_pid, namespaces)) => Ok(Running {
                setup_pid,
                init_pid,
                namespaces,
                node_netns,
            }),
            Err(err) => {
                // Best effort: the setup process may already be gone.
                let _ = kill(setup_pid, Signal::SIGKILL);
                let _ = waitpid(setup_pid, None);
                Err(err)
            }
        }
    }

    fn make_dirs(&self, config: &PodConfig, base: u32) -> anyhow::Result<()> {
        let pods = layout::pods_dir();
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&pods)
            .with_context(|| format!("creating {}", pods.display()))?;
        DirBuilder::new()
            .mode(0o700)
            .create(&self.pod_dir)
            .with_context(|| format!("creating {}", self.pod_dir.display()))?;
        DirBuilder::new()
            .mode(0o755)
            .create(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        for &dev in &config.devices {
            make_device_node(&self.pod_dir, dev)?;
        }
        chown(
            &self.data_dir,
            Some(Uid::from_raw(base)),
            Some(Gid::from_raw(base)),
        )
        .context("handing the data directory to pod root")?;
        // The mount point, as the image would have it: the pod sees the
        // host's filesystem, so it must exist there.
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(DATA_ROOT)
            .with_context(|| format!("creating the mount point {DATA_ROOT} on the host"))
    }

    /// The shim's side of creation: map the new user namespace, then wait
    /// for pod init to report and exec.
    fn handshake(
        &self,
        setup_pid: Pid,
        base: u32,
        cgroup_v2: Option<&Path>,
        tx: &mut Sender,
        rx: &mut Receiver,
        deadline: Instant,
    ) -> anyhow::Result<(Pid, podns::Held)> {
        match rx.recv(deadline)?.as_deref() {
            Some("userns") => {}
            Some(other) => bail!("{}", describe(other)),
            None => bail!("the pod setup process exited early"),
        }
        let map = format!("0 {base} {ID_RANGE_SIZE}\n");
        for file in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{setup_pid}/{file}"), &map)
                .with_context(|| format!("writing {file}"))?;
        }
        if let Some(dir) = cgroup_v2 {
            // Before the setup process creates the pod's cgroup namespace,
            // which is then rooted at the delegated cgroup.
            crate::cgroups::join_v2(dir, setup_pid.as_raw())?;
        }
        tx.send("mapped")?;

        let mut init_pid = None;
        let mut configured = false;
        while let Some(msg) = rx.recv(deadline)? {
            if let Some(pid) = msg.strip_prefix("init ") {
                init_pid = Some(Pid::from_raw(
                    pid.parse().context("bad pid from pod setup")?,
                ));
            } else if msg == "configured" {
                configured = true;
            } else {
                if let Some(pid) = init_pid {
                    // Best effort: it may have failed and exited already.
                    let _ = kill(pid, Signal::SIGKILL);
                }
                bail!("{}", describe(&msg));
            }
        }
        let (Some(init_pid), true) = (init_pid, configured) else {
            bail!("pod init exited before it was ready");
        };
        if cgroup_v2.is_some() {
            // The setup process only waits for pod init, outside the pod's
            // pid namespace: out of the pod's cgroup with it, which then
            // holds only the pod's processes (as a container's cgroup).
            crate::cgroups::join_v2(&crate::cgroups::v2_root()?, setup_pid.as_raw())?;
        }
        let namespaces = podns::hold(init_pid)?;
        Ok((init_pid, namespaces))
    }
}

/// Where the pod's private copy of a device node lives.
fn device_node(pod_dir: &Path, dev: Device) -> PathBuf {
    pod_dir.join(format!("dev-{}", dev.as_str()))
}

/// A private node for `dev` with the host's device number and mode 0666.
/// Nodes get 0666 from udev on a normal node, and a device plugin passes
/// them on as they are; this host's bare devtmpfs has them 0600, which would
/// make `--device` useless to pod root. The host's own node stays untouched.
fn make_device_node(pod_dir: &Path, dev: Device) -> anyhow::Result<()> {
    let host = stat(dev.path()).with_context(|| format!("looking at the host's {}", dev.path()))?;
    if host.st_mode & libc::S_IFMT != libc::S_IFCHR {
        bail!("the host's {} is not a character device", dev.path());
    }
    let node = device_node(pod_dir, dev);
    mknod(
        &node,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        host.st_rdev,
    )
    .with_context(|| format!("creating {}", node.display()))?;
    // mknod honours the umask; the mode must be exactly 0666.
    fchmodat(
        AT_FDCWD,
        &node,
        Mode::from_bits_truncate(0o666),
        FchmodatFlags::FollowSymlink,
    )
    .with_context(|| format!("setting the mode of {}", node.display()))
}

fn describe(msg: &str) -> String {
    msg.strip_prefix("error ").unwrap_or(msg).to_string()
}

fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 4];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the forked processes need from the shim.
struct SetupCtx<'a> {
    shim: Pid,
    config: &'a PodConfig,
    hostname: &'a str,
    node_netns: Option<&'a OwnedFd>,
    data_dir: &'a Path,
    pod_dir: &'a Path,
    exe_fd: &'a OwnedFd,
}

/// Body of A; never returns.
fn pod_setup_process(ctx: SetupCtx<'_>, mut rx: Receiver, mut tx: Sender) -> ! {
    let Err(err) = pod_setup(&ctx, &mut rx, &mut tx);
    // Best effort: if the shim is gone there is nobody to tell.
    let _ = tx.send(&format!("error pod setup: {err:#}"));
    sys::exit_now(1)
}

fn pod_setup(ctx: &SetupCtx<'_>, rx: &mut Receiver, tx: &mut Sender) -> anyhow::Result<Infallible> {
    SigSet::empty()
        .thread_set_mask()
        .context("unblocking signals")?;
    die_with_parent(ctx.shim)?;
    if let Some(netns) = ctx.node_netns {
        // Joined while still host root: only the initial user namespace may.
        setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).context("joining the node's netns")?;
    }
    unshare(CloneFlags::CLONE_NEWUSER).context("creating the pod's user namespace")?;
    tx.send("userns")?;
    match rx.recv(Instant::now() + CREATE_TIMEOUT)?.as_deref() {
        Some("mapped") => {}
        _ => bail!("the shim did not map the user namespace"),
    }
    // The mount namespace comes first, on its own, for one reason: the data
    // directory must be opened inside it (a descriptor from another mount
    // namespace cannot be a bind source) and before becoming pod root (it
    // sits in a host-root-only 0700 parent, which the host uid we still run
    // as may walk as its owner).
    unshare(CloneFlags::CLONE_NEWNS).context("creating the pod's mount namespace")?;
    let data_fd = open(
        ctx.data_dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("opening the data directory")?;
    let devices = ctx
        .config
        .devices
        .iter()
        .map(|&dev| {
            let node = device_node(ctx.pod_dir, dev);
            open(&node, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .with_context(|| format!("opening {}", node.display()))
                .map(|fd| (dev, fd))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cgroup_dirs = if ctx.config.delegate_cgroups_v1 {
        crate::cgroups::open_dirs(ctx.hostname)?
    } else {
        Vec::new()
    };

    // As runc: become root of the new user namespace, then create the rest,
    // so what they create (the IPC namespace's mqueue root, say) is pod root's.
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    setresgid(root_gid, root_gid, root_gid).context("becoming gid 0")?;
    setgroups(&[root_gid]).context("setting groups to [0]")?;
    setresuid(root_uid, root_uid, root_uid).context("becoming uid 0")?;
    // A credential change clears the parent-death signal: set it again.
    die_with_parent(ctx.shim)?;

    let mut flags = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP
        | CloneFlags::CLONE_NEWPID;
    if ctx.config.netns_owner == NetnsOwner::Pod {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).context("creating the pod's namespaces")?;
    if ctx.config.netns_owner == NetnsOwner::Pod {
        net::bring_up_loopback()?;
    }

    // SAFETY: this process is single-threaded.
    match unsafe { fork() }.context("forking pod init")? {
        ForkResult::Child => pod_init_process(ctx, &data_fd, &devices, &cgroup_dirs, tx),
        ForkResult::Parent { child } => {
            tx.send(&format!("init {child}"))?;
            drop(data_fd);
            drop(devices);
            drop(cgroup_dirs);
            // From here on nothing may report to the shim or hold its files:
            // close everything and never return (no destructor may run).
            if sys::close_fds_from(3, &[]).is_err() {
                sys::exit_now(1);
            }
            sys::exit_now(wait_for(child))
        }
    }
}

/// Exit status of `child`, as a shell reports it.
fn wait_for(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

/// Asks for SIGKILL when the parent dies, and checks it has not already.
fn die_with_parent(parent: Pid) -> anyhow::Result<()> {
    prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    if getppid() != parent {
        bail!("parent {parent} died");
    }
    Ok(())
}

/// Body of B; never returns.
fn pod_init_process(
    ctx: &SetupCtx<'_>,
    data_fd: &OwnedFd,
    devices: &[(Device, OwnedFd)],
    cgroup_dirs: &[(&'static str, OwnedFd)],
    tx: &mut Sender,
) -> ! {
    let Err(err) = pod_init(ctx, data_fd, devices, cgroup_dirs, tx);
    // Best effort: if the shim is gone there is nobody to tell.
    let _ = tx.send(&format!("error pod init: {err:#}"));
    sys::exit_now(1)
}

fn pod_init(
    ctx: &SetupCtx<'_>,
    data_fd: &OwnedFd,
    devices: &[(Device, OwnedFd)],
    cgroup_dirs: &[(&'static str, OwnedFd)],
    tx: &mut Sender,
) -> anyhow::Result<Infallible> {
    // No getppid() check here: it reads 0 across the pid namespace boundary.
    // The setup process cannot exit before this one anyway.
    prctl::set_pdeathsig(Signal::SIGKILL).context("setting the parent-death signal")?;
    mounts::setup(&mounts::MountPlan {
        data_dir: data_fd.as_fd(),
        devices,
        proc_unmasked: ctx.config.proc_unmasked,
        cgroup_writable: ctx.config.delegate_cgroups_v2,
    })?;
    if !cgroup_dirs.is_empty() {
        crate::cgroups::mount_in_pod(cgroup_dirs)?;
    }
    sethostname(ctx.hostname).context("setting the hostname")?;
    caps::confine(&ctx.config.caps)?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    dup2_stdin(&null).context("redirecting stdin")?;
    dup2_stdout(&null).context("redirecting stdout")?;
    drop(null);
    sys::close_fds_from(3, &[tx.raw_fd(), ctx.exe_fd.as_raw_fd()])
        .context("closing inherited descriptors")?;
    tx.send("configured")?;
    let argv = [c"podsim".to_owned(), c"__pod-init".to_owned()];
    let env: [CString; 0] = [];
    let Err(err) = fexecve(ctx.exe_fd, &argv, &env);
    Err(err).context("executing podsim __pod-init (is the podsim binary world-executable?)")
}
