//! `hutch dind`: docker:dind's contract, as GitLab CI's Kubernetes executor
//! uses it (the service's `DOCKER_TLS_CERTDIR=/certs`, the job's
//! `DOCKER_HOST=tcp://docker:2376`, `DOCKER_TLS_VERIFY=1`,
//! `DOCKER_CERT_PATH=/certs/client`), driven with the docker CLI and
//! docker-py from the pod, as the job container would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hutch_tests::daemon::{ok, printed as text, DOCKER_CLI};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::testimages;

const CERTS: &str = "/tmp/certs";

/// `hutch dind` in the pod, stopped (SIGTERM, which podsim exec forwards)
/// when dropped.
struct Dind {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Dind {
    fn start(pod: &Pod, certdir: &str) -> Result<Dind> {
        let log = tempfile::NamedTempFile::new()?;
        let child = pod
            .exec(hutch_bin())
            .arg("dind")
            .env("DOCKER_TLS_CERTDIR", certdir)
            .env("DOCKER_TLS_SAN", "DNS:dind.ci.internal")
            .env("HUTCH_LOG", "info,hutch=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()
            .context("starting hutch dind in the pod")?;
        Ok(Dind {
            child: Some(child),
            log,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let status = child.wait()?;
        ensure!(
            status.success(),
            "hutch dind ended {status}: {}",
            self.log()
        );
        Ok(())
    }
}

impl Drop for Dind {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e:#}");
        }
    }
}

/// The docker CLI as a CI job runs it against the service: `host`, and
/// with `tls` GitLab's TLS variables.
fn docker(pod: &Pod, host: &str, tls: bool) -> Command {
    let mut cmd = pod.exec(DOCKER_CLI);
    cmd.env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION");
    if tls {
        cmd.env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", format!("{CERTS}/client"));
    } else {
        cmd.env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
    }
    cmd
}

/// Waits until `docker version` answers (the daemon is up).
fn wait_up(pod: &Pod, dind: &Dind, host: &str, tls: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = docker(pod, host, tls)
            .args(["version", "--format", "{{.Server.Os}}"])
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "hutch dind did not answer on {host}: {}\nlog: {}",
                text(&out),
                dind.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Gives the pod an address of its own, as a pod's eth0 has: 10.99.0.5/24
/// on one end of a veth pair (both ends in the pod).
fn pod_address(pod: &Pod) -> Result<&'static str> {
    for args in [
        &[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ][..],
        &["addr", "add", "10.99.0.5/24", "dev", "eth0"],
        &["link", "set", "eth0-peer", "up"],
        &["link", "set", "eth0", "up"],
    ] {
        let out = pod.sidecar("/usr/bin/ip").args(args).output()?;
        ok(&out, &format!("ip {}", args.join(" ")))?;
    }
    Ok("10.99.0.5")
}

#[test]
fn dind_serves_mutual_tls_with_docker_dinds_certificates() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let address = pod_address(&pod)?;
    let mut dind = Dind::start(&pod, CERTS)?;
    let tls_host = "tcp://localhost:2376";
    wait_up(&pod, &dind, tls_host, true)?;

    // The files the job's DOCKER_CERT_PATH reads, as docker:dind lays them.
    let listing = pod
        .exec("/bin/sh")
        .args(["-c", &format!("cd {CERTS} && ls ca server client && stat -c '%a %n' client/key.pem server/key.pem")])
        .output()?;
    let listing = ok(&listing, "the certificate directory")?;
    ensure!(
        listing.contains("ca:\ncert.pem\nkey.pem\n")
            && listing.contains("client:\nca.pem\ncert.pem\nkey.pem\n")
            && listing.contains("644 client/key.pem\n600 server/key.pem"),
        "{listing}"
    );

    // The whole API over TLS: load an image, run a container.
    let busybox = testimages::busybox()?;
    let archive = busybox.docker_archive.display().to_string();
    let loaded = docker(&pod, tls_host, true)
        .args(["load", "-i", &archive])
        .output()?;
    ok(&loaded, "docker load over TLS")?;
    let ran = docker(&pod, tls_host, true)
        .args(["run", "--rm", &busybox.reference, "echo", "hello over tls"])
        .output()?;
    ensure!(ok(&ran, "docker run over TLS")? == "hello over tls\n");

    // By the pod's address (a SAN) and by DOCKER_TLS_SAN's name: the
    // certificate holds both (checked by the CLI against the CA).
    let ip_host = format!("tcp://{address}:2376");
    let by_ip = docker(&pod, &ip_host, true)
        .args(["version", "--format", "{{.Server.Os}}"])
        .output()?;
    ensure!(ok(&by_ip, "docker version by IP")? == "linux\n");
    let san = pod
        .exec("/usr/bin/openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(format!("{CERTS}/server/cert.pem"))
        .output()?;
    let san = ok(&san, "openssl x509")?;
    for name in [
        "DNS:docker",
        "DNS:localhost",
        "DNS:dind.ci.internal",
        "IP Address:127.0.0.1",
        "IP Address:10.99.0.5",
    ] {
        ensure!(san.contains(name), "{name} not in {san}");
    }

    // Without a client certificate, or in plain HTTP: refused.
    let no_cert = pod
        .exec("/usr/bin/curl")
        .args(["-sS", "--cacert"])
        .arg(format!("{CERTS}/client/ca.pem"))
        .arg("https://localhost:2376/_ping")
        .output()?;
    ensure!(!no_cert.status.success(), "{}", text(&no_cert));
    let plain = docker(&pod, "tcp://localhost:2376", false)
        .args(["version"])
        .output()?;
    ensure!(!plain.status.success(), "{}", text(&plain));

    // The unix socket docker:dind serves too.
    let unix = docker(&pod, "unix:///var/run/docker.sock", false)
        .args(["version", "--format", "{{.Server.Os}}"])
        .output()?;
    ensure!(ok(&unix, "docker over /var/run/docker.sock")? == "linux\n");

    // docker-py's from_env() reads the same variables.
    let py = pod
        .exec("/opt/hutch-test-venv/bin/python3")
        .args([
            "-c",
            "import docker; c = docker.from_env(); print(c.version()['Os'], len(c.images.list()))",
        ])
        .env("DOCKER_HOST", tls_host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", format!("{CERTS}/client"))
        // requests prefers this machine's bundle to the CA docker-py names.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()?;
    ensure!(ok(&py, "docker-py over TLS")? == "linux 1\n");

    // A restart keeps the CA: the clients' ca.pem still verifies the new
    // server certificate.
    let read_ca = || -> Result<String> {
        let out = pod
            .exec("/bin/cat")
            .arg(format!("{CERTS}/client/ca.pem"))
            .output()?;
        ok(&out, "client/ca.pem")
    };
    let ca = read_ca()?;
    dind.stop()?;
    let dind = Dind::start(&pod, CERTS)?;
    wait_up(&pod, &dind, tls_host, true)?;
    ensure!(read_ca()? == ca, "the CA changed across a restart");
    Ok(())
}

#[test]
fn dind_without_a_certdir_serves_plain_http_on_2375() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let dind = Dind::start(&pod, "")?;
    wait_up(&pod, &dind, "tcp://localhost:2375", false)?;
    let out = docker(&pod, "tcp://localhost:2375", false)
        .args(["info", "--format", "{{.OSType}}"])
        .output()?;
    ensure!(ok(&out, "docker info over 2375")? == "linux\n");
    let nothing = pod
        .exec("/bin/sh")
        .args(["-c", &format!("ls {CERTS} 2>&1 || true")])
        .output()?;
    ensure!(
        text(&nothing).contains("No such file"),
        "{}",
        text(&nothing)
    );
    Ok(())
}
