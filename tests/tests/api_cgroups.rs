//! Per-container cgroups through `hutch daemon` in a pod given writable
//! cgroup v1 directories (`podsim --delegate-cgroups-v1`), driven by the
//! real docker CLI: limits in the cgroup files, the PIDs limit holding a
//! fork loop, an OOM kill, pause/unpause freezing a counter, exec into a
//! paused container refused, the cgroup gone with the container.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{ok, printed, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

fn pod_sh(pod: &Pod, script: &str) -> Result<String> {
    let out = pod.exec("/bin/sh").args(["-c", script]).output()?;
    ok(&out, script)
}

fn cgroup_file(pod: &Pod, controller: &str, id: &str, file: &str) -> Result<String> {
    Ok(pod_sh(
        pod,
        &format!("cat /sys/fs/cgroup/{controller}/hutch-{id}/{file}"),
    )?
    .trim()
    .to_string())
}

fn counter(daemon: &Daemon, id: &str) -> Result<u64> {
    let out = daemon.docker_ok(&["logs", "--tail", "1", id])?;
    out.trim()
        .parse()
        .with_context(|| format!("counter output {out:?}"))
}

/// A paused container: inspect says so, its log counter stands still, and
/// exec is refused with Docker's message. Returns the counter's value.
fn paused_as_docker_says(daemon: &Daemon, id: &str) -> Result<u64> {
    let state = daemon.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", id])?;
    ensure!(state.trim() == "paused true", "{state}");
    let before = counter(daemon, id)?;
    std::thread::sleep(Duration::from_millis(600));
    ensure!(
        counter(daemon, id)? == before,
        "the counter moved while paused"
    );
    let exec = daemon.docker().args(["exec", id, "true"]).output()?;
    let err = String::from_utf8_lossy(&exec.stderr);
    ensure!(!exec.status.success() && err.contains("is paused"), "{err}");
    Ok(before)
}

#[test]
fn docker_cli_limits_pause_and_oom_with_delegated_v1() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new().delegate_cgroups_v1())?;
    let daemon = Daemon::start(&pod)?;
    let img = image.reference.as_str();
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;

    // Limits land in the container's cgroup, without the warning.
    let run = daemon
        .docker()
        .args(["run", "-d", "-m", "64m", "--pids-limit", "50", img])
        .args([
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
        ])
        .output()?;
    let id = ok(&run, "docker run -d -m 64m")?.trim().to_string();
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(!stderr.contains("not applied"), "warned: {stderr}");
    ensure!(cgroup_file(&pod, "memory", &id, "memory.limit_in_bytes")? == "67108864");
    ensure!(cgroup_file(&pod, "pids", &id, "pids.max")? == "50");
    let pid = daemon.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &id])?;
    let procs = cgroup_file(&pod, "memory", &id, "cgroup.procs")?;
    ensure!(
        procs.lines().any(|p| p == pid.trim()),
        "init {pid} not in {procs}"
    );
    // An exec'd process joins it too.
    let exec_cg = daemon.docker_ok(&["exec", &id, "cat", "/proc/self/cgroup"])?;
    // Its cgroup is the root of its cgroup namespace, as in Docker.
    ensure!(exec_cg.lines().any(|l| l.ends_with(":pids:/")), "{exec_cg}");
    ensure!(
        exec_cg.lines().any(|l| l.ends_with(":memory:/")),
        "{exec_cg}"
    );
    let pids_now: u64 = cgroup_file(&pod, "pids", &id, "pids.current")?.parse()?;
    ensure!(pids_now >= 1, "pids.current {pids_now}");

    // `docker update` changes the limit of the running container.
    daemon.docker_ok(&["update", "--pids-limit", "60", &id])?;
    ensure!(cgroup_file(&pod, "pids", &id, "pids.max")? == "60");
    // ... and keeps the rest.
    ensure!(cgroup_file(&pod, "memory", &id, "memory.limit_in_bytes")? == "67108864");
    let host = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        &id,
    ])?;
    ensure!(host.trim() == "67108864 60", "{host}");
    let bad = daemon.docker().args(["update", "-m", "1m", &id]).output()?;
    ensure!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("Minimum memory limit allowed is 6MB"),
        "update -m 1m: {}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Pause freezes the counter; exec is refused; unpause resumes.
    std::thread::sleep(Duration::from_millis(300));
    daemon.docker_ok(&["pause", &id])?;
    ensure!(cgroup_file(&pod, "freezer", &id, "freezer.state")? == "FROZEN");
    let before = paused_as_docker_says(&daemon, &id)?;
    let again = daemon.docker().args(["pause", &id]).output()?;
    ensure!(!again.status.success(), "paused twice");
    daemon.docker_ok(&["unpause", &id])?;
    std::thread::sleep(Duration::from_millis(600));
    ensure!(
        counter(&daemon, &id)? > before,
        "the counter did not resume"
    );
    let state = daemon.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", &id])?;
    ensure!(state.trim() == "running false", "{state}");

    // Stop and rm -f act on a paused container (it is thawed first).
    daemon.docker_ok(&["pause", &id])?;
    daemon.docker_ok(&["stop", "-t", "1", &id])?;
    let state = daemon.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", &id])?;
    ensure!(state.trim() == "exited false", "{state}");
    daemon.docker_ok(&["start", &id])?;
    daemon.docker_ok(&["pause", &id])?;

    // Removal takes the cgroup with it.
    daemon.docker_ok(&["rm", "-f", &id])?;
    let left = pod_sh(&pod, "ls /sys/fs/cgroup/memory /sys/fs/cgroup/pids")?;
    ensure!(!left.contains(&id), "cgroup left behind: {left}");

    // A non-root user joins too (the runtime moves the init before it
    // changes credentials).
    let user = daemon.docker_ok(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--user",
        "1000:1000",
        img,
        "sh",
        "-c",
        "id -u; cat /proc/self/cgroup",
    ])?;
    ensure!(
        user.starts_with("1000\n") && user.lines().any(|l| l.ends_with(":memory:/")),
        "{user}"
    );

    // CPU limits, and Docker's validation at create (nothing left behind).
    let cpu = daemon.docker_ok(&[
        "create",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        img,
        "true",
    ])?;
    let cpu = cpu.trim();
    ensure!(cgroup_file(&pod, "cpu", cpu, "cpu.cfs_quota_us")? == "50000");
    ensure!(cgroup_file(&pod, "cpu", cpu, "cpu.cfs_period_us")? == "100000");
    ensure!(cgroup_file(&pod, "cpu", cpu, "cpu.shares")? == "512");
    daemon.docker_ok(&["rm", cpu])?;
    let small = daemon
        .docker()
        .args(["create", "-m", "1m", img, "true"])
        .output()?;
    let small_err = String::from_utf8_lossy(&small.stderr);
    ensure!(
        !small.status.success() && small_err.contains("Minimum memory limit allowed is 6MB"),
        "create -m 1m: {small_err}"
    );
    let left = pod_sh(&pod, "ls /sys/fs/cgroup/memory /sys/fs/cgroup/cpu")?;
    ensure!(!left.contains("hutch-"), "cgroups left behind: {left}");

    // A fork loop stops at the PIDs limit: the cgroup holds 10 and counts
    // the refused forks.
    let fork = daemon.docker_ok(&[
        "run",
        "-d",
        "--pids-limit",
        "10",
        img,
        "sh",
        "-c",
        // ash exits when a fork fails: the loop runs in an inner shell.
        "sh -c 'for i in $(seq 1 40); do sleep 30 & done' 2>/dev/null; exec sleep 30",
    ])?;
    let fork = fork.trim().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let current: u64 = cgroup_file(&pod, "pids", &fork, "pids.current")?.parse()?;
    ensure!(
        (2..=10).contains(&current),
        "pids.current {current} under --pids-limit 10"
    );
    let running = daemon.docker_ok(&["inspect", "-f", "{{.State.Running}}", &fork])?;
    ensure!(running.trim() == "true", "the container ended: {running}");
    let events = cgroup_file(&pod, "pids", &fork, "pids.events")?;
    ensure!(
        events
            .strip_prefix("max ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "pids.events {events}"
    );
    // docker stats reads the cgroup: the limits show.
    let stats = daemon.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}|{{.PIDs}}",
        &fork,
    ])?;
    ensure!(stats.trim().ends_with(&format!("|{current}")), "{stats}");
    daemon.docker_ok(&["rm", "-f", &fork])?;
    let limited = daemon.docker_ok(&["run", "-d", "-m", "64m", img, "sleep", "30"])?;
    let stats = daemon.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        limited.trim(),
    ])?;
    ensure!(stats.trim().ends_with("/ 64MiB"), "{stats}");
    daemon.docker_ok(&["rm", "-f", limited.trim()])?;

    // A memory hog is OOM-killed: 137 and OOMKilled.
    let hog = daemon
        .docker()
        .args([
            "run",
            "--name",
            "hog",
            "-m",
            "16m",
            "--memory-swap",
            "16m",
            img,
        ])
        // Hogs on its first run only (its rootfs keeps /ran).
        .args([
            "sh",
            "-c",
            "if [ -e /ran ]; then exec sleep 30; fi; touch /ran; x=a; while true; do x=$x$x; done",
        ])
        .output()?;
    ensure!(hog.status.code() == Some(137), "hog: {:?}", hog.status);
    let oom = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "hog",
    ])?;
    ensure!(oom.trim() == "true 137", "{oom}");
    // A later run killed by docker kill is no OOM kill.
    daemon.docker_ok(&["start", "hog"])?;
    std::thread::sleep(Duration::from_millis(200));
    let _ = daemon.docker().args(["kill", "hog"]).output()?;
    daemon.docker_ok(&["wait", "hog"])?;
    let oom = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "hog",
    ])?;
    ensure!(oom.trim() == "false 137", "{oom}");
    daemon.docker_ok(&["rm", "-f", "hog"])?;
    Ok(())
}

#[test]
fn info_reports_the_delegated_hierarchy() -> Result<()> {
    let pod = Pod::start(&PodSpec::new().delegate_cgroups_v1())?;
    let daemon = Daemon::start(&pod)?;
    let info = daemon.docker_ok(&[
        "info",
        "--format",
        "{{.CgroupDriver}} {{.CgroupVersion}} {{.MemoryLimit}} {{.PidsLimit}} {{.CPUCfsQuota}}",
    ])?;
    ensure!(info.trim() == "cgroupfs 1 true true true", "{info}");
    Ok(())
}

#[test]
fn default_pod_warns_and_refuses_pause() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let img = image.reference.as_str();
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let info = daemon.docker_ok(&["info", "--format", "{{.MemoryLimit}} {{.PidsLimit}}"])?;
    ensure!(info.trim() == "false false", "{info}");
    let run = daemon
        .docker()
        .args(["run", "-d", "-m", "64m", img, "sleep", "30"])
        .output()?;
    let id = ok(&run, "docker run -d -m 64m")?.trim().to_string();
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(stderr.contains("not applied"), "no warning: {stderr}");
    let pause = daemon.docker().args(["pause", &id]).output()?;
    let err = String::from_utf8_lossy(&pause.stderr);
    ensure!(
        !pause.status.success() && err.contains("cgroup freezer"),
        "pause: {err}"
    );
    let stats = daemon.docker_ok(&["stats", "--no-stream", "--format", "{{.PIDs}}", &id])?;
    ensure!(stats.trim() == "1", "{stats}");
    daemon.docker_ok(&["rm", "-f", &id])?;
    Ok(())
}

/// `docker run --rm busybox true` with a per-container cgroup (delegated
/// v1 and v2 pods) against the same without (default pod), medians of 15
/// in one run.
/// Run with `--ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn bench_run_with_and_without_cgroups() -> Result<()> {
    let image = testimages::busybox()?;
    let img = image.reference.as_str();
    let median = |spec: PodSpec| -> Result<f64> {
        let pod = Pod::start(&spec)?;
        let daemon = Daemon::start(&pod)?;
        daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
        daemon.docker_ok(&["run", "--rm", img, "true"])?;
        let mut times = Vec::new();
        for _ in 0..15 {
            let t = std::time::Instant::now();
            daemon.docker_ok(&["run", "--rm", "-m", "64m", img, "true"])?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    };
    let plain = median(PodSpec::new())?;
    let cgroups = median(PodSpec::new().delegate_cgroups_v1())?;
    let v2 = median(PodSpec::new().delegate_cgroups_v2())?;
    println!(
        "docker run --rm -m 64m true: default pod (no cgroup) {plain:.1} ms = 1.00x; \
         delegated v1 (own cgroup) {cgroups:.1} ms = {:.2}x; \
         delegated v2 without controllers (own cgroup) {v2:.1} ms = {:.2}x",
        cgroups / plain,
        v2 / plain
    );
    Ok(())
}

/// The pod's delegated cgroup v2 (`podsim --delegate-cgroups-v2`): the
/// core of v2 without any controller, as this host gives it (every
/// controller is bound to a v1 hierarchy). Per-container cgroups, the
/// cgroup namespace, pause through `cgroup.freeze`, CPU usage from
/// `cpu.stat`; memory/cpu/pids limits accepted with a warning each.
#[test]
fn docker_cli_with_delegated_v2_without_controllers() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new().delegate_cgroups_v2())?;
    // The pod sees its delegated cgroup as the root of its cgroup2 mount.
    let pod_view = pod_sh(
        &pod,
        "cat /proc/self/cgroup; stat -f -c %T /sys/fs/cgroup; cat /sys/fs/cgroup/cgroup.controllers",
    )?;
    ensure!(pod_view.lines().any(|l| l == "0::/"), "{pod_view}");
    ensure!(pod_view.contains("cgroup2"), "{pod_view}");
    let daemon = Daemon::start(&pod)?;
    let img = image.reference.as_str();
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;

    let info = daemon.docker_ok(&[
        "info",
        "--format",
        "{{.CgroupDriver}} {{.CgroupVersion}} {{.MemoryLimit}} {{.PidsLimit}} {{.CPUCfsQuota}}",
    ])?;
    ensure!(info.trim() == "cgroupfs 2 false false false", "{info}");

    // The container's init in its own cgroup below the pod's.
    let run = daemon
        .docker()
        .args(["run", "-d", img])
        .args([
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done",
        ])
        .output()?;
    let id = ok(&run, "docker run -d")?.trim().to_string();
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(
        !stderr.contains("not applied"),
        "warned without limits: {stderr}"
    );
    let cg = |file: &str| -> Result<String> {
        Ok(
            pod_sh(&pod, &format!("cat /sys/fs/cgroup/hutch-{id}/{file}"))?
                .trim()
                .to_string(),
        )
    };
    let pid = daemon.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &id])?;
    let procs = cg("cgroup.procs")?;
    ensure!(
        procs.lines().any(|p| p == pid.trim()),
        "init {pid} not in {procs}"
    );
    // Its cgroup is the root of its cgroup namespace, for exec'd processes too.
    let exec_cg = daemon.docker_ok(&["exec", &id, "cat", "/proc/self/cgroup"])?;
    ensure!(exec_cg.lines().any(|l| l == "0::/"), "{exec_cg}");
    let procs = cg("cgroup.procs")?;
    ensure!(procs.lines().count() >= 1, "{procs}");

    // CPU usage from cpu.stat (core v2): the busy counter has used some.
    std::thread::sleep(Duration::from_millis(300));
    let usage: u64 = cg("cpu.stat")?
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .context("usage_usec in cpu.stat")?
        .parse()?;
    ensure!(usage > 0, "usage_usec {usage}");
    let raw = daemon.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
        &id,
    ])?;
    let fields: Vec<&str> = raw.trim().split('|').collect();
    ensure!(fields.len() == 3, "{raw}");
    ensure!(fields[0].ends_with('%'), "{raw}");
    // Memory from the processes in the cgroup (no memory controller), and
    // the tasks in it (no pids controller): sh, and sometimes its sleep.
    ensure!(!fields[1].starts_with("0B"), "no memory usage: {raw}");
    let pids: u64 = fields[2].parse()?;
    ensure!((1..=2).contains(&pids), "{raw}");
    // The API's total_usage is cpu.stat's usage, in nanoseconds.
    let body = ok(
        &daemon
            .curl(&[
                "-sf",
                &format!("http://d/v1.50/containers/{id}/stats?stream=false"),
            ])
            .output()?,
        "GET stats",
    )?;
    let stats: serde_json::Value = serde_json::from_str(&body)?;
    let total = stats["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .context("total_usage")?;
    ensure!(
        total >= usage * 1000,
        "total_usage {total} < usage_usec {usage}"
    );

    // Pause freezes through cgroup.freeze; exec refused; unpause resumes.
    daemon.docker_ok(&["pause", &id])?;
    ensure!(cg("cgroup.freeze")? == "1");
    ensure!(cg("cgroup.events")?.lines().any(|l| l == "frozen 1"));
    let before = paused_as_docker_says(&daemon, &id)?;
    daemon.docker_ok(&["unpause", &id])?;
    ensure!(cg("cgroup.events")?.lines().any(|l| l == "frozen 0"));
    std::thread::sleep(Duration::from_millis(600));
    ensure!(
        counter(&daemon, &id)? > before,
        "the counter did not resume"
    );
    let state = daemon.docker_ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", &id])?;
    ensure!(state.trim() == "running false", "{state}");

    // Removal of a paused container takes its cgroup with it.
    daemon.docker_ok(&["pause", &id])?;
    daemon.docker_ok(&["rm", "-f", &id])?;
    let left = pod_sh(&pod, "ls /sys/fs/cgroup")?;
    ensure!(!left.contains("hutch-"), "cgroup left behind: {left}");

    // Limits: accepted, one warning per missing controller, nothing written.
    let limited = daemon
        .docker()
        .args([
            "run",
            "-d",
            "-m",
            "64m",
            "--pids-limit",
            "50",
            img,
            "sleep",
            "30",
        ])
        .output()?;
    let lid = ok(&limited, "docker run -d -m 64m --pids-limit 50")?
        .trim()
        .to_string();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    ensure!(
        stderr.contains("memory limit (--memory, --memory-swap) is not applied")
            && stderr.contains("PIDs limit (--pids-limit) is not applied")
            && !stderr.contains("CPU limit"),
        "warnings: {stderr}"
    );
    let files = pod_sh(&pod, &format!("ls /sys/fs/cgroup/hutch-{lid}"))?;
    ensure!(
        !files.contains("memory.max") && !files.contains("pids.max"),
        "{files}"
    );
    let update = daemon
        .docker()
        .args(["update", "--cpus", "0.5", &lid])
        .output()?;
    // The CLI prints update's warnings on stdout.
    let uout = printed(&update);
    ensure!(
        update.status.success() && uout.contains("CPU limit") && uout.contains("not applied"),
        "update --cpus: {uout}"
    );
    // Docker's validation still holds.
    let small = daemon
        .docker()
        .args(["create", "-m", "1m", img, "true"])
        .output()?;
    let small_err = String::from_utf8_lossy(&small.stderr);
    ensure!(
        !small.status.success() && small_err.contains("Minimum memory limit allowed is 6MB"),
        "create -m 1m: {small_err}"
    );
    daemon.docker_ok(&["rm", "-f", &lid])?;
    let left = pod_sh(&pod, "ls /sys/fs/cgroup")?;
    ensure!(!left.contains("hutch-"), "cgroups left behind: {left}");

    // The pod's cgroup goes with the pod.
    let host_dir = pod
        .info()
        .cgroup_v2_host
        .clone()
        .context("pod.json names the delegated cgroup")?;
    ensure!(host_dir.is_dir(), "{}", host_dir.display());
    daemon.stop()?;
    pod.stop()?;
    ensure!(!host_dir.exists(), "{} left behind", host_dir.display());
    Ok(())
}
