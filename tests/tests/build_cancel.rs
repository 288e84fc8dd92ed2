//! Cancelled builds leave nothing behind: Ctrl-C (SIGINT) of a daemonless
//! `hutch build` and a `docker build` client killed mid-RUN stop the RUN's
//! container promptly, and leave no process, mount, temp directory, layer,
//! blob or cache record; a later build works. Stale `builder/tmp` entries of
//! dead builds are swept by the next build while a live build's entry stays.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::build_context::{hutch, load_busybox};
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::http_fixture::HttpFixture;
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use std::os::unix::process::CommandExt;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// A build whose RUN prints `started` and then sleeps `delay` seconds (a
/// number no other test sleeps, so its process can be found on the host).
fn slow_dockerfile(base: &str, delay: u32) -> String {
    format!("FROM {base}\nARG DELAY={delay}\nRUN echo started && sleep $DELAY\n")
}

/// Lines of `stream`, on a channel (read on a thread of their own).
fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = String::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            // buildx prints a RUN's output as `#6 0.025 started`.
            Ok(l) if l.trim() == want || l.trim().ends_with(&format!(" {want}")) => return Ok(()),
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the build ended before printing {want:?}: {seen}")
            }
        }
    }
    bail!("no {want:?} within 120 s: {seen}")
}

/// Every host process, with its parent and command line (NULs as spaces).
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmd = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push((pid, ppid, cmd.trim().to_string()));
    }
    out
}

fn descendants(root: u32) -> BTreeSet<u32> {
    let all = processes();
    let mut found: BTreeSet<u32> = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, _) in &all {
            if *ppid == p && found.insert(*pid) {
                frontier.push(*pid);
            }
        }
    }
    found
}

/// The RUN step's `sleep DELAY` processes, once there are any (up to 5 s:
/// the step prints "started" before its shell forks the sleep).
fn sleepers(delay: u32) -> BTreeSet<u32> {
    let want = format!("sleep {delay}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: BTreeSet<u32> = processes()
            .into_iter()
            .filter(|(_, _, cmd)| *cmd == want)
            .map(|(pid, _, _)| pid)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `pid state cmdline` of each.
fn describe(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            format!("{p} {stat} [{cmd}]")
        })
        .collect()
}

fn alive(pids: &BTreeSet<u32>) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|p| {
            // A zombie has exited; only its parent's wait is missing.
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, a)| a.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

/// What a build stores: blobs, layers, image records, cache records.
fn records(data: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in ["blobs/sha256", "layers", "images", "builder/cache"] {
        for e in std::fs::read_dir(data.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.insert(format!("{dir}/{}", e.file_name().to_string_lossy()));
        }
    }
    out
}

fn tmp_entries(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("builder/tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// Mount points under the data root's `builder/tmp` that `pids` see.
fn build_mounts(pids: &BTreeSet<u32>) -> Vec<String> {
    let mut out = Vec::new();
    for p in pids {
        let info = std::fs::read_to_string(format!("/proc/{p}/mountinfo")).unwrap_or_default();
        for l in info.lines() {
            if l.split(' ')
                .nth(4)
                .is_some_and(|m| m.contains("/builder/tmp/"))
            {
                out.push(format!("{p}: {l}"));
            }
        }
    }
    out
}

/// Waits for `child` to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hutch_build_ctrl_c_cleans_up_and_stale_tmp_is_swept() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let data = pod.data_dir_host().to_path_buf();
    let slow = Ctx::new(&[("Dockerfile", &slow_dockerfile(&base, 4242))])?;
    let quick = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nRUN echo quick > /q\n"))])?;

    // A process group of its own, so the test can signal it as a
    // terminal's Ctrl-C does (every process of the foreground group).
    let mut build = pod
        .exec(hutch_bin())
        .args(["build", "-t", "slow", &slow.arg()])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = lines(build.stderr.take().context("stderr")?);
    wait_for_line(&stderr, "started")?;

    // A dead build's entry (its lock held by nobody), made by hand.
    let stale = data.join("builder/tmp/build-stale");
    std::fs::create_dir_all(stale.join("upper/dir"))?;
    std::fs::write(stale.join(".lock"), "")?;
    std::fs::write(stale.join("upper/dir/file"), "left over")?;
    // Owned by the pod's root, as a crashed build's files are.
    let root = Some(pod.base());
    for p in ["", ".lock", "upper", "upper/dir", "upper/dir/file"] {
        std::os::unix::fs::chown(stale.join(p), root, root)?;
    }
    let live: Vec<String> = tmp_entries(&data)
        .into_iter()
        .filter(|e| e != "build-stale")
        .collect();
    ensure!(
        !live.is_empty(),
        "the running build has no builder/tmp entry"
    );

    // Another build on the same data root sweeps the stale entry only.
    let out = hutch(&pod, &["build", "-t", "quick", &quick.arg()])?;
    ensure!(out.status.success(), "quick build: {}", text(&out));
    ensure!(!stale.exists(), "the stale entry survived");
    for e in &live {
        ensure!(
            data.join("builder/tmp").join(e).exists(),
            "the live build's entry {e} was removed"
        );
    }
    ensure!(build.try_wait()?.is_none(), "the slow build stopped");

    let before = records(&data);
    let mut procs = descendants(build.id());
    let sleeping = sleepers(4242);
    ensure!(!sleeping.is_empty(), "no RUN process found");
    procs.extend(&sleeping);

    let t0 = Instant::now();
    killpg(Pid::from_raw(i32::try_from(build.id())?), Signal::SIGINT)?;
    let status = wait_exit(&mut build, Duration::from_secs(20))?;
    let took = t0.elapsed();
    let rest: Vec<String> = stderr.try_iter().collect();
    ensure!(status.code() == Some(130), "status {status}: {rest:?}");
    ensure!(took < Duration::from_secs(5), "took {took:?} to stop");
    eprintln!("hutch build stopped {took:?} after SIGINT");
    // Processes of the build are gone once it has exited (a few
    // milliseconds of grace for one still being torn down by the kernel).
    let deadline = Instant::now() + Duration::from_millis(500);
    if !alive(&procs).is_empty() {
        eprintln!("still exiting: {:?}", describe(&alive(&procs)));
    }
    while !alive(&procs).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = describe(&alive(&procs));
    ensure!(left.is_empty(), "left running: {left:?}");
    ensure!(
        tmp_entries(&data).is_empty(),
        "builder/tmp: {:?}",
        tmp_entries(&data)
    );
    ensure!(
        records(&data) == before,
        "the cancelled build stored something"
    );
    ensure!(
        rest.iter().any(|l| l.contains("cancelled")),
        "no cancellation message: {rest:?}"
    );
    let pod_mounts = pod.exec("/bin/cat").arg("/proc/self/mountinfo").output()?;
    let pod_mounts = String::from_utf8_lossy(&pod_mounts.stdout);
    ensure!(!pod_mounts.contains("/builder/tmp/"), "{pod_mounts}");

    // The same build, with a short sleep, completes.
    let again = hutch(
        &pod,
        &["build", "--build-arg", "DELAY=0", "-t", "slow", &slow.arg()],
    )?;
    ensure!(again.status.success(), "rebuild: {}", text(&again));
    ensure!(tmp_entries(&data).is_empty(), "{:?}", tmp_entries(&data));
    pod.stop()
}

#[test]
fn docker_build_client_killed_mid_run_cleans_up() -> Result<()> {
    client_killed_mid_run(false, 4243)
}

/// The same through buildx and the BuildKit API: the gRPC calls end with
/// the client, which cancels the build.
#[test]
fn buildx_client_killed_mid_run_cleans_up() -> Result<()> {
    client_killed_mid_run(true, 4244)
}

fn client_killed_mid_run(buildx: bool, delay: u32) -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let data = pod.data_dir_host().to_path_buf();
    let slow = Ctx::new(&[("Dockerfile", &slow_dockerfile(&base, delay))])?;
    let daemon = Daemon::start(&pod)?;
    let daemon_pid = daemon.pid().context("daemon pid")?;
    let idle = descendants(daemon_pid);

    let mut docker = if buildx {
        daemon.docker_buildx()?
    } else {
        daemon.docker()
    };
    docker.arg("build");
    if buildx {
        docker.arg("--progress=plain");
    }
    let mut client = docker
        .args(["-t", "slow", &slow.arg()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The legacy builder streams the RUN's output to stdout, buildx to
    // stderr.
    let stdout = lines(client.stdout.take().context("stdout")?);
    let stderr = lines(client.stderr.take().context("stderr")?);
    wait_for_line(if buildx { &stderr } else { &stdout }, "started")?;
    let before = records(&data);
    let mut build_procs: BTreeSet<u32> =
        descendants(daemon_pid).difference(&idle).copied().collect();
    let sleeping = sleepers(delay);
    ensure!(!sleeping.is_empty(), "no RUN process found");
    build_procs.extend(&sleeping);
    ensure!(!tmp_entries(&data).is_empty(), "no builder/tmp entry");

    // The client goes away (podsim passes the signal to the docker CLI).
    kill(Pid::from_raw(i32::try_from(client.id())?), Signal::SIGINT)?;
    wait_exit(&mut client, Duration::from_secs(10))?;
    let t0 = Instant::now();
    loop {
        let left = alive(&build_procs);
        let tmp = tmp_entries(&data);
        let mounts = build_mounts(&descendants(daemon_pid));
        if left.is_empty() && tmp.is_empty() && mounts.is_empty() {
            eprintln!(
                "the daemon cleaned up {:?} after the client left",
                t0.elapsed()
            );
            break;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            let left = describe(&left);
            bail!(
                "5 s after the client left: processes {left:?}, builder/tmp {tmp:?}, \
                 mounts {mounts:?}\n{}",
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        records(&data) == before,
        "the cancelled build stored something"
    );

    let mut docker = if buildx {
        daemon.docker_buildx()?
    } else {
        daemon.docker()
    };
    let again = docker
        .args(["build", "--build-arg", "DELAY=0", "-t", "slow", &slow.arg()])
        .output()?;
    ensure!(again.status.success(), "rebuild: {}", text(&again));
    ensure!(tmp_entries(&data).is_empty(), "{:?}", tmp_entries(&data));
    daemon.stop()?;
    pod.stop()
}

#[test]
fn hutch_build_ctrl_c_during_a_hung_base_pull() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let data = pod.data_dir_host().to_path_buf();
    let srv = Ctx::new(&[])?;
    // A "registry" that never answers: the pull hangs.
    let _registry = HttpFixture::start(&pod, 18081, srv.path())?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        "FROM 127.0.0.1:18081/stalled/image:1\nRUN true\n",
    )])?;
    let mut build = pod
        .exec(hutch_bin())
        .args(["build", &ctx.arg()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = lines(build.stderr.take().context("stderr")?);
    wait_for_line(&stderr, "Pulling 127.0.0.1:18081/stalled/image:1")?;
    // Let the pull reach the registry.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    kill(Pid::from_raw(i32::try_from(build.id())?), Signal::SIGINT)?;
    let status = wait_exit(&mut build, Duration::from_secs(20))?;
    let took = t0.elapsed();
    let rest: Vec<String> = stderr.try_iter().collect();
    ensure!(status.code() == Some(130), "status {status}: {rest:?}");
    ensure!(took < Duration::from_secs(5), "took {took:?} to stop");
    ensure!(
        tmp_entries(&data).is_empty(),
        "builder/tmp: {:?}",
        tmp_entries(&data)
    );
    pod.stop()
}

#[test]
fn daemon_stopped_mid_build_cancels_it() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let data = pod.data_dir_host().to_path_buf();
    let slow = Ctx::new(&[("Dockerfile", &slow_dockerfile(&base, 4244))])?;
    let daemon = Daemon::start(&pod)?;
    let daemon_pid = daemon.pid().context("daemon pid")?;
    let mut client = daemon
        .docker()
        .args(["build", "-t", "slow", &slow.arg()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = lines(client.stdout.take().context("stdout")?);
    wait_for_line(&stdout, "started")?;
    let before = records(&data);
    let mut procs = descendants(daemon_pid);
    let sleeping = sleepers(4244);
    ensure!(!sleeping.is_empty(), "no RUN process found");
    procs.extend(&sleeping);

    // SIGTERM: the daemon cancels the build and cleans up before it exits.
    let t0 = Instant::now();
    let log = daemon.log();
    let status = daemon.stop()?;
    let took = t0.elapsed();
    eprintln!("the daemon stopped {took:?} after SIGTERM mid-build");
    ensure!(took < Duration::from_secs(5), "took {took:?}: {log}");
    ensure!(status.success(), "daemon exit: {status}");
    let _ = wait_exit(&mut client, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_millis(500);
    while !alive(&procs).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = describe(&alive(&procs));
    ensure!(left.is_empty(), "left running: {left:?}");
    ensure!(
        tmp_entries(&data).is_empty(),
        "builder/tmp: {:?}",
        tmp_entries(&data)
    );
    ensure!(
        records(&data) == before,
        "the cancelled build stored something"
    );
    pod.stop()
}
