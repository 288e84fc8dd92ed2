//! IPAM options of `docker network create` through the daemon in the pod
//! simulator, with the docker CLI: `--ip-range` narrows where addresses
//! come from, `--aux-address` keeps addresses from containers, `--ip` may
//! still pick any free address of the subnet, and all of it survives a
//! daemon restart and shows in `docker network inspect`.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does).

use anyhow::{bail, ensure, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

fn ip_on(daemon: &Daemon, container: &str, network: &str) -> Result<String> {
    let format = format!("{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}");
    Ok(daemon
        .docker_ok(&["inspect", "-f", &format, container])?
        .trim()
        .to_string())
}

#[test]
fn ip_range_and_aux_addresses() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    daemon.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "172.28.0.0/16",
        "--ip-range",
        "172.28.5.0/30",
        "--aux-address",
        "router=172.28.5.0",
        "r1",
    ])?;
    let config = daemon.docker_ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "r1"])?;
    ensure!(
        config.contains(r#""IPRange":"172.28.5.0/30""#)
            && config.contains(r#""AuxiliaryAddresses":{"router":"172.28.5.0"}"#)
            && config.contains(r#""Gateway":"172.28.0.1""#),
        "IPAM config: {config}"
    );
    let run = |name: &str, extra: &[&str]| -> Result<std::process::Output> {
        let mut args = vec!["run", "-d", "--name", name, "--network", "r1"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&image.reference, "sleep", "600"]);
        Ok(daemon.docker().args(&args).output()?)
    };
    // The range's first address is the aux address: .1, .2, .3 are left.
    let mut got = Vec::new();
    for name in ["ca", "cb", "cc"] {
        let out = run(name, &[])?;
        ensure!(out.status.success(), "run {name}: {out:?}");
        got.push(ip_on(&daemon, name, "r1")?);
    }
    ensure!(
        got == ["172.28.5.1", "172.28.5.2", "172.28.5.3"],
        "addresses from the range: {got:?}"
    );
    let full = run("cd", &[])?;
    let err = String::from_utf8_lossy(&full.stderr);
    ensure!(
        !full.status.success() && err.contains("no available IPv4 addresses"),
        "a fourth container in a full range: {err}"
    );
    daemon.docker_ok(&["rm", "-f", "cd"])?;
    // A static address outside the range but in the subnet is fine; the
    // aux address is not.
    let fixed = run("ce", &["--ip", "172.28.9.9"])?;
    ensure!(fixed.status.success(), "--ip in the subnet: {fixed:?}");
    ensure!(ip_on(&daemon, "ce", "r1")? == "172.28.9.9", "--ip not kept");
    let aux = run("cf", &["--ip", "172.28.5.0"])?;
    ensure!(!aux.status.success(), "--ip took the aux address");
    daemon.docker_ok(&["rm", "-f", "cf"])?;

    // Bad requests get clear errors. The CLI checks some itself, so they
    // go to the API directly.
    for (ipam, want) in [
        (
            r#"{"Subnet": "10.9.0.0/16", "IPRange": "10.10.0.0/24"}"#,
            "ip range 10.10.0.0/24 is not within subnet 10.9.0.0/16",
        ),
        (
            r#"{"Subnet": "10.9.0.0/16", "AuxiliaryAddresses": {"x": "10.10.0.1"}}"#,
            "auxiliary address: (x:10.10.0.1) must belong to the master pool: 10.9.0.0/16",
        ),
        (
            r#"{"Subnet": "10.9.0.0/16", "AuxiliaryAddresses": {"x": "nope"}}"#,
            "invalid auxiliary address x=nope",
        ),
        (
            r#"{"IPRange": "10.9.0.0/24"}"#,
            "an ip range needs a subnet",
        ),
    ] {
        let body = format!(r#"{{"Name": "bad", "IPAM": {{"Config": [{ipam}]}}}}"#);
        let answer = daemon.post_json("/v1.50/networks/create", &body)?;
        ensure!(
            answer.status == 400 && answer.body.contains(want),
            "{ipam}: {answer}"
        );
    }

    // The range and the aux address are kept across a restart.
    daemon.docker_ok(&["rm", "-f", "cb"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    let daemon = Daemon::start(&pod)?;
    let again = daemon.docker_ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "r1"])?;
    ensure!(again == config, "IPAM config after a restart: {again}");
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "cg",
        "--network",
        "r1",
        &image.reference,
        "sleep",
        "600",
    ])?;
    let freed = ip_on(&daemon, "cg", "r1")?;
    if freed != "172.28.5.2" {
        let all = daemon.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}",
            "r1",
        ])?;
        // What the restarted daemon said of its containers and their
        // reservations (the flake's lead: a reservation dropped at open).
        let said: Vec<String> = daemon
            .log()
            .lines()
            .filter(|l| {
                [
                    "reservation",
                    "skipping",
                    "supervisor",
                    "stopp",
                    "WARN",
                    "ERROR",
                ]
                .iter()
                .any(|w| l.contains(w))
            })
            .map(str::to_string)
            .collect();
        bail!(
            "the freed address of the range is not given again: cg has {freed:?}; on r1: {all}\n\
             daemon log:\n{}",
            said.join("\n")
        );
    }
    daemon.docker_ok(&["rm", "-f", "ca", "cc", "ce", "cg"])?;
    daemon.docker_ok(&["network", "rm", "r1"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
