//! `hutch build --progress` (BuildKit's terminal view under a pty, quiet,
//! plain) and `--platform` builds (`hutch build` and `docker build` through
//! the daemon) from a multi-platform image in the registry fixture, inside a
//! simulated pod.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::process::Stdio;

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::build_context::{hutch, load_busybox};
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

/// `hutch ARGS` under a pseudo-terminal (util-linux `script`), 160 columns
/// wide; returns what the terminal received and whether hutch succeeded.
fn hutch_tty(pod: &Pod, args: &[&str]) -> Result<(bool, String)> {
    hutch_tty_rows(pod, 60, args)
}

/// [`hutch_tty`] on a terminal of `rows` lines.
fn hutch_tty_rows(pod: &Pod, rows: u32, args: &[&str]) -> Result<(bool, String)> {
    let cmd = format!(
        "stty cols 160 rows {rows}; exec {} {}",
        hutch_bin().display(),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = pod
        .exec("/usr/bin/script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .context("running hutch under script(1)")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

/// Whether a finished step line starting with `label` ends (after the
/// padding) with `status` somewhere in the terminal's output.
fn ends_as(screen: &str, label: &str, status: &str) -> bool {
    screen.match_indices(label).any(|(i, _)| {
        let rest = &screen[i + label.len()..];
        let line_end = rest.find(['\u{1b}', '\r', '\n']).unwrap_or(rest.len());
        // The status follows the label after two spaces or more.
        let after = rest[..line_end].split_once("  ").map(|(_, after)| after);
        after.is_some_and(|a| a.trim_start().starts_with(status))
    })
}

#[test]
fn hutch_build_progress_tty_quiet_and_plain() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let df = format!(
        "FROM {base}\nCOPY a.txt /a.txt\n\
         RUN echo tail-line-one && sleep 1 && echo tail-line-two && sleep 1\n"
    );
    let ctx = Ctx::new(&[("Dockerfile", &df), ("a.txt", "a\n")])?;

    // The terminal view: one line per step, DONE with a time, the RUN's
    // output shown under it while it ran.
    let (ok, screen) = hutch_tty(
        &pod,
        &[
            "build",
            "--progress=tty",
            "--no-cache",
            "-t",
            "ui:1",
            &ctx.arg(),
        ],
    )?;
    ensure!(ok, "{screen}");
    ensure!(
        ends_as(&screen, "[2/3] COPY a.txt /a.txt", "DONE "),
        "{screen}"
    );
    for want in [
        &format!("[1/3] FROM {base}") as &str,
        "[2/3] COPY a.txt /a.txt",
        "[3/3] RUN echo tail-line-one",
        "DONE ",
        "tail-line-one",
        "tail-line-two",
        "FINISHED",
        "naming to ",
    ] {
        ensure!(screen.contains(want), "no {want:?} in:\n{screen}");
    }
    ensure!(
        !screen.contains("Step 1/3"),
        "plain lines on a tty:\n{screen}"
    );

    // Rebuild: the steps are CACHED.
    let (ok, screen) = hutch_tty(&pod, &["build", "--progress=tty", "-t", "ui:1", &ctx.arg()])?;
    ensure!(ok, "{screen}");
    ensure!(
        ends_as(&screen, "[2/3] COPY a.txt /a.txt", "CACHED"),
        "{screen}"
    );
    ensure!(
        ends_as(&screen, "[3/3] RUN echo tail-line-one", "CACHED"),
        "{screen}"
    );

    // A failing RUN: ERROR on its line, then its whole output and exit code.
    let failing = format!(
        "FROM {base}\nRUN echo out-before-failure && echo err-before-failure >&2 && exit 7\n"
    );
    ctx.write("Dockerfile.fail", &failing)?;
    let file = ctx.path().join("Dockerfile.fail").display().to_string();
    let (ok, screen) = hutch_tty(&pod, &["build", "--progress=tty", "-f", &file, &ctx.arg()])?;
    ensure!(!ok, "a failing RUN succeeded:\n{screen}");
    ensure!(
        ends_as(&screen, "[2/2] RUN echo out-before", "ERROR "),
        "{screen}"
    );
    for want in [
        "=> [2/2] RUN echo out-before-failure",
        "------",
        " > [2/2] RUN echo out-before-failure",
        "out-before-failure",
        "err-before-failure",
        "did not complete successfully: exit code: 7",
    ] {
        ensure!(screen.contains(want), "no {want:?} in:\n{screen}");
    }

    // A failing COPY: its line ends in ERROR, then the error (no output
    // block: it printed nothing).
    ctx.write(
        "Dockerfile.copy",
        &format!("FROM {base}\nCOPY missing.txt /m\n"),
    )?;
    let file3 = ctx.path().join("Dockerfile.copy").display().to_string();
    let (ok, screen) = hutch_tty(&pod, &["build", "--progress=tty", "-f", &file3, &ctx.arg()])?;
    ensure!(!ok, "{screen}");
    ensure!(
        ends_as(&screen, "[2/2] COPY missing.txt /m", "ERROR "),
        "{screen}"
    );
    ensure!(
        screen.contains("ERROR: ") && screen.contains("missing.txt"),
        "{screen}"
    );
    ensure!(!screen.contains("------"), "{screen}");

    // More steps than the terminal has lines: every step still shows its
    // end (finished steps go to the scrollback, the live area stays small).
    let envs: String = (1..=12).map(|i| format!("ENV V{i}={i}\n")).collect();
    ctx.write("Dockerfile.long", &format!("FROM {base}\n{envs}"))?;
    let file4 = ctx.path().join("Dockerfile.long").display().to_string();
    let (ok, screen) = hutch_tty_rows(
        &pod,
        6,
        &["build", "--progress=tty", "-f", &file4, &ctx.arg()],
    )?;
    ensure!(ok, "{screen}");
    for i in 1..=12 {
        let label = format!("[{}/13] ENV V{i}={i}", i + 1);
        ensure!(
            ends_as(&screen, &label, "DONE ") || ends_as(&screen, &label, "CACHED"),
            "no finished {label:?} in:\n{screen}"
        );
    }

    // auto on a terminal is the tty view.
    let (ok, screen) = hutch_tty(&pod, &["build", "-t", "ui:1", &ctx.arg()])?;
    ensure!(ok, "{screen}");
    ensure!(
        ends_as(&screen, "[3/3] RUN echo tail-line-one", "CACHED"),
        "{screen}"
    );
    ensure!(!screen.contains("Step 1/3"), "{screen}");

    // Several stages: each step is labelled with its stage.
    let stages = format!(
        "FROM {base} AS first\nRUN echo one > /one\n\
         FROM {base}\nCOPY --from=first /one /one\n"
    );
    ctx.write("Dockerfile.stages", &stages)?;
    let file2 = ctx.path().join("Dockerfile.stages").display().to_string();
    let (ok, screen) = hutch_tty(&pod, &["build", "--progress=tty", "-f", &file2, &ctx.arg()])?;
    ensure!(ok, "{screen}");
    for want in [
        "[first 1/2] FROM ",
        "[first 2/2] RUN echo one > /one",
        "[stage-1 2/2] COPY --from=first /one /one",
    ] {
        ensure!(screen.contains(want), "no {want:?} in:\n{screen}");
    }

    // Quiet (or `-q`, as docker build's): the image ID only.
    for quiet in ["--progress=quiet", "-q"] {
        let out = hutch(&pod, &["build", quiet, "-t", "ui:1", &ctx.arg()])?;
        ensure!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.starts_with("sha256:")
                && stdout.trim().len() == 71
                && stdout.lines().count() == 1,
            "{quiet}: {}",
            text(&out)
        );
        ensure!(out.stderr.is_empty(), "{quiet} printed: {}", text(&out));
    }
    // Quiet still says why a build failed.
    let out = hutch(
        &pod,
        &["build", "--progress=quiet", "-f", &file, &ctx.arg()],
    )?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("returned a non-zero code: 7"),
        "{}",
        text(&out)
    );

    // Plain (and auto without a terminal): Docker's legacy builder lines.
    for progress in ["--progress=plain", "--progress=auto"] {
        let out = hutch(&pod, &["build", progress, "-t", "ui:1", &ctx.arg()])?;
        ensure!(out.status.success(), "{}", text(&out));
        let log = String::from_utf8_lossy(&out.stderr);
        ensure!(log.contains("Step 1/3 : FROM"), "{log}");
        ensure!(log.matches(" ---> Using cache").count() == 2, "{log}");
        ensure!(log.contains("Successfully tagged ui:1"), "{log}");
    }

    // Bad values, and tty without a terminal.
    let out = hutch(&pod, &["build", "--progress=fancy", &ctx.arg()])?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("use auto, tty, plain or quiet"),
        "{}",
        text(&out)
    );
    let out = hutch(&pod, &["build", "--progress=tty", &ctx.arg()])?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(text(&out).contains("needs a terminal"), "{}", text(&out));
    pod.stop()
}

fn inspect(daemon: &Daemon, name: &str) -> Result<String> {
    daemon.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Os}}/{{.Architecture}} {{index .RootFS.Layers 0}}",
        name,
    ])
}

#[test]
fn hutch_build_for_another_platform() -> Result<()> {
    ensure!(
        std::env::consts::ARCH == "x86_64",
        "this test expects an amd64 machine (arm64 is the foreign platform)"
    );
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let multi = testimages::multi_platform()?;
    registry.push_index(&pod, &multi.oci_layout, "multi/img:1")?;
    let img = registry.image_ref("multi/img:1");

    // COPY-only for arm64: the arm64 base, an arm64 image.
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!("FROM {img}\nCOPY hello.txt /hello.txt\n"),
        ),
        ("hello.txt", "hello\n"),
    ])?;
    // Under a terminal: the pull's layer shows under the FROM.
    let (ok, screen) = hutch_tty(
        &pod,
        &[
            "build",
            "--progress=tty",
            "--platform",
            "linux/arm64",
            "-t",
            "arm:1",
            &ctx.arg(),
        ],
    )?;
    ensure!(ok, "arm64 build: {screen}");
    let layer_line = format!("=> => sha256:{}", &multi.arm64.digest[7..19]);
    ensure!(
        screen.contains(&layer_line),
        "no {layer_line:?} in:\n{screen}"
    );
    ensure!(ends_as(&screen, "[1/2] FROM ", "DONE "), "{screen}");
    // The same Dockerfile for this machine: amd64, and nothing from the
    // arm64 build's cache.
    let out = hutch(&pod, &["build", "-t", "amd:1", &ctx.arg()])?;
    ensure!(out.status.success(), "amd64 build: {}", text(&out));
    ensure!(!text(&out).contains("Using cache"), "{}", text(&out));
    // And again for arm64: now every step is cached.
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            "arm:1",
            &ctx.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).matches("Using cache").count() == 1,
        "{}",
        text(&out)
    );

    // FROM scratch for two platforms: no shared parent, still no shared cache.
    let scratch = Ctx::new(&[
        ("Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
        ("hello.txt", "hello\n"),
    ])?;
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            "s:arm",
            &scratch.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/amd64",
            "-t",
            "s:amd",
            &scratch.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(!text(&out).contains("Using cache"), "{}", text(&out));
    // An alias with a variant: linux/armhf is linux/arm/v7.
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/armhf",
            "-t",
            "s:v7",
            &scratch.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(!text(&out).contains("Using cache"), "{}", text(&out));

    // TARGETARCH follows --platform in a stage on the build platform.
    let args_df = format!(
        "FROM --platform=$BUILDPLATFORM {img} AS build\n\
         ARG TARGETARCH\nARG TARGETPLATFORM\nARG BUILDARCH\n\
         RUN echo \"target=$TARGETARCH/$TARGETPLATFORM build=$BUILDARCH\" > /arch.txt && cat /arch.txt\n\
         FROM {img}\nCOPY --from=build /arch.txt /arch.txt\n"
    );
    let ctx2 = Ctx::new(&[("Dockerfile", &args_df)])?;
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            "args:1",
            &ctx2.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("target=arm64/linux/arm64 build=amd64"),
        "{}",
        text(&out)
    );

    // A RUN in an arm64 stage cannot run here without an emulator on
    // hutch's PATH (the emulated RUNs are tests/tests/emulation.rs's).
    let run_ctx = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {img}\nRUN cat /platform.txt\n"),
    )])?;
    let out = pod
        .exec(hutch_bin())
        .args(["build", "--platform", "linux/arm64", &run_ctx.arg()])
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains(
            "cannot run linux/arm64 binaries on this linux/amd64 host (no emulator for arm64 \
             (qemu-aarch64-static on hutch's PATH"
        ),
        "{}",
        text(&out)
    );
    // A local image of another platform, that no registry has: a clear
    // error naming both platforms.
    let local = registry.image_ref("only/local:1");
    let out = hutch(&pod, &["build", "-t", &local, &scratch.arg()])?;
    ensure!(out.status.success(), "{}", text(&out));
    let from_local = Ctx::new(&[("Dockerfile", &format!("FROM {local}\nCOPY . /\n"))])?;
    let out = hutch(
        &pod,
        &["build", "--platform", "linux/arm64", &from_local.arg()],
    )?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        text(&out)
            .contains("the local image is for linux/amd64, not the wanted platform linux/arm64"),
        "{}",
        text(&out)
    );
    // For this machine it builds from the local image.
    let out = hutch(&pod, &["build", &from_local.arg()])?;
    ensure!(out.status.success(), "{}", text(&out));

    // Several platforms at once: one build each under one name, pushed as
    // one index; their files a directory per platform; a docker archive
    // (one image per name) refused before anything runs.
    let pushed = registry.image_ref("built/multi:2");
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            &pushed,
            "--push",
            "-o",
            "type=local,dest=/tmp/hb-files",
            &ctx.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let files = pod
        .exec("/bin/sh")
        .args([
            "-c",
            "cat /tmp/hb-files/linux_amd64/hello.txt /tmp/hb-files/linux_arm64/hello.txt \
             /tmp/hb-files/linux_arm64/platform.txt; ls /tmp/hb-files",
        ])
        .output()?;
    let files = hutch_tests::daemon::ok(&files, "the files of both platforms")?;
    ensure!(
        files
            == format!(
                "hello\nhello\n{}linux_amd64\nlinux_arm64\n",
                testimages::ARM64_MARKER
            ),
        "{files}"
    );
    let index = pod
        .exec("/usr/bin/curl")
        .args([
            "-sSf",
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json",
            &format!("{}/v2/built/multi/manifests/2", registry.url()),
        ])
        .output()?;
    let index = hutch_tests::daemon::ok(&index, "the pushed index")?;
    ensure!(
        index.contains(r#""architecture":"amd64""#) && index.contains(r#""architecture":"arm64""#),
        "{index}"
    );
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=docker,dest=/tmp/hb.tar",
            &ctx.arg(),
        ],
    )?;
    ensure!(
        !out.status.success() && text(&out).contains("one image per name"),
        "{}",
        text(&out)
    );

    let daemon = Daemon::start(&pod)?;
    let arm = inspect(&daemon, "arm:1")?;
    ensure!(arm.starts_with("linux/arm64 "), "{arm}");
    ensure!(arm.trim().ends_with(&multi.arm64.diff_id), "{arm}");
    let amd = inspect(&daemon, "amd:1")?;
    ensure!(amd.starts_with("linux/amd64 "), "{amd}");
    ensure!(amd.trim().ends_with(&multi.amd64.diff_id), "{amd}");
    let args = inspect(&daemon, "args:1")?;
    ensure!(args.starts_with("linux/arm64 "), "{args}");
    let s = daemon.docker_ok(&["image", "inspect", "--format", "{{.Architecture}}", "s:arm"])?;
    ensure!(s.trim() == "arm64", "{s}");
    let fmt = "{{.Os}}/{{.Architecture}}/{{.Variant}}";
    let v7 = daemon.docker_ok(&["image", "inspect", "--format", fmt, "s:v7"])?;
    ensure!(v7.trim() == "linux/arm/v7", "{v7}");

    // docker build --platform through the daemon: the same COPY-only build.
    let built = daemon
        .docker()
        .args([
            "build",
            "--platform",
            "linux/arm64",
            "--no-cache",
            "-t",
            "d:1",
            &ctx.arg(),
        ])
        .output()?;
    ensure!(built.status.success(), "docker build: {}", text(&built));
    let d = inspect(&daemon, "d:1")?;
    ensure!(d.starts_with("linux/arm64 "), "{d}");
    ensure!(d.trim().ends_with(&multi.arm64.diff_id), "{d}");
    // Its RUN runs under the emulator, in an image with no shell: the
    // error as the API streams it.
    let built = daemon
        .docker()
        .args(["build", "--platform", "linux/arm64", &run_ctx.arg()])
        .output()?;
    ensure!(!built.status.success(), "{}", text(&built));
    ensure!(text(&built).contains("/bin/sh"), "{}", text(&built));
    let bad = daemon
        .docker()
        .args(["build", "--platform", "beos/amd64", &ctx.arg()])
        .output()?;
    ensure!(!bad.status.success(), "{}", text(&bad));
    ensure!(
        text(&bad).contains("unknown operating system"),
        "{}",
        text(&bad)
    );
    let list = daemon
        .docker()
        .args(["build", "--platform", "linux/amd64,linux/arm64", &ctx.arg()])
        .output()?;
    ensure!(!list.status.success(), "{}", text(&list));
    ensure!(text(&list).contains("several platforms"), "{}", text(&list));
    daemon.stop()?;
    registry.stop()?;
    pod.stop()
}
