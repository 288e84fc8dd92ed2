//! The command-line surface, inside a simulated pod: global options are
//! accepted before or after any subcommand, as dockerd spells them, and the
//! daemon's defaults need no configuration in a pod.
//!
//! Needs the `hutch` binary built first (`cargo build --workspace`).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::testimages;

const DOCKER: &str = "/usr/local/bin/docker";

fn hutch() -> Result<PathBuf> {
    let bin = hutch_bin();
    ensure!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first",
        bin.display()
    );
    Ok(bin)
}

fn succeed(out: Output, what: &str) -> Result<String> {
    ensure!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Polls (from inside the pod) until `path` is a socket, or the daemon died.
fn wait_for_socket(pod: &Pod, daemon: &mut Child, path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if pod
            .exec("/usr/bin/test")
            .args(["-S", path])
            .status()?
            .success()
        {
            return Ok(());
        }
        if let Some(status) = daemon.try_wait()? {
            anyhow::bail!("the daemon exited before listening on {path}: {status}");
        }
        ensure!(Instant::now() < deadline, "no socket at {path} after 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks the daemon to stop as Kubernetes does (SIGTERM) and waits for it.
fn terminate(mut daemon: Child) -> Result<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = daemon.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            anyhow::bail!("the daemon ignored SIGTERM for 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn server_version(pod: &Pod, socket: &str) -> Result<String> {
    let out = pod
        .exec(DOCKER)
        .env("DOCKER_HOST", format!("unix://{socket}"))
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()?;
    Ok(succeed(out, "docker version")?.trim().to_owned())
}

#[test]
fn daemon_defaults_need_no_configuration() -> Result<()> {
    let hutch = hutch()?;
    let pod = Pod::start(&PodSpec::new())?;
    let mut daemon = pod.exec(&hutch).arg("daemon").spawn()?;
    let socket = "/run/hutch/hutch.sock";
    wait_for_socket(&pod, &mut daemon, socket)?;

    assert_eq!(server_version(&pod, socket)?, env!("CARGO_PKG_VERSION"));
    let mode = succeed(
        pod.exec("/usr/bin/stat")
            .args(["-c", "%a", socket])
            .output()?,
        "stat",
    )?;
    assert_eq!(mode.trim(), "660", "the socket is for root and its group");
    // The default data root is the pod's emptyDir at /var/lib/hutch.
    assert_eq!(pod.data_root(), std::path::Path::new("/var/lib/hutch"));

    // A second daemon must not steal a live daemon's socket.
    let second = pod.exec(&hutch).arg("daemon").output()?;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already listening"), "{err}");

    let status = terminate(daemon)?;
    assert!(
        status.success() || status.signal().is_some(),
        "daemon exit: {status}"
    );
    let gone = pod.exec("/usr/bin/test").args(["-e", socket]).status()?;
    assert!(!gone.success(), "the socket is removed on shutdown");
    pod.stop()
}

#[test]
fn host_flag_goes_before_or_after_the_subcommand() -> Result<()> {
    let hutch = hutch()?;
    let pod = Pod::start(&PodSpec::new())?;
    let before = "/run/hutch/before.sock";
    let after = "/run/hutch/after.sock";
    let mut d1 = pod
        .exec(&hutch)
        .args(["-H", &format!("unix://{before}"), "--data-root"])
        .args(["/var/lib/hutch/one", "daemon"])
        .spawn()?;
    let mut d2 = pod
        .exec(&hutch)
        .args(["daemon", "--host", &format!("unix://{after}")])
        .args(["--data-root", "/var/lib/hutch/two"])
        .spawn()?;
    wait_for_socket(&pod, &mut d1, before)?;
    wait_for_socket(&pod, &mut d2, after)?;
    assert_eq!(server_version(&pod, before)?, env!("CARGO_PKG_VERSION"));
    assert_eq!(server_version(&pod, after)?, env!("CARGO_PKG_VERSION"));
    assert!(pod.data_dir_host().join("one").is_dir());
    assert!(pod.data_dir_host().join("two").is_dir());
    terminate(d1)?;
    terminate(d2)?;
    pod.stop()
}

#[test]
fn data_root_goes_before_or_after_the_subcommand() -> Result<()> {
    let hutch = hutch()?;
    let image = testimages::busybox()?;
    let archive = image.docker_archive.to_str().context("archive path")?;
    let pod = Pod::start(&PodSpec::new())?;

    succeed(
        pod.exec(&hutch)
            .args([
                "--data-root",
                "/var/lib/hutch/a",
                "load",
                "-q",
                "-i",
                archive,
            ])
            .output()?,
        "load with --data-root first",
    )?;
    succeed(
        pod.exec(&hutch)
            .args([
                "load",
                "-q",
                "-i",
                archive,
                "--data-root",
                "/var/lib/hutch/b",
            ])
            .output()?,
        "load with --data-root last",
    )?;
    let a = succeed(
        pod.exec(&hutch)
            .args([
                "images",
                "-q",
                "--no-trunc",
                "--data-root",
                "/var/lib/hutch/a",
            ])
            .output()?,
        "images a",
    )?;
    let b = succeed(
        pod.exec(&hutch)
            .env("HUTCH_DATA_ROOT", "/var/lib/hutch/b")
            .args(["images", "-q", "--no-trunc"])
            .output()?,
        "images b",
    )?;
    assert_eq!(
        a.trim(),
        image.config_digest,
        "the image ID is its config digest"
    );
    assert_eq!(a, b);
    pod.stop()
}

#[test]
fn unknown_host_spellings_are_refused_clearly() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let out = pod
        .exec(hutch()?)
        .args(["daemon", "-H", "fd://"])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected unix:///path or tcp://host:port"),
        "{err}"
    );
    pod.stop()
}
