//! Private ID mode through the API, on both kinds of layer store: the
//! image's file capabilities hold for the container's own root as they do
//! in identity mode (written for the engine's root, they hold in every user
//! namespace below the engine's), and `/info` names the store in use.

use anyhow::{ensure, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

/// The effective capabilities of `/caps/busybox` (cap_net_raw+ep) run as
/// user 65534, in a container of the given `--userns` mode.
fn effective_caps(daemon: &Daemon, image: &str, mode: &str, name: &str) -> Result<String> {
    let body = serde_json::json!({
        "Image": image,
        "User": "65534",
        "Cmd": ["/caps/busybox", "grep", "CapEff", "/proc/self/status"],
        "HostConfig": {"UsernsMode": mode},
    });
    let made = daemon.post_json(
        &format!("/v1.50/containers/create?name={name}"),
        &body.to_string(),
    )?;
    ensure!(made.status == 201, "create {mode}: {made}");
    Ok(daemon
        .docker_ok(&["start", "-a", name])?
        .trim()
        .trim_start_matches("CapEff:")
        .trim()
        .to_string())
}

#[test]
fn file_capabilities_hold_for_the_containers_root() -> Result<()> {
    let image = testimages::volumes()?;
    let img = image.reference.as_str();
    let archive = image.docker_archive.display().to_string();
    let net_raw = "0000000000002000";
    let pod = Pod::start(&PodSpec::new())?;
    for (flags, storage) in [
        (&[][..], "shifted-copy"),
        (&["--private-layers-tmpfs"][..], "idmapped-tmpfs-layers"),
    ] {
        let daemon = Daemon::start_with(&pod, flags)?;
        daemon.docker_ok(&["load", "-i", &archive])?;
        let info = daemon.docker_ok(&["info", "--format", "{{json .DriverStatus}}"])?;
        ensure!(
            info.contains(&format!("[\"Private ID storage\",\"{storage}\"]")),
            "{info}"
        );
        let identity = effective_caps(&daemon, img, "host", &format!("i-{storage}"))?;
        ensure!(identity == net_raw, "identity mode: {identity}");
        let private = effective_caps(&daemon, img, "private", &format!("p-{storage}"))?;
        ensure!(private == net_raw, "private mode on {storage}: {private}");
        daemon.docker_ok(&["rm", &format!("i-{storage}"), &format!("p-{storage}")])?;
        drop(daemon);
    }
    pod.stop()
}
