//! The network state file across daemon restarts, in the pod simulator with
//! the docker CLI: endpoint changes are written behind the request
//! (`engine/src/network/persist.rs`), so the daemon must repair what a
//! crash can lose, and must have written everything when it stops.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does).

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;
use serde_json::Value;

fn ip_of(daemon: &Daemon, name: &str) -> Result<String> {
    Ok(daemon
        .docker_ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])?
        .trim()
        .to_string())
}

fn state_json(pod: &Pod) -> Result<Value> {
    let path = pod.data_dir_host().join("network/state.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The reserved address of each container, from the state file.
fn reserved(pod: &Pod) -> Result<BTreeMap<String, String>> {
    let state = state_json(pod)?;
    Ok(state["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["container_id"].as_str().unwrap_or_default().to_string(),
                e["ip"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// A removal whose state write was lost (the daemon killed right after
/// it) leaves a reservation for a container that no longer exists; the
/// next daemon drops it, so the address is free again. A graceful stop
/// writes every reservation first.
#[test]
fn reservations_of_vanished_containers_are_dropped_and_a_stop_writes_the_rest() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let id = |name: &str| -> Result<String> {
        Ok(daemon
            .docker_ok(&["create", "--name", name, &image.reference, "true"])?
            .trim()
            .to_string())
    };
    let (gone, kept) = (id("gone")?, id("kept")?);
    ensure!(daemon.stop()?.success(), "daemon stop");
    // The stop wrote both reservations.
    let before = reserved(&pod)?;
    let (Some(gone_ip), Some(kept_ip)) = (before.get(&gone).cloned(), before.get(&kept).cloned())
    else {
        anyhow::bail!("reservations after a stop: {before:?}");
    };

    // What a crash right after `docker rm gone` leaves: the container
    // is gone from the store, its reservation and its hosts/resolv.conf
    // are still there.
    let dir = pod.data_dir_host().join("containers").join(&gone);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let files = pod.data_dir_host().join("network/containers").join(&gone);
    ensure!(files.exists(), "no network files at {}", files.display());
    // And a netns binding's file whose removal was still queued.
    let stale = pod
        .exec("/bin/sh")
        .args([
            "-c",
            "mkdir -p /run/hutch/netns && touch /run/hutch/netns/0123456789ab-deadbeef",
        ])
        .output()?;
    ensure!(stale.status.success(), "a stale binding: {stale:?}");

    let daemon = Daemon::start(&pod)?;
    let bindings = pod
        .exec("/bin/ls")
        .args(["-A", "/run/hutch/netns"])
        .output()?;
    ensure!(
        bindings.stdout.is_empty(),
        "stale netns bindings kept: {bindings:?}"
    );
    // The reaper removes the files off the start's path.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while files.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ensure!(!files.exists(), "a vanished container's files stayed");
    let after = reserved(&pod)?;
    ensure!(
        !after.contains_key(&gone) && after.get(&kept) == Some(&kept_ip),
        "reservations after the restart: {after:?}"
    );
    // Docker's IPAM takes the lowest free address: the freed one.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "new",
        &image.reference,
        "sleep",
        "1000",
    ])?;
    ensure!(
        ip_of(&daemon, "new")? == gone_ip,
        "the freed address {gone_ip} was not reused"
    );
    daemon.docker_ok(&["rm", "-f", "kept", "new"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    let left = reserved(&pod)?;
    ensure!(left.is_empty(), "reservations left after removal: {left:?}");
    pod.stop()
}
