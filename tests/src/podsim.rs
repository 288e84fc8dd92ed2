//! Client side of the pod simulator: start a simulated `hostUsers: false`
//! pod, run commands in it as pod root or beside it as host root, and tear it
//! down with proof that nothing was left behind.
//!
//! ```no_run
//! use hutch_tests::podsim::{Pod, PodSpec};
//! let pod = Pod::start(&PodSpec::new().cap_add("SYS_ADMIN"))?;
//! let out = pod.exec("cat").arg("/proc/self/uid_map").output()?;
//! assert!(out.status.success());
//! pod.stop()?;
//! # anyhow::Ok(())
//! ```

mod info;
pub mod procscan;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub use info::{
    canonical_cap_name, cap_bit, cap_mask, Device, Namespaces, NetnsOwner, PodInfo, DATA_ROOT,
    DEFAULT_CAPS, ID_RANGE_SIZE,
};

/// How long teardown may take before the client kills podsim.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What kind of pod to simulate; the builder methods mirror podsim's options.
#[derive(Clone, Debug, Default)]
pub struct PodSpec {
    caps: Vec<String>,
    proc_unmasked: bool,
    netns_owner: NetnsOwner,
    devices: Vec<Device>,
    delegate_cgroups_v1: bool,
    delegate_cgroups_v2: bool,
}

impl PodSpec {
    /// The default pod: Kubernetes default capabilities, masked /proc, netns
    /// owned by the pod's user namespace, no extra devices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a capability (`SYS_ADMIN` or `CAP_SYS_ADMIN`), like
    /// `securityContext.capabilities.add`.
    pub fn cap_add(mut self, cap: &str) -> Self {
        self.caps.push(cap.to_string());
        self
    }

    /// `procMount: Unmasked`: no masked or read-only paths.
    pub fn proc_unmasked(mut self) -> Self {
        self.proc_unmasked = true;
        self
    }

    /// Which user namespace owns the pod's network namespace.
    pub fn netns_owner(mut self, owner: NetnsOwner) -> Self {
        self.netns_owner = owner;
        self
    }

    /// Exposes a host device in the pod's /dev.
    pub fn device(mut self, dev: Device) -> Self {
        self.devices.push(dev);
        self
    }

    /// Writable cgroup v1 directories delegated to the pod.
    pub fn delegate_cgroups_v1(mut self) -> Self {
        self.delegate_cgroups_v1 = true;
        self
    }

    /// A writable cgroup v2 directory delegated to the pod, the root of its
    /// cgroup namespace, mounted read-write on /sys/fs/cgroup.
    pub fn delegate_cgroups_v2(mut self) -> Self {
        self.delegate_cgroups_v2 = true;
        self
    }

    /// podsim's `[POD OPTS]` for this spec.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for cap in &self.caps {
            args.push("--cap-add".to_string());
            args.push(cap.clone());
        }
        if self.proc_unmasked {
            args.push("--proc-unmasked".to_string());
        }
        args.push("--netns-owner".to_string());
        args.push(self.netns_owner.as_str().to_string());
        for dev in &self.devices {
            args.push("--device".to_string());
            args.push(dev.as_str().to_string());
        }
        if self.delegate_cgroups_v1 {
            args.push("--delegate-cgroups-v1".to_string());
        }
        if self.delegate_cgroups_v2 {
            args.push("--delegate-cgroups-v2".to_string());
        }
        args
    }
}

/// A running simulated pod, held by a `podsim start` process. Dropping it
/// tears the pod down (and panics if teardown found leftovers, unless the
/// thread is already panicking); [`Pod::stop`] does the same and returns the
/// verdict instead.
pub struct Pod {
    holder: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    info: PodInfo,
    state: tempfile::TempDir,
}

impl Pod {
    /// Creates a pod and waits until it is ready.
    pub fn start(spec: &PodSpec) -> anyhow::Result<Pod> {
        let state = tempfile::Builder::new()
            .prefix("podsim-state-")
            .tempdir()
            .context("creating podsim state directory")?;
        let bin = podsim_bin();
        let mut holder = Command::new(&bin)
            .arg("start")
            .args(spec.to_args())
            .arg("--state")
            .arg(state.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {} (set PODSIM_BIN?)", bin.display()))?;
        let stdin = holder.stdin.take();
        let mut stdout = BufReader::new(holder.stdout.take().context("podsim stdout")?);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        if read.is_err() || line.trim() != "ready" {
            drop(stdin);
            let mut rest = String::new();
            // Best effort: the status below is the real error.
            let _ = stdout.read_to_string(&mut rest);
            let status = holder.wait().context("waiting for podsim")?;
            bail!(
                "podsim start failed ({status}): {}{}",
                line.trim(),
                rest.trim()
            );
        }
        let info = PodInfo::read(state.path())?;
        Ok(Pod {
            holder: Some(holder),
            stdin,
            stdout: Some(stdout),
            info,
            state,
        })
    }

    /// A command that runs `program` as root (uid 0) inside the pod, in all
    /// its namespaces, with its capability bounding set, like `kubectl exec`.
    /// Add arguments, environment and stdio to it as to any [`Command`]; its
    /// working directory is used inside the pod when the pod can enter it.
    pub fn exec(&self, program: impl AsRef<OsStr>) -> Command {
        self.podsim_command("exec", program)
    }

    /// A command that runs `program` as host root in the pod's network
    /// namespace only: a fixture the pod reaches on 127.0.0.1. podsim kills
    /// it (and its process group) when the pod is torn down.
    pub fn sidecar(&self, program: impl AsRef<OsStr>) -> Command {
        self.podsim_command("sidecar", program)
    }

    fn podsim_command(&self, verb: &str, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(podsim_bin());
        cmd.arg(verb)
            .arg("--state")
            .arg(self.state.path())
            .arg("--")
            .arg(program);
        cmd
    }

    /// First host uid/gid of the pod's range: pod uid N is host uid base+N.
    pub fn base(&self) -> u32 {
        self.info.base
    }

    /// Host path of the pod's data directory (the emptyDir).
    pub fn data_dir_host(&self) -> &Path {
        &self.info.data_dir_host
    }

    /// The data directory's path inside the pod: `/var/lib/hutch`.
    pub fn data_root(&self) -> &Path {
        &self.info.data_root
    }

    /// Everything podsim recorded about the pod.
    pub fn info(&self) -> &PodInfo {
        &self.info
    }

    /// The state directory holding pod.json (for `podsim exec --state`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Tears the pod down; fails if podsim found anything left behind.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(mut holder) = self.holder.take() else {
            return Ok(());
        };
        // EOF on its stdin is podsim's signal to tear down.
        drop(self.stdin.take());
        let deadline = Instant::now() + TEARDOWN_TIMEOUT;
        let status = loop {
            if let Some(status) = holder.try_wait().context("waiting for podsim")? {
                break status;
            }
            if Instant::now() > deadline {
                // Best effort: the pod is already lost; report the timeout.
                let _ = holder.kill();
                let _ = holder.wait();
                bail!(
                    "podsim did not tear down pod {} within {TEARDOWN_TIMEOUT:?}",
                    self.info.id
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut report = String::new();
        if let Some(mut stdout) = self.stdout.take() {
            stdout
                .read_to_string(&mut report)
                .context("reading podsim's teardown report")?;
        }
        if !status.success() {
            bail!(
                "podsim teardown of pod {} failed ({status}): {}",
                self.info.id,
                report.trim()
            );
        }
        Ok(())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            if std::thread::panicking() {
                eprintln!("{err:#}");
            } else {
                panic!("{err:#}");
            }
        }
    }
}

/// The podsim binary: `$PODSIM_BIN`, else `podsim` in the running test's
/// target directory (integration tests run from `target/<profile>/deps/`).
pub fn podsim_bin() -> PathBuf {
    sibling_binary("PODSIM_BIN", "podsim")
}

/// The hutch binary: `$HUTCH_BIN`, else `target/<profile>/hutch`.
pub fn hutch_bin() -> PathBuf {
    sibling_binary("HUTCH_BIN", "hutch")
}

fn sibling_binary(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_becomes_podsim_options() {
        let spec = PodSpec::new()
            .cap_add("SYS_ADMIN")
            .proc_unmasked()
            .netns_owner(NetnsOwner::Initial)
            .device(Device::Fuse);
        assert_eq!(
            spec.to_args(),
            [
                "--cap-add",
                "SYS_ADMIN",
                "--proc-unmasked",
                "--netns-owner",
                "initial",
                "--device",
                "fuse"
            ]
        );
    }

    #[test]
    fn default_caps_match_containerd_mask() {
        assert_eq!(cap_mask(&DEFAULT_CAPS).expect("known caps"), 0xa80425fb);
        assert_eq!(
            cap_mask(&["sys_admin", "CAP_NET_ADMIN"]).expect("known caps"),
            (1 << 21) | (1 << 12)
        );
        assert!(cap_bit("NOT_A_CAP").is_err());
    }
}
