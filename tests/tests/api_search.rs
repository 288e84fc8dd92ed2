//! `GET /images/search` (`docker search`, docker-py's `images.search`)
//! against Debian's docker-registry inside a simulated pod. The registry
//! has no v1 search API, so hutch reads its v2 catalog (page by page)
//! filtered by the term, as Podman does. No request goes to Docker Hub:
//! every term names a registry the test runs.
//!
//! Needs the `hutch` binary built first (`cargo build --workspace`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::BuildContext;
use hutch_tests::daemon::{ok, printed, Daemon};
use hutch_tests::http_fixture::HttpFixture;
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

/// More repositories than one catalog page (100) holds, all sorting before
/// the ones searched for, so finding those takes a second page.
const FILLERS: usize = 105;

/// Makes `to` another repository of the registry, sharing `from`'s
/// content (the filesystem driver keeps a repository as a directory of
/// links to blobs).
fn clone_repository(storage: &Path, from: &str, to: &str) -> Result<()> {
    let repos = storage.join("docker/registry/v2/repositories");
    let target = repos.join(to);
    std::fs::create_dir_all(target.parent().context("repository parent")?)?;
    let out = Command::new("cp")
        .arg("-a")
        .arg(repos.join(from))
        .arg(&target)
        .output()?;
    ensure!(out.status.success(), "cp: {}", printed(&out));
    Ok(())
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn docker_search_plain_registry() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    registry.push(&pod, &image, "hutch-test/busybox:latest")?;
    let storage = registry.storage_dir();
    clone_repository(&storage, "hutch-test/busybox", "team/busybox-extra")?;
    clone_repository(&storage, "hutch-test/busybox", "other/alpine")?;
    for n in 0..FILLERS {
        clone_repository(
            &storage,
            "hutch-test/busybox",
            &format!("aaa/filler-{n:03}"),
        )?;
    }
    let daemon = Daemon::start(&pod)?;
    let host = format!("localhost:{}", registry.addr().port());
    let busybox = format!("{host}/hutch-test/busybox");
    let extra = format!("{host}/team/busybox-extra");

    // The table the CLI prints, with names as host:port/repo.
    let table = daemon.docker_ok(&["search", &format!("{host}/busy")])?;
    ensure!(table.starts_with("NAME"), "{table}");
    ensure!(
        table.contains(&busybox) && table.contains(&extra),
        "{table}"
    );
    ensure!(!table.contains("alpine"), "{table}");

    // --format, past the first catalog page.
    let names = daemon.docker_ok(&["search", "--format", "{{.Name}}", &format!("{host}/busy")])?;
    ensure!(
        lines(&names) == [busybox.as_str(), extra.as_str()],
        "{names}"
    );
    let stars = daemon.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}|{{.StarCount}}|{{.IsOfficial}}|{{.Description}}",
        &format!("{host}/busybox-extra"),
    ])?;
    ensure!(lines(&stars) == [format!("{extra}|0||")], "{stars}");

    // A full match comes first.
    let exact = daemon.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}",
        "--limit",
        "1",
        &format!("{host}/team/busybox-extra"),
    ])?;
    ensure!(lines(&exact) == [extra.as_str()], "{exact}");

    // --limit: at most that many; the default is 25; 100 is the most.
    let one = daemon.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}",
        "--limit",
        "1",
        &format!("{host}/busy"),
    ])?;
    ensure!(lines(&one).len() == 1, "{one}");
    let default =
        daemon.docker_ok(&["search", "--format", "{{.Name}}", &format!("{host}/filler")])?;
    ensure!(lines(&default).len() == 25, "{default}");
    let hundred = daemon.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}",
        "--limit",
        "100",
        &format!("{host}/filler"),
    ])?;
    ensure!(lines(&hundred).len() == 100, "{hundred}");
    let everything = daemon.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}",
        "--limit",
        "100",
        &format!("{host}/"),
    ])?;
    ensure!(lines(&everything).len() == 100, "{everything}");

    // Filters: catalog entries have no stars and are not official.
    let starred = daemon.docker_ok(&[
        "search",
        "--filter",
        "stars=1",
        "--format",
        "{{.Name}}",
        &format!("{host}/busy"),
    ])?;
    ensure!(lines(&starred).is_empty(), "{starred}");
    let unstarred = daemon.docker_ok(&[
        "search",
        "--filter",
        "stars=0",
        "--format",
        "{{.Name}}",
        &format!("{host}/busy"),
    ])?;
    ensure!(lines(&unstarred).len() == 2, "{unstarred}");
    let official = daemon.docker_ok(&[
        "search",
        "--filter",
        "is-official=true",
        "--format",
        "{{.Name}}",
        &format!("{host}/busy"),
    ])?;
    ensure!(lines(&official).is_empty(), "{official}");
    let unofficial = daemon.docker_ok(&[
        "search",
        "--filter",
        "is-official=false",
        "--format",
        "{{.Name}}",
        &format!("{host}/busy"),
    ])?;
    ensure!(lines(&unofficial).len() == 2, "{unofficial}");
    let automated = daemon.docker_ok(&[
        "search",
        "--filter",
        "is-automated=true",
        "--format",
        "{{.Name}}",
        &format!("{host}/busy"),
    ])?;
    ensure!(lines(&automated).is_empty(), "{automated}");
    let nothing = daemon.docker_ok(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{host}/no-such-thing"),
    ])?;
    ensure!(lines(&nothing).is_empty(), "{nothing}");

    // Bad input: Docker's messages.
    for (args, expected) in [
        (
            vec!["--limit", "101"],
            "limit 101 is outside the range of [1, 100]",
        ),
        (
            vec!["--filter", "stars=many"],
            "invalid filter 'stars=many'",
        ),
        (vec!["--filter", "color=red"], "invalid filter 'color'"),
    ] {
        let out = daemon
            .docker()
            .arg("search")
            .args(&args)
            .arg(format!("{host}/busy"))
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && err.contains(expected),
            "{args:?}: {}",
            printed(&out)
        );
    }
    // The CLI sends no limit below 1; a raw request gets the range error.
    let said = daemon.request(
        "GET",
        &format!("/images/search?term={host}/busy&limit=-3"),
        &[],
    )?;
    ensure!(
        said.status == 400
            && said
                .body
                .contains("limit -3 is outside the range of [1, 100]"),
        "{said}"
    );
    let scheme = daemon
        .docker()
        .args(["search", "http://localhost/x"])
        .output()?;
    ensure!(
        !scheme.status.success()
            && String::from_utf8_lossy(&scheme.stderr).contains("should not have a scheme"),
        "{}",
        printed(&scheme)
    );

    // A registry that is not there: a clear error, at once.
    let started = Instant::now();
    let refused = daemon
        .docker()
        .args(["search", "127.0.0.1:1/busy"])
        .output()?;
    let err = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && err.contains("couldn't search registry 127.0.0.1:1"),
        "{}",
        printed(&refused)
    );
    ensure!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    // docker-py.
    let script = format!(
        r#"
import json, docker
c = docker.from_env()
seen = {{}}
seen["names"] = [r["name"] for r in c.images.search("{host}/busy")]
seen["shape"] = sorted(c.images.search("{host}/busybox-extra")[0].keys())
seen["limited"] = len(c.images.search("{host}/filler", limit=3))
try:
    c.images.search("{host}/busy", limit=500)
    seen["bad_limit"] = "no error"
except docker.errors.APIError as e:
    seen["bad_limit"] = [e.status_code, e.explanation]
print(json.dumps(seen))
"#
    );
    let py = daemon.venv_python().args(["-c", &script]).output()?;
    let text = ok(&py, "docker-py search")?;
    let seen: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))?;
    ensure!(
        seen["names"] == serde_json::json!([busybox, extra]),
        "{seen}"
    );
    ensure!(
        seen["shape"]
            == serde_json::json!([
                "description",
                "is_automated",
                "is_official",
                "name",
                "star_count"
            ]),
        "{seen}"
    );
    ensure!(seen["limited"] == 3, "{seen}");
    ensure!(
        seen["bad_limit"] == serde_json::json!([400, "limit 500 is outside the range of [1, 100]"]),
        "{seen}"
    );
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_search_needs_the_login_of_an_htpasswd_registry() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::BasicAuth)?;
    registry.push(&pod, &image, "private/busybox:latest")?;
    let (user, password) = registry
        .credentials()
        .context("the htpasswd registry has credentials")?;
    let daemon = Daemon::start(&pod)?;
    let host = format!("localhost:{}", registry.addr().port());
    let term = format!("{host}/busy");

    // Without credentials the catalog is refused: a 403 saying to log in
    // (a 401 would make the CLI prompt for a login, and hang without a
    // terminal).
    let anonymous = daemon
        .docker()
        .args(["search", &term])
        .stdin(std::process::Stdio::null())
        .output()?;
    ensure!(
        !anonymous.status.success()
            && String::from_utf8_lossy(&anonymous.stderr)
                .contains(&format!("log in with `docker login {host}`")),
        "{}",
        printed(&anonymous)
    );
    let reply = daemon.request("GET", &format!("/images/search?term={term}"), &[])?;
    ensure!(reply.status == 403, "{reply}");

    let login = daemon
        .docker()
        .args(["login", "-u", user, "-p", password, &host])
        .output()?;
    ok(&login, "docker login")?;
    // The CLI sends the stored credentials with X-Registry-Auth.
    let names = daemon.docker_ok(&["search", "--format", "{{.Name}}", &term])?;
    ensure!(
        lines(&names) == [format!("{host}/private/busybox")],
        "{names}"
    );

    // A wrong password is refused by the registry: 403 again.
    let wrong = serde_json::json!({"username": user, "password": "wrong", "serveraddress": host});
    let header = base64_url(&wrong.to_string());
    let reply = daemon.request(
        "GET",
        &format!("/images/search?term={term}"),
        &["-H", &format!("X-Registry-Auth: {header}")],
    )?;
    ensure!(reply.status == 403, "{reply}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn docker_search_gives_up_on_a_stalled_registry() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let root = BuildContext::new(&[])?;
    // Answers /v1/search with 404, and never answers /v2/ requests.
    let port = 5099;
    let _fixture = HttpFixture::start(&pod, port, root.path())?;
    let daemon = Daemon::start(&pod)?;
    let started = Instant::now();
    let out = daemon
        .docker()
        .args(["search", &format!("127.0.0.1:{port}/busy")])
        .output()?;
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains(&format!("couldn't search registry 127.0.0.1:{port}")),
        "{}",
        printed(&out)
    );
    ensure!(took < Duration::from_secs(60), "gave up after {took:?}");
    // The daemon still serves.
    daemon.docker_ok(&["version"])?;
    daemon.stop()?;
    pod.stop()
}

/// `X-Registry-Auth` encoding: base64url of the JSON.
fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(text)
}
