//! `POST /build` through `hutch daemon` in a simulated pod, driven by the
//! real docker CLI (which uses the legacy builder API: no buildx plugin is
//! installed, so plain `docker build` goes there) and docker-py's
//! `images.build`, with the busybox test image as the base.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hutch_tests::build_context::{set_mode, BuildContext as Ctx};
use hutch_tests::daemon::{client_script, ok, printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::testimages;

fn load_busybox(daemon: &Daemon) -> Result<String> {
    let image = testimages::busybox()?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    Ok(image.reference.clone())
}

const MULTI: &str = r#"FROM busybox AS build
RUN --mount=type=cache,target=/cache <<EOF
set -e
echo run >> /cache/log
wc -l < /cache/log | tr -d ' ' > /count
mkdir -p /out
echo from-heredoc > /out/heredoc
EOF
COPY . /ctx/
COPY <<EOF /out/inline.txt
inline file
EOF

FROM busybox
COPY --from=build /out/ /out/
COPY --from=build /count /count
COPY --from=build /ctx/ /ctx/
CMD ["sh", "-c", "cat /out/heredoc /out/inline.txt /count; ls /ctx"]
"#;

/// `docker system df`'s build cache line: `Build Cache|COUNT|SIZE`.
fn build_cache_usage(daemon: &Daemon) -> Result<String> {
    let df = daemon.docker_ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}}|{{.TotalCount}}|{{.Size}}",
    ])?;
    df.lines()
        .find(|l| l.starts_with("Build Cache|"))
        .map(str::to_owned)
        .with_context(|| format!("no build cache line in {df}"))
}

#[test]
fn docker_build_multi_stage_heredoc_cache_mount_and_dockerignore() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &MULTI.replace("FROM busybox", &format!("FROM {base}")),
        ),
        (".dockerignore", "ignored.txt\n*.log\n"),
        ("keep.txt", "kept\n"),
        ("ignored.txt", "never sent\n"),
        ("debug.log", "never sent\n"),
    ])?;

    // Plain `docker build`: without the buildx plugin the CLI 28 warns and
    // uses the legacy builder API, which hutch serves.
    let out = daemon
        .docker()
        .args(["build", "-t", "x", &ctx.arg()])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "docker build: {t}");
    ensure!(t.contains("Step 1/9 : FROM"), "{t}");
    ensure!(t.contains(" ---> Running in "), "{t}");
    ensure!(t.contains("Successfully built "), "{t}");
    ensure!(t.contains("Successfully tagged x:latest"), "{t}");
    ensure!(!t.contains("Using cache"), "{t}");
    let ran = daemon.docker_ok(&["run", "--rm", "x"])?;
    ensure!(
        ran == "from-heredoc\ninline file\n1\nDockerfile\nkeep.txt\n",
        "{ran}"
    );

    // The rebuild comes from the cache, same image.
    let again = daemon
        .docker()
        .args(["build", "-t", "x", &ctx.arg()])
        .output()?;
    let t2 = text(&again);
    ensure!(again.status.success(), "{t2}");
    ensure!(t2.matches("Using cache").count() == 7, "{t2}");
    let id1 = daemon.docker_ok(&["image", "inspect", "-f", "{{.Id}}", "x"])?;

    // `-q` prints the image ID only.
    let quiet = daemon.docker_ok(&["build", "-q", &ctx.arg()])?;
    ensure!(quiet.trim() == id1.trim(), "quiet: {quiet} vs {id1}");

    // --no-cache reruns the RUN, whose cache mount kept the first run's file.
    daemon.docker_ok(&["build", "--no-cache", "-t", "x:2", &ctx.arg()])?;
    let ran = daemon.docker_ok(&["run", "--rm", "x:2"])?;
    ensure!(
        ran == "from-heredoc\ninline file\n2\nDockerfile\nkeep.txt\n",
        "{ran}"
    );
    // The build steps are not images of their own.
    let images = daemon.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
    ensure!(images.lines().count() == 3, "{images}");

    // `--filter until=1h` keeps the cache of a build made just now; a
    // filter hutch's cache has nothing to match with is refused.
    daemon.docker_ok(&["builder", "prune", "-f", "--filter", "until=1h"])?;
    let hit = daemon
        .docker()
        .args(["build", "-t", "x", &ctx.arg()])
        .output()?;
    ensure!(
        hit.status.success() && text(&hit).contains("Using cache"),
        "after a prune of what is older than 1h: {}",
        text(&hit)
    );
    // `until` goes by last use, as BuildKit's: steps made before the cutoff
    // that a build used since then stay.
    std::thread::sleep(Duration::from_millis(2100));
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let used = daemon.docker_ok(&["build", "-t", "x", &ctx.arg()])?;
    ensure!(used.matches("Using cache").count() == 7, "{used}");
    // A cache mount used since (its log appended to: the directory itself
    // does not change) stays too.
    let probe = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nRUN --mount=type=cache,target=/cache \
             cat /cache/log 2>/dev/null | wc -l > /n; echo probe >> /cache/log\n"
        ),
    )])?;
    daemon.docker_ok(&["build", "--no-cache", "-t", "probe", &probe.arg()])?;
    daemon.docker_ok(&[
        "builder",
        "prune",
        "-f",
        "--filter",
        &format!("until={cutoff}"),
    ])?;
    let kept = daemon.docker_ok(&["build", "-t", "x", &ctx.arg()])?;
    ensure!(
        kept.matches("Using cache").count() == 7,
        "steps used after the cutoff were pruned: {kept}"
    );
    daemon.docker_ok(&["build", "--no-cache", "-t", "probe", &probe.arg()])?;
    let lines = daemon.docker_ok(&["run", "--rm", "probe", "cat", "/n"])?;
    ensure!(
        lines.trim() == "3",
        "the cache mount used after the cutoff was pruned: {lines}"
    );
    // ... and `until=0s` prunes all of it, as of now.
    daemon.docker_ok(&["builder", "prune", "-f", "--filter", "until=0s"])?;
    let miss = daemon
        .docker()
        .args(["build", "-t", "x", &ctx.arg()])
        .output()?;
    ensure!(
        miss.status.success() && !text(&miss).contains("Using cache"),
        "after a prune of what is older than now: {}",
        text(&miss)
    );
    let bad = daemon
        .docker()
        .args(["builder", "prune", "-f", "--filter", "type=regular"])
        .output()?;
    ensure!(
        !bad.status.success() && text(&bad).contains("invalid filter"),
        "{}",
        text(&bad)
    );

    // An API build's context is unpacked afresh each time: its files'
    // hashes are not remembered by stat (they would never match again). A
    // daemonless `hutch build` of a directory on the same data root
    // remembers them.
    let hashes = pod.data_dir_host().join("builder/hashcache");
    ensure!(!hashes.exists(), "API builds kept context file hashes");
    let local = pod
        .exec(hutch_bin())
        .args(["build", "-t", "local", &ctx.arg()])
        .output()?;
    ensure!(local.status.success(), "hutch build: {}", text(&local));
    ensure!(hashes.is_file(), "hutch build kept no context file hashes");

    // `docker system df` lists the build cache: the steps (by the RUN that
    // made them; made once, then hit by `hutch build` and once more), the
    // RUN cache mount, the builder's own caches.
    let hit = daemon.docker_ok(&["build", "-t", "x", &ctx.arg()])?;
    ensure!(hit.matches("Using cache").count() == 7, "{hit}");
    let cache = daemon.docker_ok(&[
        "system",
        "df",
        "-v",
        "--format",
        "{{range .BuildCache}}{{.CacheType}}|{{.Shared}}|{{.UsageCount}}|{{.Description}}\n{{end}}",
    ])?;
    ensure!(
        cache.lines().any(|l| l.starts_with("regular|false|3|RUN")),
        "{cache}"
    );
    ensure!(
        cache
            .lines()
            .any(|l| l.starts_with("exec.cachemount|false|0|")),
        "{cache}"
    );
    ensure!(
        cache
            .lines()
            .any(|l| l == "internal|false|0|context file hashes of hutch build, by their stat"),
        "{cache}"
    );
    let before = build_cache_usage(&daemon)?;

    // The build cache goes with `docker builder prune`, and what it frees
    // is what df counted; the images stay.
    let pruned = daemon.docker_ok(&["builder", "prune", "-f"])?;
    let reclaimed = pruned
        .lines()
        .find_map(|l| l.strip_prefix("Total reclaimed space: "))
        .unwrap_or_default();
    ensure!(
        !reclaimed.is_empty() && reclaimed != "0B" && before.ends_with(&format!("|{reclaimed}")),
        "df said {before}; the prune: {pruned}"
    );
    let after = build_cache_usage(&daemon)?;
    ensure!(after == "Build Cache|0|0B", "after the prune: {after}");
    ensure!(!hashes.exists(), "the prune left the context file hashes");
    let again = daemon
        .docker()
        .args(["build", "-t", "x", &ctx.arg()])
        .output()?;
    let t3 = text(&again);
    ensure!(
        again.status.success() && !t3.contains("Using cache"),
        "{t3}"
    );
    let ran = daemon.docker_ok(&["run", "--rm", "x"])?;
    ensure!(
        ran.contains("\n1\n"),
        "the cache mount survived the prune: {ran}"
    );
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_build_errors() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;

    // A failing RUN: non-zero exit, the command's output and Docker's message.
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo about to fail; exit 3\n"),
    )])?;
    let out = daemon.docker().args(["build", &ctx.arg()]).output()?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(
        t.contains(
            "The command '/bin/sh -c echo about to fail; exit 3' returned a non-zero code: 3"
        ),
        "{t}"
    );
    ensure!(t.contains("about to fail"), "{t}");

    // A broken Dockerfile: the line (an HTTP 400 before any step ran).
    let ctx = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nRUNN echo\n"))])?;
    let out = daemon.docker().args(["build", &ctx.arg()]).output()?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(
        t.contains("Dockerfile:2:1: unknown instruction: RUNN"),
        "{t}"
    );

    // -f names a Dockerfile elsewhere in the context.
    let ctx = Ctx::new(&[(
        "sub/Build.df",
        &format!("FROM {base}\nCMD [\"echo\", \"from sub\"]\n"),
    )])?;
    let df = format!("{}/sub/Build.df", ctx.arg());
    daemon.docker_ok(&["build", "-f", &df, "-t", "sub", &ctx.arg()])?;
    ensure!(daemon.docker_ok(&["run", "--rm", "sub"])? == "from sub\n");

    // Raw API errors: a missing Dockerfile, a remote context, a bzip2 body,
    // a bad tag; each a 400 with a message, and the daemon keeps serving.
    let tar = ctx.path().join("ctx.tar");
    let made = std::process::Command::new("tar")
        .args(["-cf"])
        .arg(&tar)
        .args(["-C", &ctx.arg(), "sub"])
        .status()?;
    ensure!(made.success());
    set_mode(&tar, 0o644)?;
    let cases = [
        ("/build", "Cannot locate specified Dockerfile: Dockerfile"),
        (
            "/build?dockerfile=../../etc/passwd",
            "Cannot locate specified Dockerfile",
        ),
        (
            "/build?remote=https://example.com/ctx.tar.gz",
            "remote context",
        ),
        ("/build?t=Bad:Name", "invalid reference format"),
        ("/build?networkmode=container:x", "not supported for builds"),
    ];
    for (path, want) in cases {
        let reply = daemon.request(
            "POST",
            path,
            &[
                "-H",
                "Content-Type: application/x-tar",
                "--data-binary",
                &format!("@{}", tar.display()),
            ],
        )?;
        ensure!(
            reply.status == 400 && reply.body.contains(want),
            "{path}: {reply}"
        );
    }
    let reply = daemon.request("POST", "/build", &["--data-binary", "BZh91AY&SY"])?;
    ensure!(
        reply.status == 400 && reply.body.contains("bzip2"),
        "{reply}"
    );
    let leftovers = builder_tmp(&pod)?;
    ensure!(leftovers.is_empty(), "left in builder/tmp: {leftovers:?}");
    daemon.stop()?;
    pod.stop()
}

/// What is left in the data root's builder/tmp (contexts, RUN dirs, views).
/// Names in builder/tmp and, one level down, in each build's own entry
/// (`context-*/context-*`, `build-*/run-*`).
fn builder_tmp(pod: &Pod) -> Result<Vec<String>> {
    let dir = pod.data_dir_host().join("builder/tmp");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for e in entries.flatten() {
        names.push(e.file_name().to_string_lossy().to_string());
        for inner in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            let name = inner.file_name().to_string_lossy().to_string();
            if name != ".lock" {
                names.push(name);
            }
        }
    }
    Ok(names)
}

/// The mounts the daemon (in the engine's mount namespace) holds.
fn daemon_mounts(daemon: &Daemon) -> Result<String> {
    let out = daemon
        .pod()
        .exec("/bin/sh")
        .args([
            "-c",
            "cat /proc/$(/usr/bin/pgrep -of 'daemo[n] -H unix:///run/hutch')/mounts",
        ])
        .output()?;
    ok(&out, "reading the daemon's mounts")
}

/// `docker builder prune -af` while a build runs keeps what that build
/// stands on (its cached parent step, its cache mount), as BuildKit keeps
/// in-use records: the build finishes and its image is whole.
#[test]
fn a_prune_spares_what_a_running_build_uses() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    // A first build leaves the step and the cache mount the second uses.
    let first = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo a > /a\nRUN --mount=type=cache,target=/c touch /c/old\n"),
    )])?;
    daemon.docker_ok(&["build", "-t", "first", &first.arg()])?;
    daemon.docker_ok(&["rmi", "first"])?;
    std::thread::sleep(Duration::from_millis(1100));
    let long = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nRUN echo a > /a\nRUN --mount=type=cache,target=/c \
             touch /c/started && sleep 3 && echo x > /c/f && cp /a /b\n"
        ),
    )])?;
    let child = daemon
        .docker()
        .args(["build", "-t", "long", &long.arg()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mounts = pod.data_dir_host().join("builder/cache-mounts");
    let started = || {
        std::fs::read_dir(&mounts)
            .into_iter()
            .flatten()
            .flatten()
            .any(|m| m.path().join("started").exists())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started() {
        ensure!(Instant::now() < deadline, "the long RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pruned = daemon.docker_ok(&["builder", "prune", "-af"])?;
    ensure!(pruned.contains("Total reclaimed space"), "{pruned}");
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "the build under a prune failed: {}",
        text(&out)
    );
    let ran = daemon.docker_ok(&["run", "--rm", "long", "cat", "/b"])?;
    ensure!(ran == "a\n", "{ran}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_build_client_disconnect_cancels_and_cleans_up() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!(
                "FROM {base}\nCOPY f /f\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t echo started-long-run && sleep 30 && echo finished > /done\n"
            ),
        ),
        ("f", "x\n"),
    ])?;
    let mounts_before = daemon_mounts(&daemon)?;
    let mut child = daemon
        .docker()
        .args(["build", "-t", "long", &ctx.arg()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("docker build stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("started-long-run") && !line.contains("RUN") {
                    break;
                }
            }
            Err(_) if Instant::now() > deadline => bail!("the RUN never started: {seen}"),
            Err(_) => {}
        }
    }
    // The RUN's mounts live in its container's mount namespace; its
    // directory and the context are in the data root meanwhile.
    let during = builder_tmp(&pod)?;
    ensure!(
        during.iter().any(|d| d.starts_with("context-"))
            && during.iter().any(|d| d.starts_with("run-")),
        "no context or RUN directory during the RUN: {during:?}"
    );
    // The CLI goes away mid-RUN (podsim exec forwards SIGTERM to it, and
    // the CLI drops the connection).
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let _ = child.wait();

    // The build stops well before the 30 s sleep would end, and leaves
    // nothing behind: no sleep, no mounts, no temp dirs, no containers.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let sleeping = daemon
            .pod()
            .exec("/usr/bin/pgrep")
            .args(["-x", "sleep"])
            .output()?;
        let mounts = daemon_mounts(&daemon)?;
        let tmp = builder_tmp(&pod)?;
        if !sleeping.status.success() && mounts == mounts_before && tmp.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the cancelled build left things behind: sleep running: {}, tmp: {tmp:?}, mounts:\n{mounts}\nbefore:\n{mounts_before}\n{}",
                sleeping.status.success(),
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    ensure!(daemon.docker_ok(&["ps", "-aq"])?.is_empty());
    let images = daemon.docker_ok(&["images", "-q", "long"])?;
    ensure!(images.is_empty(), "a cancelled build tagged {images}");
    // The daemon keeps serving builds.
    let ctx2 = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nRUN echo ok > /ok\n"))])?;
    daemon.docker_ok(&["build", "-t", "after", &ctx2.arg()])?;
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_py_images_build() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!(
                "FROM {base}\nARG WHO=nobody\nCOPY hello.txt /hello.txt\nRUN echo \"built for $WHO\" > /who\nCMD [\"cat\", \"/hello.txt\", \"/who\"]\n"
            ),
        ),
        ("hello.txt", "hello from docker-py\n"),
        ("fail/Dockerfile", &format!("FROM {base}\nRUN exit 7\n")),
    ])?;
    let out = daemon
        .venv_python()
        .arg(client_script("docker_py_build.py"))
        .arg(ctx.arg())
        .output()
        .context("running docker-py in the pod")?;
    let t = ok(&out, "docker_py_build.py")?;
    let seen: serde_json::Value =
        serde_json::from_str(t.trim()).with_context(|| format!("not JSON: {t}"))?;
    ensure!(
        seen["ran"] == "hello from docker-py\nbuilt for py\n",
        "{seen}"
    );
    ensure!(seen["tags"] == serde_json::json!(["py/built:1"]), "{seen}");
    let log = seen["log"].as_str().unwrap_or_default();
    ensure!(log.contains("Step 1/5 : FROM"), "{seen}");
    ensure!(log.contains("Successfully tagged py/built:1"), "{seen}");
    ensure!(seen["id_matches"] == true, "{seen}");
    ensure!(
        seen["failed"]
            .as_str()
            .is_some_and(|m| m.contains("returned a non-zero code: 7")),
        "{seen}"
    );
    ensure!(
        seen["broken"]
            .as_str()
            .is_some_and(|m| m.contains("Cannot locate specified Dockerfile")),
        "{seen}"
    );
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_commit_with_changes_message_and_author() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    daemon.docker_ok(&[
        "run",
        "--name",
        "c1",
        &base,
        "sh",
        "-c",
        "echo added > /added && rm /bin/vi && mkdir -p /d && echo x > /d/f",
    ])?;
    let id = daemon.docker_ok(&[
        "commit",
        "-c",
        r#"CMD ["sh", "-c", "cat /added /d/f; ls /bin/vi 2>&1; echo $MODE; pwd"]"#,
        "-c",
        "ENV MODE=committed",
        "-c",
        "WORKDIR /d",
        "-m",
        "a message",
        "-a",
        "Ann Author",
        "c1",
        "committed:1",
    ])?;
    ensure!(id.trim().starts_with("sha256:"), "{id}");
    let ran = daemon.docker_ok(&["run", "--rm", "committed:1"])?;
    ensure!(
        ran == "added\nx\nls: /bin/vi: No such file or directory\ncommitted\n/d\n",
        "{ran}"
    );
    let inspect = daemon.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Author}}|{{.Comment}}|{{len .RootFS.Layers}}|{{.Id}}",
        "committed:1",
    ])?;
    // busybox's one layer and the commit's.
    ensure!(
        inspect.trim() == format!("Ann Author|a message|2|{}", id.trim()),
        "{inspect}"
    );
    let history = daemon.docker_ok(&["history", "--format", "{{.Comment}}", "committed:1"])?;
    ensure!(history.lines().next() == Some("a message"), "{history}");

    // A change Docker does not allow, and an unknown container.
    let out = daemon
        .docker()
        .args(["commit", "-c", "RUN echo no", "c1"])
        .output()?;
    let t = text(&out);
    ensure!(
        !out.status.success() && t.contains("run is not a valid change command"),
        "{t}"
    );
    let out = daemon.docker().args(["commit", "nope"]).output()?;
    let t = text(&out);
    ensure!(
        !out.status.success() && t.contains("No such container"),
        "{t}"
    );
    daemon.stop()?;
    pod.stop()
}

/// `docker build -f - DIR`: the CLI adds the Dockerfile from stdin to the
/// context tar and ends the stream right after its data, without the tar's
/// padding and end blocks (Go's archive/tar reads that as a clean end).
#[test]
fn docker_build_dockerfile_from_stdin() -> Result<()> {
    use std::io::Write;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        ("a.txt", "from the context\n"),
        (".dockerignore", "*.log\n"),
    ])?;
    let mut child = daemon
        .docker()
        .args(["build", "-q", "-t", "stdin-df", "-f", "-"])
        .arg(ctx.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("docker build stdin")?
        .write_all(format!("FROM {base}\nCOPY a.txt /\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "docker build -f -: {}", text(&out));
    let cat = daemon.docker_ok(&["run", "--rm", "stdin-df", "cat", "/a.txt"])?;
    ensure!(cat == "from the context\n", "{cat}");
    Ok(())
}
