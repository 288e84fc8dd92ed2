//! Docker Compose v2 (`docker compose`, the Go CLI plugin docker-ce ships;
//! Debian 13's 2.26 from tests/install-deps) against `hutch daemon` in the
//! pod simulator: a CI-shaped project that builds an image through buildx,
//! waits on a healthcheck and a one-shot migration, publishes a port,
//! takes secrets, configs and host-gateway, runs a test service whose exit
//! code becomes compose's, and goes away with `down -v`.
//!
//! Needs the `hutch` and `podsim` binaries built first and the compose and
//! buildx plugins (`tests/run` and `tests/install-deps` do these).

use std::process::{Output, Stdio};

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{ok, printed, Daemon};
use hutch_tests::network::pod_get;
use hutch_tests::podsim::{Pod, PodSpec};
use serde_json::Value;

const PROJECT: &str = "shop";

/// The project: `db` (an httpd standing in for a database; its httpd
/// runs under `init` so that it stops on SIGTERM), `migrate` (a one-shot
/// writing to the shared volume), `api` (built from `app/`, published on
/// 18091), and `tests` (in the `test` profile: asks the api through the
/// project network and exits 3 when the answer is right).
const COMPOSE: &str = r#"
services:
  db:
    image: busybox
    init: true
    command: ["sh", "-c", "mkdir -p /www && echo db-row-42 > /www/index.html && sleep 1 && touch /tmp/ready && exec httpd -f -p 5432 -h /www"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 2s
      retries: 20
    volumes:
      - data:/data
  migrate:
    image: busybox
    depends_on:
      db:
        condition: service_healthy
    command: ["sh", "-c", "echo schema-v7 > /data/migrated && echo migrated"]
    volumes:
      - data:/data
  api:
    build:
      context: ./app
      args:
        GREETING: hello
    init: true
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
    environment:
      DB_URL: http://db:5432/
    env_file: app.env
    secrets: [token]
    configs:
      - source: settings
        target: /etc/settings
    extra_hosts:
      - "host.docker.internal:host-gateway"
    ports:
      - "18091:80"
  tests:
    image: busybox
    profiles: [test]
    depends_on: [api]
    command: ["sh", "-c", "answer=$$(wget -qO- http://api/cgi-bin/q) && echo \"got: $$answer\" && case $$answer in *db-row-42*) exit 3;; esac"]
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    file: ./settings.ini
volumes:
  data:
"#;

const DOCKERFILE: &str = r#"FROM busybox
ARG GREETING
RUN mkdir -p /www/cgi-bin \
 && printf '#!/bin/sh\necho "Content-Type: text/plain"\necho ""\necho "%s api>$(wget -qO- $DB_URL)"\n' "$GREETING" > /www/cgi-bin/q \
 && chmod +x /www/cgi-bin/q
CMD ["httpd", "-f", "-p", "80", "-h", "/www"]
"#;

/// stdout and stderr together (compose prints its progress on stderr).
fn both(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

struct Compose<'d> {
    daemon: &'d Daemon<'d>,
    dir: String,
}

impl Compose<'_> {
    fn run(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.daemon.docker_compose()?;
        cmd.args(["compose", "--project-directory", &self.dir, "-p", PROJECT])
            .args(args)
            .stdin(Stdio::null());
        Ok(cmd.output()?)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        ok(&out, &format!("docker compose {}", args.join(" ")))?;
        Ok(both(&out))
    }
}

/// `docker compose ps --format json`: one object per line in 2.26, one
/// array in later releases.
fn ps_json(text: &str) -> Result<Vec<Value>> {
    let text = text.trim();
    if text.starts_with('[') {
        let all: Vec<Value> = serde_json::from_str(text).context("ps JSON")?;
        return Ok(all);
    }
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("ps JSON line: {l}")))
        .collect()
}

fn field<'v>(rows: &'v [Value], service: &str, key: &str) -> &'v str {
    rows.iter()
        .find(|r| r["Service"] == service)
        .and_then(|r| r[key].as_str())
        .unwrap_or("")
}

#[test]
fn compose_v2_runs_a_ci_project() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    let ctx = Ctx::new(&[
        ("compose.yaml", COMPOSE),
        ("app/Dockerfile", DOCKERFILE),
        ("app.env", "MODE=ci\n"),
        ("token.txt", "s3cret-token\n"),
        ("settings.ini", "[db]\npool=4\n"),
    ])?;
    let compose = Compose {
        daemon: &daemon,
        dir: ctx.arg(),
    };

    // Build through buildx (BuildKit's API), then start in dependency
    // order: db healthy, migrate done, api up; --wait returns once all are.
    let up = compose.ok(&["up", "-d", "--wait"])?;
    ensure!(
        up.contains("naming to docker.io/library/shop-api") && up.contains("Healthy"),
        "up: {up}"
    );
    let page = pod_get(&pod, "http://127.0.0.1:18091/cgi-bin/q")?;
    ensure!(page.trim() == "hello api>db-row-42", "api's answer: {page}");

    let rows = ps_json(&compose.ok(&["ps", "-a", "--format", "json"])?)?;
    ensure!(field(&rows, "db", "Health") == "healthy", "db: {rows:?}");
    ensure!(field(&rows, "api", "State") == "running", "api: {rows:?}");
    ensure!(
        field(&rows, "migrate", "State") == "exited"
            && rows
                .iter()
                .any(|r| r["Service"] == "migrate" && r["ExitCode"] == 0),
        "migrate: {rows:?}"
    );
    ensure!(
        !rows.iter().any(|r| r["Service"] == "tests"),
        "a profiled service started: {rows:?}"
    );
    let logs = compose.ok(&["logs", "--no-log-prefix", "migrate"])?;
    ensure!(logs.contains("migrated"), "migrate's logs: {logs}");
    let data = compose.ok(&["exec", "-T", "db", "cat", "/data/migrated"])?;
    ensure!(data.contains("schema-v7"), "the shared volume: {data}");

    // What compose hands the api: secrets and configs (bind mounts of the
    // project's files), env_file, host-gateway.
    let seen = compose.ok(&[
        "exec",
        "-T",
        "api",
        "sh",
        "-c",
        "cat /run/secrets/token /etc/settings; echo mode=$MODE; grep host.docker.internal /etc/hosts",
    ])?;
    for want in ["s3cret-token", "pool=4", "mode=ci", "host.docker.internal"] {
        ensure!(seen.contains(want), "{want} missing from the api: {seen}");
    }

    // compose cp both ways.
    ctx.write("upload.txt", "uploaded\n")?;
    compose.ok(&["cp", &format!("{}/upload.txt", ctx.arg()), "api:/tmp/u"])?;
    // (Back into the pod's /tmp: pod root cannot write the host's dirs.)
    compose.ok(&["cp", "api:/tmp/u", "/tmp/back.txt"])?;
    let back = ok(&pod.exec("/bin/cat").arg("/tmp/back.txt").output()?, "cat")?;
    ensure!(back == "uploaded\n", "copied back: {back:?}");

    // The test service's exit code is compose's, by `run` and by `up`.
    let run = compose.run(&["--profile", "test", "run", "--rm", "-T", "tests"])?;
    ensure!(
        run.status.code() == Some(3) && both(&run).contains("got: hello api>db-row-42"),
        "run --rm tests: {}",
        printed(&run)
    );
    // (--no-deps: in 2.26 `--abort-on-container-exit` also fires on the
    // migration's exit, as it does against dockerd.)
    let up = compose.run(&[
        "--profile",
        "test",
        "up",
        "--no-deps",
        "--exit-code-from",
        "tests",
        "tests",
    ])?;
    ensure!(
        up.status.code() == Some(3) && both(&up).contains("got: hello api>db-row-42"),
        "up --exit-code-from tests: {}",
        printed(&up)
    );

    // down -v: containers, the network and the volume go; the built image
    // stays (no --rmi).
    compose.ok(&["--profile", "test", "down", "-v"])?;
    let left = daemon.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure!(left.trim().is_empty(), "containers after down: {left}");
    let volumes = daemon.docker_ok(&["volume", "ls", "-q"])?;
    ensure!(
        volumes.trim().is_empty(),
        "volumes after down -v: {volumes}"
    );
    let nets = daemon.docker_ok(&["network", "ls", "--format", "{{.Name}}"])?;
    ensure!(!nets.contains("shop_"), "networks after down: {nets}");
    daemon.docker_ok(&["image", "inspect", "shop-api"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
