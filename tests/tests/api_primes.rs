//! Starts primed at create (see engine/src/containers/primes.rs) through the
//! docker CLI against `hutch daemon` in a simulated pod: a created
//! container's start is begun in the background and held; its start uses
//! it, and anything that changes the created container first (`docker cp`
//! into it, `network connect`, `rename`, `rm`), an unused prime's time
//! running out, and a daemon killed meanwhile all leave no trace of it and
//! lose nothing. Containers that publish ports are not primed: Docker takes
//! host ports at start; nor any with `hutch daemon --no-primed-starts`.
//!
//! A prime is observed through the container's supervisor socket, which
//! exists exactly while a supervisor serves the container.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run`).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};

/// Whether container `id` has a supervisor socket (a prime or a run).
fn served(pod: &Pod, id: &str) -> Result<bool> {
    let sock = format!("/var/lib/hutch/containers/{id}/sock");
    Ok(pod
        .exec("/usr/bin/test")
        .args(["-S", &sock])
        .status()?
        .success())
}

/// Waits up to `limit` for container `id` to be served or not.
fn await_served(pod: &Pod, id: &str, want: bool, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while served(pod, id)? != want {
        if Instant::now() > deadline {
            bail!("container {id}: still served={} after {limit:?}", !want);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Supervisor processes in the pod (the zygote, its spare, and one per
/// primed or running container).
fn supervisors(pod: &Pod) -> Result<usize> {
    let out = pod
        .exec("/usr/bin/pgrep")
        .args(["-f", "hutch __supervise"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// How often the daemon's debug log says `what id={id}` (`plugged`,
/// `released`): its own account of the container's network.
fn logged(daemon: &Daemon, what: &str, id: &str) -> usize {
    let needle = format!("{what} id={id}");
    daemon.log().lines().filter(|l| l.contains(&needle)).count()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the pod's supervisors come down to `n` within a second (a spare
/// being forked shows its first half for a moment).
fn settles_at(pod: &Pod, n: usize) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if supervisors(pod)? == n {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn create(daemon: &Daemon, args: &[&str]) -> Result<String> {
    let mut all = vec!["create"];
    all.extend_from_slice(args);
    Ok(daemon.docker_ok(&all)?.trim().to_string())
}

/// Waits for the daemon to log `what` of container `id`.
fn await_logged(daemon: &Daemon, what: &str, id: &str) -> Result<()> {
    let deadline = Instant::now() + PRIMED_SOON;
    while logged(daemon, what, id) == 0 {
        if Instant::now() > deadline {
            bail!("the daemon never logged {what} {id}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

const PRIMED_SOON: Duration = Duration::from_secs(5);
/// The prime's time to live (2 s) and some.
const LET_GO: Duration = Duration::from_secs(6);

#[test]
fn primed_starts_and_what_drops_them() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start_logging(&pod, &[], "info,hutch=debug")?;
    daemon.load_busybox()?;
    // The zygote and its spare come up with the first start.
    daemon.docker_ok(&["run", "--rm", "busybox", "true"])?;
    std::thread::sleep(Duration::from_millis(500));
    let idle_sups = supervisors(&pod)?;

    // A created container is primed: served, plugged in. Unused, it is let
    // go in time with nothing left, and starts as usual afterwards.
    let id = create(&daemon, &["busybox", "echo", "late start"])?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    await_logged(&daemon, "plugged", &id)?;
    await_served(&pod, &id, false, LET_GO)?;
    await_logged(&daemon, "released", &id)?;
    ensure!(
        settles_at(&pod, idle_sups)?,
        "an unused prime left a supervisor"
    );
    let out = daemon.docker_ok(&["start", "-a", &id])?;
    ensure!(out.trim() == "late start", "start after the prime: {out}");

    // A start takes the prime: the run's output, its exit code, and the
    // events in Docker's order (connect after attach, before start).
    let t0 = unix_now().saturating_sub(1).to_string();
    let id = create(
        &daemon,
        &[
            "--name",
            "quick",
            "busybox",
            "sh",
            "-c",
            "echo quick; exit 3",
        ],
    )?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    let run = daemon.docker().args(["start", "-a", "quick"]).output()?;
    ensure!(run.status.code() == Some(3), "exit code of a primed start");
    ensure!(String::from_utf8_lossy(&run.stdout).trim() == "quick");
    let t1 = (unix_now() + 1).to_string();
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.container}}",
    ])?;
    let order: Vec<String> = events
        .lines()
        .filter(|l| l.contains(&id))
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .filter(|l| {
            [
                "container create",
                "container attach",
                "network connect",
                "container start",
            ]
            .contains(&l.as_str())
        })
        .collect();
    ensure!(
        order
            == [
                "container create",
                "container attach",
                "network connect",
                "container start"
            ],
        "events of a primed start: {events}"
    );

    // `docker cp` into a primed container: the file is there at start.
    let id = create(&daemon, &["--name", "copied", "busybox", "cat", "/given"])?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    pod.exec("/bin/sh")
        .args(["-c", "echo 'copied in' > /tmp/given"])
        .status()?;
    daemon.docker_ok(&["cp", "/tmp/given", "copied:/given"])?;
    let out = daemon.docker_ok(&["start", "-a", "copied"])?;
    ensure!(out.trim() == "copied in", "cp before start: {out}");

    // `network connect` after create: both networks at start.
    daemon.docker_ok(&["network", "create", "second"])?;
    let id = create(
        &daemon,
        &[
            "--name",
            "twice",
            "busybox",
            "sh",
            "-c",
            // Netlink: a masked pod's containers see the engine's /sys.
            "ip -o link | cut -d: -f2 | cut -d@ -f1 | sort | xargs",
        ],
    )?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    daemon.docker_ok(&["network", "connect", "second", "twice"])?;
    let out = daemon.docker_ok(&["start", "-a", "twice"])?;
    ensure!(
        out.trim() == "eth0 eth1 lo",
        "connected after create: {out}"
    );

    // `rename` after create: the new name resolves at start (on a
    // user-defined network, as in Docker).
    let id = create(
        &daemon,
        &[
            "--name",
            "before",
            "--network",
            "second",
            "busybox",
            "nslookup",
            "after",
        ],
    )?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    daemon.docker_ok(&["rename", "before", "after"])?;
    let out = daemon.docker_ok(&["start", "-a", "after"])?;
    ensure!(out.contains("Address"), "renamed after create: {out}");

    // `rm` of a primed container: nothing of it is left.
    let id = create(&daemon, &["busybox", "true"])?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    await_logged(&daemon, "plugged", &id)?;
    daemon.docker_ok(&["rm", &id])?;
    ensure!(
        logged(&daemon, "released", &id) == 1,
        "rm left the prime plugged in"
    );
    ensure!(!served(&pod, &id)?, "rm left a primed supervisor");
    ensure!(settles_at(&pod, idle_sups)?, "rm left a primed supervisor");

    // Published ports are not primed: the port is free for another run.
    let id = create(&daemon, &["-p", "18181:80", "busybox", "true"])?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        !served(&pod, &id)?,
        "a container with published ports was primed"
    );
    daemon.docker_ok(&["run", "--rm", "-p", "18181:80", "busybox", "true"])?;
    daemon.docker_ok(&["rm", &id])?;

    // Its supervisors killed while a prime is held (the primed one and the
    // idle spare; the zygote stays): the start begins afresh, on another.
    let id = create(&daemon, &["busybox", "echo", "afresh"])?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    let killed = pod
        .exec("/bin/sh")
        .args([
            "-c",
            "d=$(pgrep -o -f '[h]utch daemon'); n=0; \
             for p in $(pgrep -f '[h]utch __supervise'); do \
               [ \"$(ps -o ppid= -p $p | tr -d ' ')\" = \"$d\" ] && continue; \
               kill -9 $p && n=$((n+1)); \
             done; echo $n",
        ])
        .output()?;
    // Two at least: a previous container's supervisor may still be ending,
    // or the zygote be forking its next spare (whose first half is the
    // zygote's child).
    let killed = String::from_utf8_lossy(&killed.stdout).trim().to_string();
    ensure!(
        killed.parse::<u32>().is_ok_and(|n| n >= 2),
        "killed {killed} supervisors, not the primed one and the spare"
    );
    let out = daemon.docker_ok(&["start", "-a", &id])?;
    ensure!(
        out.trim() == "afresh",
        "start after its primed supervisor died: {out}"
    );

    // A daemon killed while a prime is held: its supervisor lets go, and
    // the next daemon starts the container.
    let id = create(
        &daemon,
        &["--name", "survivor", "busybox", "echo", "survived"],
    )?;
    await_served(&pod, &id, true, PRIMED_SOON)?;
    daemon.kill9().context("killing the daemon")?;
    await_served(&pod, &id, false, PRIMED_SOON)?;
    let daemon = Daemon::start(&pod)?;
    let out = daemon.docker_ok(&["start", "-a", "survivor"])?;
    ensure!(
        out.trim() == "survived",
        "start after a killed daemon: {out}"
    );
    ensure!(daemon.stop()?.success(), "daemon stop");

    // A daemon told not to prime does all of a start at the start.
    let daemon = Daemon::start_with(&pod, &["--no-primed-starts"])?;
    let id = create(&daemon, &["busybox", "echo", "unprimed"])?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(!served(&pod, &id)?, "primed with --no-primed-starts");
    let out = daemon.docker_ok(&["start", "-a", &id])?;
    ensure!(out.trim() == "unprimed", "an unprimed start: {out}");
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
