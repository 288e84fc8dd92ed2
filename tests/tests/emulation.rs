//! Other architectures under QEMU's user-mode emulator (Debian's
//! qemu-user-static, which tests/install-deps installs without registering
//! anything with the host kernel): arm64 containers and arm64 RUN steps on
//! this amd64 machine, each with the emulator registered in its own user
//! namespace's binfmt_misc. The image is busybox for amd64 and for arm64
//! (Debian's arm64 busybox-static), pushed as one index.

use std::process::Stdio;

use anyhow::{ensure, Result};
use hutch_tests::build_context::{hutch, BuildContext as Ctx};
use hutch_tests::daemon::{ok, printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

fn amd64_machine() -> Result<()> {
    ensure!(
        std::env::consts::ARCH == "x86_64",
        "this test expects an amd64 machine (arm64 is the emulated platform)"
    );
    Ok(())
}

/// The pod can run no arm64 binary by itself: what runs below runs under
/// the emulator hutch registered, not under a handler of the host's.
fn host_cannot_run_arm64(pod: &Pod) -> Result<()> {
    // (The kernel refuses it; the pod simulator's execvp then hands it to
    // sh, which finds no script in it.)
    let probe = pod
        .exec("/opt/hutch-test-arm64/busybox")
        .args(["echo", "RAN"])
        .output()?;
    ensure!(
        !probe.status.success() && !text(&probe).contains("RAN"),
        "the pod runs arm64 binaries by itself (a host binfmt_misc handler?): {}",
        text(&probe)
    );
    Ok(())
}

/// `docker run --rm --platform PLATFORM ARGS...`: what it printed.
fn run_rm(daemon: &Daemon, platform: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["run", "--rm", "--platform", platform];
    all.extend_from_slice(args);
    daemon.docker_ok(&all)
}

#[test]
fn arm64_containers_run_under_the_emulator() -> Result<()> {
    arm64_containers(&PodSpec::new())
}

/// With `procMount: Unmasked` containers get a procfs of their own, under
/// which the handler's binfmt_misc is mounted.
#[test]
fn arm64_containers_run_under_the_emulator_unmasked_pod() -> Result<()> {
    arm64_containers(&PodSpec::new().proc_unmasked())
}

fn arm64_containers(spec: &PodSpec) -> Result<()> {
    amd64_machine()?;
    let pod = Pod::start(spec)?;
    host_cannot_run_arm64(&pod)?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let multi = testimages::busybox_multi_arch()?;
    registry.push_index(&pod, &multi.oci_layout, "bb/multi:1")?;
    let image = registry.image_ref("bb/multi:1");
    let daemon = Daemon::start(&pod)?;

    // `docker run --platform`: the CLI pulls the arm64 image, its shell and
    // the processes it starts run as aarch64.
    let arch = run_rm(
        &daemon,
        "linux/arm64",
        &[&image, "sh", "-c", "uname -m; busybox uname -m"],
    )?;
    ensure!(arch == "aarch64\naarch64\n", "{arch}");
    let inspect =
        daemon.docker_ok(&["image", "inspect", "--format", "{{.Architecture}}", &image])?;
    ensure!(inspect.trim() == "arm64", "{inspect}");

    // The handler is the container's own, shown where a Docker host shows
    // its handlers, and read-only to it.
    let binfmt = run_rm(
        &daemon,
        "linux/arm64",
        &[
            &image,
            "sh",
            "-c",
            "cat /proc/sys/fs/binfmt_misc/qemu-aarch64; \
             echo -1 > /proc/sys/fs/binfmt_misc/status && echo WRITABLE; true",
        ],
    )?;
    ensure!(binfmt.starts_with("enabled\n"), "{binfmt}");
    ensure!(
        binfmt.contains("interpreter /usr/bin/qemu-aarch64-static\nflags: POCF\n"),
        "{binfmt}"
    );
    ensure!(!binfmt.contains("WRITABLE"), "{binfmt}");

    // Privileged (no read-only /proc/sys over the handler's mount), and in
    // a private ID range (`--userns-mode private`, the emulator then owned
    // by nobody the container knows).
    let privileged = run_rm(
        &daemon,
        "linux/arm64",
        &["--privileged", &image, "uname", "-m"],
    )?;
    ensure!(privileged == "aarch64\n", "{privileged}");
    let body = serde_json::json!({
        "Image": image,
        "Cmd": ["uname", "-m"],
        "HostConfig": {"UsernsMode": "private"},
    });
    let made = daemon.post_json(
        "/v1.50/containers/create?name=private-arm64",
        &body.to_string(),
    )?;
    ensure!(made.status == 201, "create: {made}");
    let private = daemon.docker_ok(&["start", "-a", "private-arm64"])?;
    ensure!(private == "aarch64\n", "{private}");

    // docker exec into a running arm64 container, whose healthcheck (an
    // exec too) runs the emulated shell; `--init` (hutch's own, native)
    // starts the emulated command.
    let id = daemon.docker_ok(&[
        "run",
        "-d",
        "--init",
        "--platform",
        "linux/arm64",
        "--health-cmd",
        "uname -m | grep -q aarch64",
        "--health-interval",
        "1s",
        &image,
        "sleep",
        "300",
    ])?;
    let id = id.trim();
    let exec = daemon.docker_ok(&["exec", id, "uname", "-m"])?;
    ensure!(exec == "aarch64\n", "{exec}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let health = daemon.docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", id])?;
        if health.trim() == "healthy" {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "not healthy: {health}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    daemon.docker_ok(&["rm", "-f", id])?;

    // Run by the name, which now holds the arm64 image, with no platform
    // asked for: Docker's warning, and the emulator.
    let unasked = daemon
        .docker()
        .args(["run", "--rm", &image, "uname", "-m"])
        .output()?;
    ensure!(
        unasked.status.success()
            && String::from_utf8_lossy(&unasked.stdout) == "aarch64\n"
            && text(&unasked).contains(
                "The requested image's platform (linux/arm64) does not match the detected \
                 host platform (linux/amd64) and no specific platform was requested"
            ),
        "{}",
        text(&unasked)
    );

    // The host's own image is native, under the same name.
    let native = run_rm(&daemon, "linux/amd64", &[&image, "uname", "-m"])?;
    ensure!(native == "x86_64\n", "{native}");

    // No emulator on hutch's PATH: create warns, in the words of what to
    // install, and the start fails as Docker's does.
    drop(daemon);
    let daemon = Daemon::start_with_env(&pod, &[], &[("PATH", "/nonexistent")])?;
    let pulled = daemon.docker_ok(&["pull", "-q", "--platform", "linux/arm64", &image])?;
    ensure!(pulled.contains("bb/multi:1"), "{pulled}");
    let created = daemon
        .docker()
        .args(["run", "--platform", "linux/arm64", &image, "true"])
        .output()?;
    ensure!(!created.status.success(), "{}", text(&created));
    ensure!(
        text(&created).contains(
            "the image is for arm64 and this host is amd64, with no emulator for arm64 \
             (qemu-aarch64-static on hutch's PATH"
        ) && text(&created).contains("exec format error"),
        "{}",
        text(&created)
    );
    Ok(())
}

#[test]
fn arm64_run_steps_build_under_the_emulator() -> Result<()> {
    amd64_machine()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let multi = testimages::busybox_multi_arch()?;
    registry.push_index(&pod, &multi.oci_layout, "bb/multi:1")?;
    let base = registry.image_ref("bb/multi:1");
    let df = format!(
        "FROM {base}\n\
         ARG TARGETARCH\n\
         RUN echo \"$TARGETARCH $(uname -m)\" > /arch && sh -c 'uname -m' >> /arch\n"
    );
    let ctx = Ctx::new(&[("Dockerfile", &df)])?;

    // Daemonless: both platforms, each RUN on its own architecture, files
    // out a directory per platform.
    let out = hutch(
        &pod,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=local,dest=/tmp/emulated",
            &ctx.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let files = pod
        .exec("/bin/sh")
        .args([
            "-c",
            "cat /tmp/emulated/linux_amd64/arch /tmp/emulated/linux_arm64/arch",
        ])
        .output()?;
    let files = ok(&files, "the RUNs' files")?;
    ensure!(
        files == "amd64 x86_64\nx86_64\narm64 aarch64\naarch64\n",
        "{files}"
    );

    // buildx through the daemon, pushed as one index, then each platform
    // run from the registry. The worker lists the emulated platforms.
    let daemon = Daemon::start(&pod)?;
    let inspect = daemon
        .docker_buildx()?
        .args(["buildx", "inspect"])
        .output()?;
    let inspect = ok(&inspect, "docker buildx inspect")?;
    ensure!(
        inspect.contains("linux/amd64, linux/386, linux/arm64, linux/arm/v7, linux/arm/v6"),
        "{inspect}"
    );
    let pushed = registry.image_ref("built/emulated:1");
    let built = daemon
        .docker_buildx()?
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--push",
            "-t",
            &pushed,
            &ctx.arg(),
        ])
        .stdin(Stdio::null())
        .output()?;
    ensure!(built.status.success(), "{}", text(&built));
    daemon.docker_ok(&["rmi", &pushed])?;
    for (platform, want) in [
        ("linux/arm64", "arm64 aarch64\naarch64\n"),
        ("linux/amd64", "amd64 x86_64\nx86_64\n"),
    ] {
        daemon.docker_ok(&["pull", "-q", "--platform", platform, &pushed])?;
        let arch = run_rm(&daemon, platform, &[&pushed, "cat", "/arch"])?;
        ensure!(arch == want, "{platform}: {arch}");
    }

    // A daemonless build with no emulator on the PATH says what to install.
    let out = pod
        .exec(hutch_bin())
        .args([
            "build",
            "--no-cache",
            "--platform",
            "linux/arm64",
            &ctx.arg(),
        ])
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()?;
    ensure!(!out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("no emulator for arm64 (qemu-aarch64-static on hutch's PATH"),
        "{}",
        text(&out)
    );
    Ok(())
}
