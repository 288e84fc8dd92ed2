//! `docker export` and `docker import` with the real docker CLI against
//! `hutch daemon` inside a simulated pod: a container's filesystem (stopped
//! or running) round-trips into a new image with `--change` and `-m`;
//! a malicious archive is refused and leaves nothing; a URL source gets a
//! clear 400.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::process::Output;

use anyhow::{ensure, Result};
use hutch_tests::daemon::{ok, Daemon, DOCKER_CLI, DOCKER_HOST};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

/// A shell command line in the pod with the docker CLI pointed at the daemon.
fn sh(daemon: &Daemon, line: &str) -> Result<Output> {
    Ok(daemon
        .pod()
        .exec("/bin/sh")
        .arg("-c")
        .arg(line.replace("docker ", &format!("{DOCKER_CLI} ")))
        .env("DOCKER_HOST", DOCKER_HOST)
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Python that writes a tar to stdout with `entries` (a Python list
/// literal of (name, kind, target) tuples).
fn evil_tar(entries: &str) -> String {
    format!(
        "/usr/bin/python3 -c '
import io, sys, tarfile
t = tarfile.open(fileobj=sys.stdout.buffer, mode=\"w|\")
for name, kind, target in {entries}:
    i = tarfile.TarInfo(name)
    if kind == \"file\":
        data = b\"pwned\\n\"
        i.size = len(data)
        t.addfile(i, io.BytesIO(data))
        continue
    i.type = {{\"sym\": tarfile.SYMTYPE, \"link\": tarfile.LNKTYPE, \"chr\": tarfile.CHRTYPE}}[kind]
    i.linkname = target
    i.devmajor, i.devminor = 1, 3
    t.addfile(i)
t.close()
'"
    )
}

#[test]
fn docker_cli_export_import() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let image = testimages::busybox()?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;

    // A stopped container that wrote a file, made a directory and deleted
    // one of the image's files (a whiteout in its upper directory).
    daemon.docker_ok(&[
        "run",
        "--name",
        "src",
        &image.reference,
        "sh",
        "-c",
        "echo hello > /file && mkdir -p /d/e && echo deep > /d/e/f && rm /bin/ls",
    ])?;
    let imported = ok(
        &sh(
            &daemon,
            "docker export src | docker import -c 'CMD [\"cat\", \"/file\"]' -c 'ENV A=b' \
             -m 'from src' - imp:1",
        )?,
        "export | import",
    )?;
    ensure!(imported.trim().starts_with("sha256:"), "{imported}");
    let out = daemon.docker_ok(&["run", "--rm", "imp:1", "cat", "/file"])?;
    ensure!(out == "hello\n", "{out:?}");
    // The CMD change, the ENV change.
    let out = daemon.docker_ok(&["run", "--rm", "imp:1"])?;
    ensure!(out == "hello\n", "CMD from --change: {out:?}");
    let out = daemon.docker_ok(&["run", "--rm", "imp:1", "sh", "-c", "echo $A; cat /d/e/f"])?;
    ensure!(out == "b\ndeep\n", "{out:?}");
    // The deleted file stays deleted; the rest of the image is there.
    let out = sh(
        &daemon,
        "docker run --rm imp:1 sh -c 'test -e /bin/ls || echo gone; test -x /bin/sh && echo sh'",
    )?;
    let out = ok(&out, "whiteout")?;
    ensure!(out == "gone\nsh\n", "{out:?}");
    let inspect = daemon.docker_ok(&[
        "image",
        "inspect",
        "imp:1",
        "--format",
        "{{.Comment}}|{{len .RootFS.Layers}}|{{.Os}}",
    ])?;
    ensure!(inspect.trim() == "from src|1|linux", "{inspect}");
    let history = daemon.docker_ok(&["history", "--no-trunc", "imp:1"])?;
    ensure!(history.contains("from src"), "{history}");

    // A running container: its live writes are in the export.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "live",
        &image.reference,
        "sh",
        "-c",
        "echo live > /live && sleep 1000",
    ])?;
    let mut listed = String::new();
    for _ in 0..50 {
        listed = ok(
            &sh(&daemon, "docker export live | /usr/bin/tar -t")?,
            "export live",
        )?;
        if listed.lines().any(|l| l == "live") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ensure!(listed.lines().any(|l| l == "live"), "{listed}");
    ensure!(listed.lines().any(|l| l == "bin/sh"), "{listed}");
    // Mounts are not the container's filesystem: /proc is empty.
    ensure!(
        !listed
            .lines()
            .any(|l| l.starts_with("proc/") && l.len() > 5),
        "{listed}"
    );
    let out = daemon.docker().args(["export", "nosuch"]).output()?;
    ensure!(!out.status.success(), "export of a missing container");
    ensure!(
        text(&out.stderr).contains("No such container"),
        "{}",
        text(&out.stderr)
    );

    // A path escape: refused with a clear error, nothing written outside,
    // no image.
    for (what, entries) in [
        (
            "dot-dot",
            "[(\"../../../../../../tmp/escaped\", \"file\", \"\")]",
        ),
        (
            "through a symlink",
            "[(\"evil\", \"sym\", \"/tmp\"), (\"evil/escaped\", \"file\", \"\")]",
        ),
        (
            "hardlink",
            "[(\"l\", \"link\", \"../../../../../etc/passwd\")]",
        ),
    ] {
        let out = sh(
            &daemon,
            &format!("{} | docker import - bad:1", evil_tar(entries)),
        )?;
        let stderr = text(&out.stderr);
        ensure!(
            !out.status.success(),
            "{what}: imported: {}",
            text(&out.stdout)
        );
        ensure!(
            stderr.contains("outside") || stderr.contains("escape"),
            "{what}: {stderr}"
        );
        let escaped = sh(&daemon, "test -e /tmp/escaped && echo yes || echo no")?;
        ensure!(text(&escaped.stdout).trim() == "no", "{what}: escaped");
    }
    let images = daemon.docker_ok(&["images", "--format", "{{.Repository}}"])?;
    ensure!(!images.contains("bad"), "{images}");
    // A device node cannot be made in a user namespace: skipped, the rest
    // of the archive imported.
    let out = ok(
        &sh(
            &daemon,
            &format!(
                "{} | docker import - dev:1",
                evil_tar("[(\"null\", \"chr\", \"\"), (\"ok\", \"file\", \"\")]")
            ),
        )?,
        "import with a device",
    )?;
    ensure!(out.trim().starts_with("sha256:"), "{out}");
    daemon.docker_ok(&["create", "--name", "dev", "dev:1", "/ok"])?;
    let listed = ok(
        &sh(&daemon, "docker export dev | /usr/bin/tar -t")?,
        "export dev",
    )?;
    ensure!(listed.lines().any(|l| l == "ok"), "{listed}");
    ensure!(!listed.lines().any(|l| l == "null"), "{listed}");
    // An empty body and a bad change are the client's errors.
    let out = sh(&daemon, "docker import - empty:1 < /dev/null")?;
    ensure!(!out.status.success(), "empty import succeeded");
    ensure!(text(&out.stderr).contains("empty"), "{}", text(&out.stderr));
    let out = sh(
        &daemon,
        &format!(
            "{} | docker import -c 'RUN true' - chg:1",
            evil_tar("[(\"ok\", \"file\", \"\")]")
        ),
    )?;
    ensure!(!out.status.success(), "RUN change accepted");
    ensure!(
        text(&out.stderr).contains("not a valid change command"),
        "{}",
        text(&out.stderr)
    );
    // From a URL (`docker import URL`): the daemon downloads the tarball.
    let served = hutch_tests::build_context::BuildContext::new(&[])?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(9);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "from-url", &b"from url\n"[..])?;
    std::fs::write(
        served.path().join("rootfs.tar.gz"),
        tar.into_inner()?.finish()?,
    )?;
    let _server = hutch_tests::http_fixture::HttpFixture::start(&pod, 18093, served.path())?;
    let url = "http://127.0.0.1:18093/rootfs.tar.gz";
    let out = daemon
        .docker()
        .args(["import", url, "fromurl:1"])
        .output()?;
    let imported = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && imported.trim().starts_with("sha256:"),
        "docker import URL: {out:?}"
    );
    let history = daemon.docker_ok(&["history", "--no-trunc", "fromurl:1"])?;
    ensure!(
        history.contains(&format!("Imported from {url}")),
        "history: {history}"
    );
    daemon.docker_ok(&["create", "--name", "fromurl", "fromurl:1", "none"])?;
    let listed = ok(
        &sh(&daemon, "docker export fromurl | /usr/bin/tar -xO from-url")?,
        "export fromurl",
    )?;
    ensure!(listed == "from url\n", "{listed:?}");
    // A missing file and another scheme: clear errors, nothing imported.
    let missing = daemon
        .docker()
        .args(["import", "http://127.0.0.1:18093/nosuch.tar", "nosuch:1"])
        .output()?;
    ensure!(!missing.status.success(), "a 404 imported");
    ensure!(
        text(&missing.stderr).contains("404"),
        "a 404's error: {:?}",
        text(&missing.stderr)
    );
    let reply = daemon.request(
        "POST",
        "/v1.50/images/create?fromSrc=ftp://example.invalid/x.tar&repo=u",
        &[],
    )?;
    ensure!(
        reply.status == 400 && reply.body.contains("only http(s) URLs"),
        "{reply}"
    );

    daemon.docker_ok(&["rm", "-f", "live", "src", "dev", "fromurl"])?;
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}
