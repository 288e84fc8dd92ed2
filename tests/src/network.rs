//! A rig for hutch's networking inside a simulated pod: `hutch __net` as
//! pod root, driven by JSON commands, over the busybox test image (see
//! [`crate::runtime::Rig`]), with the pod given an address of its own (a
//! dummy link, as a pod's eth0) and an HTTP server in the pod's netns.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hutch_engine::runtime::ContainerSpec;
use serde_json::{json, Value};

/// The two pod variants every networking test runs in (no tun in either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Default pod: no NET_ADMIN, so the layer-4 relay uplink.
    Relay,
    /// NET_ADMIN over a pod-owned netns: the kernel uplink.
    Kernel,
}

impl Variant {
    pub fn pod(self) -> crate::podsim::PodSpec {
        match self {
            Variant::Relay => crate::podsim::PodSpec::new(),
            Variant::Kernel => crate::podsim::PodSpec::new().cap_add("NET_ADMIN"),
        }
    }

    /// The uplink name hutch reports for the variant.
    pub fn uplink(self) -> &'static str {
        match self {
            Variant::Relay => "l4-relay",
            Variant::Kernel => "kernel-veth-nat",
        }
    }
}

/// `in_variants!(check)` makes `check::relay` and `check::kernel` tests that
/// call `check(Variant)`; the calling file imports `Variant`.
#[macro_export]
macro_rules! in_variants {
    ($check:ident) => {
        mod $check {
            #[test]
            fn relay() -> anyhow::Result<()> {
                super::$check(super::Variant::Relay)
            }
            #[test]
            fn kernel() -> anyhow::Result<()> {
                super::$check(super::Variant::Kernel)
            }
        }
    };
}

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
/// GET `url` with curl from the pod's netns, retried for 15 s while the
/// server starts (a published port, a container's web server).
pub fn pod_get(pod: &Pod, url: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = pod
            .exec("/usr/bin/curl")
            .args(["-sSf", "-m", "3", url])
            .output()?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            bail!(
                "GET {url} from the pod: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

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
        Session::start_with(rig, uplink, &[])
    }

    /// A session with more `hutch __net` options (`--resolv-conf PATH`).
    pub fn start_with(rig: &Rig, uplink: &str, extra: &[&str]) -> anyhow::Result<Session> {
        let mut child = rig
            .pod
            .exec(hutch_bin())
            .args(["__net", "--uplink", uplink])
            .args(extra)
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

/// The network fixture (tests/tools/net_tool.rs), built beside hutch.
pub fn net_tool() -> PathBuf {
    hutch_bin().with_file_name("net-tool")
}

/// What the pod's DNS server ([`pod_dns`]) answers for every A query.
pub const POD_DNS_ANSWER: &str = "10.9.8.7";
/// The ports of the UDP echo servers [`pod_dns`] also runs in the pod.
pub const POD_UDP_ECHO_PORT: u16 = 5300;
pub const POD_UDP_ECHO_PORT2: u16 = 5301;

/// Starts, in the pod's netns, a DNS server on port 53 (as host root: the
/// pod's root may not bind ports below 1024 there) that answers every A
/// query with [`POD_DNS_ANSWER`], and UDP echo servers on
/// [`POD_UDP_ECHO_PORT`] and [`POD_UDP_ECHO_PORT2`] (as pod root). Writes a resolv.conf naming the
/// pod's address and returns its path in the pod with the two processes.
pub fn pod_dns(rig: &Rig) -> anyhow::Result<(String, Vec<Child>)> {
    let quiet = |mut c: Command| -> anyhow::Result<Child> {
        Ok(c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?)
    };
    let mut dns = rig.pod.sidecar(net_tool());
    dns.args(["dns", "53", POD_DNS_ANSWER]);
    let mut children = vec![quiet(dns)?];
    for port in [POD_UDP_ECHO_PORT, POD_UDP_ECHO_PORT2] {
        let mut echo = rig.pod.exec(net_tool());
        echo.args(["echo", &port.to_string()]);
        children.push(quiet(echo)?);
    }
    let name = "pod-resolv.conf";
    let host = rig.pod.data_dir_host().join(name);
    std::fs::write(&host, format!("nameserver {POD_IP}\noptions timeout:2\n"))?;
    set_mode(&host, 0o644)?;
    Ok((
        rig.pod.data_root().join(name).display().to_string(),
        children,
    ))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Builds a layer (a directory in the pod's data dir) holding the host
/// programs `programs` in /usr/local/bin and the shared libraries they load
/// at their host paths, so dynamically linked host tools (the UDP fixture,
/// iperf3) run in busybox containers. Returns the layer's path in the pod;
/// put it first in a spec's `rootfs.lower`.
pub fn tools_layer(rig: &Rig, name: &str, programs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let rel = format!("tools/{name}");
    let root = rig.pod.data_dir_host().join(&rel);
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for program in programs {
        let base = program.file_name().context("program name")?;
        files.push((program.clone(), Path::new("usr/local/bin").join(base)));
        for lib in shared_libraries(program)? {
            let inside = lib.strip_prefix("/").unwrap_or(&lib).to_path_buf();
            files.push((lib, inside));
        }
    }
    for (from, to) in files {
        let dest = root.join(&to);
        let mut dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir)?;
        while dir.starts_with(rig.pod.data_dir_host()) && dir != rig.pod.data_dir_host() {
            set_mode(&dir, 0o755)?;
            dir.pop();
        }
        std::fs::copy(&from, &dest)
            .with_context(|| format!("copying {} into the tools layer", from.display()))?;
        set_mode(&dest, 0o755)?;
    }
    Ok(rig.pod.data_root().join(rel))
}

/// The shared libraries `program` loads (with the dynamic loader), by `ldd`.
fn shared_libraries(program: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    anyhow::ensure!(out.status.success(), "ldd {}: {text}", program.display());
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}
