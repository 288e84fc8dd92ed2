//! Containers through the real docker CLI, docker-py and raw sockets,
//! against `hutch daemon` inside a simulated pod: run (foreground, -d,
//! --rm, -it through a pty, -e/-w/-u/--name/--entrypoint), exit codes,
//! logs, exec, inspect, ps filters, stop/kill/restart/rm/wait/top/stats/
//! rename, events, restart policies; docker-py's container calls; and the
//! wire details clients depend on (101 upgrades, frames, /wait headers,
//! stdin half-close, clients that hang up).
//!
//! Needs the `hutch` and `podsim` binaries built first, and the docker-py
//! venv (`tests/run` does both).

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon, DOCKER_CLI, DOCKER_HOST};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::poll::wait_for;
use hutch_tests::testimages::{self, TestImage};

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A pod with the daemon and busybox loaded.
fn setup(pod: &Pod) -> Result<(Daemon<'_>, TestImage)> {
    let image = testimages::busybox()?;
    let daemon = Daemon::start(pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    Ok((daemon, image))
}

/// `docker ARGS`, whatever its exit code.
fn docker(daemon: &Daemon, args: &[&str]) -> Result<Output> {
    Ok(daemon.docker().args(args).output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a docker command line under `script`, which gives it a terminal,
/// feeding it `input` (chunks after the first wait a moment: the CLI must
/// have put the terminal in raw mode, or the tty eats ctrl-q as XON);
/// returns its exit code and what the terminal showed.
fn in_pty(daemon: &Daemon, command_line: &str, input: &[&str]) -> Result<(i32, String)> {
    let mut child = daemon
        .pod()
        .exec("/usr/bin/timeout")
        // A CLI that never returns fails the test (124) instead of hanging it.
        .args(["60", "/usr/bin/script", "-qec", command_line, "/dev/null"])
        .env("DOCKER_HOST", DOCKER_HOST)
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("script's stdin")?;
    for (i, chunk) in input.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(800));
        }
        // The shell reads its line once it runs; early input waits in the pty.
        stdin.write_all(chunk.as_bytes())?;
        stdin.flush()?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        text(&out.stdout) + &text(&out.stderr),
    ))
}

#[test]
fn docker_cli_run() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;
    let bb = image.reference.as_str();

    // Foreground --rm: the output, the real exit code, nothing left behind.
    let out = docker(&daemon, &["run", "--rm", bb, "echo", "hi"])?;
    ensure!(out.status.code() == Some(0), "{out:?}");
    ensure!(out.stdout == b"hi\n", "{:?}", text(&out.stdout));
    let out = docker(
        &daemon,
        &["run", "--rm", bb, "sh", "-c", "echo to-err >&2; exit 3"],
    )?;
    ensure!(out.status.code() == Some(3), "{out:?}");
    ensure!(text(&out.stderr).contains("to-err"), "{out:?}");
    let out = docker(&daemon, &["run", "--rm", bb, "no-such-command"])?;
    ensure!(out.status.code() == Some(127), "{out:?}");
    ensure!(
        text(&out.stderr).contains("executable file not found in $PATH"),
        "{out:?}"
    );
    let out = docker(&daemon, &["run", "--rm", bb, "/etc/passwd"])?;
    ensure!(out.status.code() == Some(126), "{out:?}");
    ensure!(text(&out.stderr).contains("permission denied"), "{out:?}");
    // A setup that fails while the network is being plugged in (the two
    // run side by side): the setup's own error, not the plug's.
    for network in ["bridge", "none"] {
        let out = docker(
            &daemon,
            &[
                "run",
                "--rm",
                "--network",
                network,
                "-v",
                "/etc/hostname:/bin",
                bb,
                "true",
            ],
        )?;
        ensure!(out.status.code() == Some(125), "{network}: {out:?}");
        ensure!(
            text(&out.stderr).contains("bind-mounting /etc/hostname on /bin"),
            "{network}: {out:?}"
        );
    }
    let left = daemon.docker_ok(&["ps", "-aq"])?;
    ensure!(left.trim().is_empty(), "--rm left containers: {left}");

    // -e, -w, -u, --entrypoint.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1001",
        bb,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u):$(id -g)",
    ])?;
    ensure!(out == "bar /tmp 1000:1001\n", "{out:?}");
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        bb,
        "via",
        "entrypoint",
    ])?;
    ensure!(out == "via entrypoint\n", "{out:?}");

    // stdin through a pipe (-i): cat sees EOF when the CLI's stdin ends.
    let mut child = daemon
        .docker()
        .args(["run", "--rm", "-i", bb, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"piped through\n")?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success() && out.stdout == b"piped through\n",
        "{out:?}"
    );

    // --name and its conflict.
    let id = daemon.docker_ok(&["create", "--name", "dup", bb, "true"])?;
    let out = docker(&daemon, &["create", "--name", "dup", bb, "true"])?;
    ensure!(!out.status.success(), "{out:?}");
    ensure!(
        text(&out.stderr).contains(&format!(
            "Conflict. The container name \"/dup\" is already in use by container \"{}\"",
            id.trim()
        )),
        "{out:?}"
    );
    let out = docker(&daemon, &["create", "--name", "bad name!", bb, "true"])?;
    ensure!(
        text(&out.stderr).contains("Invalid container name"),
        "{out:?}"
    );
    daemon.docker_ok(&["rm", "dup"])?;

    // -it through a pty: the shell's output, and its exit code.
    let (code, screen) = in_pty(
        &daemon,
        &format!("{DOCKER_CLI} run --rm -it {bb} sh"),
        &["echo in-$((2+3))-tty; exit 5\n"],
    )?;
    ensure!(code == 5, "exit {code}: {screen}");
    ensure!(screen.contains("in-5-tty"), "{screen}");

    // ctrl-p ctrl-q detaches: the CLI exits 0, the container runs on.
    let (code, screen) = in_pty(
        &daemon,
        &format!("{DOCKER_CLI} run -it --name detached {bb} sh"),
        &["echo before-detach\n", "\u{10}\u{11}"],
    )?;
    ensure!(code == 0, "exit {code}: {screen}");
    let state = daemon.docker_ok(&["inspect", "-f", "{{.State.Status}}", "detached"])?;
    ensure!(state == "running\n", "{state}: {screen}");
    daemon.docker_ok(&["rm", "-f", "detached"])?;

    // docker cp both ways, with owners, symlinks kept as links, and the
    // path resolved inside the container.
    daemon.docker_ok(&[
        "run", "-d", "--name", "files", bb, "sh", "-c",
        "mkdir -p /data/sub; echo hello > /data/sub/f; ln -s /etc/passwd /data/link; touch /ready; sleep 60",
    ])?;
    wait_for("the files", Duration::from_secs(10), || {
        Ok(docker(&daemon, &["exec", "files", "test", "-f", "/ready"])?
            .status
            .success())
    })?;
    let sh = |script: &str| -> Result<String> {
        ok(&pod.exec("/bin/sh").args(["-c", script]).output()?, script)
    };
    daemon.docker_ok(&["cp", "files:/data", "/tmp/out"])?;
    ensure!(sh("cat /tmp/out/sub/f")? == "hello\n");
    ensure!(sh("readlink /tmp/out/link")? == "/etc/passwd\n");
    sh("mkdir -p /tmp/in/x && echo deep > /tmp/in/x/y && chown -R 1234:5678 /tmp/in")?;
    daemon.docker_ok(&["cp", "/tmp/in", "files:/tmp/"])?;
    let copied = daemon.docker_ok(&["exec", "files", "stat", "-c", "%u:%g %s", "/tmp/in/x/y"])?;
    ensure!(copied == "1234:5678 5\n", "{copied}");
    let out = docker(&daemon, &["cp", "files:/nope", "/tmp/"])?;
    ensure!(
        text(&out.stderr).contains("Could not find the file /nope in container"),
        "{out:?}"
    );
    daemon.docker_ok(&["rm", "-f", "files"])?;

    // And with a container that is not running, as CI jobs do: files in
    // before its first start (owners kept), results out after it exited,
    // through its upper directory over the image (what it deleted is gone).
    daemon.docker_ok(&[
        "create", "--name", "later", bb, "sh", "-c",
        "stat -c %u:%g /tmp/in/x/y > /owner && cat /tmp/in/x/y > /result && rm -f /etc/group && mkdir -p /out && echo made > /out/file",
    ])?;
    daemon.docker_ok(&["cp", "/tmp/in", "later:/tmp/"])?;
    let out = docker(&daemon, &["start", "-a", "later"])?;
    ensure!(out.status.success(), "{out:?}");
    daemon.docker_ok(&["cp", "later:/owner", "/tmp/owner"])?;
    ensure!(sh("cat /tmp/owner")? == "1234:5678\n");
    daemon.docker_ok(&["cp", "later:/result", "/tmp/result"])?;
    ensure!(sh("cat /tmp/result")? == "deep\n");
    daemon.docker_ok(&["cp", "later:/out", "/tmp/out2"])?;
    ensure!(sh("cat /tmp/out2/file")? == "made\n");
    // From the image, through the container's view.
    daemon.docker_ok(&["cp", "later:/etc/passwd", "/tmp/passwd"])?;
    ensure!(sh("cat /tmp/passwd")?.starts_with("root:x:0:0"));
    let out = docker(&daemon, &["cp", "later:/etc/group", "/tmp/"])?;
    ensure!(
        text(&out.stderr).contains("Could not find the file /etc/group in container"),
        "a file the container deleted: {out:?}"
    );
    // Nothing stays mounted, and it starts again with what was copied in.
    sh("echo again > /tmp/again")?;
    daemon.docker_ok(&["cp", "/tmp/again", "later:/again"])?;
    // (A view's directory goes once it is unmounted.)
    let tmp = pod.data_dir_host().join("builder/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    ensure!(left.is_empty(), "views left in {}: {left:?}", tmp.display());
    let out = docker(&daemon, &["start", "-a", "later"])?;
    ensure!(out.status.success(), "second start: {out:?}");
    daemon.docker_ok(&["cp", "later:/again", "/tmp/again2"])?;
    ensure!(sh("cat /tmp/again2")? == "again\n");
    daemon.docker_ok(&["rm", "later"])?;

    // --log-driver none keeps no log (and `docker logs` says it cannot
    // read one); local keeps and reads it as json-file does.
    daemon.docker_ok(&[
        "run",
        "--name",
        "nolog",
        "--log-driver",
        "none",
        bb,
        "echo",
        "unseen",
    ])?;
    let out = docker(&daemon, &["logs", "nolog"])?;
    ensure!(
        !out.status.success()
            && text(&out.stderr).contains("configured logging driver does not support reading"),
        "{out:?}"
    );
    daemon.docker_ok(&[
        "run",
        "--name",
        "local",
        "--log-driver",
        "local",
        bb,
        "echo",
        "kept",
    ])?;
    ensure!(daemon.docker_ok(&["logs", "local"])? == "kept\n");
    let drivers = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-file\"}}",
        "nolog",
        "local",
    ])?;
    ensure!(drivers == "none \nlocal 5\n", "{drivers}");
    let out = docker(
        &daemon,
        &["run", "--rm", "--log-driver", "syslog", bb, "true"],
    )?;
    ensure!(
        out.status.code() == Some(125) && text(&out.stderr).contains("not supported by hutch"),
        "{out:?}"
    );
    daemon.docker_ok(&["rm", "nolog", "local"])?;

    // --shm-size sizes /dev/shm, and inspect says so.
    daemon.docker_ok(&[
        "run",
        "--name",
        "shm",
        "--shm-size",
        "8m",
        bb,
        "df",
        "-k",
        "/dev/shm",
    ])?;
    let df = daemon.docker_ok(&["logs", "shm"])?;
    ensure!(df.contains(" 8192 "), "/dev/shm with --shm-size 8m: {df}");
    let shm = daemon.docker_ok(&["inspect", "-f", "{{.HostConfig.ShmSize}}", "shm"])?;
    ensure!(shm.trim() == "8388608", "{shm}");
    daemon.docker_ok(&["rm", "shm"])?;

    // What hutch cannot do says so (volumes themselves: api_volumes.rs;
    // devices and sysctls: api_devices_sysctls.rs): a namespace it cannot
    // share is refused (links: api_links.rs).
    let out = docker(&daemon, &["run", "--rm", "--pid", "host", bb, "true"])?;
    ensure!(
        out.status.code() == Some(125) && text(&out.stderr).contains("--pid host is not supported"),
        "{out:?}"
    );
    let out = docker(
        &daemon,
        &[
            "run",
            "--rm",
            "--mount",
            "type=image,src=busybox,dst=/v",
            bb,
            "true",
        ],
    )?;
    ensure!(
        out.status.code() == Some(125) && text(&out.stderr).contains("not supported by hutch"),
        "{out:?}"
    );
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}

/// `--platform` on run/create: the local image must be that platform, as
/// Docker's daemon checks; another platform is a 404 (on which the CLI
/// pulls that platform's image), with Docker's words.
#[test]
fn run_with_a_platform_checks_the_local_image() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;
    let bb = image.reference.as_str();
    let arch = daemon.docker_ok(&["image", "inspect", "-f", "{{.Architecture}}", bb])?;
    let (mine, other) = match arch.trim() {
        "amd64" => ("linux/amd64", "linux/arm64"),
        _ => (arch.trim(), "linux/amd64"),
    };
    let out = docker(
        &daemon,
        &["run", "--rm", "--platform", mine, bb, "echo", "same"],
    )?;
    ensure!(out.status.success() && out.stdout == b"same\n", "{out:?}");
    let out = docker(
        &daemon,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "--platform",
            other,
            bb,
            "true",
        ],
    )?;
    let want = format!(
        "image with reference {bb} was found but does not match the specified platform: \
         wanted {other}, actual: linux/{}",
        arch.trim()
    );
    ensure!(
        !out.status.success() && text(&out.stderr).contains(&want),
        "{out:?}"
    );
    let created = docker(&daemon, &["ps", "-aq"])?;
    ensure!(created.stdout.is_empty(), "{created:?}");
    drop(daemon);
    pod.stop()
}

#[test]
fn docker_cli_lifecycle() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;
    let bb = image.reference.as_str();
    let since = format!("{:.3}", unix_now() - 1.0);

    let id = daemon
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--label",
            "tier=front",
            bb,
            "sh",
            "-c",
            "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
        ])?
        .trim()
        .to_string();
    ensure!(id.len() == 64, "{id}");
    wait_for("three lines of logs", Duration::from_secs(10), || {
        Ok(daemon.docker_ok(&["logs", "web"])?.lines().count() >= 3)
    })?;

    // logs -t --tail: nine-digit timestamps, the last lines only.
    let logs = daemon.docker_ok(&["logs", "-t", "--tail", "2", "web"])?;
    let lines: Vec<&str> = logs.lines().collect();
    ensure!(lines.len() == 2, "{logs}");
    for line in &lines {
        let (stamp, rest) = line.split_once(' ').context("a timestamp")?;
        ensure!(
            stamp.len() == 30 && stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
            "{line}"
        );
        ensure!(rest.starts_with("line "), "{line}");
    }

    // exec: output, exit codes, and -it through a pty.
    ensure!(daemon.docker_ok(&["exec", "web", "echo", "from-exec"])? == "from-exec\n");
    let out = docker(&daemon, &["exec", "web", "sh", "-c", "exit 4"])?;
    ensure!(out.status.code() == Some(4), "{out:?}");
    let out = docker(&daemon, &["exec", "web", "no-such-command"])?;
    ensure!(out.status.code() == Some(127), "{out:?}");
    ensure!(
        (text(&out.stdout) + &text(&out.stderr)).contains("OCI runtime exec failed"),
        "{out:?}"
    );
    let out = docker(
        &daemon,
        &[
            "exec",
            "-e",
            "A=b",
            "-w",
            "/etc",
            "web",
            "sh",
            "-c",
            "echo $A $(pwd)",
        ],
    )?;
    ensure!(out.stdout == b"b /etc\n", "{out:?}");
    let (code, screen) = in_pty(
        &daemon,
        &format!("{DOCKER_CLI} exec -it web sh"),
        &["echo exec-$((3+3)); exit 6\n"],
    )?;
    ensure!(code == 6, "exit {code}: {screen}");
    ensure!(screen.contains("exec-6"), "{screen}");

    // inspect: the fields clients read.
    let inspect = json(&daemon.docker_ok(&["inspect", "web"])?)?;
    let c = &inspect[0];
    ensure!(c["Id"] == id.as_str() && c["Name"] == "/web", "{c}");
    ensure!(
        c["State"]["Status"] == "running" && c["State"]["Running"] == true,
        "{c}"
    );
    ensure!(c["State"]["FinishedAt"] == "0001-01-01T00:00:00Z", "{c}");
    let started = c["State"]["StartedAt"].as_str().unwrap_or_default();
    ensure!(
        started.len() >= 20 && started.as_bytes()[10] == b'T' && !started.starts_with("0001"),
        "{c}"
    );
    ensure!(c["State"]["Pid"].as_i64().is_some_and(|p| p > 0), "{c}");
    ensure!(c["Image"] == image.config_digest.as_str(), "{c}");
    ensure!(c["HostConfig"]["LogConfig"]["Type"] == "json-file", "{c}");
    ensure!(c["Config"]["Labels"]["tier"] == "front", "{c}");
    ensure!(c["Config"]["Cmd"][0] == "sh", "{c}");
    ensure!(c["NetworkSettings"]["Networks"].is_object(), "{c}");
    ensure!(c["NetworkSettings"]["Ports"].is_object(), "{c}");
    ensure!(c["Mounts"] == serde_json::json!([]), "{c}");
    ensure!(c["GraphDriver"]["Name"] == "overlay", "{c}");

    // ps filters, top, stats, info counts.
    daemon.docker_ok(&["create", "--name", "idle", bb, "true"])?;
    let ps = daemon.docker_ok(&["ps", "--format", "{{.Names}}"])?;
    ensure!(ps == "web\n", "{ps}");
    let ps = daemon.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "status=created",
        "--format",
        "{{.Names}}",
    ])?;
    ensure!(ps == "idle\n", "{ps}");
    let ps = daemon.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=tier=front",
        "--filter",
        "name=we",
        "--format",
        "{{.Names}} {{.Status}}",
    ])?;
    ensure!(ps.starts_with("web Up "), "{ps}");
    let ps = daemon.docker_ok(&["ps", "-a", "--filter", &format!("ancestor={bb}"), "-q"])?;
    ensure!(ps.lines().count() == 2, "{ps}");

    // ps -s and inspect -s: the writable layer's size, and with the image's.
    daemon.docker_ok(&[
        "run",
        "--name",
        "sized",
        bb,
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1024",
        "count=1024",
    ])?;
    let image_size: i64 = daemon
        .docker_ok(&["image", "inspect", "--format", "{{.Size}}", bb])?
        .trim()
        .parse()?;
    let sizes = daemon.docker_ok(&[
        "inspect",
        "-s",
        "--format",
        "{{.SizeRw}} {{.SizeRootFs}}",
        "sized",
    ])?;
    let (rw, root_fs) = sizes.trim().split_once(' ').context("two sizes")?;
    let (rw, root_fs): (i64, i64) = (rw.parse()?, root_fs.parse()?);
    ensure!(
        (1 << 20..(1 << 20) + (64 << 10)).contains(&rw) && root_fs == rw + image_size,
        "inspect -s: {sizes} (image {image_size})"
    );
    let listed = daemon.docker_ok(&[
        "ps",
        "-a",
        "-s",
        "--filter",
        "name=sized",
        "--format",
        "{{.Size}}",
    ])?;
    ensure!(
        listed.starts_with("1.05MB (virtual ") && listed.trim_end().ends_with("MB)"),
        "ps -s: {listed}"
    );
    let without = daemon.docker_ok(&["inspect", "--format", "{{.SizeRw}}", "sized"])?;
    ensure!(
        without.trim() == "<nil>",
        "inspect without -s has no sizes: {without}"
    );
    daemon.docker_ok(&["rm", "sized"])?;
    let top = daemon.docker_ok(&["top", "web"])?;
    ensure!(
        top.starts_with("UID") && top.contains("while true"),
        "{top}"
    );
    // Other ps arguments go to the pod's ps, its rows kept to the
    // container's processes (the daemon's own are not among them).
    let aux = daemon.docker_ok(&["top", "web", "aux"])?;
    let header: Vec<&str> = aux
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header.first() == Some(&"USER")
            && header.contains(&"%CPU")
            && header.last() == Some(&"COMMAND"),
        "{aux}"
    );
    ensure!(
        aux.contains("while true") && !aux.contains("hutch daemon"),
        "{aux}"
    );
    let picked = daemon.docker_ok(&["top", "web", "-o", "pid,comm"])?;
    ensure!(
        picked
            .lines()
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            == Some(vec!["PID", "COMMAND"])
            && picked.lines().skip(1).any(|l| l.ends_with(" sh")),
        "{picked}"
    );
    let bad = docker(&daemon, &["top", "web", "--no-such-option"])?;
    ensure!(
        !bad.status.success() && text(&bad.stderr).contains("Error running ps"),
        "{}",
        text(&bad.stderr)
    );
    let stats = daemon.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "web",
    ])?;
    let fields: Vec<&str> = stats.split_whitespace().collect();
    ensure!(fields.first() == Some(&"web"), "{stats}");
    ensure!(
        fields
            .get(1)
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p >= 1),
        "{stats}"
    );
    // Network counters: two pings of the gateway show in eth0's packets;
    // the CLI's NET I/O column sums them.
    let gateway = daemon.docker_ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "web"])?;
    daemon.docker_ok(&["exec", "web", "ping", "-c", "2", "-W", "2", gateway.trim()])?;
    let report = json(&ok(
        &daemon
            .curl(&["-sf", "http://d/v1.50/containers/web/stats?stream=false"])
            .output()?,
        "stats",
    )?)?;
    let eth0 = &report["networks"]["eth0"];
    ensure!(
        eth0["rx_packets"].as_u64().is_some_and(|n| n >= 2)
            && eth0["tx_packets"].as_u64().is_some_and(|n| n >= 2)
            && eth0["tx_bytes"].as_u64().is_some_and(|n| n >= 2 * 98)
            && report["networks"].get("lo").is_none(),
        "networks: {}",
        report["networks"]
    );
    let net_io = daemon.docker_ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "web"])?;
    ensure!(!net_io.starts_with("0B / 0B"), "NET I/O: {net_io}");
    let info = daemon.docker_ok(&[
        "info",
        "--format",
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}}",
    ])?;
    ensure!(info.trim() == "2 1 1", "{info}");
    let df = daemon.docker_ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ])?;
    ensure!(df.contains("Containers 2 1"), "{df}");
    // The image is in use: rmi refuses with Docker's message.
    let out = docker(&daemon, &["rmi", bb])?;
    ensure!(
        text(&out.stderr).contains("image is being used by"),
        "{out:?}"
    );

    // rename, stop, start, restart, kill, wait, rm -f.
    daemon.docker_ok(&["rename", "web", "web2"])?;
    let start_before = daemon.docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", "web2"])?;
    daemon.docker_ok(&["stop", "-t", "2", "web2"])?;
    let state = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web2",
    ])?;
    ensure!(
        state == "exited 143\n" || state == "exited 137\n",
        "{state}"
    );
    let out = docker(&daemon, &["stop", "web2"])?;
    ensure!(
        out.status.success(),
        "stopping a stopped container is fine: {out:?}"
    );
    daemon.docker_ok(&["start", "web2"])?;
    daemon.docker_ok(&["restart", "-t", "1", "web2"])?;
    let start_after = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.StartedAt}}",
        "web2",
    ])?;
    ensure!(
        start_after.starts_with("true ") && !start_after.contains(start_before.trim()),
        "{start_after}"
    );
    daemon.docker_ok(&["kill", "web2"])?;
    ensure!(daemon.docker_ok(&["wait", "web2"])? == "137\n");
    let out = docker(&daemon, &["kill", "web2"])?;
    ensure!(text(&out.stderr).contains("is not running"), "{out:?}");
    daemon.docker_ok(&["start", "web2"])?;
    let out = docker(&daemon, &["rm", "web2"])?;
    ensure!(
        text(&out.stderr).contains("cannot remove a running container"),
        "{out:?}"
    );
    daemon.docker_ok(&["rm", "-f", "web2", "idle"])?;
    ensure!(daemon.docker_ok(&["ps", "-aq"])?.trim().is_empty());

    // The restart policy: two retries, then it stays down.
    let failing = daemon
        .docker_ok(&[
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            bb,
            "sh",
            "-c",
            "exit 1",
        ])?
        .trim()
        .to_string();
    wait_for("two restarts", Duration::from_secs(15), || {
        let s = daemon.docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            &failing,
        ])?;
        Ok(s == "2 exited\n")
    })?;
    // logs -f ends with the container; timestamps stay fixed-width.
    let ended = daemon
        .docker_ok(&[
            "run",
            "-d",
            bb,
            "sh",
            "-c",
            "for i in 1 2 3; do echo n$i; sleep 0.2; done",
        ])?
        .trim()
        .to_string();
    let follow = daemon.docker_ok(&["logs", "-f", "-t", &ended])?;
    ensure!(
        follow.lines().count() == 3 && follow.ends_with(" n3\n"),
        "{follow}"
    );

    // docker diff: what the container changed.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "differ",
        bb,
        "sh",
        "-c",
        "rm /etc/group; echo y >> /etc/passwd; echo x > /tmp/added; sleep 30",
    ])?;
    // /tmp/added is written last, so once it shows, so do the others.
    let mut diff = String::new();
    wait_for("the changes", Duration::from_secs(10), || {
        diff = daemon.docker_ok(&["diff", "differ"])?;
        Ok(diff.contains("A /tmp/added"))
    })?;
    for line in [
        "A /tmp/added",
        "C /etc/passwd",
        "D /etc/group",
        "C /tmp",
        "C /etc",
    ] {
        ensure!(diff.lines().any(|l| l == line), "no {line:?} in:\n{diff}");
    }
    ensure!(!diff.lines().any(|l| l.ends_with(" /proc")), "{diff}");
    daemon.docker_ok(&["rm", "-f", "differ"])?;

    // A healthcheck shows in ps and inspect; update keeps a restart policy
    // and says limits are not applied; prune takes the stopped ones.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "checked",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        bb,
        "sh",
        "-c",
        "touch /tmp/ok; sleep 30",
    ])?;
    wait_for("a healthy container", Duration::from_secs(10), || {
        let ps =
            daemon.docker_ok(&["ps", "--filter", "name=checked", "--format", "{{.Status}}"])?;
        Ok(ps.contains("(healthy)"))
    })?;
    daemon.docker_ok(&["update", "--restart", "unless-stopped", "checked"])?;
    let policy = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}",
        "checked",
    ])?;
    ensure!(policy == "unless-stopped\n", "{policy}");
    let out = docker(&daemon, &["update", "--memory", "64m", "checked"])?;
    ensure!(
        out.status.success() && text(&out.stdout).contains("not applied"),
        "{out:?}"
    );
    daemon.docker_ok(&["rm", "-f", "checked"])?;
    // Docker 25's start interval: probes every 200ms during the start
    // period, though the interval is an hour.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "quickstart",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1h",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "200ms",
        bb,
        "sh",
        "-c",
        "sleep 1; touch /tmp/ok; sleep 600",
    ])?;
    wait_for(
        "healthy by the start interval",
        Duration::from_secs(10),
        || {
            let status =
                daemon.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", "quickstart"])?;
            Ok(status.trim() == "healthy")
        },
    )?;
    let shown = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.Config.Healthcheck.StartInterval}}",
        "quickstart",
    ])?;
    ensure!(shown.trim() == "200ms", "{shown}");
    daemon.docker_ok(&["rm", "-f", "quickstart"])?;
    daemon.docker_ok(&["create", "--label", "prune=me", bb, "true"])?;
    let pruned = daemon.docker_ok(&["container", "prune", "-f", "--filter", "label=prune=me"])?;
    ensure!(
        pruned.starts_with("Deleted Containers:") && pruned.lines().count() >= 2,
        "{pruned}"
    );

    // start -a, attach, run -d --rm.
    daemon.docker_ok(&[
        "create",
        "--name",
        "later",
        bb,
        "sh",
        "-c",
        "echo started-attached; exit 2",
    ])?;
    let out = docker(&daemon, &["start", "-a", "later"])?;
    ensure!(
        out.status.code() == Some(2) && out.stdout == b"started-attached\n",
        "{out:?}"
    );
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        bb,
        "sh",
        "-c",
        "sleep 0.5; echo late",
    ])?;
    let out = docker(&daemon, &["attach", "slow"])?;
    ensure!(out.status.success() && out.stdout == b"late\n", "{out:?}");
    let gone = daemon.docker_ok(&["run", "-d", "--rm", bb, "sleep", "0.2"])?;
    ensure!(daemon.docker_ok(&["wait", gone.trim()])? == "0\n");
    wait_for("the --rm container to go", Duration::from_secs(5), || {
        Ok(!daemon
            .docker_ok(&["ps", "-aq", "--no-trunc"])?
            .contains(gone.trim()))
    })?;

    // events --since: the container's life, with Docker's names.
    let until = format!("{:.3}", unix_now());
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ])?;
    for expected in [
        "create web",
        "start web",
        "exec_create web",
        "exec_start web",
        "exec_die web",
        "rename web2",
        "die web2",
        "stop web2",
        "kill web2",
        "restart web2",
        "destroy web2",
    ] {
        ensure!(
            events.lines().any(|l| l == expected),
            "no {expected:?} in:\n{events}"
        );
    }
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}

#[test]
fn docker_py_containers() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;
    let out = daemon
        .venv_python()
        .arg(client_script("docker_py_containers.py"))
        .arg(&image.reference)
        .output()
        .context("running docker-py in the pod (did tests/install-deps make the venv?)")?;
    let seen = json(&ok(&out, "docker_py_containers.py")?)?;
    ensure!(seen["run_output"] == "out\n", "{seen}");
    ensure!(seen["left_after_remove"] == 0, "{seen}");
    ensure!(
        seen["wait"] == serde_json::json!({"StatusCode": 7, "Error": null}),
        "{seen}"
    );
    ensure!(seen["logs"] == "started\ndone\n", "{seen}");
    ensure!(seen["status_after"] == "exited", "{seen}");
    ensure!(seen["log_type"] == "json-file", "{seen}");
    ensure!(seen["name"] == "/py-detached", "{seen}");
    ensure!(
        seen["exec_code"] == 3 && seen["exec_output"] == "in-exec\n",
        "{seen}"
    );
    ensure!(seen["exec_string"] == "string-cmd\n", "{seen}");
    let keep = serde_json::json!([seen["keep_id"].clone()]);
    ensure!(
        seen["filter_label"] == keep && seen["filter_status"] == keep,
        "{seen}"
    );
    ensure!(seen["attach_frame_type"] == 1, "{seen}");
    ensure!(seen["attach_payload"] == "through-attach\n", "{seen}");
    ensure!(seen["keep_wait"] == 137 && seen["left"] == 0, "{seen}");
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}

fn wire(daemon: &Daemon, image: &TestImage, command: &str) -> Result<serde_json::Value> {
    let out = daemon
        .system_python()
        .arg(client_script("containers_wire.py"))
        .args([command, image.reference.as_str()])
        .output()?;
    json(&ok(&out, &format!("containers_wire.py {command}"))?)
}

#[test]
fn container_wire_details() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;

    let seen = wire(&daemon, &image, "upgrade")?;
    ensure!(seen["status_line"] == "HTTP/1.1 101 UPGRADED", "{seen}");
    ensure!(
        seen["connection"] == "Upgrade" && seen["upgrade"] == "tcp",
        "{seen}"
    );
    ensure!(
        seen["content_type"] == "application/vnd.docker.multiplexed-stream",
        "{seen}"
    );
    ensure!(
        seen["frames"] == serde_json::json!([[1, "out\n"], [2, "err\n"]]),
        "{seen}"
    );
    ensure!(seen["plain_status_line"] == "HTTP/1.1 200 OK", "{seen}");
    ensure!(
        seen["plain_frames"] == serde_json::json!([[1, "plain\n"]]),
        "{seen}"
    );
    ensure!(
        seen["tty_content_type"] == "application/vnd.docker.raw-stream",
        "{seen}"
    );
    ensure!(seen["tty_raw"] == "tty\r\n", "{seen}");

    let seen = wire(&daemon, &image, "wait_headers")?;
    ensure!(seen["status_line"] == "HTTP/1.1 200 OK", "{seen}");
    ensure!(
        seen["head_seconds"].as_f64().is_some_and(|s| s < 1.0),
        "{seen}"
    );
    ensure!(
        seen["body"] == serde_json::json!({"StatusCode": 3, "Error": null}),
        "{seen}"
    );
    ensure!(
        seen["body_seconds"].as_f64().is_some_and(|s| s >= 0.4),
        "{seen}"
    );

    let seen = wire(&daemon, &image, "half_close")?;
    ensure!(
        seen["output"] == "first line\nsecond line\n" && seen["exit"] == 0,
        "{seen}"
    );
    ensure!(
        seen["exec_status_line"] == "HTTP/1.1 101 UPGRADED",
        "{seen}"
    );
    ensure!(seen["exec_output"] == "via exec\n", "{seen}");
    ensure!(
        seen["exec_inspect"]["ExitCode"] == 0 && seen["exec_inspect"]["Running"] == false,
        "{seen}"
    );

    let seen = wire(&daemon, &image, "hangups")?;
    ensure!(
        seen["tasks_after"].as_i64() <= seen["tasks_before"].as_i64(),
        "{seen}"
    );
    ensure!(
        seen["running"] == serde_json::json!([seen["cid"].clone()]),
        "{seen}"
    );
    ensure!(seen["state"] == "running", "{seen}");
    ensure!(seen["after_remove"] == serde_json::json!([]), "{seen}");
    // And the daemon still serves the CLI.
    ensure!(daemon.docker_ok(&["run", "--rm", &image.reference, "echo", "still"])? == "still\n");
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}

/// The pod's processes: (pid, ppid, state, command line).
fn pod_processes(daemon: &Daemon) -> Result<Vec<(i32, i32, String, String)>> {
    let out = daemon
        .pod()
        .exec("/usr/bin/ps")
        .args(["-eo", "pid=,ppid=,stat=,args="])
        .output()?;
    ensure!(out.status.success(), "ps: {out:?}");
    let mut list = Vec::new();
    for line in text(&out.stdout).lines() {
        let mut words = line.split_whitespace();
        let (Some(pid), Some(ppid), Some(stat)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let args: Vec<&str> = words.collect();
        list.push((
            pid.parse()?,
            ppid.parse()?,
            stat.to_string(),
            args.join(" "),
        ));
    }
    Ok(list)
}

/// The idle premade inits: `__supervise` processes whose parent is one
/// too (the spare that made them). Waits up to a few seconds for exactly
/// one and for no zombie in the pod (none is ever left: not a premade
/// init that did not fit, not the daemon's doctor).
fn premade_inits(daemon: &Daemon) -> Result<Vec<i32>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = pod_processes(daemon)?;
        let zombies: Vec<_> = procs.iter().filter(|p| p.2.starts_with('Z')).collect();
        let supervisors: Vec<i32> = procs
            .iter()
            .filter(|p| p.3.ends_with("__supervise"))
            .map(|p| p.0)
            .collect();
        let premade: Vec<i32> = procs
            .iter()
            .filter(|p| p.3.ends_with("__supervise") && supervisors.contains(&p.1))
            .map(|p| p.0)
            .collect();
        if zombies.is_empty() && premade.len() == 1 {
            return Ok(premade);
        }
        ensure!(
            Instant::now() < deadline,
            "zombies in the pod: {zombies:?}; idle premade inits: {premade:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A start takes the init an idle spare made ahead (namespaces and maps
/// done); one it does not fit ends that init and clones its own; neither
/// leaves a process behind.
#[test]
fn premade_inits_are_taken_or_ended() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;
    let bb = image.reference.as_str();
    let pid_of = |name: &str| -> Result<i32> {
        let pid = daemon.docker_ok(&["inspect", "-f", "{{.State.Pid}}", name])?;
        Ok(pid.trim().parse()?)
    };

    // Fits: the container's init is the premade one.
    daemon.docker_ok(&["run", "--rm", bb, "true"])?;
    let premade = premade_inits(&daemon)?;
    // The premade init builds the container's /dev while it waits: long
    // before the run (tmpfs times are whole seconds in `stat -c %Y`).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let before_run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "fits",
        "-v",
        "/dev/zero:/zero:ro",
        bb,
        "sleep",
        "60",
    ])?;
    ensure!(
        pid_of("fits")? == premade[0],
        "the premade init {premade:?} was not taken"
    );
    let out = daemon.docker_ok(&["exec", "fits", "hostname"])?;
    ensure!(out.trim().len() == 12, "hostname: {out:?}");
    let dev_time: f64 = daemon
        .docker_ok(&["exec", "fits", "stat", "-c", "%Y", "/dev"])?
        .trim()
        .parse()?;
    ensure!(
        dev_time < before_run - 1.05,
        "/dev was built at {dev_time}, not before the run at {before_run}"
    );
    // It is whole, and the pod's /dev is back in place for binds from it.
    // So is /sys (built ahead too): read-only, with Docker's masks.
    let out = daemon.docker_ok(&[
        "exec",
        "fits",
        "sh",
        "-c",
        "ls /dev; head -c 3 /zero | wc -c; echo x > /dev/null && echo null; \
         ls /sys/kernel >/dev/null && echo sys; mkdir /sys/kernel/x 2>/dev/null || echo sys-ro; \
         [ -z \"$(ls -A /sys/firmware)\" ] && echo firmware-masked",
    ])?;
    for want in ["sys", "sys-ro", "firmware-masked"] {
        ensure!(out.lines().any(|l| l == want), "/sys: no {want} in {out:?}");
    }
    for want in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue", "fd",
        "stdin", "stdout", "stderr",
    ] {
        ensure!(
            out.lines().any(|l| l.trim() == want),
            "/dev lacks {want}: {out:?}"
        );
    }
    ensure!(out.lines().any(|l| l.trim() == "3"), "/zero: {out:?}");

    // Does not fit (the pod's network, another seccomp profile, a netns
    // shared with another container): ended, and the start still works.
    for (name, args) in [
        ("host", vec!["--network", "host"]),
        ("admin", vec!["--cap-add", "SYS_ADMIN"]),
        ("joined", vec!["--network", "container:fits"]),
    ] {
        let premade = premade_inits(&daemon)?;
        ensure!(
            premade.len() == 1,
            "before {name}: idle premade inits: {premade:?}"
        );
        let mut run = vec!["run", "-d", "--name", name];
        run.extend(&args);
        run.extend([bb, "sleep", "60"]);
        daemon.docker_ok(&run)?;
        let pid = pid_of(name)?;
        ensure!(
            pid != premade[0],
            "{name} took a premade init that does not fit it"
        );
        let gone = pod_processes(&daemon)?.iter().all(|p| p.0 != premade[0]);
        ensure!(
            gone,
            "{name}: the unfit premade init {} lives on",
            premade[0]
        );
        let out = daemon.docker_ok(&["exec", name, "echo", "up"])?;
        ensure!(out == "up\n", "{name}: {out:?}");
    }
    daemon.docker_ok(&["rm", "-f", "fits", "host", "admin", "joined"])?;
    // (Exactly one idle premade init again, and no zombie.)
    premade_inits(&daemon)?;
    Ok(())
}

/// `docker start -a` of a container that exits at once, many times over
/// on a busy machine: each returns. The CLI asks for the wait
/// (`condition=next-exit`) and starts the container as soon as it has the
/// answer's headers; the wait used to begin counting exits only later, on
/// a blocking thread, so a container that had already exited left it
/// waiting for ever (seen under load, about once in 30-120 runs; 150
/// runs here failed on the old code).
#[test]
fn start_attach_of_a_quick_exit_always_returns() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pod = Pod::start(&PodSpec::new())?;
    let (daemon, image) = setup(&pod)?;
    let busy = Arc::new(AtomicBool::new(true));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                while busy.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let script = format!(
        "for i in $(seq 1 150); do \
           {DOCKER_CLI} create --name q$i {} true >/dev/null || exit 2; \
           timeout 20 {DOCKER_CLI} start -a q$i || {{ echo \"start -a q$i did not return\"; exit 1; }}; \
           {DOCKER_CLI} rm q$i >/dev/null || exit 2; \
         done; echo all-returned",
        image.reference
    );
    let out = pod
        .exec("/bin/sh")
        .args(["-c", &script])
        .env("DOCKER_HOST", DOCKER_HOST)
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .output();
    busy.store(false, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    let printed = ok(&out?, "the start -a loop")?;
    ensure!(printed.contains("all-returned"), "{printed}");
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
