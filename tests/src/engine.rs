//! A rig for the container engine inside a simulated pod: the busybox test
//! image loaded into the pod's data root with `hutch load`, and the engine
//! driven through `hutch __engine` (the engine API without a daemon; each
//! call opens the data root as the daemon does, re-adopting supervisors).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::podsim::{hutch_bin, Pod, PodSpec};
use crate::testimages;

/// The image every engine test runs.
pub const IMAGE: &str = "hutch-test/busybox:latest";

pub struct EngineRig {
    pub pod: Pod,
}

/// A finished `hutch __engine` call.
#[derive(Debug)]
pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    fn from(out: Output) -> Done {
        Done {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Fails unless the call succeeded; returns its stdout trimmed.
    pub fn ok(self) -> anyhow::Result<String> {
        if self.code != 0 {
            bail!(
                "hutch __engine failed ({}): {}{}",
                self.code,
                self.stdout,
                self.stderr
            );
        }
        Ok(self.stdout.trim().to_string())
    }
}

impl EngineRig {
    pub fn start(spec: &PodSpec) -> anyhow::Result<EngineRig> {
        let image = testimages::busybox()?;
        let pod = Pod::start(spec)?;
        let rig = EngineRig { pod };
        let out = rig
            .pod
            .exec(hutch_bin())
            .args(["--data-root", "/var/lib/hutch", "load", "-q", "-i"])
            .arg(&image.docker_archive)
            .output()?;
        if !out.status.success() {
            bail!("hutch load: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(rig)
    }

    /// `hutch __engine ARGS` as pod root.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.pod.exec(hutch_bin());
        cmd.args(["--data-root", "/var/lib/hutch", "__engine"])
            .args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `hutch __engine ARGS` to its end (bounded by a timeout).
    pub fn engine(&self, args: &[&str]) -> anyhow::Result<Done> {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(Done::from(child.wait_with_output()?));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("hutch __engine {args:?} did not finish");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `run -d IMAGE ARGS...` → the container's ID.
    pub fn run_detached(&self, opts: &[&str], cmd: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        self.engine(&args)?.ok()
    }

    /// The container's inspect JSON.
    pub fn inspect(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.engine(&["inspect", id])?.ok()?)?)
    }

    /// Polls inspect until `pred` holds.
    pub fn wait_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.inspect(id)?;
            if pred(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("{what}: not reached in {timeout:?}: {v}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A long-running `__engine serve` (a stand-in daemon).
    pub fn serve(&self) -> anyhow::Result<Server> {
        self.serve_with(&[])
    }

    /// `__engine OPTIONS serve`, with engine options such as
    /// `--private-layers-tmpfs`.
    pub fn serve_with(&self, options: &[&str]) -> anyhow::Result<Server> {
        let mut args = options.to_vec();
        args.push("serve");
        let mut child = self
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().context("serve stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("serve stdout")?);
        Ok(Server {
            child,
            stdin,
            stdout,
        })
    }
}

/// `hutch __engine serve`.
pub struct Server {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Sends one command line; returns its output and code.
    pub fn call(&mut self, line: &str) -> anyhow::Result<(i32, String)> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        let mut out = String::new();
        loop {
            let mut l = String::new();
            if self.stdout.read_line(&mut l)? == 0 {
                bail!("serve ended during {line:?}: {out}");
            }
            if let Some(code) = l.trim_end().strip_prefix("--end ") {
                return Ok((code.parse()?, out));
            }
            out.push_str(&l);
        }
    }

    /// The engine process's PID (as seen by the test, on the host).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
