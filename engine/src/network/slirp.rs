//! The third uplink, on request (`--network-uplink slirp4netns`) in a pod
//! that has /dev/net/tun: Debian's slirp4netns gives the bridge netns a tap
//! device (`tap0`, 10.0.2.100/24, default route via 10.0.2.2) and carries
//! its traffic through sockets it opens in the pod's netns, as rootless
//! Docker and Podman do. From there on the bridge netns routes and
//! masquerades onto `tap0` exactly as the kernel path does onto its veth.
//!
//! slirp4netns runs as a child of the engine, in the engine's user
//! namespace (which owns the bridge netns, so it may enter it and create the
//! tap there), and finds the netns by a bind mount. It exits when its stdin
//! (`--exit-fd 0`) reaches end of file, i.e. when the engine closes it or
//! dies, so it never outlives the bridge netns it serves.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use super::netns::{self, NetNs};

/// The tap device slirp4netns makes in the bridge netns.
pub const TAP: &str = "tap0";
/// How long slirp4netns may take to configure the tap.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running slirp4netns for the bridge netns; stopped when dropped.
#[derive(Debug)]
pub struct Slirp {
    child: Child,
    /// Closing it tells slirp4netns to exit.
    exit: Option<ChildStdin>,
    netns_path: PathBuf,
}

impl Slirp {
    /// Binds `bridge` at `<run_dir>/netns/bridge` and starts slirp4netns
    /// on it; returns once the tap is configured.
    pub fn start(bridge: &NetNs, run_dir: &Path) -> io::Result<Slirp> {
        let dir = run_dir.join("netns");
        std::fs::create_dir_all(&dir)?;
        let netns_path = dir.join("bridge");
        let _ = netns::unbind(&netns_path);
        bridge.bind_to(&netns_path)?;
        let spawned = Command::new("slirp4netns")
            .args([
                "--configure",
                "--mtu=65520",
                // Containers reach the pod's services at the pod's
                // address; 10.0.2.2 must not be a way into its loopback.
                "--disable-host-loopback",
                "--exit-fd=0",
                "--ready-fd=1",
                "--netns-type=path",
            ])
            .arg(&netns_path)
            .arg(TAP)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = netns::unbind(&netns_path);
                return Err(io::Error::new(
                    e.kind(),
                    format!("running slirp4netns: {e}"),
                ));
            }
        };
        let exit = child.stdin.take();
        let mut slirp = Slirp {
            child,
            exit,
            netns_path,
        };
        slirp.wait_ready()?;
        Ok(slirp)
    }

    /// slirp4netns writes "1" on its ready fd once the tap is up; it exits
    /// (with the reason on stderr) if it cannot make it.
    fn wait_ready(&mut self) -> io::Result<()> {
        let Some(mut out) = self.child.stdout.take() else {
            return Err(io::Error::other("slirp4netns has no stdout"));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hutch-slirp".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                let _ = tx.send(out.read(&mut byte).map(|n| n == 1 && byte[0] == b'1'));
            })?;
        match rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(true)) => Ok(()),
            Ok(_) | Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let mut why = String::new();
                if let Some(mut err) = self.child.stderr.take() {
                    let _ = err.read_to_string(&mut why);
                }
                Err(io::Error::other(format!(
                    "slirp4netns did not bring {TAP} up: {}",
                    why.trim()
                )))
            }
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        drop(self.exit.take());
        if wait_timeout(&mut self.child, Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = netns::unbind(&self.netns_path);
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
