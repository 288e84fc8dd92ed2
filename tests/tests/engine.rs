//! The container engine in podsim, through `hutch __engine` (the engine
//! API a daemon calls): supervision, logs, attach, exec, stop, restart
//! policies, healthchecks, `--init`, and re-adoption after the engine
//! process is killed. In the default pod (masked /proc, degraded proc mode)
//! and the `procMount: Unmasked` pod.

use std::time::Duration;

use anyhow::{ensure, Context};
use hutch_tests::engine::{EngineRig, IMAGE};
use hutch_tests::podsim::PodSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Default,
    Unmasked,
}

impl Variant {
    fn rig(self) -> anyhow::Result<EngineRig> {
        EngineRig::start(&match self {
            Variant::Default => PodSpec::new(),
            Variant::Unmasked => PodSpec::new().proc_unmasked(),
        })
    }
}

macro_rules! in_variants {
    ($check:ident) => {
        mod $check {
            #[test]
            fn default_pod() -> anyhow::Result<()> {
                super::$check(super::Variant::Default)
            }
            #[test]
            fn unmasked_pod() -> anyhow::Result<()> {
                super::$check(super::Variant::Unmasked)
            }
        }
    };
}

/// stdout and stderr land in the json-file log, separated, and `run`
/// returns the container's exit code.
fn logs_separate_streams(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let done = rig.engine(&[
        "run",
        "--name",
        "logger",
        hutch_tests::engine::IMAGE,
        "sh",
        "-c",
        "echo out1; echo err1 >&2; printf partial; exit 3",
    ])?;
    ensure!(done.code == 3, "{done:?}");
    ensure!(done.stdout == "out1\npartial", "{done:?}");
    ensure!(done.stderr.contains("err1\n"), "{done:?}");
    let raw = rig.engine(&["logs", "--raw", "logger"])?.ok()?;
    let lines: Vec<&str> = raw.lines().collect();
    ensure!(lines.len() == 3, "{raw}");
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("stderr\t") && l.ends_with("\"err1\\n\"")),
        "{raw}"
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("stdout\t") && l.ends_with("\"partial\"")),
        "{raw}"
    );
    rig.engine(&["rm", "logger"])?.ok()?;
    // Removal deletes the container's directory (in the background, done
    // before the engine process ends).
    let left = rig
        .pod
        .exec("ls")
        .args(["-A", "/var/lib/hutch/containers"])
        .output()?;
    ensure!(
        left.status.success() && left.stdout.is_empty(),
        "left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    rig.pod.stop()
}
in_variants!(logs_separate_streams);

fn sleeper(rig: &EngineRig, name: &str, opts: &[&str]) -> anyhow::Result<String> {
    let mut o = vec!["--name", name];
    o.extend_from_slice(opts);
    rig.run_detached(&o, &["sleep", "3600"])
}

/// Exec: exit codes, environment, user and working directory; 127 for a
/// missing command; the exit code is recorded before the stream ends.
fn exec_codes_env_user_workdir(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    sleeper(&rig, "box", &["-e", "FROM_RUN=1"])?;
    let done = rig.engine(&["exec", "box", "sh", "-c", "exit 7"])?;
    ensure!(done.code == 7, "{done:?}");
    let out = rig
        .engine(&[
            "exec",
            "-e",
            "X=y",
            "-u",
            "1000:1000",
            "-w",
            "/tmp",
            "box",
            "sh",
            "-c",
            "echo $X $FROM_RUN $(id -u):$(id -g) $(pwd)",
        ])?
        .ok()?;
    ensure!(out == "y 1 1000:1000 /tmp", "{out}");
    let missing = rig.engine(&["exec", "box", "no-such-command"])?;
    ensure!(missing.code == 127, "{missing:?}");
    let tty = rig
        .engine(&["exec", "-t", "box", "sh", "-c", "test -t 1 && tty"])?
        .ok()?;
    ensure!(tty.starts_with("/dev/pts/"), "{tty}");
    rig.engine(&["rm", "-f", "box"])?.ok()?;
    rig.pod.stop()
}
in_variants!(exec_codes_env_user_workdir);

/// Stop: a process ignoring SIGTERM is killed after the timeout (137); one
/// that traps it exits with its own code.
fn stop_timeout_and_trapped_term(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    rig.run_detached(
        &["--name", "stubborn"],
        &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
    )?;
    rig.run_detached(
        &["--name", "polite"],
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        ],
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    rig.engine(&["stop", "-t", "1", "stubborn"])?.ok()?;
    ensure!(
        started.elapsed() >= Duration::from_millis(900),
        "stopped too early"
    );
    let code = rig.engine(&["wait", "stubborn"])?.ok()?;
    ensure!(code == "137", "{code}");
    rig.engine(&["stop", "polite"])?.ok()?;
    let state = &rig.inspect("polite")?["State"];
    ensure!(
        state["ExitCode"] == 42 && state["Status"] == "exited",
        "{state}"
    );
    ensure!(state["FinishedAt"] != "0001-01-01T00:00:00Z", "{state}");
    rig.pod.stop()
}
in_variants!(stop_timeout_and_trapped_term);

/// Restart policies: on-failure:2 restarts exactly twice; always restarts
/// a clean exit; a stop stands the policy down.
fn restart_policies(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    rig.run_detached(
        &["--name", "flaky", "--restart", "on-failure:2"],
        &["sh", "-c", "echo run; exit 1"],
    )?;
    rig.run_detached(
        &["--name", "loop", "--restart", "always"],
        &["sh", "-c", "echo again; sleep 0.2"],
    )?;
    let flaky = rig.wait_for("flaky", "three runs", Duration::from_secs(20), |v| {
        v["State"]["Status"] == "exited" && v["RestartCount"] == 2
    })?;
    ensure!(flaky["State"]["ExitCode"] == 1, "{flaky}");
    std::thread::sleep(Duration::from_millis(500));
    let flaky = rig.inspect("flaky")?;
    ensure!(
        flaky["RestartCount"] == 2,
        "restarted more than twice: {flaky}"
    );
    let logs = rig.engine(&["logs", "flaky"])?.ok()?;
    ensure!(logs.lines().filter(|l| *l == "run").count() == 3, "{logs}");
    rig.wait_for("loop", "two restarts", Duration::from_secs(20), |v| {
        v["RestartCount"].as_u64().is_some_and(|n| n >= 2)
    })?;
    rig.engine(&["stop", "-t", "1", "loop"])?.ok()?;
    let stopped = rig.inspect("loop")?;
    let count = stopped["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(800));
    let later = rig.inspect("loop")?;
    ensure!(
        later["State"]["Status"] == "exited" && later["RestartCount"] == count,
        "restarted after stop: {later}"
    );
    rig.pod.stop()
}
in_variants!(restart_policies);

/// A failing healthcheck turns the container unhealthy after its retries,
/// with Docker's Health fields and probe log.
fn failing_healthcheck(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    sleeper(
        &rig,
        "sick",
        &[
            "--health-cmd",
            "echo probing; exit 1",
            "--health-interval-ms",
            "200",
            "--health-retries",
            "2",
        ],
    )?;
    let v = rig.wait_for("sick", "unhealthy", Duration::from_secs(20), |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    })?;
    let health = &v["State"]["Health"];
    ensure!(
        health["FailingStreak"].as_u64().is_some_and(|n| n >= 2),
        "{health}"
    );
    let log = health["Log"].as_array().cloned().unwrap_or_default();
    ensure!(!log.is_empty() && log.len() <= 5, "{health}");
    ensure!(
        log[0]["ExitCode"] == 1 && log[0]["Output"] == "probing\n",
        "{health}"
    );
    sleeper(
        &rig,
        "well",
        &["--health-cmd", "true", "--health-interval-ms", "200"],
    )?;
    rig.wait_for("well", "healthy", Duration::from_secs(20), |v| {
        v["State"]["Health"]["Status"] == "healthy"
    })?;
    rig.pod.stop()
}
in_variants!(failing_healthcheck);

/// `--init` reaps zombies: orphans reparented to the container's PID 1
/// (a `sleep` that never waits) are reaped by the init, and the command's
/// exit code comes through it.
fn init_reaps_zombies(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let code = rig.engine(&[
        "run",
        "--init",
        hutch_tests::engine::IMAGE,
        "sh",
        "-c",
        "exit 5",
    ])?;
    ensure!(code.code == 5, "{code:?}");
    let orphans = "for i in 1 2 3; do sh -c 'sleep 0.1 &'; done; exec sleep 3600";
    rig.run_detached(&["--name", "reaped", "--init"], &["sh", "-c", orphans])?;
    rig.run_detached(&["--name", "unreaped"], &["sh", "-c", orphans])?;
    std::thread::sleep(Duration::from_millis(800));
    // Zombies whose parent is the container's init (PID 1 in its own PID
    // namespace; the pod's /proc of the degraded mode gives the init's pod PID).
    let zombies = |name: &str| -> anyhow::Result<String> {
        let init = match v {
            Variant::Unmasked => "1".to_string(),
            Variant::Default => rig.inspect(name)?["State"]["Pid"].to_string(),
        };
        let count = format!(
            "for f in /proc/[0-9]*/status; do grep -q '^State:.*Z' $f 2>/dev/null && \
             grep -q \"^PPid:[[:space:]]*{init}$\" $f && echo z; done | wc -l"
        );
        rig.engine(&["exec", name, "sh", "-c", &count])?.ok()
    };
    let reaped = zombies("reaped")?;
    ensure!(reaped == "0", "zombies with --init: {reaped}");
    // The control: without --init, PID 1 is the sleep, which never waits.
    let unreaped = zombies("unreaped")?;
    ensure!(unreaped == "3", "zombies without --init: {unreaped}");
    rig.pod.stop()
}
in_variants!(init_reaps_zombies);

/// `--init`'s PID 1 runs as docker-init does, with the container's user and
/// capabilities: a container given CAP_SYS_PTRACE gains nothing by tracing
/// it. `exec` still joins it.
fn init_runs_as_the_container(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let init_pid = |name: &str| -> anyhow::Result<String> {
        Ok(match v {
            Variant::Unmasked => "1".to_string(),
            Variant::Default => rig.inspect(name)?["State"]["Pid"].to_string(),
        })
    };
    rig.run_detached(
        &["--name", "traced", "--init", "--cap-add", "SYS_PTRACE"],
        &["sleep", "3600"],
    )?;
    let init = init_pid("traced")?;
    let script = format!("grep CapEff /proc/{init}/status; grep CapEff /proc/self/status");
    let out = rig.engine(&["exec", "traced", "sh", "-c", &script])?.ok()?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.len() == 2 && lines[0] == lines[1],
        "the init's capabilities are the container's: {out}"
    );
    rig.run_detached(
        &["--name", "as-user", "--init", "--user", "1000:1000"],
        &["sleep", "3600"],
    )?;
    let init = init_pid("as-user")?;
    let uid = rig
        .engine(&[
            "exec",
            "as-user",
            "grep",
            "^Uid:",
            &format!("/proc/{init}/status"),
        ])?
        .ok()?;
    ensure!(
        uid.split_whitespace().skip(1).all(|id| id == "1000"),
        "the init runs as the container's user: {uid}"
    );
    rig.pod.stop()
}
in_variants!(init_runs_as_the_container);

/// The engine process killed with SIGKILL while 20 containers run: a new
/// engine re-adopts them all, their logs are intact, and the exits of
/// those that ended meanwhile are recorded.
fn engine_killed_and_readopted(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let mut server = rig.serve()?;
    let (_, pid) = server.call("pid")?;
    for i in 0..20 {
        // The even ones end by themselves 2 s from now, with code i.
        let line = format!(
            "run -d --name c{i} {} sh -c {}",
            hutch_tests::engine::IMAGE,
            script_word(i)
        );
        let (code, out) = server.call(&line)?;
        ensure!(code == 0, "{line}: {out}");
    }
    let kill = rig.pod.exec("kill").args(["-9", pid.trim()]).status()?;
    ensure!(kill.success(), "kill -9 of the engine");
    let _ = server.child.wait();
    std::thread::sleep(Duration::from_secs(3));
    let ps = rig.engine(&["ps", "-a"])?.ok()?;
    ensure!(ps.lines().count() == 20, "{ps}");
    for i in 0..20 {
        let name = format!("c{i}");
        let state = rig.inspect(&name)?["State"].clone();
        if i % 2 == 0 {
            ensure!(
                state["Status"] == "exited" && state["ExitCode"] == i,
                "{name}: {state}"
            );
        } else {
            ensure!(state["Status"] == "running", "{name}: {state}");
        }
        let logs = rig.engine(&["logs", &name])?.ok()?;
        ensure!(logs == format!("hello{i}"), "{name}: {logs}");
    }
    // Still supervised: stop works through the new engine.
    rig.engine(&["kill", "c1"])?.ok()?;
    rig.engine(&["wait", "c1"])?.ok()?;
    ensure!(rig.inspect("c1")?["State"]["ExitCode"] == 137);
    rig.pod.stop()
}

/// A shell word without spaces (serve splits on whitespace).
fn script_word(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("echo${{IFS}}hello{i};sleep${{IFS}}2;exit${{IFS}}{i}")
    } else {
        format!("echo${{IFS}}hello{i};sleep${{IFS}}3600")
    }
}
in_variants!(engine_killed_and_readopted);

/// A container's root can neither signal nor look into the processes
/// around it: the engine, the engine's parent half in the pod, another
/// container's supervisor, another container's process. In the default pod
/// the pod's /proc lists them all under their pod PIDs, but kill(2) (like
/// ptrace(2)) names processes in the caller's PID namespace, which holds the
/// container's own only; and their /proc files that give a process away
/// need CAP_SYS_PTRACE over the user namespace they live (and were exec'd)
/// in, which a container never has, though in identity mode its root is the
/// engine's kernel UID.
fn containers_are_isolated(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let mut server = rig.serve()?;
    let (_, engine) = server.call("pid")?;
    let engine: u32 = engine.trim().parse()?;
    for name in ["victim", "attacker"] {
        let line = format!("run -d --name {name} {} sleep 3600", IMAGE);
        let (code, out) = server.call(&line)?;
        ensure!(code == 0, "{line}: {out}");
    }
    let pod_status = |pid: u32, field: &str| -> anyhow::Result<u32> {
        let out = rig
            .pod
            .exec("cat")
            .arg(format!("/proc/{pid}/status"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{field} of {pid}: {text}"))
    };
    let parent = pod_status(engine, "PPid:")?;
    let victim: u32 = rig.inspect("victim")?["State"]["Pid"].to_string().parse()?;
    let supervisor = pod_status(victim, "PPid:")?;
    let targets = [
        ("engine", engine),
        ("parent", parent),
        ("supervisor", supervisor),
        ("victim", victim),
    ];
    // The kills come first, from the shell itself (PID 2 of the attacker's
    // namespace, its sleep being 1): no PID of the attacker's own processes
    // can then coincide with a target's pod PID.
    let mut script = String::new();
    for (_, p) in targets {
        ensure!(p > 2, "pod PIDs of the targets: {targets:?}");
        script += &format!("kill -9 {p} 2>/dev/null; echo {p}.kill=$?; ");
    }
    if v == Variant::Default {
        for (_, p) in targets {
            script += &format!(
                "[ -d /proc/{p} ] && echo {p}.visible; \
                 cat /proc/{p}/environ >/dev/null 2>&1; echo {p}.environ=$?; \
                 ls /proc/{p}/root/ >/dev/null 2>&1; echo {p}.root=$?; \
                 ls /proc/{p}/cwd/ >/dev/null 2>&1; echo {p}.cwd=$?; \
                 readlink /proc/{p}/fd/1 >/dev/null 2>&1; echo {p}.fd=$?; \
                 (exec 3</proc/{p}/mem) 2>/dev/null; echo {p}.mem=$?; "
            );
        }
    } else {
        // A fresh /proc names the container's own processes only.
        // (The pattern does not match the script's own command line.)
        script += "echo listed=$(for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; \
                   done | grep -c 'hutc[h]'); ";
    }
    let out = rig
        .engine(&["exec", "attacker", "sh", "-c", &script])?
        .ok()?;
    for (what, p) in targets {
        ensure!(
            out.lines().any(|l| l == format!("{p}.kill=1")),
            "{what} ({p}): kill was not refused: {out}"
        );
        if v != Variant::Default {
            continue;
        }
        // The pod's /proc lists them: the refusals are the kernel's access
        // checks, not their absence.
        ensure!(out.contains(&format!("{p}.visible")), "{what}: {out}");
        for check in ["environ", "root", "cwd", "fd", "mem"] {
            ensure!(
                out.lines().any(|l| l == format!("{p}.{check}=1")),
                "{what} ({p}): {check} was not refused: {out}"
            );
        }
    }
    if v != Variant::Default {
        ensure!(out.contains("listed=0"), "engine processes listed: {out}");
    }
    // All still alive: the engine answers, the victim runs.
    let (code, out) = server.call("inspect victim")?;
    ensure!(code == 0, "{out}");
    let state: serde_json::Value = serde_json::from_str(&out)?;
    ensure!(state["State"]["Status"] == "running", "{state}");
    for (what, p) in targets {
        let alive = rig.pod.exec("kill").args(["-0", &p.to_string()]).status()?;
        ensure!(alive.success(), "{what} ({p}) is gone");
    }
    drop(server);
    rig.pod.stop()
}
in_variants!(containers_are_isolated);

/// The engine ID ranges of a running container's uid_map (pod view):
/// `(inside, outside, count)` lines.
fn uid_map(rig: &EngineRig, name: &str) -> anyhow::Result<Vec<(u32, u32, u32)>> {
    let pid = rig.inspect(name)?["State"]["Pid"].to_string();
    let out = rig
        .pod
        .exec("cat")
        .arg(format!("/proc/{pid}/uid_map"))
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            match f[..] {
                [inside, outside, count] => Ok((inside, outside, count)),
                _ => anyhow::bail!("uid_map line {l:?}"),
            }
        })
        .collect()
}

fn engine_ids(map: &[(u32, u32, u32)]) -> std::collections::BTreeSet<u32> {
    map.iter().flat_map(|&(_, o, c)| o..o + c).collect()
}

/// What a private-mode container sees of its rootfs: root as another
/// engine ID, the image's files its root's, 65534 usable, and a lower file
/// copied up on write.
fn check_private_container(rig: &EngineRig, name: &str) -> anyhow::Result<()> {
    let script = "echo uid=$(id -u); touch /f && chown 65534:65534 /f && \
                  echo owner=$(stat -c %u:%g /f); \
                  echo nobody=$(su -s /bin/sh -c 'id -u' nobody); \
                  echo busybox=$(stat -c %u:%g /bin/busybox); \
                  echo x >> /etc/group && echo group=$(stat -c %u:%g /etc/group)";
    let out = rig.engine(&["exec", name, "sh", "-c", script])?.ok()?;
    for want in [
        "uid=0",
        "owner=65534:65534",
        "nobody=65534",
        "busybox=0:0",
        "group=0:0",
    ] {
        ensure!(out.lines().any(|l| l == want), "{name}: {want}: {out}");
    }
    Ok(())
}

/// The two ranges are disjoint, root is another engine ID, 65534 alone.
fn check_private_maps(a: &[(u32, u32, u32)], b: &[(u32, u32, u32)]) -> anyhow::Result<()> {
    for map in [a, b] {
        let root = map.iter().find(|l| l.0 == 0).context("root mapped")?;
        ensure!(root.1 != 0, "root is another engine ID: {map:?}");
        ensure!(
            map.iter()
                .any(|&(inside, _, count)| inside == 65534 && count == 1),
            "65534 is mapped alone: {map:?}"
        );
    }
    ensure!(engine_ids(a).is_disjoint(&engine_ids(b)), "{a:?} {b:?}");
    Ok(())
}

/// The shifted copies of a container's layers: the one directory of its
/// map under the data root (named by the map's lines).
fn shifted_copy_dir(map: &[(u32, u32, u32)]) -> String {
    let name: Vec<String> = map.iter().map(|(i, o, c)| format!("{i}-{o}-{c}")).collect();
    format!("/var/lib/hutch/shifted-layers/{}", name.join("_"))
}

/// Private ID mode on the pod's disk (ext4, which the engine cannot idmap):
/// each container's layers are copies with owners shifted into its range,
/// owned on disk by its root's engine ID; a removed container's range, and
/// with it the copies, go to the next one; copies of layers the store no
/// longer has (and partial ones) are pruned when an engine opens. Then the
/// engine's tmpfs layer store (idmapped layers): two private containers
/// get disjoint ranges with 65534 mapped alone, are root inside as another
/// engine ID, and can use 65534; a removed container's range is reused; a
/// restarted engine reserves the ranges of existing containers again; a
/// container made for the tmpfs refuses to start without it, clearly;
/// exhaustion is a clear error that a removal cures.
fn private_mode(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let pod_sh = |script: &str| -> anyhow::Result<String> {
        let out = rig.pod.exec("sh").args(["-c", script]).output()?;
        ensure!(out.status.success(), "{script}: {out:?}");
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    for name in ["sa", "sb"] {
        rig.engine(&[
            "run", "-d", "--userns", "private", "--name", name, IMAGE, "sleep", "3600",
        ])?
        .ok()?;
    }
    let (map_a, map_b) = (uid_map(&rig, "sa")?, uid_map(&rig, "sb")?);
    check_private_maps(&map_a, &map_b)?;
    for name in ["sa", "sb"] {
        check_private_container(&rig, name)?;
    }
    let root_a = map_a.iter().find(|l| l.0 == 0).context("root mapped")?.1;
    let copy_a = shifted_copy_dir(&map_a);
    // One layer in the test image: its copy, owned by a's root on disk.
    let owner = pod_sh(&format!("stat -c %u:%g {copy_a}/*/bin/busybox"))?;
    ensure!(owner == format!("{root_a}:{root_a}"), "{owner}");
    let inode = pod_sh(&format!("stat -c %i {copy_a}/*"))?;
    rig.engine(&["rm", "-f", "sa"])?.ok()?;
    rig.engine(&[
        "run", "-d", "--userns", "private", "--name", "sc", IMAGE, "sleep", "3600",
    ])?
    .ok()?;
    ensure!(uid_map(&rig, "sc")? == map_a, "a's range goes to c");
    check_private_container(&rig, "sc")?;
    ensure!(
        pod_sh(&format!("stat -c %i {copy_a}/*"))? == inode,
        "c uses the copies made for a"
    );
    let copies = pod_sh(&format!("ls -A {copy_a}"))?;
    pod_sh(&format!(
        "mkdir -p {copy_a}/{gone}/etc {copy_a}/{gone}.partial {copy_a}/x.partial",
        gone = "0".repeat(64)
    ))?;
    rig.engine(&["ps"])?.ok()?;
    let left = pod_sh(&format!("ls -A {copy_a}"))?;
    ensure!(left == copies, "pruned to {copies:?}: {left:?}");
    for name in ["sb", "sc"] {
        rig.engine(&["rm", "-f", name])?.ok()?;
    }

    let mut server = rig.serve_with(&["--private-layers-tmpfs"])?;
    let run = |server: &mut hutch_tests::engine::Server, name: &str| -> anyhow::Result<()> {
        let line = format!("run -d --userns private --name {name} {IMAGE} sleep 3600");
        let (code, out) = server.call(&line)?;
        ensure!(code == 0, "{line}: {out}");
        Ok(())
    };
    run(&mut server, "pa")?;
    run(&mut server, "pb")?;
    let (map_a, map_b) = (uid_map(&rig, "pa")?, uid_map(&rig, "pb")?);
    check_private_maps(&map_a, &map_b)?;
    for name in ["pa", "pb"] {
        check_private_container(&rig, name)?;
    }
    let (code, out) = server.call(&format!("create --userns private --name pt {IMAGE} true"))?;
    ensure!(code == 0, "{out}");

    // a's range goes back to the pool with a, and the next one gets it.
    let (code, out) = server.call("rm -f pa")?;
    ensure!(code == 0, "{out}");
    run(&mut server, "pc")?;
    let map_c = uid_map(&rig, "pc")?;
    ensure!(map_c == map_a, "a's range is reused: {map_a:?} {map_c:?}");

    // A new engine reserves the ranges of the containers it finds. One
    // without the tmpfs cannot start a container made for it.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let refused = rig.engine(&["start", "pt"])?;
    ensure!(
        refused.code != 0 && refused.stderr.contains("--private-layers-tmpfs"),
        "{refused:?}"
    );
    let mut server = rig.serve_with(&["--private-layers-tmpfs"])?;
    run(&mut server, "pd")?;
    let map_d = uid_map(&rig, "pd")?;
    for other in [&map_b, &map_c] {
        ensure!(
            engine_ids(&map_d).is_disjoint(&engine_ids(other)),
            "{map_d:?} overlaps {other:?}"
        );
    }

    // Exhaustion: created containers hold their ranges too.
    let mut created = Vec::new();
    let message = loop {
        let (code, out) = server.call(&format!("create --userns private {IMAGE} true"))?;
        if code != 0 {
            break out;
        }
        created.push(out.trim().to_string());
        ensure!(created.len() < 100, "no exhaustion after 100 ranges");
    };
    ensure!(
        message.contains("no free ID range") && message.contains("remove containers"),
        "{message}"
    );
    ensure!(
        created.len() >= 40,
        "only {} ranges: {message}",
        created.len()
    );
    let (code, out) = server.call(&format!("rm {}", created[0]))?;
    ensure!(code == 0, "{out}");
    let (code, out) = server.call(&format!("create --userns private {IMAGE} true"))?;
    ensure!(code == 0, "a freed range is used again: {out}");
    drop(server);
    rig.pod.stop()
}
in_variants!(private_mode);

/// `--ulimit`: the container's processes, exec'd ones too, run with the
/// limits asked for; an unknown name is refused at create.
fn ulimits(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let show = "echo n=$(ulimit -n) hn=$(ulimit -Hn) c=$(ulimit -c)";
    let out = rig.engine(&[
        "run",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "core=0",
        IMAGE,
        "sh",
        "-c",
        show,
    ])?;
    ensure!(out.code == 0, "{out:?}");
    ensure!(out.stdout.trim() == "n=1024 hn=2048 c=0", "{out:?}");
    let id = rig.run_detached(&["--ulimit", "nofile=512:1024"], &["sleep", "3600"])?;
    let out = rig.engine(&["exec", &id, "sh", "-c", show])?.ok()?;
    ensure!(out.starts_with("n=512 hn=1024 "), "{out}");
    let bad = rig.engine(&["create", "--ulimit", "bogus=1", IMAGE, "true"])?;
    ensure!(
        bad.code != 0 && bad.stderr.contains("invalid ulimit type: bogus"),
        "{bad:?}"
    );
    rig.pod.stop()
}
in_variants!(ulimits);

/// Docker's default seccomp profile: a container's root cannot create a
/// user namespace (EPERM), so neither can it mount in one of its own;
/// with `--security-opt seccomp=unconfined` both work (the pod sets no
/// filter), and CAP_SYS_ADMIN opens them as Docker's profile does.
fn seccomp(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let script = "grep '^Seccomp:' /proc/self/status; \
                  unshare -U true; echo userns=$?; \
                  mkdir -p /m; unshare -Urm sh -c 'mount -t tmpfs t /m'; echo mount=$?";
    let run = |opts: &[&str]| -> anyhow::Result<hutch_tests::engine::Done> {
        let mut args = vec!["run"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        rig.engine(&args)
    };
    let confined = run(&[])?;
    ensure!(confined.code == 0, "{confined:?}");
    for want in ["Seccomp:\t2", "userns=1", "mount=1"] {
        ensure!(confined.stdout.contains(want), "{want}: {confined:?}");
    }
    ensure!(
        confined.stderr.contains("Operation not permitted"),
        "EPERM: {confined:?}"
    );
    let unconfined = run(&["--security-opt", "seccomp=unconfined"])?;
    for want in ["Seccomp:\t0", "userns=0", "mount=0"] {
        ensure!(unconfined.stdout.contains(want), "{want}: {unconfined:?}");
    }
    let admin = run(&["--cap-add", "SYS_ADMIN"])?;
    for want in ["Seccomp:\t2", "userns=0", "mount=0"] {
        ensure!(admin.stdout.contains(want), "{want}: {admin:?}");
    }
    // Exec'd processes get the container's filter too.
    let id = rig.run_detached(&[], &["sleep", "3600"])?;
    let out = rig.engine(&["exec", &id, "sh", "-c", "unshare -U true; echo userns=$?"])?;
    ensure!(out.stdout.contains("userns=1"), "{out:?}");
    rig.pod.stop()
}
in_variants!(seccomp);

/// The resident memory (KiB) of a process in the pod, from smaps_rollup.
fn rss_kib(rig: &EngineRig, pid: &str) -> anyhow::Result<u64> {
    let out = rig
        .pod
        .exec("cat")
        .arg(format!("/proc/{pid}/smaps_rollup"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no Rss for {pid}: {text}"))
}

/// An idle supervisor lets go of the code pages it ran to start its
/// container (engine/src/supervisor/trim.rs), and still serves exec, logs
/// and kill afterwards, faulting back in what it runs.
fn idle_supervisor_lets_go_of_code(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let id = rig.run_detached(
        &["--name", "idle"],
        &["sh", "-c", "echo started; exec sleep 3600"],
    )?;
    let state = rig
        .pod
        .exec("cat")
        .arg(format!("/var/lib/hutch/containers/{id}/state.json"))
        .output()?;
    let state: serde_json::Value = serde_json::from_slice(&state.stdout)?;
    let pid = state["SupervisorPid"].as_i64().context("SupervisorPid")?;
    let pid = pid.to_string();
    let fresh = rss_kib(&rig, &pid)?;
    // It settles two seconds after its last event.
    std::thread::sleep(Duration::from_millis(3500));
    let settled = rss_kib(&rig, &pid)?;
    // (The absolute figure is runtime-bench's, on a release build; a
    // debug build's code and relocated data are several times larger.)
    ensure!(
        settled * 2 < fresh,
        "supervisor RSS: {fresh} KiB at start, {settled} KiB idle"
    );
    let out = rig.engine(&["exec", "idle", "echo", "still"])?.ok()?;
    ensure!(out == "still", "{out}");
    ensure!(rig.engine(&["logs", "idle"])?.ok()? == "started");
    rig.engine(&["kill", "idle"])?.ok()?;
    rig.engine(&["wait", "idle"])?.ok()?;
    ensure!(rig.inspect("idle")?["State"]["ExitCode"] == 137);
    rig.engine(&["rm", "idle"])?.ok()?;
    rig.pod.stop()
}
in_variants!(idle_supervisor_lets_go_of_code);
