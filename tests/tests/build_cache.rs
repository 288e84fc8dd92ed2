//! The build cache through a registry: `hutch build --cache-to
//! type=registry,...` on one data root, `--cache-from` on a fresh one (a CI
//! pod on another node), and `docker build --cache-from` against the daemon.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::fs;
use std::path::Path;
use std::process::Output;

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

/// `hutch --data-root ROOT ARGS` in the pod.
fn hutch(pod: &Pod, root: &str, args: &[&str]) -> Result<Output> {
    pod.exec(hutch_bin())
        .args(["--data-root", root])
        .args(args)
        .output()
        .context("running hutch in the pod")
}

/// A data root with the busybox test image loaded; returns its name.
fn fresh_root(pod: &Pod, root: &str) -> Result<String> {
    let image = testimages::busybox()?;
    let out = hutch(
        pod,
        root,
        &["load", "-i", &image.docker_archive.display().to_string()],
    )?;
    ensure!(out.status.success(), "load: {}", text(&out));
    Ok(image.reference.clone())
}

/// A successful build's (stderr log, image ID).
fn build(pod: &Pod, root: &str, args: &[&str], ctx: &Ctx) -> Result<(String, String)> {
    let mut all = vec!["build"];
    all.extend_from_slice(args);
    let arg = ctx.arg();
    all.push(&arg);
    let out = hutch(pod, root, &all)?;
    ensure!(out.status.success(), "build {args:?}: {}", text(&out));
    Ok((
        String::from_utf8_lossy(&out.stderr).to_string(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Steps printed as taken from a cache (legacy or BuildKit-style output).
fn cached_steps(log: &str) -> usize {
    log.matches("Using cache").count() + log.matches("CACHED").count()
}

const APP: &str = r#"FROM busybox
COPY a.txt /a.txt
RUN date +%s%N > /stamp && echo ran-once > /marker
ENV X=1
WORKDIR /w
RUN echo "$X" > /w/x
CMD ["cat", "/stamp"]
"#;
/// `APP` on `base`, with its context file.
fn app_context(base: &str) -> Result<Ctx> {
    Ctx::new(&[
        (
            "Dockerfile",
            &APP.replace("FROM busybox", &format!("FROM {base}")),
        ),
        ("a.txt", "context file\n"),
    ])
}

/// Steps after FROM in `APP`.
const APP_STEPS: usize = 6;

#[test]
fn cache_from_registry_on_a_fresh_root_replays_without_running() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let cache = registry.image_ref("cache/app:buildcache");
    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let ctx = app_context(&base)?;

    // Node A builds and exports (the default mode, min: all of one stage).
    let to = format!("type=registry,ref={cache}");
    let (log_a, id_a) = build(&pod, "/var/lib/hutch/a", &["--cache-to", &to], &ctx)?;
    ensure!(log_a.contains("exported 6 cache records"), "{log_a}");
    // Exporting again from cache hits pushes the very same manifest.
    let digest = || -> Result<String> {
        let out = pod
            .exec("/usr/bin/curl")
            .args([
                "-sfI",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
                &format!("{}/v2/cache/app/manifests/buildcache", registry.url()),
            ])
            .output()?;
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        head.lines()
            .find_map(|l| l.strip_prefix("docker-content-digest:"))
            .map(|d| d.trim().to_string())
            .with_context(|| format!("no manifest digest in {head}"))
    };
    let first = digest()?;
    let (again, id_again) = build(&pod, "/var/lib/hutch/a", &["--cache-to", &to], &ctx)?;
    ensure!(cached_steps(&again) == APP_STEPS, "{again}");
    ensure!(id_again == id_a, "{id_again} vs {id_a}");
    ensure!(digest()? == first, "the re-exported cache manifest differs");

    // Node B: a fresh data root (only the base image), the shorthand form.
    fresh_root(&pod, "/var/lib/hutch/b")?;
    let (log_b, id_b) = build(
        &pod,
        "/var/lib/hutch/b",
        &["-t", "app:b", "--cache-from", &cache],
        &ctx,
    )?;
    ensure!(cached_steps(&log_b) == APP_STEPS, "{log_b}");
    ensure!(!log_b.contains("Running in"), "a RUN ran: {log_b}");
    ensure!(id_b == id_a, "image IDs differ: {id_a} vs {id_b}\n{log_b}");

    // The replayed layers are real: a build on top reads them (the stamp
    // is node A's, proof the RUN did not run on B).
    let stamp = pod
        .exec("/bin/sh")
        .args(["-c", "cat /var/lib/hutch/a/layers/*/diff/stamp"])
        .output()?;
    let stamp = String::from_utf8_lossy(&stamp.stdout).trim().to_string();
    ensure!(!stamp.is_empty(), "no stamp in root A");
    let check = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM app:b\nRUN test \"$(cat /stamp)\" = {stamp} && test \"$(cat /w/x)\" = 1 \
             && cat /a.txt /marker\n"
        ),
    )])?;
    let (log_check, _) = build(&pod, "/var/lib/hutch/b", &[], &check)?;
    ensure!(log_check.contains("ran-once"), "{log_check}");

    // A cache ref that does not exist and a registry that does not answer
    // are warnings: the build runs normally.
    fresh_root(&pod, "/var/lib/hutch/c")?;
    let missing = registry.image_ref("cache/app:nothing");
    let (log_c, id_c) = build(
        &pod,
        "/var/lib/hutch/c",
        &[
            "--cache-from",
            &format!("type=registry,ref={missing}"),
            "--cache-from",
            "127.0.0.1:1/cache/app:gone",
        ],
        &ctx,
    )?;
    ensure!(
        log_c.matches("WARNING: failed to import cache").count() == 2,
        "{log_c}"
    );
    ensure!(log_c.matches("Running in").count() == 2, "{log_c}");
    ensure!(cached_steps(&log_c) == 0, "{log_c}");
    ensure!(id_c != id_a, "a rerun RUN writes a new stamp");

    // Bad options are refused before anything runs.
    for bad in [
        "type=inline,mode=max",
        "type=gha",
        "type=local",
        "type=registry",
    ] {
        let out = hutch(
            &pod,
            "/var/lib/hutch/c",
            &["build", "--cache-to", bad, &ctx.arg()],
        )?;
        ensure!(!out.status.success(), "--cache-to {bad} accepted");
        let t = text(&out);
        ensure!(t.contains("--cache-to"), "{bad}: {t}");
    }
    registry.stop()?;
    pod.stop()
}

/// The raw config of image `id` on data root `root`.
fn raw_config(pod: &Pod, root: &str, id: &str) -> Result<serde_json::Value> {
    let hex = id.trim().trim_start_matches("sha256:");
    let out = pod
        .exec("/bin/cat")
        .arg(format!("{root}/blobs/sha256/{hex}"))
        .output()?;
    ensure!(out.status.success(), "no config blob {hex}: {}", text(&out));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `BUILDKIT_INLINE_CACHE=1` (or `--cache-to type=inline`): the pushed
/// image carries its own cache. `--cache-from IMAGE` replays the steps
/// from the registry on a fresh root, or from the local store after
/// `docker pull` (the CI pattern `docker pull app || true; docker build
/// --cache-from app`), with the registry gone. An image built FROM it does
/// not inherit the cache; one without a hutch cache is a warning.
#[test]
fn inline_cache_travels_with_the_image() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let app = registry.image_ref("inline/app:1");
    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let ctx = app_context(&base)?;
    let (_, id_a) = build(
        &pod,
        "/var/lib/hutch/a",
        &["--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", &app],
        &ctx,
    )?;
    let config = raw_config(&pod, "/var/lib/hutch/a", &id_a)?;
    let records = config
        .pointer("/hutch.buildcache.v1/records")
        .and_then(|r| r.as_object())
        .context("no inline cache in the config")?;
    ensure!(records.len() == APP_STEPS, "{} records", records.len());
    let out = hutch(&pod, "/var/lib/hutch/a", &["push", &app])?;
    ensure!(out.status.success(), "push: {}", text(&out));

    // A fresh root, from the registry: nothing runs, and asking for the
    // inline cache again gives the very same image.
    fresh_root(&pod, "/var/lib/hutch/b")?;
    let (log_b, id_b) = build(
        &pod,
        "/var/lib/hutch/b",
        &["--cache-from", &app, "--cache-to", "type=inline"],
        &ctx,
    )?;
    ensure!(cached_steps(&log_b) == APP_STEPS, "{log_b}");
    ensure!(!log_b.contains("Running in"), "a RUN ran: {log_b}");
    ensure!(id_b == id_a, "image IDs differ: {id_a} vs {id_b}\n{log_b}");

    // An image without a hutch cache: a warning that says so.
    let plain_ref = registry.image_ref("inline/plain:1");
    for args in [vec!["tag", &base, &plain_ref], vec!["push", &plain_ref]] {
        let out = hutch(&pod, "/var/lib/hutch/a", &args)?;
        ensure!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let (log_plain, _) = build(
        &pod,
        "/var/lib/hutch/b",
        &["--cache-from", &plain_ref],
        &ctx,
    )?;
    ensure!(log_plain.contains("without an inline cache"), "{log_plain}");

    // Pulled, then the registry gone: the local image is the cache.
    fresh_root(&pod, "/var/lib/hutch/c")?;
    let out = hutch(&pod, "/var/lib/hutch/c", &["pull", &app])?;
    ensure!(out.status.success(), "pull: {}", text(&out));
    registry.stop()?;
    let (log_c, id_c) = build(&pod, "/var/lib/hutch/c", &["--cache-from", &app], &ctx)?;
    ensure!(cached_steps(&log_c) == APP_STEPS, "{log_c}");
    ensure!(!log_c.contains("failed to import"), "{log_c}");
    let plain = raw_config(&pod, "/var/lib/hutch/c", &id_c)?;
    ensure!(plain.get("hutch.buildcache.v1").is_none(), "{plain}");
    let out = hutch(&pod, "/var/lib/hutch/c", &["tag", &id_c, "replayed"])?;
    ensure!(out.status.success(), "tag: {}", text(&out));
    let check = Ctx::new(&[("Dockerfile", "FROM replayed\nRUN cat /marker /w/x\n")])?;
    let (log_check, _) = build(&pod, "/var/lib/hutch/c", &[], &check)?;
    ensure!(log_check.contains("ran-once\n1"), "{log_check}");

    // FROM the image with the cache: the child does not carry it.
    let child = Ctx::new(&[("Dockerfile", &format!("FROM {app}\nENV CHILD=1\n"))])?;
    let (_, id_child) = build(&pod, "/var/lib/hutch/c", &[], &child)?;
    let child_config = raw_config(&pod, "/var/lib/hutch/c", &id_child)?;
    ensure!(
        child_config.get("hutch.buildcache.v1").is_none(),
        "inherited: {child_config}"
    );

    pod.stop()
}

/// Two builds of one Dockerfile started at once on one data root (two CI
/// jobs on one daemon, bake's targets): each step runs once, the other
/// build waits for it and takes its result, so both give the same image.
#[test]
fn concurrent_builds_run_a_shared_step_once() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nARG N\nENV E=1\nRUN date +%s%N > /stamp && sleep 1 && echo ran-$((1+1))-step\n"
        ),
    )])?;
    let start = || {
        pod.exec(hutch_bin())
            .args([
                "--data-root",
                "/var/lib/hutch/a",
                "build",
                "--progress=plain",
            ])
            .args(["--build-arg", "N=1", &ctx.arg()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
    };
    let (one, two) = (start()?, start()?);
    let (one, two) = (one.wait_with_output()?, two.wait_with_output()?);
    ensure!(one.status.success(), "{}", text(&one));
    ensure!(two.status.success(), "{}", text(&two));
    let id = |o: &Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    ensure!(
        id(&one) == id(&two),
        "two images: {}\n{}",
        text(&one),
        text(&two)
    );
    let runs = text(&one).matches("ran-2-step").count() + text(&two).matches("ran-2-step").count();
    ensure!(runs == 1, "the RUN ran {runs} times");
    pod.stop()
}

const STAGES: &str = r#"FROM busybox AS compile
RUN echo compiled > /artifact && date +%s%N > /when

FROM busybox
COPY --from=compile /artifact /artifact
RUN cat /artifact > /copy
"#;

/// `mode=min` exports only the final stage's steps: another node reruns the
/// intermediate stage (its result is the same, so the final stage hits);
/// `mode=max` exports every stage: nothing runs.
#[test]
fn cache_mode_min_leaves_out_intermediate_stages_max_does_not() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let min = registry.image_ref("cache/stages:min");
    let max = registry.image_ref("cache/stages:max");
    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &STAGES.replace("FROM busybox", &format!("FROM {base}")),
    )])?;
    let (log_a, id_a) = build(
        &pod,
        "/var/lib/hutch/a",
        &[
            "--cache-to",
            &format!("type=registry,ref={min},mode=min"),
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
        ],
        &ctx,
    )?;
    ensure!(log_a.contains("exported 2 cache records"), "{log_a}");
    ensure!(log_a.contains("exported 3 cache records"), "{log_a}");

    fresh_root(&pod, "/var/lib/hutch/b")?;
    let (log_min, id_min) = build(
        &pod,
        "/var/lib/hutch/b",
        &["--cache-from", &format!("type=registry,ref={min}")],
        &ctx,
    )?;
    ensure!(log_min.matches("Running in").count() == 1, "{log_min}");
    ensure!(cached_steps(&log_min) == 2, "{log_min}");
    ensure!(id_min == id_a, "{id_min} vs {id_a}");

    fresh_root(&pod, "/var/lib/hutch/c")?;
    let (log_max, id_max) = build(
        &pod,
        "/var/lib/hutch/c",
        &["--cache-from", &format!("type=registry,ref={max}")],
        &ctx,
    )?;
    ensure!(!log_max.contains("Running in"), "{log_max}");
    ensure!(cached_steps(&log_max) == 3, "{log_max}");
    ensure!(id_max == id_a, "{id_max} vs {id_a}");
    registry.stop()?;
    pod.stop()
}

/// Changes every gzip blob the registry stores (the cache layers: nothing
/// else was pushed), keeping sizes: the gzip header's MTIME, which no
/// checksum inside the gzip covers, so the blob still decompresses to the
/// right layer and only its digest can tell (a registry lying about a
/// digest); `flip_middle` also breaks the compressed data (corruption).
fn tamper_gzip_blobs(dir: &Path, flip_middle: bool) -> Result<usize> {
    let mut n = 0;
    for entry in walk(dir)? {
        if entry.file_name().is_some_and(|f| f == "data") {
            let mut bytes = fs::read(&entry)?;
            if bytes.starts_with(&[0x1f, 0x8b]) && bytes.len() > 40 {
                bytes[4] ^= 0x01;
                if flip_middle {
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 0xff;
                }
                fs::write(&entry, &bytes)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// A registry serving cache blobs whose content is not their digest: the
/// steps run instead (with a warning), and nothing corrupt is stored.
#[test]
fn cache_blob_that_fails_its_digest_is_refused() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let cache = registry.image_ref("cache/bad:c");
    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let df = format!(
        "FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\nCMD [\"cat\", \"/b.txt\"]\n"
    );
    let ctx = Ctx::new(&[("Dockerfile", &df), ("a.txt", "intact\n")])?;
    build(
        &pod,
        "/var/lib/hutch/a",
        &["--cache-to", &format!("type=registry,ref={cache}")],
        &ctx,
    )?;
    // First a registry whose blobs have the wrong digest but the right
    // content, then one whose blobs are corrupt too.
    for (round, flip_middle) in [(0, false), (1, true)] {
        let tampered = tamper_gzip_blobs(&registry.storage_dir(), flip_middle)?;
        ensure!(tampered == 2, "tampered with {tampered} blobs");
        let root = format!("/var/lib/hutch/b{round}");
        fresh_root(&pod, &root)?;
        let (log, _) = build(
            &pod,
            &root,
            &["-t", "checked", "--cache-from", &cache],
            &ctx,
        )?;
        ensure!(
            log.matches("WARNING: the cached result from").count() == 1
                && log.contains("running the step"),
            "{log}"
        );
        if !flip_middle {
            ensure!(
                log.contains("content verification failed"),
                "not refused for its digest: {log}"
            );
        }
        ensure!(cached_steps(&log) == 0, "{log}");
        ensure!(log.contains("Running in"), "the RUN did not run: {log}");
        // The image built is whole: a RUN on top reads both layers.
        let check = Ctx::new(&[(
            "Dockerfile",
            "FROM checked\nRUN test \"$(cat /b.txt)\" = intact && cat /a.txt\n",
        )])?;
        let (log_check, _) = build(&pod, &root, &[], &check)?;
        ensure!(log_check.contains("intact"), "{log_check}");
    }
    registry.stop()?;
    pod.stop()
}

/// `docker build --cache-from REF` (the CLI's legacy builder API, the
/// `cachefrom` query parameter) imports a registry cache.
#[test]
fn docker_build_cache_from_gets_registry_cache_hits() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let cache = registry.image_ref("cache/docker:c");
    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let ctx = app_context(&base)?;
    let (_, id_a) = build(
        &pod,
        "/var/lib/hutch/a",
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
        &ctx,
    )?;

    let daemon = Daemon::start(&pod)?;
    let image = testimages::busybox()?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let out = daemon
        .docker()
        .args([
            "build",
            "--cache-from",
            &cache,
            "-t",
            "fromcache",
            &ctx.arg(),
        ])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "docker build: {t}");
    ensure!(t.matches("Using cache").count() == APP_STEPS, "{t}");
    ensure!(!t.contains("Running in"), "{t}");
    let id = daemon.docker_ok(&["image", "inspect", "-f", "{{.Id}}", "fromcache"])?;
    ensure!(id.trim() == id_a, "{} vs {id_a}", id.trim());
    let ran = daemon.docker_ok(&["run", "--rm", "fromcache", "cat", "/marker", "/w/x"])?;
    ensure!(ran == "ran-once\n1\n", "{ran}");

    // The classic pattern: BUILDKIT_INLINE_CACHE=1, push; on a daemon
    // with no cache, `--cache-from` the pushed image.
    let image = registry.image_ref("cache/docker-inline:1");
    let build_args = ["build", "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t"];
    let out = daemon
        .docker()
        .args(build_args)
        .args([&image, &ctx.arg()])
        .output()?;
    ensure!(out.status.success(), "docker build: {}", text(&out));
    daemon.docker_ok(&["push", &image])?;
    let pushed = daemon.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image])?;
    daemon.docker_ok(&["rmi", &image, "fromcache"])?;
    daemon.docker_ok(&["builder", "prune", "-af"])?;
    let out = daemon
        .docker()
        .args(build_args)
        .args([&image, "--cache-from", &image, &ctx.arg()])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "docker build: {t}");
    ensure!(t.matches("Using cache").count() == APP_STEPS, "{t}");
    let again = daemon.docker_ok(&["image", "inspect", "-f", "{{.Id}}", &image])?;
    ensure!(again == pushed, "{again} vs {pushed}");
    // A cache source of a kind hutch does not read is a 400 up front.
    let reply = daemon.request(
        "POST",
        "/build?cachefrom=%5B%22type%3Dlocal%2Csrc%3D%2Fx%22%5D",
        &["-H", "Content-Type: application/x-tar"],
    )?;
    ensure!(
        reply.status == 400 && reply.body.contains("type=local"),
        "{reply}"
    );
    daemon.stop()?;
    registry.stop()?;
    pod.stop()
}

/// A registry that needs credentials: export and import with the Docker
/// config's, as push and pull use them; without them the import is a
/// warning and the export an error (or a warning with `ignore-error=true`).
#[test]
fn cache_through_an_authenticated_registry() -> Result<()> {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::BasicAuth)?;
    let (user, pass) = registry.credentials().context("credentials")?;
    let cache = registry.image_ref("cache/auth:c");
    let parent = hutch_tests::workspace::target_dir().join("test-fixtures");
    fs::create_dir_all(&parent)?;
    let config_dir = tempfile::Builder::new()
        .prefix("docker-config-")
        .tempdir_in(&parent)?;
    fs::set_permissions(config_dir.path(), fs::Permissions::from_mode(0o755))?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let config = serde_json::json!({ "auths": { registry.host(): { "auth": auth } } });
    let config_path = config_dir.path().join("config.json");
    fs::write(&config_path, serde_json::to_vec(&config)?)?;
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o644))?;
    let docker_config = config_dir.path().to_string_lossy().into_owned();
    let run = |root: &str, args: &[&str], creds: bool| -> Result<Output> {
        let mut cmd = pod.exec(hutch_bin());
        cmd.args(["--data-root", root, "build"]).args(args);
        if creds {
            cmd.env("DOCKER_CONFIG", &docker_config);
        } else {
            cmd.env("DOCKER_CONFIG", "/nonexistent");
        }
        cmd.output().context("running hutch build")
    };

    let base = fresh_root(&pod, "/var/lib/hutch/a")?;
    let ctx = app_context(&base)?;
    let to = format!("type=registry,ref={cache}");
    // Without credentials the export fails the build, unless told not to.
    let denied = run("/var/lib/hutch/a", &["--cache-to", &to, &ctx.arg()], false)?;
    ensure!(
        !denied.status.success(),
        "export without credentials succeeded"
    );
    ensure!(
        text(&denied).contains("failed to export cache to"),
        "{}",
        text(&denied)
    );
    let lenient = format!("{to},ignore-error=true");
    let out = run(
        "/var/lib/hutch/a",
        &["--cache-to", &lenient, &ctx.arg()],
        false,
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    ensure!(
        text(&out).contains("WARNING: failed to export cache"),
        "{}",
        text(&out)
    );
    let out = run("/var/lib/hutch/a", &["--cache-to", &to, &ctx.arg()], true)?;
    ensure!(out.status.success(), "{}", text(&out));
    let id_a = String::from_utf8_lossy(&out.stdout).trim().to_string();

    fresh_root(&pod, "/var/lib/hutch/b")?;
    let anon = run(
        "/var/lib/hutch/b",
        &["--cache-from", &cache, &ctx.arg()],
        false,
    )?;
    ensure!(anon.status.success(), "{}", text(&anon));
    ensure!(
        text(&anon).contains("WARNING: failed to import cache"),
        "{}",
        text(&anon)
    );
    fresh_root(&pod, "/var/lib/hutch/c")?;
    let out = run(
        "/var/lib/hutch/c",
        &["--cache-from", &cache, &ctx.arg()],
        true,
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(cached_steps(&log) == APP_STEPS, "{log}");
    ensure!(String::from_utf8_lossy(&out.stdout).trim() == id_a, "{log}");
    registry.stop()?;
    pod.stop()
}

/// Figures (run with `--ignored --nocapture`): a cold build on a fresh data
/// root, the same with `--cache-to` (the export's cost), and one on another
/// fresh root with `--cache-from` (nothing runs; layers are pulled), as
/// ratios to the cold build measured in the same run.
#[test]
#[ignore]
fn registry_cache_figures() -> Result<()> {
    use std::time::Instant;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let cache = registry.image_ref("cache/figures:c");
    let base = fresh_root(&pod, "/var/lib/hutch/warm")?;
    let payload: String = "0123456789abcdef".repeat(16 * 1024);
    let mut files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("src/f{i}"), format!("{i}{payload}")))
        .collect();
    files.push((
        "Dockerfile".into(),
        format!(
            "FROM {base}\nCOPY src/ /src/\nRUN mkdir /gen && i=0; while [ $i -lt 1000 ]; \
             do echo $i > /gen/f$i; i=$((i+1)); done\nRUN cat /src/f1 | wc -c > /n\n"
        ),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let ctx = Ctx::new(&refs)?;
    let timed = |root: &str, args: &[&str]| -> Result<f64> {
        fresh_root(&pod, root)?;
        let t = Instant::now();
        build(&pod, root, args, &ctx)?;
        Ok(t.elapsed().as_secs_f64())
    };
    for round in 0..2 {
        let cold = timed(&format!("/var/lib/hutch/cold{round}"), &[])?;
        let to = format!("type=registry,ref={cache}");
        let export = timed(
            &format!("/var/lib/hutch/export{round}"),
            &["--cache-to", &to],
        )?;
        let import = timed(
            &format!("/var/lib/hutch/import{round}"),
            &["--cache-from", &cache],
        )?;
        println!(
            "round {round}: cold {cold:.2} s; with --cache-to {export:.2} s ({:.2}x); \
             fresh root with --cache-from {import:.2} s ({:.2}x)",
            export / cold,
            import / cold
        );
    }
    registry.stop()?;
    pod.stop()
}
