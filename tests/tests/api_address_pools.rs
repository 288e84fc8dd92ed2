//! dockerd's `--bip` and `--default-address-pool` through the daemon in
//! the pod simulator, for clusters whose own addresses clash with Docker's
//! 172.17-31.0.0/16: the default bridge moves to `--bip` (a container made
//! before gets an address there at its next start), new networks are cut
//! from the pools in order, and without the options the default bridge is
//! Docker's again while the networks keep their subnets.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does).

use anyhow::{ensure, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};

fn ipam(daemon: &Daemon, network: &str) -> Result<String> {
    Ok(daemon
        .docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}",
            network,
        ])?
        .trim()
        .to_owned())
}

#[test]
fn bip_and_address_pools_place_networks() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    daemon.docker_ok(&["create", "--name", "early", "busybox", "sleep", "600"])?;
    ensure!(ipam(&daemon, "bridge")? == "172.17.0.0/16 172.17.0.1");
    ensure!(daemon.stop()?.success(), "daemon stop");

    let daemon = Daemon::start_with(
        &pod,
        &[
            "--bip",
            "10.200.0.1/24",
            "--default-address-pool",
            "base=10.201.0.0/16,size=24",
        ],
    )?;
    let bridge = ipam(&daemon, "bridge")?;
    ensure!(bridge == "10.200.0.0/24 10.200.0.1", "{bridge}");
    daemon.docker_ok(&["start", "early"])?;
    let ip = daemon.ip_of("early")?;
    ensure!(ip == "10.200.0.2", "the early container's address: {ip}");
    daemon.docker_ok(&["network", "create", "n1"])?;
    daemon.docker_ok(&["network", "create", "n2"])?;
    ensure!(ipam(&daemon, "n1")?.starts_with("10.201.0.0/24 "));
    ensure!(ipam(&daemon, "n2")?.starts_with("10.201.1.0/24 "));
    let addr = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "n2",
        "busybox",
        "ip",
        "-4",
        "addr",
        "show",
        "eth0",
    ])?;
    ensure!(addr.contains("inet 10.201.1.2/24"), "{addr}");
    daemon.docker_ok(&["rm", "-f", "early"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");

    // Without the options: Docker's default bridge, the networks as made.
    let daemon = Daemon::start(&pod)?;
    let bridge = ipam(&daemon, "bridge")?;
    ensure!(bridge == "172.17.0.0/16 172.17.0.1", "{bridge}");
    ensure!(ipam(&daemon, "n1")?.starts_with("10.201.0.0/24 "));
    let seen = daemon.docker_ok(&["run", "--rm", "busybox", "ip", "-4", "addr", "show", "eth0"])?;
    ensure!(seen.contains("inet 172.17.0.2/16"), "{seen}");
    daemon.docker_ok(&["network", "rm", "n1", "n2"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
