//! `hutch daemon` running inside a simulated pod, and the real clients that
//! drive it: the docker CLI, docker-py (from a venv `tests/install-deps`
//! makes) and curl, each run inside the pod with `DOCKER_HOST` set.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::podsim::{hutch_bin, Pod};

/// Where the daemon listens inside the pod.
pub const SOCKET: &str = "/run/hutch/hutch.sock";
/// `DOCKER_HOST` for clients inside the pod.
pub const DOCKER_HOST: &str = "unix:///run/hutch/hutch.sock";
/// The docker CLI on the test machine.
pub const DOCKER_CLI: &str = "/usr/local/bin/docker";
/// The Python venv holding docker-py (`$HUTCH_TEST_VENV` overrides).
pub const DEFAULT_VENV: &str = "/opt/hutch-test-venv";
/// Where tests/install-deps installs the npm clients (dockerode).
pub const DEFAULT_NODE_PREFIX: &str = "/opt/hutch-test-node";
/// A start restores containers first (stopping those whose network died
/// with a killed daemon, up to their stop timeout) before it answers.
const START_TIMEOUT: Duration = Duration::from_secs(40);
/// A graceful stop stops the running containers first, bounded by the
/// daemon's `--shutdown-timeout` (15 s by default).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which buildx plugin a test drives (see tests/install-deps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buildx {
    /// Debian testing's, what docker-ce users have (0.29).
    Current,
    /// Debian 13's 0.13, from before buildx left `--push` to a daemon
    /// with the containerd image store (0.22).
    Debian13,
}

impl Buildx {
    /// Whether buildx pushes `--push` builds through `POST
    /// /images/{name}/push` itself, after the daemon's exporter has.
    pub fn pushes_through_the_api(self) -> bool {
        self == Buildx::Debian13
    }
}

/// A daemon in a pod; stopped (SIGTERM) when dropped.
pub struct Daemon<'p> {
    pod: &'p Pod,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl<'p> Daemon<'p> {
    /// Starts `hutch daemon -H unix:///run/hutch/hutch.sock` as pod root and
    /// waits until `/_ping` answers.
    pub fn start(pod: &'p Pod) -> anyhow::Result<Daemon<'p>> {
        Daemon::start_with(pod, &[])
    }

    /// As `start`, with more `hutch daemon` arguments (another `-H`, TLS).
    pub fn start_with(pod: &'p Pod, extra: &[&str]) -> anyhow::Result<Daemon<'p>> {
        Daemon::start_logging(pod, extra, "info,hutch=debug")
    }

    /// As `start_with`, logging at `level` (`HUTCH_LOG`): the tests read
    /// the debug log, a benchmark runs the daemon as deployed.
    pub fn start_logging(pod: &'p Pod, extra: &[&str], level: &str) -> anyhow::Result<Daemon<'p>> {
        Daemon::launch(pod, extra, level, &[])
    }

    /// As `start_with`, with these environment variables set for the
    /// daemon (`PATH` without the emulators, say).
    pub fn start_with_env(
        pod: &'p Pod,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon<'p>> {
        Daemon::launch(pod, extra, "info,hutch=debug", env)
    }

    fn launch(
        pod: &'p Pod,
        extra: &[&str],
        level: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon<'p>> {
        let log = tempfile::Builder::new()
            .prefix("hutch-daemon-")
            .suffix(".log")
            .tempfile()
            .context("creating the daemon log")?;
        let child = pod
            .exec(hutch_bin())
            .args(["daemon", "-H", DOCKER_HOST])
            .args(extra)
            .env("HUTCH_LOG", level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log.path()).context("opening the daemon log")?)
            .spawn()
            .context("spawning hutch daemon in the pod")?;
        let mut daemon = Daemon {
            pod,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ping = daemon.curl(&["-sf", "http://d/_ping"]).output()?;
            if ping.status.success() && ping.stdout == b"OK" {
                return Ok(daemon);
            }
            if let Some(child) = daemon.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("hutch daemon exited at start ({status}): {}", daemon.log());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "hutch daemon did not answer within {START_TIMEOUT:?}: {}",
                    daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pod(&self) -> &Pod {
        self.pod
    }

    /// The host PID of the `podsim exec` that runs the daemon (its
    /// processes are that one's descendants).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The docker CLI inside the pod, pointed at the daemon. Its config
    /// directory is in the pod's /tmp: pod root cannot read /root.
    pub fn docker(&self) -> Command {
        let mut cmd = self.pod.exec(DOCKER_CLI);
        cmd.env("DOCKER_HOST", DOCKER_HOST)
            .env("DOCKER_CONFIG", "/tmp/docker-config")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_API_VERSION");
        cmd
    }

    /// The docker CLI with the current buildx plugin (tests/install-deps'),
    /// so `docker build` runs buildx's docker driver against the daemon's
    /// BuildKit API. A config directory of its own keeps the plugin away
    /// from the other tests' `docker build` (the legacy builder API).
    pub fn docker_buildx(&self) -> anyhow::Result<Command> {
        self.docker_buildx_of(Buildx::Current)
    }

    /// The docker CLI with the given buildx plugin.
    pub fn docker_buildx_of(&self, buildx: Buildx) -> anyhow::Result<Command> {
        match buildx {
            Buildx::Current => self.docker_with_plugins("/tmp/docker-config-buildx", &["buildx"]),
            Buildx::Debian13 => {
                self.docker_with_plugins("/tmp/docker-config-buildx-0.13", &["buildx-0.13"])
            }
        }
    }

    /// The docker CLI with Compose v2 (`docker compose`) and buildx, as
    /// docker-ce installs them: compose builds through buildx's docker
    /// driver.
    pub fn docker_compose(&self) -> anyhow::Result<Command> {
        self.docker_with_plugins("/tmp/docker-config-compose", &["buildx", "compose"])
    }

    /// The docker CLI with a config directory at `config` (in the pod)
    /// whose `cli-plugins` links the plugins that tests/install-deps put
    /// under `/opt/hutch-test-DIR` (`$HUTCH_TEST_DIR` overrides, with `-`
    /// and `.` as `_`), each `cli-plugins/docker-NAME` where NAME is DIR up
    /// to its first `-`.
    fn docker_with_plugins(&self, config: &str, plugins: &[&str]) -> anyhow::Result<Command> {
        let mut link = self.pod.exec("/bin/sh");
        link.args([
            "-c",
            "dir=$1/cli-plugins; shift; mkdir -p \"$dir\" && for p; do ln -sfn \"$p\" \"$dir/\"; done",
            "sh",
            config,
        ]);
        for dir_name in plugins {
            let var = dir_name.to_uppercase().replace(['-', '.'], "_");
            let dir = std::env::var_os(format!("HUTCH_TEST_{var}")).map_or_else(
                || PathBuf::from(format!("/opt/hutch-test-{dir_name}")),
                PathBuf::from,
            );
            let name = dir_name.split('-').next().unwrap_or(dir_name);
            let plugin = dir.join("cli-plugins").join(format!("docker-{name}"));
            ensure!(
                plugin.is_file(),
                "no {name} plugin at {} (run tests/install-deps)",
                plugin.display()
            );
            link.arg(plugin);
        }
        ok(&link.output()?, "linking the CLI plugins")?;
        let mut cmd = self.docker();
        cmd.env("DOCKER_CONFIG", config);
        Ok(cmd)
    }

    /// `docker ARGS`, which must succeed; returns its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.docker().args(args).output()?;
        ok(&out, &format!("docker {}", args.join(" ")))
    }

    /// A container's address on its network (the first, when on several),
    /// as `docker inspect` shows it; empty when it has none.
    pub fn ip_of(&self, container: &str) -> anyhow::Result<String> {
        let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}";
        Ok(self
            .docker_ok(&["inspect", "-f", format, container])?
            .trim()
            .to_owned())
    }

    /// Loads the busybox test image and tags it `busybox:latest`.
    pub fn load_busybox(&self) -> anyhow::Result<()> {
        let image = crate::testimages::busybox()?;
        self.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
        self.docker_ok(&["tag", &image.reference, "busybox:latest"])?;
        Ok(())
    }

    /// curl inside the pod, over the daemon's socket (`http://d/PATH`).
    pub fn curl(&self, args: &[&str]) -> Command {
        let mut cmd = self.pod.exec("/usr/bin/curl");
        cmd.arg("--unix-socket").arg(SOCKET).args(args);
        cmd
    }

    /// One request to the daemon's API by curl in the pod: `METHOD
    /// http://dPATH` with the curl `args` (headers, `--data-binary @FILE`)
    /// before the URL; the status and the body. Curl must run to the end
    /// (any HTTP status is an answer); the path is taken literally
    /// (`--globoff`). Not for HEAD: curl would wait for a body.
    pub fn request(&self, method: &str, path: &str, args: &[&str]) -> anyhow::Result<ApiReply> {
        let what = format!("curl {method} {path}");
        let out = self
            .curl(&["-sS", "--globoff", "-w", "\n%{http_code}", "-X", method])
            .args(args)
            .arg(format!("http://d{path}"))
            .output()
            .with_context(|| format!("running {what}"))?;
        ensure!(out.status.success(), "{what} failed:\n{}", printed(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        // `-w` puts the status after the body's last byte, on a line of its own.
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &*text));
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|s| *s != 0)
            .with_context(|| format!("{what}: no HTTP status:\n{}", printed(&out)))?;
        Ok(ApiReply {
            status,
            body: body.to_owned(),
        })
    }

    /// `request` POSTing `json` as the body, as clients send API objects.
    pub fn post_json(&self, path: &str, json: &str) -> anyhow::Result<ApiReply> {
        self.request(
            "POST",
            path,
            &["-H", "Content-Type: application/json", "--data-raw", json],
        )
    }

    /// A Python interpreter of the docker-py venv, inside the pod.
    pub fn venv_python(&self) -> Command {
        let venv = std::env::var_os("HUTCH_TEST_VENV")
            .map_or_else(|| PathBuf::from(DEFAULT_VENV), PathBuf::from);
        let mut cmd = self.pod.exec(venv.join("bin/python3"));
        cmd.env("DOCKER_HOST", DOCKER_HOST).env("HOME", "/tmp");
        cmd
    }

    /// node inside the pod, with tests/install-deps' npm modules
    /// (dockerode) on its path and DOCKER_HOST set.
    pub fn node(&self) -> Command {
        let prefix = std::env::var_os("HUTCH_TEST_NODE")
            .map_or_else(|| PathBuf::from(DEFAULT_NODE_PREFIX), PathBuf::from);
        let mut cmd = self.pod.exec("/usr/bin/node");
        cmd.env("NODE_PATH", prefix.join("node_modules"))
            .env("DOCKER_HOST", DOCKER_HOST)
            .env("HOME", "/tmp");
        cmd
    }

    /// Debian's python3 inside the pod (standard library only).
    pub fn system_python(&self) -> Command {
        let mut cmd = self.pod.exec("/usr/bin/python3");
        cmd.env("HUTCH_SOCKET", SOCKET);
        cmd
    }

    /// SIGTERM (podsim exec forwards it) and wait: the exit status.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        self.terminate()
    }

    /// SIGKILL to every process of the daemon at once (its pod-level
    /// parent, the engine, the supervisor zygote), as a crash or an OOM
    /// kill would end it; the supervisors, detached from it, live on.
    /// Returns what it had logged.
    pub fn kill9(mut self) -> anyhow::Result<String> {
        let Some(mut child) = self.child.take() else {
            bail!("the daemon was already stopped");
        };
        let procs = descendants(child.id());
        ensure!(!procs.is_empty(), "no daemon process under {}", child.id());
        for pid in procs {
            let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
            // One may be gone already (the zygote follows the engine).
            let _ = kill(pid, Signal::SIGKILL);
        }
        child.wait().context("waiting for podsim exec")?;
        Ok(self.log())
    }

    fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("the daemon was already stopped");
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        kill(pid, Signal::SIGTERM).context("signalling the daemon")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                // Best effort: report the hang, not the kill.
                let _ = child.kill();
                let _ = child.wait();
                bail!("hutch daemon ignored SIGTERM for {STOP_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon<'_> {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(err) = self.terminate() {
                eprintln!("{err:#}");
            }
        }
    }
}

/// The daemon's answer to one `Daemon::request`.
#[derive(Debug)]
pub struct ApiReply {
    /// The HTTP status.
    pub status: u16,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

/// `STATUS: BODY`, for failure messages.
impl std::fmt::Display for ApiReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.body)
    }
}

/// Every process below `root` (host PIDs), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parens.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid) in &parents {
            if *ppid == p && !found.contains(pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Everything a command printed, with its status, for a failure message.
pub fn printed(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command's stdout, or an error with everything it printed.
pub fn ok(out: &Output, what: &str) -> anyhow::Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A test client script shipped in `tests/clients/` (world-readable, so pod
/// root can run it).
pub fn client_script(name: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name);
    // The pod reads it as an unprivileged "other" and has its own /tmp, so
    // a checkout under /tmp or /root is invisible to it: serve a copy from
    // the target directory, which `tests/target-dir` keeps pod-visible.
    let dir = crate::workspace::target_dir().join("test-clients");
    let copy = dir.join(name);
    let fresh = std::fs::read(&source).ok().and_then(|text| {
        std::fs::create_dir_all(&dir).ok()?;
        if std::fs::read(&copy).ok().as_ref() == Some(&text) {
            return Some(());
        }
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, &text).ok()?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).ok()?;
        std::fs::rename(&tmp, &copy).ok()
    });
    if fresh.is_some() {
        copy
    } else {
        source
    }
}
