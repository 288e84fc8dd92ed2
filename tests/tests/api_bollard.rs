//! bollard, the Rust Docker client, against `hutch daemon` inside a
//! simulated pod: bollard's own integration tests (the `tests/*.rs` of its
//! crates.io package, fetched and compiled by `tests/bollard/run build`)
//! run unchanged with `DOCKER_HOST` at the daemon's socket.
//!
//! They pull `hello-world:linux`, `alpine` and `fussybeaver/uhttpd` from
//! `$REGISTRY_HTTP_ADDR`: this test builds stand-ins from the busybox test
//! image with the daemon and pushes them to Debian's docker-registry in the
//! pod, then removes them locally so the tests pull them as on a fresh host.
//!
//! Needs cargo with crates.io (the first run downloads and compiles bollard
//! and its dev-dependencies) and the `hutch` and `podsim` binaries.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{ok, printed, Daemon, DOCKER_HOST};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::{testimages, workspace};

/// Docker's hello-world prints this (its first lines; bollard's logs test
/// reads the second line).
const HELLO: &str = "#!/bin/sh\nprintf '\\nHello from Docker!\\nThis message shows that your installation appears to be working correctly.\\n\\n'\n";
/// uhttpd's start script, as bollard runs it (`-f -p 80 -h /www`): busybox
/// httpd takes the same flags.
const RUN_UHTTPD: &str = "#!/bin/sh\nexec /bin/httpd \"$@\"\n";
/// uhttpd's config as the image ships it (bollard's exec test reads line 2).
const UHTTPD_CONFIG: &str =
    "\nconfig uhttpd main\n\tlist listen_http 0.0.0.0:80\n\toption home /www\n";

/// (name in the registry, Dockerfile) of each stand-in.
fn stand_ins(base: &str) -> [(&'static str, String); 3] {
    [
        (
            "hello-world:linux",
            format!("FROM {base}\nCOPY hello /hello\nCMD [\"/hello\"]\n"),
        ),
        ("alpine:latest", format!("FROM {base}\nCMD [\"/bin/sh\"]\n")),
        (
            "fussybeaver/uhttpd:latest",
            format!(
                "FROM {base}\nCOPY run_uhttpd /usr/sbin/run_uhttpd\nCOPY index.html /www/index.html\n\
                 COPY uhttpd.config /etc/config/uhttpd\n\
                 EXPOSE 80\nCMD [\"/usr/sbin/run_uhttpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
            ),
        ),
    ]
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bollard/run")
}

/// `tests/bollard/run build` on the host (cargo and its registry cache are
/// not visible to the pod): the compiled test binaries land in the target
/// directory, which the pod can read.
fn build_suite(transport: &str) -> Result<()> {
    let started = Instant::now();
    let out = Command::new("/bin/bash")
        .arg(script())
        .arg("build")
        .env("CARGO_TARGET_DIR", workspace::target_dir())
        .env("BOLLARD_TRANSPORT", transport)
        .output()
        .context("running tests/bollard/run build")?;
    ok(&out, "tests/bollard/run build")?;
    eprintln!(
        "bollard suite ({transport}) compiled in {:?}",
        started.elapsed()
    );
    Ok(())
}

/// A pod-readable copy of the script (the checkout may be hidden from it).
fn pod_script() -> Result<PathBuf> {
    let dir = workspace::target_dir().join("bollard-suite");
    fs::create_dir_all(&dir)?;
    let copy = dir.join("run");
    fs::copy(script(), &copy).context("copying tests/bollard/run")?;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
    Ok(copy)
}

fn seed_registry(daemon: &Daemon, registry: &Registry) -> Result<()> {
    let image = testimages::busybox()?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.to_string_lossy()])?;
    let context = tempfile::Builder::new()
        .prefix("bollard-images-")
        .tempdir_in(workspace::target_dir())?;
    fs::set_permissions(context.path(), fs::Permissions::from_mode(0o755))?;
    for (name, text, mode) in [
        ("hello", HELLO, 0o755),
        ("run_uhttpd", RUN_UHTTPD, 0o755),
        ("index.html", "<html><body>bollard</body></html>\n", 0o644),
        ("uhttpd.config", UHTTPD_CONFIG, 0o644),
    ] {
        let path = context.path().join(name);
        fs::write(&path, text)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    for (i, (name, dockerfile)) in stand_ins(&image.reference).into_iter().enumerate() {
        let reference = registry.image_ref(name);
        let file = context.path().join(format!("Dockerfile.{i}"));
        fs::write(&file, dockerfile)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
        let file = file.to_string_lossy();
        let context_dir = context.path().to_string_lossy();
        daemon.docker_ok(&["build", "-q", "-t", &reference, "-f", &file, &context_dir])?;
        daemon.docker_ok(&["push", &reference])?;
        daemon.docker_ok(&["rmi", &reference])?;
    }
    daemon.docker_ok(&["rmi", &image.reference])?;
    Ok(())
}

/// `GET /distribution/{name}/json` on the wire: the manifest's descriptor
/// and the config's platform; a name the registry lacks is an error with
/// the registry's words, not a 200.
fn check_distribution(daemon: &Daemon, registry: &Registry) -> Result<()> {
    let url = format!(
        "http://d/distribution/{}/json",
        registry.image_ref("hello-world:linux")
    );
    let out = daemon.curl(&["-sf", &url]).output()?;
    let seen: serde_json::Value = serde_json::from_str(&ok(&out, "GET /distribution")?)?;
    let digest = seen["Descriptor"]["digest"].as_str().unwrap_or_default();
    ensure!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{seen}"
    );
    ensure!(
        seen["Descriptor"]["size"].as_i64().is_some_and(|n| n > 0),
        "{seen}"
    );
    ensure!(
        seen["Platforms"] == serde_json::json!([{"architecture": "amd64", "os": "linux"}])
            || std::env::consts::ARCH != "x86_64",
        "{seen}"
    );
    let missing = format!(
        "/distribution/{}/json",
        registry.image_ref("nope/nothing:latest")
    );
    let reply = daemon.request("GET", &missing, &[])?;
    ensure!(
        reply.status != 200 && reply.body.contains("message"),
        "GET /distribution of a missing name: {reply}"
    );
    Ok(())
}

/// Where the daemon also listens for the `test_http` build of the suite
/// (the pod's own network namespace: nothing outside reaches it).
const TCP_HOST: &str = "tcp://127.0.0.1:2375";

#[test]
fn bollard_integration_tests() -> Result<()> {
    build_suite("unix")?;
    build_suite("http")?;
    let script = pod_script()?;
    // Writable cgroups, as on a Docker host: bollard's pause and update
    // tests need the freezer and the memory controller.
    let pod = Pod::start(&PodSpec::new().delegate_cgroups_v1())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    // Docker's default socket too: bollard's down-versioning test dials it.
    let daemon = Daemon::start_with(&pod, &["-H", "unix:///var/run/docker.sock", "-H", TCP_HOST])?;
    seed_registry(&daemon, &registry)?;
    check_distribution(&daemon, &registry)?;
    // Over the unix socket, then the same tests over plain HTTP on TCP.
    for (transport, host) in [("unix", DOCKER_HOST), ("http", TCP_HOST)] {
        run_suite(&pod, &daemon, &registry, &script, transport, host)?;
    }
    drop(daemon);
    registry.stop()?;
    pod.stop()
}

fn run_suite(
    pod: &Pod,
    daemon: &Daemon,
    registry: &Registry,
    script: &Path,
    transport: &str,
    host: &str,
) -> Result<()> {
    let started = Instant::now();
    let out = pod
        .exec("/bin/bash")
        .arg(script)
        .arg("test")
        .args(std::env::var("BOLLARD_TEST_FILTER").ok())
        .env("CARGO_TARGET_DIR", workspace::target_dir())
        .env("BOLLARD_TRANSPORT", transport)
        .env("DOCKER_HOST", host)
        .env("REGISTRY_HTTP_ADDR", registry.host())
        .env("HOME", "/tmp")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_TLS_VERIFY")
        .output()
        .context("running bollard's tests in the pod")?;
    eprintln!("bollard suite ({transport}) ran in {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    // The daemon log of a whole suite is long: keep it in a file.
    let log = workspace::target_dir().join("bollard-suite/daemon.log");
    fs::write(&log, daemon.log())?;
    ensure!(
        out.status.success(),
        "bollard's integration tests over {transport} failed (daemon log: {}):\n{}",
        log.display(),
        printed(&out)
    );
    // Every test binary ran and reported, none failed.
    let results = text
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .count();
    ensure!(
        results >= 9,
        "expected a result from each test file:\n{text}"
    );
    ensure!(!text.contains("FAILED"), "{text}");
    Ok(())
}

/// What bollard's container tests rely on, checked on the wire: a container
/// that changed nothing has `null` changes (Docker's nil slice; bollard
/// reads `[]` as "some changes"), `HostConfig.CapAdd` of a container
/// created without capabilities is `null`, and a resize of a container
/// without a tty succeeds as a no-op.
#[test]
fn wire_details_bollard_reads() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.to_string_lossy()])?;
    daemon.docker_ok(&["run", "--name", "quiet", &image.reference, "true"])?;
    let diff = daemon.docker_ok(&["diff", "quiet"])?;
    let out = daemon
        .curl(&["-sf", "http://d/containers/quiet/changes"])
        .output()?;
    let body = ok(&out, "GET /containers/quiet/changes")?;
    ensure!(
        body.trim() == "null",
        "changes {body:?}, docker diff:\n{diff}"
    );
    ensure!(diff.is_empty(), "{diff}");

    let out = daemon
        .curl(&["-sf", "http://d/containers/quiet/json"])
        .output()?;
    let inspect: serde_json::Value = serde_json::from_str(&ok(&out, "inspect")?)?;
    ensure!(inspect["HostConfig"]["CapAdd"].is_null(), "{inspect}");
    ensure!(inspect["HostConfig"]["CapDrop"].is_null(), "{inspect}");

    daemon.docker_ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "no-tty",
        &image.reference,
        "sh",
    ])?;
    let reply = daemon.request("POST", "/containers/no-tty/resize?h=50&w=50", &[])?;
    ensure!(reply.status == 200, "resize without a tty: {reply}");
    // A killed container is down when the kill returns: remove needs no wait.
    daemon.docker_ok(&["kill", "no-tty"])?;
    daemon.docker_ok(&["rm", "no-tty"])?;
    drop(daemon);
    pod.stop()
}
