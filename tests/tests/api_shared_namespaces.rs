//! `--pid` and `--ipc` through the docker CLI against `hutch daemon` in a
//! simulated pod: a container sharing another's PID namespace sees and
//! signals its processes and leaves none of its own behind; one sharing a
//! `shareable` container's IPC namespace shares its /dev/shm and message
//! queues; `--ipc none` has no /dev/shm and `--ipc host` has the pod's;
//! what Docker refuses is refused in Docker's words.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run`).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};

const BB: &str = "busybox";

/// `docker ARGS` must be refused as the CLI reports a daemon's refusal
/// (exit 125), its stderr saying `want`.
fn refused(daemon: &Daemon, args: &[&str], want: &str) -> Result<()> {
    let out = daemon.docker().args(args).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(125) && err.contains(want),
        "docker {args:?}: {:?} {err}",
        out.status.code()
    );
    Ok(())
}

/// `docker run --rm ARGS... busybox sh -c SCRIPT`, which must succeed.
fn run_sh(daemon: &Daemon, args: &[&str], script: &str) -> Result<String> {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[BB, "sh", "-c", script]);
    daemon.docker_ok(&all)
}

/// `docker exec NAME sh -c SCRIPT`, which must succeed.
fn exec_sh(daemon: &Daemon, name: &str, script: &str) -> Result<String> {
    daemon.docker_ok(&["exec", name, "sh", "-c", script])
}

/// Polls `docker exec NAME sh -c SCRIPT` until its output is `want`.
fn wait_for(daemon: &Daemon, name: &str, script: &str, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = exec_sh(daemon, name, script)?;
        if got.trim() == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{name}: `{script}` gave {got:?}, not {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The shared-namespace checks every pod kind passes. `fresh_proc`: the
/// containers' /proc is their own (in the base pod it is the pod's, whose
/// PIDs are not the ones `kill` takes in a container).
fn shares_with_a_donor(daemon: &Daemon, fresh_proc: bool) -> Result<()> {
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        BB,
        "sh",
        "-c",
        "echo from-donor > /dev/shm/note; touch /dev/mqueue/donorq; sleep 2000 & sleep 3000",
    ])?;
    wait_for(
        daemon,
        "donor",
        "cat /dev/shm/note 2>/dev/null",
        "from-donor",
    )?;
    let donor_ns = exec_sh(
        daemon,
        "donor",
        "for n in pid ipc user; do readlink /proc/self/ns/$n; done",
    )?;

    // The same PID, IPC and user namespaces as the donor; its /dev/shm and
    // its message queues (an mqueue of the shared IPC namespace).
    let sharing = &["--pid", "container:donor", "--ipc", "container:donor"];
    let ns = run_sh(
        daemon,
        sharing,
        "for n in pid ipc user; do readlink /proc/self/ns/$n; done",
    )?;
    ensure!(
        ns == donor_ns,
        "namespaces {ns:?}, the donor's {donor_ns:?}"
    );
    let shm = run_sh(
        daemon,
        sharing,
        "cat /dev/shm/note && echo from-joiner > /dev/shm/reply && ls /dev/mqueue",
    )?;
    ensure!(
        shm.contains("from-donor") && shm.contains("donorq"),
        "the donor's /dev/shm and queues: {shm}"
    );
    let reply = exec_sh(daemon, "donor", "cat /dev/shm/reply")?;
    ensure!(reply.trim() == "from-joiner", "{reply}");

    // A donor run with --init (its PID 1 is hutch's small init, running as
    // the container's user and capabilities) is joined the same way.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "idonor",
        "--init",
        "--ipc",
        "shareable",
        BB,
        "sh",
        "-c",
        "echo from-init-donor > /dev/shm/note; exec sleep 3000",
    ])?;
    wait_for(
        daemon,
        "idonor",
        "cat /dev/shm/note 2>/dev/null",
        "from-init-donor",
    )?;
    let shm = run_sh(
        daemon,
        &["--pid", "container:idonor", "--ipc", "container:idonor"],
        "cat /dev/shm/note",
    )?;
    ensure!(
        shm.contains("from-init-donor"),
        "an --init donor's /dev/shm: {shm}"
    );
    daemon.docker_ok(&["rm", "-f", "idonor"])?;

    // Its processes are seen and can be signalled.
    let seen = run_sh(daemon, sharing, "pidof sleep | wc -w")?;
    ensure!(
        seen.trim().parse::<u32>().unwrap_or(0) >= 2,
        "the donor's sleeps: {seen}"
    );
    if fresh_proc {
        signals_the_donors_processes(daemon)?;
    }

    // What it started in the donor's PID namespace ends with it.
    run_sh(
        daemon,
        &["--pid", "container:donor"],
        "sleep 4000 & sleep 4001 & exit 0",
    )?;
    wait_for(
        daemon,
        "donor",
        "ps -o args | grep -c '^sleep 400[01]' || true",
        "0",
    )?;

    // A long-running joiner: exec and inspect.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "joiner",
        "--pid",
        "container:donor",
        "--ipc",
        "container:donor",
        BB,
        "sleep",
        "3000",
    ])?;
    let ps = exec_sh(daemon, "joiner", "ps -o args | grep -c '^sleep 3000'")?;
    ensure!(ps.trim() == "2", "joiner's exec sees both sleeps: {ps}");
    // `docker top` lists each container's own processes (its execs too),
    // not all of the shared PID namespace.
    daemon.docker_ok(&["exec", "-d", "joiner", "sleep", "3001"])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let top = daemon.docker_ok(&["top", "joiner"])?;
        let count = |needle: &str| top.lines().filter(|l| l.ends_with(needle)).count();
        if count("sleep 3001") == 1 {
            ensure!(count("sleep 3000") == 1, "joiner's top: {top}");
            ensure!(
                !top.contains("sleep 2000") && !top.contains("sh -c"),
                "joiner's top: {top}"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "joiner's top lacks its exec: {top}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let top = daemon.docker_ok(&["top", "donor"])?;
    ensure!(
        top.contains("sleep 3000") && !top.contains("sleep 3001"),
        "donor's top: {top}"
    );
    let modes = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.PidMode}} {{.HostConfig.IpcMode}}",
        "joiner",
    ])?;
    ensure!(modes.trim() == "container:donor container:donor", "{modes}");
    // The donor's end is the end of its PID namespace, the joiner's too.
    daemon.docker_ok(&["rm", "-f", "donor"])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = daemon.docker_ok(&["inspect", "-f", "{{.State.Running}}", "joiner"])?;
        if state.trim() == "false" {
            break;
        }
        ensure!(Instant::now() < deadline, "the joiner outlived its donor");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.docker_ok(&["rm", "-f", "joiner"])?;
    Ok(())
}

#[test]
fn containers_share_pid_and_ipc_namespaces() -> Result<()> {
    let pod = Pod::start(&PodSpec::new().proc_unmasked())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    shares_with_a_donor(&daemon, true)?;

    // A restarted donor is joined as it runs now.
    daemon.docker_ok(&["run", "-d", "--name", "again", BB, "sleep", "3000"])?;
    let before = exec_sh(&daemon, "again", "readlink /proc/self/ns/pid")?;
    daemon.docker_ok(&["restart", "-t", "0", "again"])?;
    let after = exec_sh(&daemon, "again", "readlink /proc/self/ns/pid")?;
    ensure!(before != after, "a restart makes a new PID namespace");
    let joined = run_sh(
        &daemon,
        &["--pid", "container:again"],
        "readlink /proc/self/ns/pid",
    )?;
    ensure!(joined == after, "joined {joined:?}, the donor's {after:?}");
    // The supervisor's own restarts join it again (each from a fresh
    // intermediate: the supervisor itself never enters the donor's).
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "retry",
        "--restart",
        "on-failure:2",
        "--pid",
        "container:again",
        BB,
        "sh",
        "-c",
        "exit 3",
    ])?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = daemon.docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}",
            "retry",
        ])?;
        if state.trim() == "2 exited 3" {
            break;
        }
        ensure!(Instant::now() < deadline, "retry: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.docker_ok(&["rm", "retry"])?;
    leaves_no_descendant_behind(&daemon)?;

    // Docker's refusals: a donor that is not shareable, not running, or
    // missing; a bad mode; a private ID range.
    refused(
        &daemon,
        &["run", "--rm", "--ipc", "container:again", BB, "true"],
        "non-shareable IPC (hint: use IpcMode:shareable",
    )?;
    daemon.docker_ok(&["stop", "-t", "0", "again"])?;
    refused(
        &daemon,
        &["run", "--rm", "--pid", "container:again", BB, "true"],
        "is not running",
    )?;
    refused(
        &daemon,
        &["run", "--rm", "--pid", "container:nosuch", BB, "true"],
        "No such container: nosuch",
    )?;
    refused(
        &daemon,
        &["run", "--rm", "--ipc", "bogus", BB, "true"],
        "invalid IPC mode: bogus",
    )?;
    // (The CLI has no --userns private: through the API.)
    let body =
        r#"{"Image":"busybox","HostConfig":{"UsernsMode":"private","PidMode":"container:again"}}"#;
    let answer = daemon.post_json("/v1.50/containers/create", body)?;
    ensure!(
        answer.status == 400 && answer.body.contains("--userns-mode private"),
        "{answer}"
    );
    daemon.docker_ok(&["rm", "again"])?;

    // --ipc none: no /dev/shm; its inspect says so.
    let none = run_sh(
        &daemon,
        &["--ipc", "none"],
        "test -e /dev/shm && echo present || echo absent",
    )?;
    ensure!(none.trim() == "absent", "--ipc none: {none}");

    // --ipc host: the pod's IPC namespace and /dev/shm.
    let pod_ipc = pod.exec("readlink").arg("/proc/self/ns/ipc").output()?;
    let pod_ipc = String::from_utf8_lossy(&pod_ipc.stdout).trim().to_string();
    let host = run_sh(
        &daemon,
        &["--ipc", "host"],
        "echo from-container > /dev/shm/hutch-ipc-host; readlink /proc/self/ns/ipc",
    )?;
    ensure!(
        host.trim() == pod_ipc,
        "--ipc host: {host:?}, pod {pod_ipc:?}"
    );
    let pod_file = pod.exec("cat").arg("/dev/shm/hutch-ipc-host").output()?;
    ensure!(
        String::from_utf8_lossy(&pod_file.stdout).trim() == "from-container",
        "the pod's /dev/shm: {pod_file:?}"
    );
    refused(
        &daemon,
        &[
            "run",
            "--rm",
            "--ipc",
            "host",
            "--sysctl",
            "kernel.shmmax=1000000",
            BB,
            "true",
        ],
        "not allowed in the hosts ipc namespace",
    )?;
    Ok(())
}

/// In the base pod (the pod's /proc bound in, not a fresh one) sharing
/// works the same.
#[test]
fn sharing_works_in_the_base_pod() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    shares_with_a_donor(&daemon, false)
}

/// A joiner's process that made a mount namespace of its own is still the
/// joiner's: `docker top` lists it, and it ends with the joiner (it is
/// found as a descendant of an exec that is still in the joiner's mount
/// namespace when the init exits).
fn leaves_no_descendant_behind(daemon: &Daemon) -> Result<()> {
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "deep",
        "--cap-add",
        "SYS_ADMIN",
        "--pid",
        "container:again",
        BB,
        "sleep",
        "3003",
    ])?;
    daemon.docker_ok(&[
        "exec",
        "-d",
        "deep",
        "sh",
        "-c",
        "unshare -m sleep 4322 & wait",
    ])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let top = daemon.docker_ok(&["top", "deep"])?;
        if top.lines().any(|l| l.ends_with("sleep 4322")) {
            break;
        }
        ensure!(Instant::now() < deadline, "deep's top: {top}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // (The set-up: it is in a mount namespace of its own.)
    let ns = exec_sh(
        daemon,
        "deep",
        "for p in $(pidof sleep); do grep -q 4322 /proc/$p/cmdline && readlink /proc/$p/ns/mnt; \
         done; readlink /proc/self/ns/mnt",
    )?;
    let ns: Vec<&str> = ns.lines().collect();
    ensure!(ns.len() == 2 && ns[0] != ns[1], "mount namespaces: {ns:?}");
    daemon.docker_ok(&["kill", "deep"])?;
    wait_for(
        daemon,
        "again",
        "ps -o args | grep -c '^sleep 4322' || true",
        "0",
    )?;
    daemon.docker_ok(&["rm", "deep"])?;
    Ok(())
}

/// A container in the donor's PID namespace kills one of its processes.
fn signals_the_donors_processes(daemon: &Daemon) -> Result<()> {
    run_sh(
        daemon,
        &["--pid", "container:donor"],
        "kill $(ps -o pid,args | awk '$2 == \"sleep\" && $3 == \"2000\" { print $1 }')",
    )?;
    wait_for(
        daemon,
        "donor",
        "ps -o args | grep -c '^sleep 2000' || true",
        "0",
    )
}
