//! Registry operations through the daemon with the real docker CLI and
//! docker-py, inside a simulated pod: `docker pull`, `docker push`,
//! `docker login` against Debian's docker-registry (plain and htpasswd).
//!
//! Needs the `hutch` binary built first (`cargo build --workspace`).

use anyhow::{ensure, Result};
use hutch_tests::daemon::{ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

#[test]
fn docker_pull_and_push_through_the_daemon() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    registry.push(&pod, &image, "hutch-test/busybox:latest")?;
    let daemon = Daemon::start(&pod)?;
    let name = registry.image_ref("hutch-test/busybox:latest");

    let out = daemon.docker_ok(&["pull", &name])?;
    ensure!(
        out.contains("Pull complete") && out.contains("Status: Downloaded newer image for"),
        "first pull: {out}"
    );
    ensure!(
        out.contains(&format!("Digest: {}", image.manifest_digest)),
        "{out}"
    );
    let again = daemon.docker_ok(&["pull", &name])?;
    ensure!(again.contains("Status: Image is up to date for"), "{again}");
    let id = daemon.docker_ok(&["image", "inspect", "--format", "{{.Id}}", &name])?;
    assert_eq!(
        id.trim(),
        image.config_digest,
        "pulled = the image's config digest"
    );

    // Push under another name, remove it locally, pull it back.
    let copy = registry.image_ref("team/copy:v1");
    daemon.docker_ok(&["tag", &name, &copy])?;
    let pushed = daemon.docker_ok(&["push", &copy])?;
    ensure!(
        pushed.contains(&format!("v1: digest: {}", image.manifest_digest)),
        "push keeps the manifest digest: {pushed}"
    );
    daemon.docker_ok(&["rmi", &copy])?;
    let back = daemon.docker_ok(&["pull", &copy])?;
    ensure!(
        back.contains("Image is up to date") || back.contains("Downloaded"),
        "{back}"
    );

    // `docker pull -a`: every tag of the repository, each with its own
    // progress, then one status line; docker-py's `all_tags` the same way.
    let copy2 = registry.image_ref("team/copy:v2");
    daemon.docker_ok(&["tag", &name, &copy2])?;
    daemon.docker_ok(&["push", &copy2])?;
    daemon.docker_ok(&["rmi", &copy, &copy2])?;
    let repo = registry.image_ref("team/copy");
    let all = daemon.docker_ok(&["pull", "-a", &repo])?;
    for tag in ["v1", "v2"] {
        ensure!(
            all.contains(&format!("{tag}: Pulling from team/copy")),
            "pull -a skipped {tag}: {all}"
        );
    }
    ensure!(
        all.contains(&format!("Digest: {}", image.manifest_digest))
            && all.contains(&format!("Status: Downloaded newer image for {repo}")),
        "{all}"
    );
    let tags = daemon.docker_ok(&["images", "--format", "{{.Tag}}", &repo])?;
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort_unstable();
    assert_eq!(tags, ["v1", "v2"], "the tags pull -a made");
    daemon.docker_ok(&["rmi", &copy2])?;
    // (docker-py lists the repository's images, then inspects each: its
    // tags are all the image's names.)
    let script = format!(
        "import docker\nc = docker.from_env()\n\
         imgs = c.images.pull('{repo}', all_tags=True)\n\
         print(len(imgs), sorted(t for i in imgs for t in i.tags if '/team/' in t))\n"
    );
    let py = daemon.venv_python().args(["-c", &script]).output()?;
    assert_eq!(
        ok(&py, "docker-py pull all_tags")?.trim(),
        format!("1 ['{copy}', '{copy2}']"),
        "docker-py pull(all_tags=True)"
    );
    let missing_repo = daemon
        .docker()
        .args(["pull", "-a", &registry.image_ref("nope/nothing")])
        .output()?;
    assert!(!missing_repo.status.success());
    let err = String::from_utf8_lossy(&missing_repo.stderr).to_lowercase();
    assert!(
        err.contains("unknown") || err.contains("not found"),
        "pull -a of a missing repository: {err}"
    );

    // A name the registry does not have is an error with the registry's words.
    let missing = daemon
        .docker()
        .args(["pull", &registry.image_ref("nope/nothing:latest")])
        .output()?;
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr).to_lowercase();
    assert!(
        err.contains("unknown") || err.contains("not found"),
        "{err}"
    );

    // docker-py pulls through the same endpoint.
    let script = format!(
        "import docker\nc = docker.from_env()\nimg = c.images.pull('{name}')\nprint(img.id)\n"
    );
    let py = daemon.venv_python().args(["-c", &script]).output()?;
    assert_eq!(ok(&py, "docker-py pull")?.trim(), image.config_digest);

    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64()
        + 0.5;
    let until = format!("{until:.3}");
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "event=pull",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ])?;
    ensure!(events.contains("pull"), "pull events: {events}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_login_checks_credentials() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::BasicAuth)?;
    registry.push(&pod, &image, "private/busybox:latest")?;
    let (user, password) = registry
        .credentials()
        .ok_or_else(|| anyhow::anyhow!("the htpasswd registry has credentials"))?;
    let daemon = Daemon::start(&pod)?;
    let host = registry.host();
    let name = registry.image_ref("private/busybox:latest");

    let anonymous = daemon.docker().args(["pull", &name]).output()?;
    assert!(!anonymous.status.success(), "pull without login must fail");

    let wrong = daemon
        .docker()
        .args(["login", "-u", user, "--password-stdin", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(b"not-the-password\n")?;
            }
            child.wait_with_output()
        })?;
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("401"), "a wrong password says 401: {err}");

    let login = daemon
        .docker()
        .args(["login", "-u", user, "-p", password, &host])
        .output()?;
    let said = ok(&login, "docker login")?;
    assert!(said.contains("Login Succeeded"), "{said}");

    // The CLI now sends the stored credentials with X-Registry-Auth.
    let out = daemon.docker_ok(&["pull", &name])?;
    ensure!(out.contains("Downloaded newer image"), "{out}");
    daemon.stop()?;
    pod.stop()
}
