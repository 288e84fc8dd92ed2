//! Wire details real clients depend on, checked with raw HTTP inside the
//! pod (curl over the unix socket, and stdlib-only Python for concurrency
//! and hangups): ping headers, version bounds, Docker's error shapes and
//! texts, JSON body handling, filters, flushed event streams, 1,000
//! concurrent requests, clients that disconnect mid-stream, and a clean
//! SIGTERM shutdown.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon, SOCKET};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

/// A response as curl `-i` printed it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {self:?}"))
    }

    fn message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// `curl -si` (plus `extra`) against the daemon; the daemon's answer parsed.
fn curl(daemon: &Daemon, method: &str, path: &str, extra: &[&str]) -> Result<Reply> {
    let url = format!("http://d{path}");
    let mut args = vec!["-si", "-X", method];
    if method == "HEAD" {
        args = vec!["-sI"];
    }
    args.extend_from_slice(extra);
    args.push(&url);
    let out = daemon.curl(&args).output()?;
    let text = ok(&out, &format!("curl {method} {path}"))?;
    parse_reply(&text)
}

/// POSTs the tar file `archive` to `path`.
fn post_archive(daemon: &Daemon, path: &str, archive: &std::path::Path) -> Result<Reply> {
    let data = format!("@{}", archive.display());
    curl(
        daemon,
        "POST",
        path,
        &[
            "-H",
            "Content-Type: application/x-tar",
            "--data-binary",
            &data,
        ],
    )
}

fn parse_reply(mut text: &str) -> Result<Reply> {
    // curl's `Expect: 100-continue` gets an interim head first.
    while text.starts_with("HTTP/1.1 100") {
        text = text.split_once("\r\n\r\n").map_or("", |(_, rest)| rest);
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn wire_py(daemon: &Daemon, args: &[&str]) -> Result<serde_json::Value> {
    let out = daemon
        .system_python()
        .arg(client_script("wire.py"))
        .args(args)
        .output()?;
    let text = ok(&out, &format!("wire.py {args:?}"))?;
    serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))
}

#[test]
fn ping_version_and_errors() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;

    // HEAD /_ping: Content-Length 0, no body, Docker's headers.
    let head = curl(&daemon, "HEAD", "/_ping", &[])?;
    ensure!(head.status == 200, "{head:?}");
    ensure!(head.body.is_empty(), "{head:?}");
    for (k, v) in [
        ("content-length", "0"),
        ("api-version", "1.50"),
        ("ostype", "linux"),
        ("builder-version", "1"),
        ("swarm", "inactive"),
        ("docker-experimental", "false"),
        ("cache-control", "no-cache, no-store, must-revalidate"),
        ("pragma", "no-cache"),
    ] {
        ensure!(
            head.headers.get(k).map(String::as_str) == Some(v),
            "{k}: {v} missing: {head:?}"
        );
    }
    let get = curl(&daemon, "GET", "/_ping", &[])?;
    ensure!(get.status == 200 && get.body == "OK", "{get:?}");
    // moby adds these to every response, errors included.
    let versioned = curl(&daemon, "GET", "/v1.24/version", &[])?;
    ensure!(versioned.status == 200, "{versioned:?}");
    ensure!(versioned.headers.contains_key("server"), "{versioned:?}");

    let too_new = curl(&daemon, "GET", "/v1.51/version", &[])?;
    ensure!(too_new.status == 400, "{too_new:?}");
    ensure!(
        too_new.message()
            == "client version 1.51 is too new. Maximum supported API version is 1.50",
        "{too_new:?}"
    );
    ensure!(too_new.headers.get("api-version").map(String::as_str) == Some("1.50"));
    let too_old = curl(&daemon, "GET", "/v1.12/_ping", &[])?;
    ensure!(
        too_old.status == 400 && too_old.message().contains("too old"),
        "{too_old:?}"
    );

    for path in ["/nope", "/v1.50/containers", "/v1.50/images/x/frobnicate"] {
        let r = curl(&daemon, "GET", path, &[])?;
        ensure!(
            r.status == 404 && r.message() == "page not found",
            "{path}: {r:?}"
        );
    }
    let swarm = curl(&daemon, "GET", "/v1.50/swarm", &[])?;
    ensure!(
        swarm.status == 503
            && swarm
                .message()
                .starts_with("This node is not a swarm manager."),
        "{swarm:?}"
    );
    let services = curl(&daemon, "GET", "/services", &[])?;
    ensure!(services.status == 503, "{services:?}");
    let plugins = curl(&daemon, "GET", "/plugins", &[])?;
    ensure!(
        plugins.status == 200 && plugins.json()? == serde_json::json!([]),
        "{plugins:?}"
    );
    let plugin = curl(&daemon, "GET", "/plugins/vieux/sshfs/json", &[])?;
    ensure!(
        plugin.status == 404 && plugin.message().contains("not found"),
        "{plugin:?}"
    );
    // Attach over a WebSocket: a missing container is a 404 before the
    // handshake is judged (the endpoint itself: tests/tests/api_attach_ws.rs).
    let ws = curl(&daemon, "GET", "/v1.50/containers/abc/attach/ws", &[])?;
    ensure!(
        ws.status == 404 && ws.message().contains("No such container"),
        "{ws:?}"
    );

    // JSON bodies: malformed, empty, wrong type, too big → 400/413 with
    // a clear message; unknown fields are ignored (the request gets past
    // parsing to the login itself, aimed at a loopback port where nothing
    // listens: tests never reach outside the machine).
    let json = ["-H", "Content-Type: application/json"];
    let bad = curl(
        &daemon,
        "POST",
        "/auth",
        &[&json[..], &["-d", "{\"username\":"]].concat(),
    )?;
    ensure!(
        bad.status == 400 && bad.message().starts_with("invalid JSON:"),
        "{bad:?}"
    );
    let empty = curl(&daemon, "POST", "/auth", &json)?;
    ensure!(
        empty.status == 400 && empty.message().contains("EOF"),
        "{empty:?}"
    );
    let text_type = curl(
        &daemon,
        "POST",
        "/auth",
        &["-H", "Content-Type: text/plain", "-d", "{}"],
    )?;
    ensure!(
        text_type.status == 400 && text_type.message().contains("unsupported Content-Type"),
        "{text_type:?}"
    );
    let unknown = curl(
        &daemon,
        "POST",
        "/auth",
        &[
            &json[..],
            &[
                "-d",
                r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:1","NoSuchField":[1,2]}"#,
            ],
        ]
        .concat(),
    )?;
    ensure!(
        unknown.status == 500 && unknown.message().contains("login to 127.0.0.1:1"),
        "{unknown:?}"
    );
    let big = daemon
        .pod()
        .exec("/bin/sh")
        .arg("-c")
        .arg(format!(
            "head -c 5000000 /dev/zero | tr '\\0' ' ' | /usr/bin/curl -s -o /dev/null -w '%{{http_code}}' \
             --unix-socket {SOCKET} -H 'Content-Type: application/json' --data-binary @- http://d/auth"
        ))
        .output()?;
    let code = ok(&big, "oversized body")?;
    ensure!(code == "413", "oversized JSON body answered {code}");

    ensure!(daemon.stop()?.success(), "the daemon did not stop cleanly");
    pod.stop()
}

#[test]
fn filters_streams_concurrency_and_hangups() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;

    // An event stream's 200 head is flushed before any event exists.
    let events = daemon
        .curl(&["-sN", "-i", "--max-time", "1", "http://d/events"])
        .output()?;
    let text = String::from_utf8_lossy(&events.stdout);
    ensure!(
        text.starts_with("HTTP/1.1 200"),
        "no event-stream head within 1s: {text:?}"
    );

    let load = post_archive(&daemon, "/v1.50/images/load?quiet=1", &image.docker_archive)?;
    ensure!(load.status == 200, "{load:?}");
    let line: serde_json::Value = serde_json::from_str(load.body.trim())?;
    ensure!(
        line["stream"] == format!("Loaded image: {}\n", image.reference),
        "{load:?}"
    );

    // Without quiet (docker-py's default, the CLI's on a terminal) each
    // unpacked layer's "Loading layer" progress comes first, by diff ID,
    // up to the blob's size, as moby.
    let volumes = testimages::volumes()?;
    let load = post_archive(&daemon, "/v1.50/images/load", &volumes.docker_archive)?;
    ensure!(load.status == 200, "{load:?}");
    let lines: Vec<serde_json::Value> = load
        .body
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let progress: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["status"] == "Loading layer")
        .collect();
    ensure!(!progress.is_empty(), "no progress: {load:?}");
    for p in &progress {
        let detail = &p["progressDetail"];
        ensure!(
            p["id"].as_str().map(str::len) == Some(12)
                && detail["current"].as_u64() <= detail["total"].as_u64()
                && detail["total"].as_u64().is_some_and(|t| t > 0),
            "{p}"
        );
    }
    let finals = progress
        .iter()
        .filter(|p| p["progressDetail"]["current"] == p["progressDetail"]["total"])
        .count();
    let layers = progress
        .iter()
        .map(|p| p["id"].as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    ensure!(finals == layers, "each layer ends at its size: {load:?}");
    ensure!(
        lines.last().map(|l| l["stream"].clone())
            == Some(serde_json::json!(format!(
                "Loaded image: {}\n",
                volumes.reference
            ))),
        "{load:?}"
    );
    let removed = curl(
        &daemon,
        "DELETE",
        &format!("/v1.50/images/{}", volumes.reference),
        &[],
    )?;
    ensure!(removed.status == 200, "{removed:?}");

    // Filters in both shapes clients send; unknown keys refused.
    let go_form = r#"{"reference":{"hutch-test/*":true}}"#;
    let py_form = r#"{"reference":["hutch-test/*"]}"#;
    for filters in [go_form, py_form] {
        let r = curl(
            &daemon,
            "GET",
            "/images/json",
            &["-G", "--data-urlencode", &format!("filters={filters}")],
        )?;
        let list = r.json()?;
        ensure!(
            list.as_array().map(Vec::len) == Some(1)
                && list[0]["Id"] == image.config_digest.as_str(),
            "{filters}: {r:?}"
        );
        ensure!(
            list[0]["SharedSize"] == -1 && list[0]["Containers"] == -1,
            "{r:?}"
        );
    }
    let none = curl(
        &daemon,
        "GET",
        "/images/json",
        &["-G", "--data-urlencode", r#"filters={"dangling":["true"]}"#],
    )?;
    ensure!(none.json()? == serde_json::json!([]), "{none:?}");
    let bad = curl(
        &daemon,
        "GET",
        "/images/json",
        &["-G", "--data-urlencode", r#"filters={"color":["red"]}"#],
    )?;
    ensure!(
        bad.status == 400 && bad.message() == "invalid filter 'color'",
        "{bad:?}"
    );
    let missing = curl(&daemon, "GET", "/images/nope/json", &[])?;
    ensure!(
        missing.status == 404 && missing.message() == "No such image: nope",
        "{missing:?}"
    );

    // 1,000 requests in flight at once, all answered.
    let burst = wire_py(&daemon, &["concurrent", "1000"])?;
    ensure!(
        burst["ok"] == 1000,
        "not every request was answered: {burst}"
    );

    // A client that leaves /events: its subscription ends with it.
    let left = wire_py(&daemon, &["disconnect-events"])?;
    ensure!(left["status"] == 200, "{left}");
    ensure!(
        left["head_seconds"].as_f64().is_some_and(|s| s < 1.0),
        "{left}"
    );
    ensure!(left["listeners_during"] == 1, "{left}");
    ensure!(
        left["listeners_after"] == 0,
        "the /events task outlived its client: {left}"
    );

    // A client that leaves mid-save: the save stops, its files close, and
    // the daemon keeps serving.
    let before = wire_py(&daemon, &["info"])?["NFd"].as_i64().unwrap_or(0);
    let reference = image.reference.as_str();
    let cut = wire_py(&daemon, &["disconnect-save", reference])?;
    ensure!(cut["status"] == 200, "{cut}");
    ensure!(
        cut["fds_after"].as_i64().is_some_and(|n| n <= before),
        "fds grew after an abandoned save ({before} before): {cut}"
    );
    ensure!(
        daemon.log().contains("image save ended early"),
        "the save did not notice its client leaving:\n{}",
        daemon.log()
    );
    let ping = curl(&daemon, "GET", "/_ping", &[])?;
    ensure!(ping.body == "OK", "{ping:?}");

    // SIGTERM: a clean exit that removes the socket.
    ensure!(daemon.stop()?.success(), "the daemon did not stop cleanly");
    let gone = pod.exec("/usr/bin/test").args(["-e", SOCKET]).status()?;
    ensure!(!gone.success(), "the socket outlived the daemon");
    pod.stop()
}

/// Makes a CA and a server and a client certificate signed by it, in a
/// directory pod root can read (test-only keys).
fn make_certs(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()?;
        ok(&out, &format!("openssl {args:?}")).map(drop)
    };
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=hutch-test-ca",
            ],
        ]
        .concat(),
    )?;
    for who in ["server", "client"] {
        let key = format!("{who}-key.pem");
        let csr = format!("{who}.csr");
        let cert = format!("{who}-cert.pem");
        let ext = format!("{who}.ext");
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN={who}"),
                ],
            ]
            .concat(),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "1",
            "-extfile",
            &ext,
        ])?;
    }
    for entry in std::fs::read_dir(dir)? {
        std::fs::set_permissions(entry?.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

#[test]
fn tcp_with_mutual_tls() -> Result<()> {
    // Under the workspace's target dir: the pod has its own /tmp.
    let certs = tempfile::tempdir_in(hutch_tests::workspace::target_dir())?;
    make_certs(certs.path())?;
    let path = |name: &str| certs.path().join(name).display().to_string();
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start_with(
        &pod,
        &[
            "-H",
            "tcp://127.0.0.1:2376",
            "--tlsverify",
            "--tlscacert",
            &path("ca.pem"),
            "--tlscert",
            &path("server-cert.pem"),
            "--tlskey",
            &path("server-key.pem"),
        ],
    )?;

    // The docker CLI with a client certificate the CA signed gets in.
    let version = daemon
        .docker()
        .env_remove("DOCKER_HOST")
        .args(["--tlsverify", "--tlscacert", &path("ca.pem")])
        .args([
            "--tlscert",
            &path("client-cert.pem"),
            "--tlskey",
            &path("client-key.pem"),
        ])
        .args([
            "-H",
            "tcp://127.0.0.1:2376",
            "version",
            "--format",
            "{{.Server.Platform.Name}}",
        ])
        .output()?;
    ensure!(ok(&version, "docker over mutual TLS")?.trim() == "hutch");

    // Without a client certificate, or without TLS, nobody gets in.
    let anonymous = daemon
        .pod()
        .exec("/usr/bin/curl")
        .args([
            "-s",
            "--cacert",
            &path("ca.pem"),
            "https://127.0.0.1:2376/_ping",
        ])
        .output()?;
    ensure!(
        !anonymous.status.success() && anonymous.stdout.is_empty(),
        "a client without a certificate was served: {anonymous:?}"
    );
    let plain = daemon
        .pod()
        .exec("/usr/bin/curl")
        .args(["-s", "--max-time", "5", "http://127.0.0.1:2376/_ping"])
        .output()?;
    ensure!(
        plain.stdout != b"OK",
        "plain HTTP was served on the TLS port: {plain:?}"
    );
    // The unix socket is unaffected.
    let ping = curl(&daemon, "GET", "/_ping", &[])?;
    ensure!(ping.body == "OK", "{ping:?}");

    ensure!(daemon.stop()?.success(), "the daemon did not stop cleanly");
    pod.stop()
}

/// Every `METHOD /path` of the daemon's route table, read from the route
/// modules' `route!(METHOD "/path" => ...)` lines, so a new route is in the
/// storm below without anyone listing it.
fn route_table() -> Result<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/src/server/routes");
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let text = std::fs::read_to_string(entry?.path())?;
        for rest in text.split("route!(").skip(1) {
            let Some((method, tail)) = rest.split_once(' ') else {
                continue;
            };
            let Some(path) = tail.strip_prefix('"').and_then(|t| t.split('"').next()) else {
                continue;
            };
            routes.push(format!("{method} {path}"));
        }
    }
    ensure!(
        routes.len() > 50,
        "only {} routes found in {}",
        routes.len(),
        dir.display()
    );
    Ok(routes)
}

/// A seeded storm of malformed requests on every route (see
/// `clients/request_storm.py`): each ends in an answer with Docker's error
/// body, a client's mistake is never a 5xx, no request hangs, no handler
/// panics, and the daemon keeps answering throughout. Routes that reach a
/// registry answer 500 here when it is unreachable, as dockerd's do.
#[test]
fn malformed_request_storm() -> Result<()> {
    use std::io::Write;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    // The names the storm aims at, so some requests reach deep code.
    daemon.docker_ok(&["create", "--name", "c1", "busybox", "true"])?;
    daemon.docker_ok(&["run", "-d", "--name", "c2", "busybox", "sleep", "600"])?;
    daemon.docker_ok(&["network", "create", "n1"])?;
    daemon.docker_ok(&["volume", "create", "v1"])?;
    let routes = route_table()?.join("\n");
    let server_side = "/distribution,/images/search,/auth,/images/create,/images/{name:.*}/push";
    for seed in 1..=2 {
        let mut storm = daemon
            .system_python()
            .arg(client_script("request_storm.py"))
            .args([&seed.to_string(), "900", "--server-side", server_side])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        storm
            .stdin
            .take()
            .context("the storm's stdin")?
            .write_all(routes.as_bytes())?;
        let out = storm.wait_with_output()?;
        let text = ok(&out, &format!("request_storm.py seed {seed}"))?;
        let report: serde_json::Value =
            serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))?;
        ensure!(report["sent"] == 900, "seed {seed}: {report}");
        let flagged = report["flagged"].as_array().context("no flagged list")?;
        ensure!(
            flagged.is_empty(),
            "seed {seed}: {} requests answered wrongly:\n{}",
            flagged.len(),
            flagged
                .iter()
                .map(|f| f.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let log = daemon.log();
    ensure!(!log.contains("panicked"), "a handler panicked:\n{log}");
    Ok(())
}
