//! A rig for hutch's networking inside a simulated pod: `hutch __net` as
//! pod root, driven by JSON commands, over the busybox test image (see
//! [`crate::runtime::Rig`]), with the pod given an address of its own (a
//! dummy link, as a pod's eth0) and an HTTP server in the pod's netns.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hutch_engine::runtime::ContainerSpec;
use serde_json::{json, Value};

use crate::podsim::{hutch_bin, Pod};
use crate::runtime::Rig;

/// The pod's own address in these tests.
pub const POD_IP: &str = "10.244.7.2";
/// The port of the HTTP server the tests run in the pod's netns.
pub const POD_HTTP_PORT: u16 = 8081;
/// What that server answers.
pub const POD_HTTP_BODY: &str = "hello-from-the-pod";

/// Gives the pod an address on a veth link (as host root in its netns)
/// and starts busybox httpd there as pod root; returns the httpd process.
pub fn pod_network(rig: &Rig) -> anyhow::Result<Child> {
    pod_network_in(&rig.pod)
}

/// [`pod_network`] for any pod (a daemon's).
pub fn pod_network_in(pod: &Pod) -> anyhow::Result<Child> {
    let status = pod
        .sidecar("sh")
        .args([
            "-c",
            &format!(
                "ip link add eth0 type veth peer name eth0p && ip addr add {POD_IP}/24 dev eth0 && ip link set eth0p up && ip link set eth0 up"
            ),
        ])
        .status()?;
    anyhow::ensure!(status.success(), "configuring the pod's address: {status}");
    let out = pod
        .exec("sh")
        .args([
            "-c",
            &format!(
                "mkdir -p /var/lib/hutch/www && echo {POD_HTTP_BODY} > /var/lib/hutch/www/index.html"
            ),
        ])
        .output()?;
    anyhow::ensure!(out.status.success(), "writing the pod's web page: {out:?}");
    let httpd = pod
        .exec("/bin/busybox")
        .args([
            "httpd",
            "-f",
            "-p",
            &POD_HTTP_PORT.to_string(),
            "-h",
            "/var/lib/hutch/www",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(httpd)
}

/// One `hutch __net` session.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    pub fn start(rig: &Rig, uplink: &str) -> anyhow::Result<Session> {
        let mut child = rig
            .pod
            .exec(hutch_bin())
            .args(["__net", "--uplink", uplink])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Session {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends a command; returns its `ok` value or fails with its error.
    pub fn call(&mut self, cmd: Value) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("hutch __net ended on {cmd}");
        }
        let reply: Value = serde_json::from_str(&line)?;
        match reply.get("error") {
            Some(e) => bail!("{cmd}: {e}"),
            None => Ok(reply.get("ok").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Runs a container; returns its NetworkSettings.
    pub fn run(&mut self, spec: &ContainerSpec, extra: Value) -> anyhow::Result<Value> {
        let mut cmd = json!({ "op": "run", "spec": spec, "name": spec.id });
        if let (Some(obj), Some(more)) = (cmd.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        self.call(cmd)
    }

    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.call(json!({ "op": "shutdown" }))?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "hutch __net exited with {status}");
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a container's file to appear in its upper dir; returns it.
pub fn wait_file(rig: &Rig, id: &str, name: &str, timeout: Duration) -> anyhow::Result<String> {
    let path = rig
        .pod
        .data_dir_host()
        .join(format!("containers/{id}/upper/{name}"));
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("{id} did not write /{name} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
