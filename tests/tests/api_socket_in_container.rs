//! The engine's own socket given to a container (`-v
//! /run/hutch/hutch.sock:/var/run/docker.sock`), as CI jobs, Jenkins agents
//! and testcontainers' Ryuk use Docker's: a docker CLI inside the container
//! drives the same engine and starts sibling containers.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use anyhow::{ensure, Result};
use hutch_tests::daemon::{Daemon, SOCKET};
use hutch_tests::podsim::{Pod, PodSpec};

/// The docker CLI on this machine (a static binary), for use inside.
const DOCKER_CLI: &str = "/usr/local/bin/docker";

#[test]
fn a_container_drives_the_engine_through_its_socket() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    let socket = format!("{SOCKET}:/var/run/docker.sock");
    let cli = format!("{DOCKER_CLI}:/usr/bin/docker:ro");
    daemon.docker_ok(&["run", "-d", "--name", "sibling", "busybox", "sleep", "300"])?;
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "--name",
        "job",
        "-v",
        &socket,
        "-v",
        &cli,
        "busybox",
        "sh",
        "-c",
        "docker ps --format '{{.Names}}' | sort; docker run --rm busybox echo nested-ok",
    ])?;
    ensure!(out == "job\nsibling\nnested-ok\n", "{out}");
    daemon.docker_ok(&["rm", "-f", "sibling"])?;
    daemon.stop()?;
    pod.stop()
}
