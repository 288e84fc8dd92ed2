//! The MTU of container links, through the daemon in the pod simulator:
//! by default the MTU of the pod's default-route interface (here a veth
//! `eth0` of MTU 1400 with the default route, as a pod on an overlay
//! network has), so container packets fit the pod's link, but never above
//! dockerd's 1500 (a jumbo-frame pod network); a network's
//! `-o com.docker.network.driver.mtu` wins, and is checked; `hutch daemon
//! --mtu` (dockerd's flag) sets the default.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does).

use anyhow::{ensure, Result};
use hutch_tests::daemon::{ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};

const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// The MTU of eth0 in a container run with `extra` options, as netlink in
/// its netns says (its /sys may be the pod's, which lists the pod's links).
fn container_mtu(daemon: &Daemon, extra: &[&str]) -> Result<String> {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "ip", "link", "show", "eth0"]);
    let shown = daemon.docker_ok(&args)?;
    let mtu = shown
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .unwrap_or_default();
    Ok(mtu.to_owned())
}

#[test]
fn container_links_fit_the_pods_mtu() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    // Host root in the pod's netns, as the node's CNI plugin would.
    for args in [
        &[
            "link", "add", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "eth0p", "mtu",
            "1400",
        ][..],
        &["link", "set", "eth0p", "up"],
        &["link", "set", "eth0", "up"],
        &["addr", "add", "10.99.0.2/24", "dev", "eth0"],
        &["route", "add", "default", "via", "10.99.0.1", "dev", "eth0"],
    ] {
        let out = pod.sidecar("/usr/bin/ip").args(args).output()?;
        ok(&out, &format!("ip {}", args.join(" ")))?;
    }
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    let mtu = container_mtu(&daemon, &[])?;
    ensure!(mtu == "1400", "the default bridge: {mtu}");

    let option = format!("{MTU_OPTION}=1280");
    daemon.docker_ok(&["network", "create", "-o", &option, "small"])?;
    let mtu = container_mtu(&daemon, &["--network", "small"])?;
    ensure!(mtu == "1280", "a network's own MTU: {mtu}");
    let shown = daemon.docker_ok(&[
        "network",
        "inspect",
        "-f",
        &format!("{{{{index .Options \"{MTU_OPTION}\"}}}}"),
        "small",
    ])?;
    ensure!(shown.trim() == "1280", "{shown}");
    let bad = format!("{MTU_OPTION}=20");
    let out = daemon
        .docker()
        .args(["network", "create", "-o", &bad, "tiny"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("from 68 to 65535"),
        "{err}"
    );

    // dockerd's --mtu sets the default; the network keeps its own.
    ensure!(daemon.stop()?.success(), "daemon stop");
    let daemon = Daemon::start_with(&pod, &["--mtu", "1300"])?;
    let mtu = container_mtu(&daemon, &[])?;
    ensure!(mtu == "1300", "--mtu 1300: {mtu}");
    let mtu = container_mtu(&daemon, &["--network", "small"])?;
    ensure!(mtu == "1280", "a network's own MTU after a restart: {mtu}");
    daemon.docker_ok(&["network", "rm", "small"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");

    // A jumbo-frame pod network (AWS VPC CNI's 9001) keeps dockerd's 1500.
    for link in ["eth0p", "eth0"] {
        let out = pod
            .sidecar("/usr/bin/ip")
            .args(["link", "set", link, "mtu", "9001"])
            .output()?;
        ok(&out, &format!("ip link set {link} mtu 9001"))?;
    }
    let daemon = Daemon::start(&pod)?;
    let mtu = container_mtu(&daemon, &[])?;
    ensure!(mtu == "1500", "a jumbo-frame pod: {mtu}");
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
