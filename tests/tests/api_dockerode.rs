//! dockerode, the Node.js Docker client from npm (what testcontainers-node
//! drives), against `hutch daemon` inside a simulated pod: ping, version,
//! a pull with followProgress, create/attach/start/wait with demuxed
//! streams, logs, a published port read back from inspect, exec, files in
//! and out (putArchive/getArchive), list filters, stop/remove, networks,
//! volumes and buildImage (`tests/clients/dockerode_client.js`); and
//! testcontainers-node on top of it (`tests/clients/testcontainers_node.js`).
//!
//! Needs dockerode and testcontainers in the prefix `tests/install-deps`
//! makes, and the `hutch` and `podsim` binaries (`tests/run` does both).

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

#[test]
fn dockerode_client() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    registry.push(&pod, &image, "node/busybox:1")?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let pulled = registry.image_ref("node/busybox:1");
    let out = daemon
        .node()
        .arg(client_script("dockerode_client.js"))
        .arg(&image.reference)
        .arg(&pulled)
        .output()
        .context("running dockerode in the pod (did tests/install-deps install it?)")?;
    let text = ok(&out, "dockerode_client.js")?;
    let seen: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))?;

    ensure!(
        seen["ping"] == "OK" && seen["api_version"] == "1.50",
        "{seen}"
    );
    ensure!(seen["info_os"] == "linux", "{seen}");
    ensure!(
        seen["pull_last_status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Status: Downloaded newer image for")),
        "{seen}"
    );
    ensure!(seen["pulled_id"] == image.config_digest.as_str(), "{seen}");
    ensure!(seen["image_listed"] == true, "{seen}");
    ensure!(
        seen["wait"] == serde_json::json!({"StatusCode": 3, "Error": null}),
        "{seen}"
    );
    ensure!(
        seen["attach"] == serde_json::json!({"stdout": "to-out\n", "stderr": "to-err\n"}),
        "{seen}"
    );
    ensure!(seen["logs_frames"] == true, "{seen}");
    ensure!(
        seen["running"] == true && seen["mapped_port"] == true,
        "{seen}"
    );
    ensure!(
        seen["exec"] == serde_json::json!({"stdout": "in-exec\n", "stderr": ""})
            && seen["exec_code"] == 5,
        "{seen}"
    );
    ensure!(seen["put_archive"] == "copied in\n", "{seen}");
    ensure!(
        seen["get_archive_bytes"]
            .as_u64()
            .is_some_and(|n| n >= 1024),
        "{seen}"
    );
    ensure!(seen["listed"] == serde_json::json!([true]), "{seen}");
    ensure!(seen["after_stop"] == "exited", "{seen}");
    ensure!(seen["network_name"] == "dockerode-net", "{seen}");
    ensure!(seen["volume_name"] == "dockerode-vol", "{seen}");
    ensure!(
        seen["build_error"].is_null() && seen["build_streamed"] == true,
        "{seen}"
    );
    ensure!(seen["built_output"] == "built\n", "{seen}");
    ensure!(seen["left"] == 0, "{seen}");
    ensure!(daemon.stop()?.success(), "daemon exit");
    drop(registry);
    pod.stop()
}

/// testcontainers-node: a GenericContainer reached on the host and mapped
/// port it reports after a log wait; content copied in before start, an
/// HTTP wait, exec and a copy out; nothing left after `stop()`.
#[test]
fn testcontainers_node() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    daemon.docker_ok(&["tag", &image.reference, "busybox:latest"])?;
    let out = daemon
        .node()
        .arg(client_script("testcontainers_node.js"))
        // Ryuk, the reaper, is an image from Docker Hub: tests are offline.
        .env("TESTCONTAINERS_RYUK_DISABLED", "true")
        // This test machine is itself a Docker container: its /.dockerenv,
        // which the pod sees, would make testcontainers dial the bridge
        // gateway as in docker-in-docker. A pod has no /.dockerenv.
        .env("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
        .output()
        .context("running testcontainers-node in the pod (did tests/install-deps install it?)")?;
    let printed = ok(&out, "testcontainers_node.js")?;
    ensure!(printed.contains("ALL OK"), "{printed}");
    let left = daemon.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure!(left.trim().is_empty(), "left behind: {left}");
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}
