//! A rig for driving hutch's container runtime inside a simulated pod:
//! the busybox test image unpacked by the pod's root into the pod's data
//! directory, container specs written where the pod can read them, and
//! `hutch __runtime run` started as pod root.
//!
//! Layers live at `/var/lib/hutch/layers/<name>` inside the pod (on the
//! pod's disk, an ext4 emptyDir). Private mode needs them on a tmpfs the
//! engine owns instead: [`Rig::tmpfs_store_args`] gives the `__runtime run`
//! options that mount one and fill it with copies of the same layers.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hutch_engine::runtime::{ContainerSpec, IdMap, ProcessSpec, RootfsSpec};

use crate::podsim::{hutch_bin, Pod, PodSpec};
use crate::testimages;

/// Where the layers are unpacked inside the pod.
pub const LAYERS: &str = "/var/lib/hutch/layers";
/// The engine-owned tmpfs layer store for private mode.
pub const TMPFS_STORE: &str = "/var/lib/hutch/store";
/// A layer on top of busybox that adds a user and groups.
const USERS_LAYER: &str = "users";
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:app:/home/app:/bin/sh\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:2000:app\naudio:x:2001:\nnogroup:x:65534:\n";

/// How long a container run may take before the rig gives up on it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A pod with the busybox image unpacked in it.
pub struct Rig {
    pub pod: Pod,
    /// Host path of the gzip layer blob (world-readable, so the pod reads it).
    busybox_blob: PathBuf,
}

impl Rig {
    /// Starts a pod and unpacks busybox (and the users layer) as pod root.
    pub fn start(spec: &PodSpec) -> anyhow::Result<Rig> {
        let image = testimages::busybox()?;
        let layer = image.layers.first().context("busybox has a layer")?;
        let busybox_blob = image.blob_path(&layer.digest);
        let pod = Pod::start(spec)?;
        let rig = Rig { pod, busybox_blob };
        rig.pod_sh(&rig.unpack_script(LAYERS))?;
        let specs = rig.pod.data_dir_host().join("specs");
        std::fs::create_dir_all(&specs)?;
        std::fs::set_permissions(&specs, std::fs::Permissions::from_mode(0o755))?;
        Ok(rig)
    }

    /// Shell commands that unpack busybox and the users layer into `dir`.
    fn unpack_script(&self, dir: &str) -> String {
        format!(
            "set -e; mkdir -p {dir}/busybox {dir}/{USERS_LAYER}/etc; \
             tar -xzf {blob} -C {dir}/busybox; \
             printf '{PASSWD}' > {dir}/{USERS_LAYER}/etc/passwd; \
             printf '{GROUP}' > {dir}/{USERS_LAYER}/etc/group",
            blob = self.busybox_blob.display(),
        )
    }

    /// `__runtime run` options that mount an engine-owned tmpfs store and
    /// unpack the layers into it; use with [`Rig::spec_on`] `TMPFS_STORE`.
    pub fn tmpfs_store_args(&self) -> Vec<String> {
        vec![
            "--tmpfs".into(),
            TMPFS_STORE.into(),
            "--setup".into(),
            self.unpack_script(TMPFS_STORE),
        ]
    }

    /// A container running `args` as root in identity mode over the layers
    /// in `LAYERS`.
    pub fn spec(&self, id: &str, args: &[&str]) -> ContainerSpec {
        self.spec_on(LAYERS, id, args)
    }

    /// A container over the layers in `store`.
    pub fn spec_on(&self, store: &str, id: &str, args: &[&str]) -> ContainerSpec {
        let dir = PathBuf::from(format!("/var/lib/hutch/containers/{id}"));
        let rootfs = RootfsSpec {
            lower: vec![
                PathBuf::from(format!("{store}/{USERS_LAYER}")),
                PathBuf::from(format!("{store}/busybox")),
            ],
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("rootfs"),
            readonly: false,
            lowers_shifted: false,
        };
        let process = ProcessSpec::new(args.iter().map(|a| a.to_string()).collect());
        ContainerSpec::new(id, rootfs, process, IdMap::identity())
    }

    /// Writes `spec` where the pod can read it; returns its path in the pod.
    pub fn write_spec(&self, spec: &ContainerSpec) -> anyhow::Result<String> {
        let name = format!("specs/{}.json", spec.id);
        let host = self.pod.data_dir_host().join(&name);
        std::fs::write(&host, serde_json::to_vec_pretty(spec)?)?;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o644))?;
        Ok(format!("{}/{name}", self.pod.data_root().display()))
    }

    /// `hutch __runtime run` of `specs` as pod root, with `extra` options.
    pub fn command(&self, specs: &[&ContainerSpec], extra: &[String]) -> anyhow::Result<Command> {
        let mut cmd = self.pod.exec(hutch_bin());
        cmd.args(["__runtime", "run"]);
        for spec in specs {
            cmd.arg("--spec").arg(self.write_spec(spec)?);
        }
        cmd.args(extra);
        Ok(cmd)
    }

    /// Runs the containers to their end and returns hutch's output.
    pub fn run(&self, specs: &[&ContainerSpec], extra: &[String]) -> anyhow::Result<Run> {
        let child = self
            .command(specs, extra)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Run::finish(child)
    }

    /// Starts the containers and returns once all of them run, with their
    /// PIDs in the pod's PID namespace (from `--pid-file`).
    pub fn spawn(&self, specs: &[&ContainerSpec], extra: &[String]) -> anyhow::Result<Running> {
        let name = format!("{}.pids", specs.first().map_or("none", |s| s.id.as_str()));
        let pid_file = format!("{}/{name}", self.pod.data_root().display());
        let mut args = vec!["--pid-file".to_string(), pid_file];
        args.extend_from_slice(extra);
        let mut child = self
            .command(specs, &args)?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let host_file = self.pod.data_dir_host().join(&name);
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&host_file) {
                let pids = text
                    .lines()
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()?;
                return Ok(Running { child, pids });
            }
            if let Some(status) = child.try_wait()? {
                let run = Run::finish(child)?;
                bail!("hutch ended ({status}) before its containers ran: {run:?}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the containers did not start within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Runs `sh -c script` as pod root; fails unless it succeeds.
    pub fn pod_sh(&self, script: &str) -> anyhow::Result<String> {
        let out = self.pod.exec("sh").args(["-c", script]).output()?;
        if !out.status.success() {
            bail!(
                "in the pod: {script}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// A file's contents as the pod's root reads them.
    pub fn pod_read(&self, path: &str) -> anyhow::Result<String> {
        self.pod_sh(&format!("cat {path}"))
    }

    /// The names in a directory as the pod's root lists them.
    pub fn pod_ls(&self, path: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .pod_sh(&format!("ls {path}"))?
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// A finished `hutch __runtime run`.
#[derive(Debug)]
pub struct Run {
    /// hutch's exit code: the last container's, as Docker reports it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn finish(child: Child) -> anyhow::Result<Run> {
        let out = wait_with_timeout(child, RUN_TIMEOUT)?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `key=value` lines of the output, as the tests' scripts print them.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// `hutch __runtime run` whose containers are running.
pub struct Running {
    child: Child,
    /// Container init PIDs in the pod's PID namespace, in spec order.
    pub pids: Vec<u32>,
}

impl Running {
    /// Waits for hutch to end (the containers must end on their own or be
    /// killed by the test).
    pub fn finish(self) -> anyhow::Result<Run> {
        Run::finish(self.child)
    }
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> anyhow::Result<Output> {
    let deadline = Instant::now() + timeout;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Drain stderr on a thread so neither pipe can fill up and block hutch.
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("hutch did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out_reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader panicked"))?;
    let stderr = err_reader
        .join()
        .map_err(|_| anyhow::anyhow!("stderr reader panicked"))?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}
