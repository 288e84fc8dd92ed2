//! Daemon restarts through `hutch daemon` and the docker CLI inside the pod
//! simulator, in both pod variants (the layer-4 relay and the kernel
//! uplink), as dockerd without live-restore behaves: a graceful stop stops
//! the running containers (bounded by `--shutdown-timeout`); a start after
//! a crash stops the containers whose network died with the old daemon;
//! then restart policies bring back what they say, with the same
//! addresses and published ports. `none` containers keep running.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run`).

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::Pod;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use hutch_tests::in_variants;
use hutch_tests::network::{pod_get, Variant};

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `docker inspect` of one container.
fn inspect(daemon: &Daemon, name: &str) -> Result<Value> {
    let all = json(&daemon.docker_ok(&["inspect", name])?)?;
    Ok(all[0].clone())
}

/// How many processes in the pod run exactly `cmdline`.
fn sleepers(pod: &Pod, cmdline: &str) -> Result<usize> {
    let out = pod.exec("/usr/bin/pgrep").args(["-fx", cmdline]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// A container that exits after `sleep`, again and again: its supervisor
/// spends most of its time in the restart policy's backoff.
const FLAPPY: &[&str] = &["sh", "-c", "sleep 0.3; exit 3"];

/// The flapping container keeps being started by its new supervisor, on
/// its network (a restart that could not be plugged would leave it exited
/// with the hook's error).
fn still_flapping(daemon: &Daemon) -> Result<()> {
    let first = inspect(daemon, "flappy")?["RestartCount"]
        .as_i64()
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = inspect(daemon, "flappy")?;
        let status = c["State"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ensure!(
            status == "running" || status == "restarting",
            "flappy after the daemon restart: {}",
            c["State"]
        );
        if c["RestartCount"].as_i64().unwrap_or(0) >= first + 2 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("flappy is not restarted by its policy: {c}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `docker run -d WORDS... TAIL...` (WORDS split on spaces).
fn run(daemon: &Daemon, words: &str, tail: &[&str]) -> Result<String> {
    let mut args = vec!["run", "-d"];
    args.extend(words.split_whitespace());
    args.extend(tail);
    daemon.docker_ok(&args)
}

/// An HTTP server answering `body` on port 80 (busybox httpd under
/// `--init`, so the stop signal ends it at once).
const WEB: &str =
    "mkdir -p /www && echo \"$BODY\" > /www/index.html && exec httpd -f -p 80 -h /www";

/// (a) and (c): the daemon killed with SIGKILL. A `--restart always`
/// container on a user-defined network with a published port comes back
/// (stopped, then started: its veth died with the old bridge netns) with
/// the same address, by name from another container and on the same port
/// from the pod; a plain one on that network is stopped and stays down; a
/// `--network none` one keeps running as it was, same PID.
fn killed_daemon(variant: Variant) -> Result<()> {
    let pod = Pod::start(&variant.pod())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    daemon.docker_ok(&["network", "create", "app"])?;
    let web = "--name web --init --network app --restart always -p 18081:80 -e BODY=web-ok busybox";
    run(&daemon, web, &["sh", "-c", WEB])?;
    for (name, policy) in [("probe", "always"), ("plain", "no")] {
        let words = format!("--name {name} --init --network app --restart {policy} busybox");
        run(&daemon, &words, &["sleep", "3600"])?;
    }
    // Its old supervisor, in a backoff or running it when the daemon dies.
    let flappy = "--name flappy --network app --restart always busybox";
    run(&daemon, flappy, FLAPPY)?;
    // In web's netns: it lost its network with web's, so it is stopped
    // too, and started again after web, in web's new netns.
    let side = "--name side --init --network container:web --restart always busybox";
    run(&daemon, side, &["sleep", "3600"])?;
    // On `none` and on `host`: they lose nothing with the daemon and keep
    // running.
    let quiet = "--name quiet --network none busybox";
    run(&daemon, quiet, &["sleep", "3600"])?;
    let hosted = "--name hosted --network host busybox";
    run(&daemon, hosted, &["sleep", "3600"])?;
    // Its supervisor dies too while no daemon runs: the new daemon finds
    // it gone, ends what is left of the container and starts it again.
    let orphan = "--name orphan --restart always busybox";
    let orphan = run(&daemon, orphan, &["sleep", "3601"])?;
    ensure!(
        pod_get(&pod, "http://127.0.0.1:18081/")?.trim() == "web-ok",
        "published port before"
    );
    let before = inspect(&daemon, "web")?;
    let web_ip = before["NetworkSettings"]["Networks"]["app"]["IPAddress"].clone();
    let web_mac = before["NetworkSettings"]["Networks"]["app"]["MacAddress"].clone();
    ensure!(web_ip.as_str().is_some_and(|ip| !ip.is_empty()), "{before}");
    let side_before = inspect(&daemon, "side")?["State"].clone();
    let mut untouched = Vec::new();
    for name in ["quiet", "hosted"] {
        let state = inspect(&daemon, name)?["State"].clone();
        ensure!(
            state["Running"] == true && state["Pid"].as_i64() > Some(0),
            "{name}: {state}"
        );
        untouched.push((name, state));
    }

    daemon.kill9()?;
    let state_json = format!("/var/lib/hutch/containers/{}/state.json", orphan.trim());
    let killed = pod
        .exec("/usr/bin/python3")
        .args([
            "-c",
            "import json, os, sys; os.kill(json.load(open(sys.argv[1]))['SupervisorPid'], 9)",
            &state_json,
        ])
        .output()?;
    ensure!(
        killed.status.success(),
        "killing a supervisor: {}",
        text(&killed)
    );
    ensure!(sleepers(&pod, "sleep 3601")? == 1, "the orphan's process");
    let t0 = Instant::now();
    let daemon = Daemon::start(&pod)?;
    // A figure, not a check: the start with 4 stops and 4 restarts.
    eprintln!("daemon start after a kill -9: {:?}", t0.elapsed());
    let log = daemon.log();
    ensure!(
        log.contains("its network died with the previous daemon"),
        "no reason logged for the stops:\n{log}"
    );

    let after = inspect(&daemon, "web")?;
    ensure!(
        after["State"]["Running"] == true
            && after["State"]["StartedAt"] != before["State"]["StartedAt"],
        "web was not started again: {}",
        after["State"]
    );
    ensure!(
        after["NetworkSettings"]["Networks"]["app"]["IPAddress"] == web_ip
            && after["NetworkSettings"]["Networks"]["app"]["MacAddress"] == web_mac,
        "address changed: {} / {}",
        before["NetworkSettings"],
        after["NetworkSettings"]
    );
    ensure!(
        after["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == "18081",
        "{}",
        after["NetworkSettings"]
    );
    ensure!(
        pod_get(&pod, "http://127.0.0.1:18081/")?.trim() == "web-ok",
        "published port after the restart"
    );
    let by_name = daemon.docker_ok(&["exec", "probe", "wget", "-qO-", "http://web/"])?;
    ensure!(by_name.trim() == "web-ok", "by name: {by_name}");
    let side = inspect(&daemon, "side")?["State"].clone();
    ensure!(
        side["Running"] == true && side["StartedAt"] != side_before["StartedAt"],
        "container:web was not started again: {side}"
    );
    let shared = daemon.docker_ok(&["exec", "side", "wget", "-qO-", "http://127.0.0.1/"])?;
    ensure!(
        shared.trim() == "web-ok",
        "side in web's new netns: {shared}"
    );

    // No policy: stopped by the new daemon (the stop signal through
    // --init: 143), and left so.
    let plain = inspect(&daemon, "plain")?["State"].clone();
    ensure!(
        plain["Status"] == "exited" && plain["ExitCode"] == 143,
        "plain: {plain}"
    );
    let orphan = inspect(&daemon, "orphan")?["State"].clone();
    ensure!(orphan["Running"] == true, "orphan: {orphan}");
    ensure!(
        sleepers(&pod, "sleep 3601")? == 1,
        "the orphan's old process was left running"
    );
    // `none` and `host`: untouched, same process.
    for (name, before) in &untouched {
        let still = inspect(&daemon, name)?["State"].clone();
        ensure!(
            still["Running"] == true
                && still["Pid"] == before["Pid"]
                && still["StartedAt"] == before["StartedAt"],
            "{name}: {before} -> {still}"
        );
    }
    // And still supervised through the new daemon.
    daemon.docker_ok(&["stop", "-t", "1", "quiet"])?;
    let quiet = inspect(&daemon, "quiet")?["State"].clone();
    ensure!(quiet["Status"] == "exited", "quiet after stop: {quiet}");

    still_flapping(&daemon)?;

    let all = [
        "side", "web", "probe", "plain", "quiet", "hosted", "orphan", "flappy",
    ];
    daemon.docker_ok(&[&["rm", "-f"][..], &all].concat())?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
in_variants!(killed_daemon);

/// A listener holding `port` in the pod's netns.
fn hold_port(pod: &Pod, port: u16) -> Result<Child> {
    let script = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {port}))\n\
         s.listen()\n\
         print('bound', flush=True)\n\
         time.sleep(120)\n"
    );
    let mut child = pod
        .exec("/usr/bin/python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
    }
    ensure!(
        line.trim() == "bound",
        "the port holder did not bind {port}"
    );
    Ok(child)
}

/// (b) and (d): a graceful stop (SIGTERM) stops every running container
/// and the next daemon starts what the policies say: `unless-stopped`
/// comes back unless a user stopped it, `always` comes back even then
/// (Docker's rule), a plain one stays exited with the stop's exit code. A
/// container whose host port is taken meanwhile fails to start, logged,
/// and stays exited; the daemon serves. `--shutdown-timeout` bounds a
/// container that ignores SIGTERM.
fn graceful_daemon_stop(variant: Variant) -> Result<()> {
    let pod = Pod::start(&variant.pod())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    daemon.docker_ok(&["network", "create", "app"])?;
    for (name, policy) in [
        ("keep", "unless-stopped"),
        ("held", "unless-stopped"),
        ("back", "always"),
        ("plain", "no"),
        ("fails", "on-failure"),
    ] {
        let words = format!("--name {name} --init --network app --restart {policy} busybox");
        run(&daemon, &words, &["sleep", "3600"])?;
    }
    // Stopped while in a backoff, or running: it comes back (always).
    let flappy = "--name flappy --network app --restart always busybox";
    run(&daemon, flappy, FLAPPY)?;
    let porty =
        "--name porty --init --network app --restart always -p 18090:80 -e BODY=porty-ok busybox";
    run(&daemon, porty, &["sh", "-c", WEB])?;
    daemon.docker_ok(&["stop", "held", "back"])?;
    let keep_before = inspect(&daemon, "keep")?;

    let t0 = Instant::now();
    ensure!(daemon.stop()?.success(), "daemon stop");
    let took = t0.elapsed();
    eprintln!("graceful stop with 6 running containers: {took:?}");
    ensure!(
        took < Duration::from_secs(10),
        "graceful stop took {took:?}"
    );

    // Someone takes porty's host port while no daemon runs.
    let mut holder = hold_port(&pod, 18090)?;
    let since = unix_now().to_string();
    let daemon = Daemon::start(&pod)?;
    let state = |name: &str| -> Result<Value> { Ok(inspect(&daemon, name)?["State"].clone()) };
    let keep = inspect(&daemon, "keep")?;
    ensure!(
        keep["State"]["Running"] == true
            && keep["State"]["StartedAt"] != keep_before["State"]["StartedAt"]
            && keep["NetworkSettings"]["Networks"]["app"]["IPAddress"]
                == keep_before["NetworkSettings"]["Networks"]["app"]["IPAddress"],
        "unless-stopped: {}",
        keep["State"]
    );
    let back = state("back")?;
    ensure!(back["Running"] == true, "always, stopped by a user: {back}");
    let held = state("held")?;
    ensure!(
        held["Status"] == "exited" && held["ExitCode"] == 143,
        "unless-stopped, stopped by a user: {held}"
    );
    for name in ["plain", "fails"] {
        let s = state(name)?;
        ensure!(
            s["Status"] == "exited" && s["ExitCode"] == 143 && s["Error"] == "",
            "{name}: {s}"
        );
    }
    let porty = state("porty")?;
    ensure!(
        porty["Running"] == false && porty["Status"] == "exited",
        "porty started on a taken port: {porty}"
    );
    let log = daemon.log();
    ensure!(
        log.contains("could not start again after the daemon restart"),
        "the failed start was not logged:\n{log}"
    );
    still_flapping(&daemon)?;
    // The daemon serves, and the port once free works again.
    let _ = holder.kill();
    let _ = holder.wait();
    daemon.docker_ok(&["start", "porty"])?;
    ensure!(
        pod_get(&pod, "http://127.0.0.1:18090/")?.trim() == "porty-ok",
        "porty after its port was freed"
    );
    // The new daemon's events show the policy's starts.
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.Attributes.name}}",
    ])?;
    for name in ["keep", "back"] {
        ensure!(
            events.lines().any(|l| l == name),
            "no start of {name}: {events}"
        );
    }
    daemon.docker_ok(&[
        "rm", "-f", "keep", "held", "back", "plain", "fails", "porty", "flappy",
    ])?;
    ensure!(daemon.stop()?.success(), "daemon stop");

    // (d) A container that ignores SIGTERM (sleep as PID 1) with a long
    // stop timeout: the shutdown timeout bounds it, then SIGKILL (137).
    let daemon = Daemon::start_with(&pod, &["--shutdown-timeout", "2"])?;
    run(
        &daemon,
        "--name stubborn --stop-timeout 60 busybox",
        &["sleep", "3600"],
    )?;
    let t0 = Instant::now();
    ensure!(daemon.stop()?.success(), "daemon stop");
    let took = t0.elapsed();
    eprintln!("graceful stop, --shutdown-timeout 2, SIGTERM ignored: {took:?}");
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "a 2 s shutdown timeout took {took:?}"
    );
    let daemon = Daemon::start(&pod)?;
    let stubborn = inspect(&daemon, "stubborn")?["State"].clone();
    ensure!(
        stubborn["Status"] == "exited" && stubborn["ExitCode"] == 137,
        "stubborn: {stubborn}"
    );
    daemon.docker_ok(&["rm", "stubborn"])?;

    // As dockerd: a third SIGTERM ends a shutdown that waits at once
    // (128 + 15), and the next start copes with what it left.
    run(
        &daemon,
        "--name stubborn --network none busybox",
        &["sleep", "3600"],
    )?;
    let pid = Pid::from_raw(i32::try_from(daemon.pid().context("no daemon pid")?)?);
    let t0 = Instant::now();
    for _ in 0..2 {
        kill(pid, Signal::SIGTERM)?;
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = daemon.stop()?;
    let took = t0.elapsed();
    ensure!(
        status.code() == Some(143) && took < Duration::from_secs(5),
        "three SIGTERMs: {status} after {took:?}"
    );
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["rm", "-f", "stubborn"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
in_variants!(graceful_daemon_stop);
