//! `--device`, `--privileged`'s devices and `--sysctl` through the docker
//! CLI against `hutch daemon` in a simulated pod: the pod's device-plugin
//! nodes (/dev/fuse, /dev/net/tun) bound into containers and usable there,
//! Docker's refusals in Docker's words, and sysctls written in the
//! container's own namespaces where the pod's /proc allows it (Docker's
//! `ip_unprivileged_port_start=0` default included), warned about where it
//! does not.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run`).

use anyhow::{ensure, Result};
use hutch_tests::daemon::{ok, Daemon};
use hutch_tests::podsim::{Device, Pod, PodSpec};

/// The daemon in `pod`, with busybox loaded as `busybox`.
fn setup(pod: &Pod) -> Result<Daemon<'_>> {
    let daemon = Daemon::start(pod)?;
    daemon.load_busybox()?;
    Ok(daemon)
}

/// `docker ARGS`, whatever its exit code: its status and stderr.
fn docker(daemon: &Daemon, args: &[&str]) -> Result<(Option<i32>, String)> {
    let out = daemon.docker().args(args).output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `docker run --rm ARGS... busybox sh -c SCRIPT`, which must succeed;
/// its stdout.
fn run_sh(daemon: &Daemon, bb: &str, args: &[&str], script: &str) -> Result<String> {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[bb, "sh", "-c", script]);
    daemon.docker_ok(&all)
}

/// Opening a node for reading and writing proves it is a usable device:
/// a node on a `nodev` mount, or a plain file in its place, would not do.
const OPEN_FUSE: &str = "test -c /dev/fuse && exec 3<>/dev/fuse && echo fuse-open";

#[test]
fn devices_of_the_pod_are_bound_in() -> Result<()> {
    let pod = Pod::start(&PodSpec::new().device(Device::Fuse).device(Device::Tun))?;
    let daemon = setup(&pod)?;
    let bb = "busybox";

    // Without --device: not there, as in Docker.
    let none = run_sh(
        &daemon,
        bb,
        &[],
        "test -e /dev/fuse && echo present || echo absent",
    )?;
    ensure!(none.trim() == "absent", "{none}");

    let fuse = run_sh(&daemon, bb, &["--device", "/dev/fuse"], OPEN_FUSE)?;
    ensure!(fuse.trim() == "fuse-open", "--device /dev/fuse: {fuse}");

    // Another path in the container, and a directory of devices.
    let tun = run_sh(
        &daemon,
        bb,
        &["--device", "/dev/net/tun:/dev/mytun"],
        "test -c /dev/mytun && exec 3<>/dev/mytun && echo tun-open",
    )?;
    ensure!(
        tun.trim() == "tun-open",
        "--device /dev/net/tun:/dev/mytun: {tun}"
    );
    let dir = run_sh(
        &daemon,
        bb,
        &["--device", "/dev/net"],
        "test -c /dev/net/tun && echo tun-there",
    )?;
    ensure!(dir.trim() == "tun-there", "--device /dev/net: {dir}");

    // --privileged takes every node of the pod's /dev, and keeps the
    // container's own devpts (its ptmx is not the pod's).
    let privileged = run_sh(
        &daemon,
        bb,
        &["--privileged"],
        &format!("{OPEN_FUSE} && test -c /dev/net/tun && test -c /dev/pts/ptmx && echo pts-own"),
    )?;
    ensure!(
        privileged.contains("fuse-open") && privileged.contains("pts-own"),
        "--privileged: {privileged}"
    );

    // Inspect shows the mappings as given.
    daemon.docker_ok(&[
        "create",
        "--name",
        "withdev",
        "--device",
        "/dev/fuse:/dev/f:rw",
        bb,
        "true",
    ])?;
    let shown = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{range .HostConfig.Devices}}{{.PathOnHost}} {{.PathInContainer}} {{.CgroupPermissions}}{{end}}",
        "withdev",
    ])?;
    ensure!(shown.trim() == "/dev/fuse /dev/f rw", "{shown}");
    daemon.docker_ok(&["rm", "withdev"])?;

    // A missing device and a file that is not one: Docker's message.
    for (path, cause) in [
        ("/dev/no-such-device", "no such file or directory"),
        ("/etc/hostname", "not a device node"),
    ] {
        let (code, err) = docker(&daemon, &["run", "--rm", "--device", path, bb, "true"])?;
        ensure!(
            code == Some(125)
                && err.contains(&format!(
                    "error gathering device information while adding custom device \"{path}\""
                ))
                && err.to_lowercase().contains(cause),
            "--device {path}: {code:?} {err}"
        );
    }

    // --device-cgroup-rule cannot be enforced: a warning, not silence.
    let (code, err) = docker(
        &daemon,
        &[
            "run",
            "--rm",
            "--device-cgroup-rule",
            "c 10:229 rwm",
            bb,
            "true",
        ],
    )?;
    ensure!(
        code == Some(0)
            && err.contains("device cgroup rules (--device-cgroup-rule) are not applied"),
        "{code:?} {err}"
    );
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}

/// In the base pod /proc/sys is the pod's, read-only: sysctls are warned
/// about, not applied; names Docker refuses are refused all the same.
#[test]
fn sysctls_in_a_pod_with_a_read_only_proc_sys() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = setup(&pod)?;
    let bb = "busybox";

    let (code, err) = docker(
        &daemon,
        &[
            "run",
            "--rm",
            "--sysctl",
            "net.core.somaxconn=1024",
            bb,
            "true",
        ],
    )?;
    ensure!(
        code == Some(0)
            && err.contains(
                "sysctls are not applied: this pod's /proc/sys is read-only (procMount: Unmasked"
            )
            && err.contains("net.core.somaxconn"),
        "{code:?} {err}"
    );
    refusals(&daemon, bb)?;
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}

/// Names outside the container's own namespaces: runc's words, at create.
/// (The docker CLI itself refuses names like `kernel.pid_max`, so those go
/// to the API directly.)
fn refusals(daemon: &Daemon, bb: &str) -> Result<()> {
    let body = format!(
        r#"{{"Image":"{bb}","Cmd":["true"],"HostConfig":{{"Sysctls":{{"kernel.pid_max":"100000"}}}}}}"#
    );
    let answer = daemon.post_json("/v1.50/containers/create", &body)?;
    ensure!(
        answer.status == 400
            && answer
                .body
                .contains(r#"sysctl \"kernel.pid_max\" is not in a separate kernel namespace"#),
        "create with kernel.pid_max: {answer}"
    );
    let (code, err) = docker(
        daemon,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "--sysctl",
            "net.core.somaxconn=1",
            bb,
            "true",
        ],
    )?;
    ensure!(
        code == Some(125)
            && err.contains("sysctl \"net.core.somaxconn\" not allowed in host network namespace"),
        "{code:?} {err}"
    );
    Ok(())
}

/// With a fresh /proc per container the sysctls are written in its own
/// namespaces, the interface ones after its network is plugged in.
#[test]
fn sysctls_in_a_pod_with_an_unmasked_proc() -> Result<()> {
    let pod = Pod::start(&PodSpec::new().proc_unmasked())?;
    let daemon = setup(&pod)?;
    let bb = "busybox";
    let pod_port_start = ok(
        &pod.exec("/bin/cat")
            .arg("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .output()?,
        "reading the pod's ip_unprivileged_port_start",
    )?;

    let got = run_sh(
        &daemon,
        bb,
        &[
            "--sysctl",
            "net.core.somaxconn=1234",
            "--sysctl",
            "net.ipv4.conf.eth0.arp_announce=2",
            "--sysctl",
            "kernel.shmmax=123456789",
            "--sysctl",
            "fs.mqueue.msg_max=20",
        ],
        "cat /proc/sys/net/core/somaxconn /proc/sys/net/ipv4/conf/eth0/arp_announce \
         /proc/sys/kernel/shmmax /proc/sys/fs/mqueue/msg_max",
    )?;
    let got: Vec<&str> = got.split_whitespace().collect();
    ensure!(got == ["1234", "2", "123456789", "20"], "{got:?}");

    // Docker's default: any port is bindable by a user without
    // capabilities, in the container's own network namespace only.
    let bound = run_sh(
        &daemon,
        bb,
        &["--user", "1000:1000"],
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
         nc -l -p 80 & sleep 0.5; netstat -ltn | grep -c ':80 '",
    )?;
    ensure!(
        bound.split_whitespace().collect::<Vec<_>>() == ["0", "1"],
        "a user binding port 80: {bound}"
    );
    let host = run_sh(
        &daemon,
        bb,
        &["--network", "host"],
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
    )?;
    ensure!(
        host.trim() == pod_port_start.trim(),
        "--network host keeps the pod's value {pod_port_start}: {host}"
    );

    // A setting the kernel does not have fails the start, saying which.
    let (code, err) = docker(
        &daemon,
        &[
            "run",
            "--rm",
            "--sysctl",
            "net.ipv4.no_such_setting=1",
            bb,
            "true",
        ],
    )?;
    ensure!(
        code != Some(0) && err.contains("setting sysctl net.ipv4.no_such_setting=1"),
        "{code:?} {err}"
    );
    let shown = daemon.docker_ok(&[
        "create",
        "--name",
        "withsysctl",
        "--sysctl",
        "net.core.somaxconn=99",
        bb,
        "true",
    ])?;
    ensure!(!shown.trim().is_empty(), "create printed no ID");
    let shown = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Sysctls}}",
        "withsysctl",
    ])?;
    ensure!(shown.trim() == r#"{"net.core.somaxconn":"99"}"#, "{shown}");
    refusals(&daemon, bb)?;
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}
