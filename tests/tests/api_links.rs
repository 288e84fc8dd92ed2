//! Docker's container links through the daemon in the pod simulator, with
//! the docker CLI: a legacy `--link NAME:ALIAS` reaches the linked
//! container by its alias (an /etc/hosts line `IP ALIAS HOSTNAME NAME`)
//! and gets moby's link environment (`ALIAS_PORT_5432_TCP_ADDR`, ...); a
//! link on a user-defined network (an endpoint's `Links`, and Compose v2's
//! `links:` itself) gives the alias without the environment; inspect
//! shows Docker's stored form; a link to a stopped or missing container
//! is refused with Docker's words.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does).

use anyhow::{ensure, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};

/// A web server on 5432 serving `/x` = `linked`.
const SERVE: &str = "mkdir -p /www && echo linked > /www/x && exec httpd -f -p 5432 -h /www";

#[test]
fn links_give_aliases_and_environment() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "-e",
        "SECRET=s3",
        "--expose",
        "5432",
        "busybox",
        "sh",
        "-c",
        SERVE,
    ])?;
    let db_ip = daemon.ip_of("db")?;
    let db_host = daemon.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", "db"])?;

    // The legacy link: reached by alias, the hosts line as Docker writes
    // it, moby's environment.
    let seen = daemon.docker_ok(&[
        "run",
        "--name",
        "web",
        "--link",
        "db:database",
        "busybox",
        "sh",
        "-c",
        "wget -qO- http://database:5432/x; grep database /etc/hosts; env | sort",
    ])?;
    ensure!(seen.starts_with("linked\n"), "{seen}");
    let line = format!("{db_ip}\tdatabase {} db\n", db_host.trim());
    ensure!(seen.contains(&line), "no {line:?} in {seen}");
    for want in [
        format!("DATABASE_PORT=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP_ADDR={db_ip}"),
        "DATABASE_PORT_5432_TCP_PORT=5432".to_owned(),
        "DATABASE_PORT_5432_TCP_PROTO=tcp".to_owned(),
        "DATABASE_NAME=/web/database".to_owned(),
        "DATABASE_ENV_SECRET=s3".to_owned(),
    ] {
        ensure!(seen.lines().any(|l| l == want), "no {want} in {seen}");
    }
    ensure!(
        !seen.contains("DATABASE_ENV_PATH="),
        "PATH is not passed: {seen}"
    );
    let links = daemon.docker_ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"])?;
    ensure!(links.trim() == r#"["/db:/web/database"]"#, "{links}");
    // Started again, the link holds (the hosts file is rewritten then).
    let again = daemon.docker_ok(&["start", "-a", "web"])?;
    ensure!(again.starts_with("linked\n"), "{again}");

    // Without an alias the name is the alias.
    let seen = daemon.docker_ok(&[
        "run",
        "--rm",
        "--link",
        "db",
        "busybox",
        "wget",
        "-qO-",
        "http://db:5432/x",
    ])?;
    ensure!(seen == "linked\n", "{seen}");

    // A stopped container and a missing one: refused, in Docker's words.
    daemon.docker_ok(&["create", "--name", "idle", "busybox", "true"])?;
    let out = daemon
        .docker()
        .args([
            "run", "--name", "late", "--link", "idle:i", "busybox", "true",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("Cannot link to a non running container: /idle AS /late/i"),
        "{err}"
    );
    let out = daemon
        .docker()
        .args(["run", "--rm", "--link", "nosuch:x", "busybox", "true"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("could not get container for nosuch"),
        "{err}"
    );

    // On a user-defined network, an endpoint's Links (what Compose sends
    // for `links:`): the alias, and no link environment.
    daemon.docker_ok(&["network", "create", "n1"])?;
    daemon.docker_ok(&["network", "connect", "n1", "db"])?;
    let body = r#"{"Image": "busybox",
        "Cmd": ["sh", "-c", "wget -qO- http://store:5432/x; env | grep -c STORE_ || true"],
        "HostConfig": {"NetworkMode": "n1"},
        "NetworkingConfig": {"EndpointsConfig": {"n1": {"Links": ["db:store"]}}}}"#;
    let created = daemon.post_json("/v1.47/containers/create?name=compose-app", body)?;
    ensure!(created.status == 201, "{created}");
    let out = daemon
        .docker()
        .args(["start", "-a", "compose-app"])
        .output()?;
    let seen = ok(&out, "start -a compose-app")?;
    ensure!(seen == "linked\n0\n", "{seen}");

    // Compose v2's `links:` itself.
    let project = Ctx::new(&[(
        "compose.yaml",
        &format!(
            "services:\n  db:\n    image: busybox\n    command: [\"sh\", \"-c\", \"{SERVE}\"]\n  \
             app:\n    image: busybox\n    links: [\"db:warehouse\"]\n    \
             command: [\"wget\", \"-qO-\", \"http://warehouse:5432/x\"]\n"
        ),
    )])?;
    let out = daemon
        .docker_compose()?
        .args(["compose", "--project-directory", &project.arg(), "-p", "lk"])
        .args(["run", "--rm", "app"])
        .stdin(std::process::Stdio::null())
        .output()?;
    let seen = ok(&out, "compose run app")?;
    ensure!(seen.trim_end().ends_with("linked"), "{seen}");
    let out = daemon
        .docker_compose()?
        .args(["compose", "--project-directory", &project.arg(), "-p", "lk"])
        .args(["down", "-t", "0"])
        .output()?;
    ok(&out, "compose down")?;

    // `network connect --link` on a created container: the alias from its
    // first start; on a running one, at once.
    daemon.docker_ok(&[
        "create",
        "--name",
        "joiner",
        "busybox",
        "wget",
        "-qO-",
        "http://depot:5432/x",
    ])?;
    daemon.docker_ok(&["network", "connect", "--link", "db:depot", "n1", "joiner"])?;
    let links = daemon.docker_ok(&[
        "inspect",
        "--format",
        "{{json .NetworkSettings.Networks.n1.Links}}",
        "joiner",
    ])?;
    ensure!(links.contains("db:depot"), "{links}");
    let out = daemon.docker().args(["start", "-a", "joiner"]).output()?;
    let seen = ok(&out, "start -a joiner")?;
    ensure!(seen.trim_end().ends_with("linked"), "{seen}");
    daemon.docker_ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "300"])?;
    daemon.docker_ok(&["network", "connect", "--link", "db:depot", "n1", "busy"])?;
    let seen = daemon.docker_ok(&["exec", "busy", "wget", "-qO-", "http://depot:5432/x"])?;
    ensure!(seen.trim_end() == "linked", "{seen}");

    // `docker rm --link /PARENT/ALIAS`: the link leaves the running
    // container's /etc/hosts and its config; a missing one is a 404.
    daemon.docker_ok(&[
        "run", "-d", "--name", "holder", "--link", "db:gone", "busybox", "sleep", "300",
    ])?;
    let before = daemon.docker_ok(&["exec", "holder", "grep", "-c", "gone", "/etc/hosts"])?;
    ensure!(before.trim() == "1", "{before}");
    daemon.docker_ok(&["rm", "--link", "/holder/gone"])?;
    let after = daemon
        .docker()
        .args(["exec", "holder", "grep", "-c", "gone", "/etc/hosts"])
        .output()?;
    ensure!(
        String::from_utf8_lossy(&after.stdout).trim() == "0",
        "{after:?}"
    );
    let links = daemon.docker_ok(&["inspect", "-f", "{{json .HostConfig.Links}}", "holder"])?;
    ensure!(links.trim() == "null" || links.trim() == "[]", "{links}");
    let missing = daemon
        .docker()
        .args(["rm", "--link", "/holder/gone"])
        .output()?;
    ensure!(!missing.status.success(), "a second rm --link succeeded");
    // The container itself is untouched by rm --link.
    daemon.docker_ok(&["exec", "holder", "true"])?;

    daemon.docker_ok(&[
        "rm",
        "-f",
        "db",
        "web",
        "idle",
        "late",
        "compose-app",
        "joiner",
        "busy",
        "holder",
    ])?;
    daemon.docker_ok(&["network", "rm", "n1"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
