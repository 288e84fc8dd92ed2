//! `tests/clients/http_fixture.py` as a sidecar in a pod's network
//! namespace: files over plain HTTP on 127.0.0.1, plus misbehaving paths
//! (a redirect loop, a short body, a stalled body, a stalled registry).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::{ensure, Context, Result};

use crate::daemon::client_script;
use crate::podsim::Pod;

/// The running fixture; killed on drop.
pub struct HttpFixture(Child);

impl HttpFixture {
    /// Serves `root` on `127.0.0.1:port` in the pod's network.
    pub fn start(pod: &Pod, port: u16, root: &Path) -> Result<HttpFixture> {
        let mut child = pod
            .sidecar("/usr/bin/python3")
            .arg(client_script("http_fixture.py"))
            .arg(port.to_string())
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the HTTP fixture")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("fixture stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        ensure!(line.trim() == "ready", "HTTP fixture: {line:?}");
        Ok(HttpFixture(child))
    }
}

impl Drop for HttpFixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
