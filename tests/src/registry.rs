//! A local registry fixture: Debian's `docker-registry` (distribution 2.8)
//! running as a podsim sidecar in the pod's network namespace, so the pod
//! reaches it on 127.0.0.1 and nothing outside the pod can.
//!
//! Three variants: plain HTTP, HTTP with basic auth (htpasswd, bcrypt), and
//! HTTPS with a certificate from a throwaway CA. [`Registry::push`] seeds it
//! with a test image using skopeo, also as a sidecar.
//!
//! The fixture's files (config, CA certificate, htpasswd, log) live in a
//! world-readable directory under `<workspace>/target/test-fixtures/`, not
//! in /tmp: the pod has its own /tmp, but sees the rest of the host tree,
//! so the pod root can read the CA at the same path as the host.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

use crate::podsim::Pod;
use crate::testimages::TestImage;

/// Debian's registry binary (package docker-registry).
const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// The user of the BasicAuth variant.
const USERNAME: &str = "hutch";
const PASSWORD: &str = "hutch-registry-password";
/// How long the registry may take to listen and answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What the registry asks of its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryVariant {
    /// HTTP, no authentication (an "insecure registry" to Docker).
    Plain,
    /// HTTP with basic authentication against an htpasswd file.
    BasicAuth,
    /// HTTPS with a server certificate for 127.0.0.1 and localhost, signed
    /// by a CA of its own; no authentication.
    Tls,
}

/// A running registry. Dropping it stops the registry; podsim would kill
/// it at pod teardown anyway.
pub struct Registry {
    variant: RegistryVariant,
    addr: SocketAddr,
    process: Child,
    fixture: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry of `variant` on a free 127.0.0.1 port of `pod`'s
    /// network namespace and waits until `/v2/` answers.
    pub fn start(pod: &Pod, variant: RegistryVariant) -> anyhow::Result<Registry> {
        let fixture = fixture_dir()?;
        let dir = fixture.path();
        let storage = dir.join("storage");
        fs::create_dir(&storage)?;
        fs::set_permissions(&storage, fs::Permissions::from_mode(0o700))?;

        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:0\n",
            storage.display()
        );
        match variant {
            RegistryVariant::Plain => {}
            RegistryVariant::BasicAuth => {
                let htpasswd = dir.join("htpasswd");
                write_htpasswd(&htpasswd)?;
                write!(
                    config,
                    "auth:\n  htpasswd:\n    realm: hutch-test\n    path: {}\n",
                    htpasswd.display()
                )?;
            }
            RegistryVariant::Tls => {
                let tls = make_certificates(dir)?;
                write!(
                    config,
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    tls.cert.display(),
                    tls.key.display()
                )?;
            }
        }
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config)?;

        let log_path = dir.join("registry.log");
        let log = fs::File::create(&log_path)?;
        let process = pod
            .sidecar(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {REGISTRY_BIN} (Debian package docker-registry)"))?;
        let mut registry = Registry {
            variant,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            process,
            fixture,
        };
        registry.addr = registry.wait_listening(&log_path)?;
        registry.wait_answering(pod)?;
        Ok(registry)
    }

    pub fn variant(&self) -> RegistryVariant {
        self.variant
    }

    /// The listening address, in the pod's network namespace.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.variant == RegistryVariant::Tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `127.0.0.1:PORT/<repo:tag>`.
    pub fn image_ref(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// (username, password) for the BasicAuth variant.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        (self.variant == RegistryVariant::BasicAuth).then_some((USERNAME, PASSWORD))
    }

    /// The CA certificate (PEM) that signed the Tls variant's server
    /// certificate; readable by the pod's root at this same path.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        (self.variant == RegistryVariant::Tls).then(|| self.fixture.path().join("certs/ca.crt"))
    }

    /// A directory holding only `ca.crt`, laid out like
    /// `/etc/docker/certs.d/<host>/` (skopeo's `--cert-dir`).
    pub fn cert_dir(&self) -> Option<PathBuf> {
        (self.variant == RegistryVariant::Tls).then(|| self.fixture.path().join("certs"))
    }

    /// The registry's storage root (filesystem driver), for tests that
    /// tamper with what it serves.
    pub fn storage_dir(&self) -> PathBuf {
        self.fixture.path().join("storage")
    }

    /// The registry's log so far (for test failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.fixture.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `image` as `repo_tag` (`repo:tag`) with skopeo, run as a
    /// sidecar of `pod`. Blobs go up as they are, so the manifest digest in
    /// the registry is `image.manifest_digest`.
    pub fn push(&self, pod: &Pod, image: &TestImage, repo_tag: &str) -> anyhow::Result<()> {
        self.skopeo_copy(pod, &image.oci_ref(), &image.name, repo_tag, false)
    }

    /// Pushes the OCI layout `layout`'s `latest`, an image index, with every
    /// image it lists (`skopeo copy --all`).
    pub fn push_index(&self, pod: &Pod, layout: &Path, repo_tag: &str) -> anyhow::Result<()> {
        let source = format!("oci:{}:latest", layout.display());
        self.skopeo_copy(pod, &source, "the index", repo_tag, true)
    }

    fn skopeo_copy(
        &self,
        pod: &Pod,
        source: &str,
        name: &str,
        repo_tag: &str,
        all: bool,
    ) -> anyhow::Result<()> {
        let mut skopeo = pod.sidecar("skopeo");
        skopeo.args(["--insecure-policy", "copy", "--quiet", "--retry-times", "0"]);
        if all {
            skopeo.arg("--all");
        }
        match self.variant {
            RegistryVariant::Plain => {
                skopeo.arg("--dest-tls-verify=false");
            }
            RegistryVariant::BasicAuth => {
                skopeo.arg("--dest-tls-verify=false");
                skopeo.arg(format!("--dest-creds={USERNAME}:{PASSWORD}"));
            }
            RegistryVariant::Tls => {
                skopeo.arg("--dest-tls-verify=true");
                skopeo
                    .arg("--dest-cert-dir")
                    .arg(self.fixture.path().join("certs"));
            }
        }
        skopeo
            .arg(source)
            .arg(format!("docker://{}", self.image_ref(repo_tag)));
        let output = skopeo
            .output()
            .context("running skopeo (Debian package skopeo)")?;
        ensure!(
            output.status.success(),
            "skopeo push of {} to {} failed ({}): {}\nregistry log:\n{}",
            name,
            self.image_ref(repo_tag),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        Ok(())
    }

    /// Stops the registry.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.kill()
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        if self.process.try_wait()?.is_none() {
            // The sidecar exec'd the registry itself: this is its pid.
            self.process.kill().context("killing the registry")?;
            self.process.wait().context("reaping the registry")?;
        }
        Ok(())
    }

    /// Reads the port from the registry's "listening on 127.0.0.1:PORT" line
    /// (it binds port 0, so the kernel picks a free one).
    fn wait_listening(&mut self, log_path: &Path) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            if let Some(addr) = log.lines().find_map(listening_addr) {
                return Ok(addr);
            }
            if let Some(status) = self.process.try_wait()? {
                bail!("the registry exited ({status}) before listening:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("the registry did not listen within {START_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `/v2/` from the pod's netns until it gives the answer this
    /// variant should give: 200, or 401 without credentials.
    fn wait_answering(&self, pod: &Pod) -> anyhow::Result<()> {
        let want = if self.variant == RegistryVariant::BasicAuth {
            "401"
        } else {
            "200"
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut curl = pod.sidecar("curl");
            curl.args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ]);
            if let Some(ca) = self.ca_cert_path() {
                curl.arg("--cacert").arg(ca);
            }
            let output: Output = curl
                .arg(format!("{}/v2/", self.url()))
                .output()
                .context("running curl")?;
            let code = String::from_utf8_lossy(&output.stdout).into_owned();
            if code == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}/v2/ answered {code:?}, not {want}:\n{}",
                    self.url(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Err(err) = self.kill() {
            eprintln!("stopping the registry: {err:#}");
        }
    }
}

/// Parses distribution's `msg="listening on 127.0.0.1:PORT[, tls]"`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on ").nth(1)?;
    let addr = rest
        .split(|c: char| c == ',' || c == '"' || c.is_whitespace())
        .next()?;
    addr.parse().ok()
}

/// A fresh world-readable directory under `<workspace>/target/test-fixtures`.
fn fixture_dir() -> anyhow::Result<tempfile::TempDir> {
    let parent = crate::workspace::target_dir().join("test-fixtures");
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("registry-")
        .tempdir_in(&parent)?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn write_htpasswd(path: &Path) -> anyhow::Result<()> {
    // -B: bcrypt, the only hash distribution's htpasswd backend accepts.
    let output = Command::new("htpasswd")
        .args(["-B", "-b", "-n", USERNAME, PASSWORD])
        .output()
        .context("running htpasswd (Debian package apache2-utils)")?;
    check("htpasswd", &output)?;
    fs::write(path, output.stdout)?;
    Ok(())
}

struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
}

/// A CA (certs/ca.crt) and a server certificate it signs for IP 127.0.0.1
/// and DNS localhost, all EC P-256, with the openssl CLI.
fn make_certificates(dir: &Path) -> anyhow::Result<ServerCert> {
    let certs = dir.join("certs");
    fs::create_dir(&certs)?;
    let tls = dir.join("tls");
    fs::create_dir(&tls)?;
    fs::set_permissions(&tls, fs::Permissions::from_mode(0o700))?;
    let ca_key = tls.join("ca.key");
    let ca_cert = certs.join("ca.crt");
    let key = tls.join("server.key");
    let csr = tls.join("server.csr");
    let cert = tls.join("server.crt");
    let ext = tls.join("server.ext");
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )?;

    openssl(|c| {
        c.args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=hutch test registry CA",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_cert)
    })?;
    openssl(|c| {
        c.args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
    })?;
    openssl(|c| {
        c.args(["x509", "-req", "-days", "3650", "-set_serial", "2"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_cert)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert)
    })?;
    fs::set_permissions(&ca_cert, fs::Permissions::from_mode(0o644))?;
    Ok(ServerCert { cert, key })
}

fn openssl(args: impl FnOnce(&mut Command) -> &mut Command) -> anyhow::Result<()> {
    let mut command = Command::new("openssl");
    args(&mut command);
    let output = command
        .output()
        .context("running openssl (Debian package openssl)")?;
    check("openssl", &output)
}

fn check(what: &str, output: &Output) -> anyhow::Result<()> {
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn parses_the_listening_line() {
        let plain = r#"time="x" level=info msg="listening on 127.0.0.1:42467" go.version=go1.19.8"#;
        let tls =
            r#"time="x" level=info msg="listening on 127.0.0.1:33239, tls" go.version=go1.19.8"#;
        assert_eq!(listening_addr(plain).map(|a| a.port()), Some(42467));
        assert_eq!(listening_addr(tls).map(|a| a.port()), Some(33239));
        assert_eq!(listening_addr(r#"msg="redis not configured""#), None);
    }
}
