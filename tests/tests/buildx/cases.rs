//! `docker build` through buildx's `docker` driver: the real buildx plugin
//! (Debian's, installed by tests/install-deps; `super::BUILDX` says which:
//! api_buildx runs these with the current one, api_buildx_0_13 with
//! Debian 13's) drives the daemon's BuildKit
//! API (`/grpc`, `/session`) in a simulated pod, the context travelling by
//! fsutil's DiffCopy from the client. The builder behind it is hutch's own,
//! so these tests check the conversation and what reaches the image: the
//! build's steps as BuildKit progress, the context and `.dockerignore`,
//! build arguments and labels, `--iidfile`/`--metadata-file`, a Dockerfile
//! outside the context, large and many files, errors as BuildKit words
//! them, `--push` with the CLI's credentials, registry caches both ways,
//! image archives to the client, and what hutch does not have refused.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::process::Output;

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{ok, printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;
use sha2::{Digest, Sha256};

use super::BUILDX;

fn load_busybox(daemon: &Daemon) -> Result<String> {
    let image = testimages::busybox()?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    Ok(image.reference.clone())
}

/// `docker ARGS` with the buildx plugin.
fn buildx(daemon: &Daemon, args: &[&str]) -> Result<Output> {
    Ok(daemon.docker_buildx_of(BUILDX)?.args(args).output()?)
}

#[test]
fn buildx_builds_with_the_docker_driver() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;

    // buildx finds BuildKit behind the daemon: the docker driver, running.
    let ls = buildx(&daemon, &["buildx", "ls"])?;
    let listing = ok(&ls, "docker buildx ls")?;
    ensure!(
        listing.contains("docker") && listing.contains("running"),
        "{listing}"
    );
    ensure!(listing.contains("linux/amd64"), "{listing}");

    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!(
                "FROM {base}\nARG GREETING=hi\nRUN echo \"say $GREETING\" > /greeting\n\
                 COPY . /src/\nRUN cat /src/sub/data\nLABEL stage=one\n"
            ),
        ),
        (".dockerignore", "secret.txt\n*.log\n"),
        ("sub/data", "payload\n"),
        ("secret.txt", "never sent\n"),
        ("debug.log", "never sent\n"),
    ])?;
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--build-arg",
            "GREETING=hello",
            "--label",
            "by=buildx",
            "--iidfile",
            "/tmp/iid",
            "--metadata-file",
            "/tmp/meta.json",
            "-t",
            "bx:1",
            &ctx.arg(),
        ],
    )?;
    let progress = text(&out);
    ensure!(out.status.success(), "{progress}");
    // BuildKit's progress, as buildx prints it.
    for want in [
        "building with \"default\" instance using docker driver",
        "[internal] load build definition from Dockerfile",
        "[internal] load .dockerignore",
        "[internal] load build context",
        "transferring context:",
        "RUN echo \"say $GREETING\" > /greeting",
        "payload",
        "exporting to image",
        "naming to docker.io/library/bx:1",
    ] {
        ensure!(progress.contains(want), "no {want:?} in:\n{progress}");
    }

    // The image: the build argument, the context without what
    // .dockerignore excludes, the labels.
    let run = daemon.docker_ok(&[
        "run",
        "--rm",
        "bx:1",
        "sh",
        "-c",
        "cat /greeting /src/sub/data; ls -a /src",
    ])?;
    ensure!(
        run.contains("say hello") && run.contains("payload"),
        "{run}"
    );
    ensure!(
        !run.contains("secret.txt") && !run.contains("debug.log"),
        "excluded files reached the image: {run}"
    );
    let labels = daemon.docker_ok(&["inspect", "-f", "{{json .Config.Labels}}", "bx:1"])?;
    ensure!(
        labels.contains("\"by\":\"buildx\"") && labels.contains("\"stage\":\"one\""),
        "{labels}"
    );

    // --iidfile and --metadata-file carry the image ID.
    let id = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "bx:1"])?;
    let iid = ok(&pod.exec("/bin/cat").arg("/tmp/iid").output()?, "cat iid")?;
    ensure!(iid.trim() == id.trim(), "iidfile {iid:?}, image {id:?}");
    let meta = ok(
        &pod.exec("/bin/cat").arg("/tmp/meta.json").output()?,
        "cat metadata",
    )?;
    let meta: serde_json::Value = serde_json::from_str(&meta).context("metadata-file")?;
    ensure!(
        meta["containerimage.digest"].as_str() == Some(id.trim()),
        "{meta}"
    );
    ensure!(meta["image.name"].as_str() == Some("bx:1"), "{meta}");

    // A second build of the same context is served from the cache.
    let again = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--build-arg",
            "GREETING=hello",
            "-t",
            "bx:2",
            &ctx.arg(),
        ],
    )?;
    let again_text = text(&again);
    ensure!(again.status.success(), "{again_text}");
    ensure!(again_text.contains("CACHED"), "{again_text}");

    // The build cache through BuildKit's API: `buildx du` lists the
    // cached steps, `builder prune` (buildx's, with the plugin) empties it.
    let du = ok(
        &buildx(&daemon, &["buildx", "du", "--verbose"])?,
        "buildx du",
    )?;
    ensure!(du.contains("Reclaimable:") && du.contains("RUN"), "{du}");
    let prune = ok(
        &buildx(&daemon, &["builder", "prune", "-f"])?,
        "builder prune",
    )?;
    ensure!(prune.contains("Total:"), "{prune}");
    let df = daemon.docker_ok(&["system", "df", "--format", "{{.Type}}|{{.TotalCount}}"])?;
    ensure!(df.contains("Build Cache|0"), "the prune left records: {df}");
    let du = ok(&buildx(&daemon, &["buildx", "du"])?, "buildx du")?;
    ensure!(du.contains("Total:") && du.contains("0B"), "{du}");

    // -q prints the image ID alone.
    let quiet = buildx(&daemon, &["build", "-q", "-t", "bx:3", &ctx.arg()])?;
    let quiet_id = ok(&quiet, "docker build -q")?;
    let id3 = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "bx:3"])?;
    ensure!(
        quiet_id.trim() == id3.trim(),
        "-q printed {quiet_id:?}, image {id3:?}"
    );

    // DOCKER_BUILDKIT=0 still takes the legacy builder API.
    let legacy = daemon
        .docker_buildx_of(BUILDX)?
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", "bx:legacy", &ctx.arg()])
        .output()?;
    let legacy_text = text(&legacy);
    ensure!(legacy.status.success(), "{legacy_text}");
    ensure!(legacy_text.contains("Step 1/6"), "{legacy_text}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn buildx_dockerfile_elsewhere_large_and_many_files() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;

    let ctx = Ctx::new(&[("small/keep", "kept\n"), ("drop.bin", "dropped\n")])?;
    // One file larger than a transfer batch (streamed through), and many
    // small ones (asked for in batches).
    let big: String = (0..600_000).map(|i| format!("{i:09}\n")).collect();
    ctx.write("big.txt", &big)?;
    for i in 0..400 {
        ctx.write(&format!("many/f{i:03}"), &format!("file {i}\n"))?;
    }
    std::os::unix::fs::symlink("many/f007", ctx.path().join("link"))?;
    // The Dockerfile and its own ignore file live outside the context.
    let df = Ctx::new(&[
        (
            "build.Dockerfile",
            &format!(
                "FROM {base}\nCOPY . /c/\n\
                 RUN sha256sum /c/big.txt && ls /c/many | wc -l && readlink /c/link && cat /c/link\n"
            ),
        ),
        ("build.Dockerfile.dockerignore", "drop.bin\n"),
    ])?;
    let dockerfile = df.path().join("build.Dockerfile").display().to_string();
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "-f",
            &dockerfile,
            "-t",
            "files",
            &ctx.arg(),
        ],
    )?;
    let progress = text(&out);
    ensure!(out.status.success(), "{progress}");
    ensure!(
        progress.contains("[internal] load build definition from build.Dockerfile"),
        "{progress}"
    );
    let run = daemon.docker_ok(&[
        "run",
        "--rm",
        "files",
        "sh",
        "-c",
        "sha256sum /c/big.txt; ls /c/many | wc -l; cat /c/link /c/small/keep; ls /c",
    ])?;
    let want = format!("{:x}", Sha256::digest(big.as_bytes()));
    ensure!(run.contains(&want), "sha256 {want} not in {run}");
    ensure!(run.contains("400"), "{run}");
    ensure!(run.contains("file 7") && run.contains("kept"), "{run}");
    ensure!(
        !run.contains("drop.bin"),
        "the Dockerfile's ignore file was not applied: {run}"
    );

    // The same context as a gzipped tar on stdin (`docker build - <
    // ctx.tar.gz`): buildx uploads it through the session.
    let tarball = df.path().join("ctx.tar.gz");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY . /c/\n"),
    )?;
    let made = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(ctx.path())
        .arg(".")
        .output()?;
    ensure!(made.status.success(), "tar: {}", text(&made));
    let out = daemon
        .docker_buildx_of(BUILDX)?
        .args(["build", "--progress=plain", "-t", "fromtar", "-"])
        .stdin(std::fs::File::open(&tarball)?)
        .output()?;
    let progress = text(&out);
    ensure!(out.status.success(), "{progress}");
    ensure!(
        progress.contains("[internal] load remote build context"),
        "{progress}"
    );
    let run = daemon.docker_ok(&[
        "run",
        "--rm",
        "fromtar",
        "sh",
        "-c",
        "sha256sum /c/big.txt; ls /c/many | wc -l",
    ])?;
    ensure!(run.contains(&want) && run.contains("400"), "{run}");

    // A remote context other than git (a tarball's URL) is not one hutch
    // fetches: said so (build_git.rs has the git ones).
    let out = buildx(&daemon, &["build", "https://example.invalid/ctx.tar.gz"])?;
    let t = text(&out);
    ensure!(
        !out.status.success() && t.contains("remote build context"),
        "{t}"
    );
    daemon.stop()?;
    pod.stop()
}

#[test]
fn buildx_errors_as_buildkit_words_them() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;

    // A RUN that fails: BuildKit's message, the step marked, no image.
    let failing = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo about to fail && exit 3\n"),
    )])?;
    let out = buildx(
        &daemon,
        &["build", "--progress=plain", "-t", "failed", &failing.arg()],
    )?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(
        t.contains("did not complete successfully: exit code: 3"),
        "{t}"
    );
    ensure!(t.contains("about to fail") && t.contains("ERROR"), "{t}");
    let images = daemon.docker_ok(&["images", "-q", "failed"])?;
    ensure!(
        images.trim().is_empty(),
        "a failed build named an image: {images}"
    );

    // A broken Dockerfile: the line it breaks on.
    let broken = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nRUN true\nCOPY\n"))])?;
    let out = buildx(&daemon, &["build", "--progress=plain", &broken.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(
        t.contains("line 3") || t.contains(":3"),
        "no line number in:\n{t}"
    );

    // No Dockerfile at all.
    let empty = Ctx::new(&[("README", "no Dockerfile here\n")])?;
    let out = buildx(&daemon, &["build", "--progress=plain", &empty.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(t.contains("Dockerfile"), "{t}");

    // What hutch does not have is refused before anything runs, saying
    // what. The worker's snapshotter label lets buildx send these (as to
    // dockerd with containerd's image store); without the LLB capability
    // for attestations buildx refuses those itself.
    let fine = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nRUN true\n"))])?;
    for (args, want) in [
        (
            &["--output", "type=oci,dest=/tmp/out.tar,tar=maybe"][..],
            "tar=",
        ),
        (&["--cache-to", "type=s3,region=x,bucket=y"], "type=s3"),
        (
            &[
                "--platform",
                "linux/amd64,linux/arm64",
                "-o",
                "type=docker,dest=/tmp/x.tar",
            ],
            // buildx's own refusal (hutch refuses it too, for other clients).
            "exporting manifest lists",
        ),
        (&["--sbom=true"], "Attestations are not supported"),
    ] {
        let mut all = vec!["build", "--progress=plain"];
        all.extend_from_slice(args);
        let context = fine.arg();
        all.push(&context);
        let out = buildx(&daemon, &all)?;
        let t = text(&out);
        ensure!(!out.status.success(), "{args:?} succeeded: {t}");
        ensure!(t.contains(want), "{args:?}: no {want:?} in:\n{t}");
        ensure!(!t.contains("] RUN true"), "{args:?} ran a step: {t}");
    }

    // A request that does not ask for the h2c upgrade gets a 400 that
    // says what the endpoint needs.
    for path in ["/grpc", "/session"] {
        let reply = daemon.request("POST", path, &[])?;
        ensure!(
            reply.status == 400,
            "{path}: {} {}",
            reply.status,
            reply.body
        );
        ensure!(reply.body.contains("h2c"), "{path}: {}", reply.body);
    }

    // The daemon still builds after all that.
    let out = buildx(
        &daemon,
        &["build", "--progress=plain", "-t", "fine", &fine.arg()],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    daemon.stop()?;
    pod.stop()
}

#[test]
fn buildx_push_and_private_bases_use_the_clients_credentials() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::BasicAuth)?;
    let (user, password) = registry
        .credentials()
        .context("the htpasswd registry has credentials")?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo pushed > /marker\n"),
    )])?;
    let name = registry.image_ref("bx/pushed:1");
    let push = || {
        buildx(
            &daemon,
            &[
                "build",
                "--progress=plain",
                "--push",
                "--iidfile",
                "/tmp/push-iid",
                "--metadata-file",
                "/tmp/push-meta",
                "-t",
                &name,
                &ctx.arg(),
            ],
        )
    };

    // Without credentials the registry refuses the push.
    let out = push()?;
    let t = text(&out);
    ensure!(!out.status.success(), "an anonymous push succeeded: {t}");
    ensure!(t.contains("401 Unauthorized"), "{t}");

    // `docker login` stores them in the CLI's config; the daemon asks the
    // build's session for them (and buildx 0.13 sends them with its push).
    let login = buildx(
        &daemon,
        &["login", "-u", user, "-p", password, &registry.host()],
    )?;
    ok(&login, "docker login")?;
    let out = push()?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    // The daemon's exporter pushes (as dockerd's with the containerd image
    // store), in BuildKit's words; buildx before 0.22 pushes again itself.
    ensure!(t.contains("pushing layers"), "{t}");
    ensure!(
        t.contains(&format!("pushing manifest for {name}@sha256:")),
        "{t}"
    );
    ensure!(
        t.contains(&format!("pushing {name} with docker")) == BUILDX.pushes_through_the_api(),
        "{t}"
    );
    let id = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", &name])?;
    // The digest buildx reports (`--metadata-file`, what CI pins and signs
    // as name@digest) is the manifest the registry holds under the tag.
    let cat = |path: &str| ok(&pod.exec("/bin/cat").arg(path).output()?, path);
    let meta: serde_json::Value = serde_json::from_str(&cat("/tmp/push-meta")?)?;
    let link = registry
        .storage_dir()
        .join("docker/registry/v2/repositories/bx/pushed/_manifests/tags/1/current/link");
    let tagged = std::fs::read_to_string(&link).with_context(|| link.display().to_string())?;
    ensure!(
        meta["containerimage.digest"].as_str() == Some(tagged.trim()),
        "metadata {meta}, registry {tagged}"
    );
    // The iidfile (the manifest digest with buildx 0.22 and later, which
    // take the daemon for one with the containerd image store) names the
    // image here.
    let iid = cat("/tmp/push-iid")?;
    let by_iid = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", iid.trim()])?;
    ensure!(by_iid == id, "iidfile {iid} is {by_iid}, not {id}");
    let repo_digests = daemon.docker_ok(&["inspect", "-f", "{{json .RepoDigests}}", &name])?;
    ensure!(repo_digests.contains(tagged.trim()), "{repo_digests}");
    // As the bare manifest digest (what buildx 0.36 writes there).
    let by_digest = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", tagged.trim()])?;
    ensure!(by_digest == id, "{tagged} is {by_digest}, not {id}");

    // Pulled back after removing it, it is the same image.
    daemon.docker_ok(&["rmi", &name])?;
    let pull = buildx(&daemon, &["pull", &name])?;
    ok(&pull, "docker pull")?;
    let pulled = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", &name])?;
    ensure!(pulled == id, "pushed {id}, pulled {pulled}");
    let run = daemon.docker_ok(&["run", "--rm", &name, "cat", "/marker"])?;
    ensure!(run.trim() == "pushed", "{run}");

    // A build whose base is in the private registry pulls it with the
    // client's credentials too (the daemon has none of its own).
    daemon.docker_ok(&["rmi", &name])?;
    let child = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {name}\nRUN cat /marker > /copied\n"),
    )])?;
    let out = buildx(
        &daemon,
        &["build", "--progress=plain", "-t", "child", &child.arg()],
    )?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains("extracting sha256:"),
        "no layer progress for the pull:\n{t}"
    );
    let run = daemon.docker_ok(&["run", "--rm", "child", "cat", "/copied"])?;
    ensure!(run.trim() == "pushed", "{run}");
    daemon.stop()?;
    pod.stop()
}

/// `docker buildx bake`: three targets solved at once over one session
/// (two Dockerfiles, a build arg, a target stage), each image named; a
/// stage two targets need runs once.
/// `docker buildx bake` of the `docker-bake.hcl` in `dir`, run there as a
/// user runs it (buildx 0.20 and later ask for `--allow=fs.read` to read
/// anything outside the working directory).
fn bake(daemon: &Daemon, dir: &str) -> Result<Output> {
    Ok(daemon
        .docker_buildx_of(BUILDX)?
        .current_dir(dir)
        .args(["buildx", "bake", "--progress=plain"])
        .output()?)
}

#[test]
fn buildx_bake_builds_targets_at_once() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile.a",
            &format!(
                "FROM {base} AS first\nRUN echo a > /a && date +%s%N > /stamp && sleep 1.5\n\
                 FROM {base} AS second\nCOPY --from=first /a /stamp /\nRUN echo s > /s\n"
            ),
        ),
        (
            "Dockerfile.b",
            &format!("FROM {base}\nARG X\nRUN echo \"$X\" > /b && sleep 0.5\n"),
        ),
    ])?;
    let dir = ctx.arg();
    ctx.write(
        "docker-bake.hcl",
        "group \"default\" {\n  targets = [\"a\", \"b\", \"c\"]\n}\n\
             target \"a\" {\n  context = \".\"\n  dockerfile = \"Dockerfile.a\"\n  tags = [\"bake-a\"]\n}\n\
             target \"b\" {\n  context = \".\"\n  dockerfile = \"Dockerfile.b\"\n  tags = [\"bake-b\"]\n  args = { X = \"bee\" }\n}\n\
             target \"c\" {\n  context = \".\"\n  dockerfile = \"Dockerfile.a\"\n  tags = [\"bake-c\"]\n  target = \"first\"\n}\n",
    )?;
    let out = bake(&daemon, &dir)?;
    ok(&out, "buildx bake")?;
    let run =
        |image: &str, script: &str| daemon.docker_ok(&["run", "--rm", image, "sh", "-c", script]);
    ensure!(run("bake-a", "cat /a /s")? == "a\ns\n", "bake-a");
    ensure!(run("bake-b", "cat /b")? == "bee\n", "bake-b");
    ensure!(
        run("bake-c", "cat /a; test -e /s && echo has-s || echo no-s")? == "a\nno-s\n",
        "bake-c"
    );
    // Stage `first`, needed by a and c at once, ran once: the other
    // target waited for it and took its result.
    let (a, c) = (run("bake-a", "cat /stamp")?, run("bake-c", "cat /stamp")?);
    ensure!(a == c, "the shared stage ran twice: {a} vs {c}");
    daemon.stop()?;
    pod.stop()
}

/// Bake's `target:` contexts: a target built FROM another target's result
/// (and COPY --from it), the dependency built once, untagged, and the
/// dependent named. A target whose result is used twice is built once.
#[test]
fn buildx_bake_target_contexts() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "base.Dockerfile",
            &format!("FROM {base}\nRUN echo base-layer > /base.txt && date +%s%N > /stamp\n"),
        ),
        (
            "tools.Dockerfile",
            &format!("FROM {base}\nRUN echo tool > /tool\n"),
        ),
        (
            "app.Dockerfile",
            "FROM base\nCOPY --from=tools /tool /tool\nRUN cat /base.txt /tool > /app.txt\n",
        ),
        (
            "other.Dockerfile",
            "FROM base\nRUN echo other > /other.txt\n",
        ),
    ])?;
    let dir = ctx.arg();
    ctx.write(
        "docker-bake.hcl",
        "group \"default\" {\n  targets = [\"app\", \"other\"]\n}\n\
             target \"base\" {\n  context = \".\"\n  dockerfile = \"base.Dockerfile\"\n}\n\
             target \"tools\" {\n  context = \".\"\n  dockerfile = \"tools.Dockerfile\"\n}\n\
             target \"app\" {\n  context = \".\"\n  dockerfile = \"app.Dockerfile\"\n  \
             contexts = { base = \"target:base\", tools = \"target:tools\" }\n  tags = [\"bake-app\"]\n}\n\
             target \"other\" {\n  context = \".\"\n  dockerfile = \"other.Dockerfile\"\n  \
             contexts = { base = \"target:base\" }\n  tags = [\"bake-other\"]\n}\n",
    )?;
    let out = bake(&daemon, &dir)?;
    ok(&out, "buildx bake with target: contexts")?;
    let run =
        |image: &str, script: &str| daemon.docker_ok(&["run", "--rm", image, "sh", "-c", script]);
    ensure!(
        run("bake-app", "cat /app.txt")? == "base-layer\ntool\n",
        "bake-app"
    );
    ensure!(run("bake-other", "cat /base.txt /other.txt")? == "base-layer\nother\n");
    // Both dependents stand on the one build of `base`.
    let (a, o) = (
        run("bake-app", "cat /stamp")?,
        run("bake-other", "cat /stamp")?,
    );
    ensure!(a == o, "base was built twice: {a} vs {o}");
    daemon.stop()?;
    pod.stop()
}

/// `--build-context`: a directory for COPY --from and RUN --mount from=,
/// an image in place of a base image (`docker-image://`), a stage of the
/// same name winning over a context; through buildx and `hutch build`,
/// with the same result. FROM a directory and unknown kinds are refused.
#[test]
fn named_build_contexts() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let busybox = load_busybox(&daemon)?;
    let shared = Ctx::new(&[("s.txt", "shared file\n"), ("sub/d.txt", "deep\n")])?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        "FROM base AS tools\nRUN echo from-stage > /t\n\
         FROM base\nCOPY --from=shared s.txt /s.txt\n\
         RUN --mount=type=bind,from=shared,target=/sh cat /sh/sub/d.txt > /d.txt\n\
         COPY --from=tools /t /t\n",
    )])?;
    let contexts = [
        format!("shared={}", shared.arg()),
        format!("base=docker-image://{busybox}"),
        format!("tools={}", shared.arg()),
    ];
    let mut args: Vec<&str> = Vec::new();
    for c in &contexts {
        args.extend(["--build-context", c.as_str()]);
    }
    let context = ctx.arg();
    let mut bx = vec!["build", "--progress=plain", "-t", "named"];
    bx.extend(&args);
    bx.push(&context);
    ok(&buildx(&daemon, &bx)?, "buildx build --build-context")?;
    let seen = daemon.docker_ok(&["run", "--rm", "named", "cat", "/s.txt", "/d.txt", "/t"])?;
    ensure!(seen == "shared file\ndeep\nfrom-stage\n", "{seen}");

    let mut direct = vec!["build", "-q"];
    direct.extend(&args);
    direct.push(&context);
    let out = pod.exec(hutch_bin()).args(&direct).output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    let id = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "named"])?;
    ensure!(
        String::from_utf8_lossy(&out.stdout).trim() == id.trim(),
        "hutch build gave another image than buildx: {}",
        text(&out)
    );

    // FROM a directory, and kinds hutch does not read.
    let from_dir = Ctx::new(&[("Dockerfile", "FROM shared\nRUN true\n")])?;
    let dir_arg = format!("shared={}", shared.arg());
    let refused = buildx(
        &daemon,
        &["build", "--build-context", &dir_arg, &from_dir.arg()],
    )?;
    ensure!(
        !refused.status.success() && text(&refused).contains("FROM a directory build context"),
        "{}",
        text(&refused)
    );
    daemon.stop()?;
    pod.stop()
}

/// `--build-context NAME=oci-layout://DIR`: one build writes its image to
/// a directory (`-o type=oci,tar=false`), the image leaves the store, and
/// the next build stands on the layout, read through buildx's session
/// and by `hutch build` from the directory; a layer changed in the layout
/// fails the build by its digest.
#[test]
fn oci_layout_build_contexts() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let first = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo from-layout > /layer.txt\n"),
    )])?;
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--iidfile",
            "/tmp/iid",
            "-o",
            "type=oci,dest=/tmp/layout,tar=false",
            &first.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let id = ok(&pod.exec("/bin/cat").arg("/tmp/iid").output()?, "iidfile")?;
    daemon.docker_ok(&["image", "rm", id.trim()])?;
    ok(
        &buildx(&daemon, &["builder", "prune", "-af"])?,
        "builder prune",
    )?;

    let second = Ctx::new(&[("Dockerfile", "FROM app-base\nRUN cat /layer.txt > /seen\n")])?;
    let named = ["--build-context", "app-base=oci-layout:///tmp/layout"];
    let out = buildx(
        &daemon,
        &[
            &["build", "--progress=plain", "-t", "on-layout"][..],
            &named[..],
            &[&second.arg()],
        ]
        .concat(),
    )?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.contains("[context app-base] OCI load from client"), "{t}");
    let seen = daemon.docker_ok(&["run", "--rm", "on-layout", "cat", "/seen"])?;
    ensure!(seen == "from-layout\n", "{seen}");
    let out = pod
        .exec(hutch_bin())
        .args(["build", "-q", "-t", "on-layout-2"])
        .args(named)
        .arg(second.arg())
        .output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    let ids = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "on-layout", "on-layout-2"])?;
    let ids: Vec<&str> = ids.lines().collect();
    ensure!(ids.len() == 2 && ids[0] == ids[1], "{ids:?}");

    // A forged layer: refused by its digest, nothing built.
    daemon.docker_ok(&["image", "rm", "on-layout", "on-layout-2", id.trim()])?;
    let manifest = ok(
        &pod.exec("/bin/sh")
            .args([
                "-c",
                "d=$(sed 's/.*sha256:\\([0-9a-f]*\\).*/\\1/' /tmp/layout/index.json); \
                 cat /tmp/layout/blobs/sha256/$d",
            ])
            .output()?,
        "the layout's manifest",
    )?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)?;
    let layer = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["digest"].as_str())
        .and_then(|d| d.strip_prefix("sha256:"))
        .context("no layer in the layout's manifest")?
        .to_owned();
    ok(
        &pod.exec("/bin/sh")
            .args([
                "-c",
                &format!("chmod u+w /tmp/layout/blobs/sha256/{layer}; echo forged > /tmp/layout/blobs/sha256/{layer}"),
            ])
            .output()?,
        "forging a layer",
    )?;
    let out = buildx(
        &daemon,
        &[
            &["build", "--progress=plain"][..],
            &named[..],
            &[&second.arg()],
        ]
        .concat(),
    )?;
    let t = text(&out);
    ensure!(!out.status.success() && t.contains(&layer), "{t}");
    daemon.stop()?;
    pod.stop()
}

/// Every RUN gets its own `/etc/hosts` (localhost, the sandbox's name,
/// `--add-host`s with `host-gateway` as the pod), the pod's
/// `/etc/resolv.conf`, the `--ulimit`s and `--shm-size`, as BuildKit gives them, through
/// `hutch build`, the classic API and buildx; none of it lands in the image.
#[test]
fn run_gets_hosts_and_resolver_files() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nRUN echo hosts:; cat /etc/hosts; echo resolv:; cat /etc/resolv.conf; \
             echo end; echo \"nofile=$(ulimit -n)/$(ulimit -H -n)\"; \
             echo \"shm=$(df -k /dev/shm | tail -1 | awk '{{print $2}}')\"; touch /made\n"
        ),
    )])?;
    let resolv = pod.exec("/bin/cat").arg("/etc/resolv.conf").output()?;
    let resolv = String::from_utf8_lossy(&resolv.stdout).to_string();
    ensure!(!resolv.trim().is_empty(), "the pod has no resolv.conf");
    let hosts = [
        "--add-host",
        "a.example:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--ulimit",
        "nofile=512:1024",
        "--shm-size",
        "128m",
    ];
    let check = |what: &str, log: &str| -> Result<()> {
        for want in [
            "127.0.0.1\tlocalhost buildkitsandbox",
            "10.1.2.3\ta.example",
            "\tgw",
            "nofile=512/1024",
            "shm=131072",
        ] {
            ensure!(log.contains(want), "{what}: no {want:?} in:\n{log}");
        }
        let first = resolv.lines().next().unwrap_or_default();
        ensure!(
            log.contains(first),
            "{what}: not the pod's resolver:\n{log}"
        );
        Ok(())
    };
    let context = ctx.arg();
    let mut args = vec!["build", "--no-cache", "--progress=plain", "-t", "etc"];
    args.extend(hosts);
    args.push(&context);
    let out = pod.exec(hutch_bin()).args(&args).output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    check("hutch build", &text(&out))?;
    let out = buildx(&daemon, &args)?;
    ensure!(out.status.success(), "buildx: {}", text(&out));
    check("buildx", &text(&out))?;
    let classic: Vec<&str> = args
        .iter()
        .filter(|a| **a != "--progress=plain")
        .copied()
        .collect();
    let out = daemon.docker().args(&classic).output()?;
    ensure!(out.status.success(), "docker build: {}", text(&out));
    check("classic", &text(&out))?;
    let bad = pod
        .exec(hutch_bin())
        .args(["build", "--ulimit", "bogus=1", &context])
        .output()?;
    ensure!(
        !bad.status.success() && text(&bad).contains("invalid ulimit type: bogus"),
        "{}",
        text(&bad)
    );
    // The RUN's own change is in the image; the bound files are not.
    let listed =
        daemon.docker_ok(&["run", "--rm", "etc", "sh", "-c", "ls /made; cat /etc/hosts"])?;
    ensure!(
        listed.starts_with("/made") && !listed.contains("a.example"),
        "{listed}"
    );
    daemon.stop()?;
    pod.stop()
}

/// Empties the build cache, then builds `ctx` as `tag` with `args`, which
/// must take its steps from a cache; returns the image ID.
fn build_from_cache(daemon: &Daemon, ctx: &Ctx, args: &[&str], tag: &str) -> Result<String> {
    ok(
        &buildx(daemon, &["builder", "prune", "-af"])?,
        "builder prune",
    )?;
    let context = ctx.arg();
    let mut all = vec!["build", "--progress=plain"];
    all.extend_from_slice(args);
    all.extend(["-t", tag, &context]);
    let out = buildx(daemon, &all)?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.matches("CACHED").count() >= 2, "no cache hits:\n{t}");
    daemon.docker_ok(&["inspect", "-f", "{{.Id}}", tag])
}

/// Registry caches: `--cache-from` one written by `hutch build
/// --cache-to` (on the daemon's data root) and one written by buildx's
/// `--cache-to type=registry,mode=max` (which buildx sends because the
/// worker says it has a snapshotter, as dockerd with containerd's image
/// store does), and the inline cache.
#[test]
fn buildx_registry_caches_both_ways() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!("FROM {base}\nRUN echo ran-once > /marker\nCOPY a.txt /w/x\n"),
        ),
        ("a.txt", "context file\n"),
    ])?;
    let cache = registry.image_ref("cache/bx:c");
    let exported = pod
        .exec(hutch_bin())
        .args([
            "build",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "-t",
            "first",
            &ctx.arg(),
        ])
        .output()?;
    ensure!(exported.status.success(), "{}", text(&exported));
    let first = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "first"])?;

    // Nothing left locally but the base: the steps come from the registry.
    daemon.docker_ok(&["rmi", "first"])?;
    let from = format!("type=registry,ref={cache}");
    let second = build_from_cache(&daemon, &ctx, &["--cache-from", &from], "second")?;
    ensure!(first == second, "{first} vs {second}");

    // The inline cache, which the docker driver does export: pushed with
    // the image, then the only source of the steps.
    let image = registry.image_ref("cache/bx-inline:1");
    let out = buildx(
        &daemon,
        &[
            "build",
            "--cache-to",
            "type=inline",
            "--push",
            "-t",
            &image,
            &ctx.arg(),
        ],
    )?;
    ok(&out, "build --cache-to type=inline --push")?;
    let pushed = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", &image])?;
    daemon.docker_ok(&["rmi", &image, "second"])?;
    let args = ["--cache-from", &image, "--cache-to", "type=inline"];
    let third = build_from_cache(&daemon, &ctx, &args, "third")?;
    ensure!(pushed == third, "{pushed} vs {third}");

    // buildx exports the registry cache itself (every step, mode=max),
    // then a build with the image gone takes its steps from it.
    let cache = registry.image_ref("cache/bx:buildx");
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--no-cache",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "-t",
            "fourth",
            &ctx.arg(),
        ],
    )?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.contains(&format!("exporting cache to {cache}")), "{t}");
    let fourth = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "fourth"])?;
    daemon.docker_ok(&["rmi", "fourth", "third"])?;
    let from = format!("type=registry,ref={cache}");
    let fifth = build_from_cache(&daemon, &ctx, &["--cache-from", &from], "fifth")?;
    ensure!(fourth == fifth, "{fourth} vs {fifth}");

    daemon.stop()?;
    pod.stop()
}

/// `type=local` caches: buildx writes one through its session (the
/// client's content store; buildx names the manifest in index.json), a
/// build with the steps gone takes them from it; `hutch build` writes one
/// itself that buildx reads, and reads buildx's on a fresh data root. A
/// layer blob changed in the directory is refused by its digest and the
/// step runs.
#[test]
fn local_caches_through_buildx_and_hutch_build() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!("FROM {base}\nRUN echo ran > /marker\nCOPY a.txt /w/x\n"),
        ),
        ("a.txt", "context file\n"),
    ])?;
    let sh = |script: &str| -> Result<String> {
        ok(&pod.exec("/bin/sh").args(["-c", script]).output()?, script)
    };

    // buildx exports, through the session.
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--cache-to",
            "type=local,dest=/tmp/lc,mode=max",
            "-t",
            "first",
            &ctx.arg(),
        ],
    )?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.contains("exporting cache to client directory"), "{t}");
    let index = sh("cat /tmp/lc/index.json")?;
    ensure!(index.contains("\"latest\""), "index.json: {index}");
    let first = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", "first"])?;
    daemon.docker_ok(&["rmi", "first"])?;

    // Without the cache nothing is cached (the control)...
    ok(
        &buildx(&daemon, &["builder", "prune", "-af"])?,
        "builder prune",
    )?;
    let out = buildx(
        &daemon,
        &["build", "--progress=plain", "-t", "control", &ctx.arg()],
    )?;
    let t = text(&out);
    ensure!(out.status.success() && !t.contains("CACHED"), "{t}");
    daemon.docker_ok(&["rmi", "control"])?;
    // ...and with it every step is.
    let from = ["--cache-from", "type=local,src=/tmp/lc"];
    let second = build_from_cache(&daemon, &ctx, &from, "second")?;
    ensure!(first == second, "{first} vs {second}");
    let run = daemon.docker_ok(&["run", "--rm", "second", "cat", "/marker", "/w/x"])?;
    ensure!(run == "ran\ncontext file\n", "{run}");

    // hutch build reads buildx's cache on a fresh data root, and writes
    // its own, which buildx reads.
    let fresh = pod.data_root().join("fresh").display().to_string();
    let hutch = |args: &[&str]| -> Result<String> {
        let out = pod
            .exec(hutch_bin())
            .args(["--data-root", &fresh])
            .args(args)
            .output()?;
        ensure!(out.status.success(), "hutch {args:?}: {}", text(&out));
        Ok(text(&out))
    };
    let image = testimages::busybox()?;
    hutch(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let log = hutch(&[
        "build",
        "--progress=plain",
        "--cache-from",
        "type=local,src=/tmp/lc",
        "--cache-to",
        "type=local,dest=/tmp/hc",
        "-t",
        "third",
        &ctx.arg(),
    ])?;
    ensure!(log.matches("Using cache").count() >= 2, "{log}");
    ensure!(log.contains(first.trim()), "not {first}: {log}");
    daemon.docker_ok(&["rmi", "second"])?;
    let from = ["--cache-from", "type=local,src=/tmp/hc"];
    let fourth = build_from_cache(&daemon, &ctx, &from, "fourth")?;
    ensure!(first == fourth, "{first} vs {fourth}");

    // A layer blob that is not what the manifest says: refused, the step
    // runs, the build succeeds.
    let manifest = sh(
        "d=$(sed 's/.*sha256:\\([0-9a-f]*\\).*/\\1/' /tmp/lc/index.json); \
         cat /tmp/lc/blobs/sha256/$d",
    )?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)
        .with_context(|| format!("the cache manifest: {manifest}"))?;
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .context("no layer in the cache manifest")?
        .to_owned();
    sh(&format!(
        "chmod u+w /tmp/lc/blobs/sha256/{layer}; echo forged > /tmp/lc/blobs/sha256/{layer}"
    ))?;
    daemon.docker_ok(&["rmi", "fourth"])?;
    ok(
        &buildx(&daemon, &["builder", "prune", "-af"])?,
        "builder prune",
    )?;
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--cache-from",
            "type=local,src=/tmp/lc",
            "-t",
            "fifth",
            &ctx.arg(),
        ],
    )?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.contains("cannot be used, running the step"), "{t}");
    let run = daemon.docker_ok(&["run", "--rm", "fifth", "cat", "/marker"])?;
    ensure!(run == "ran\n", "{run}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn buildx_secrets_come_from_the_client() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!(
                "FROM {base}\n\
                 RUN --mount=type=secret,id=token sha256sum /run/secrets/token > /token.sum\n\
                 RUN --mount=type=secret,id=fromenv,required=true cat /run/secrets/fromenv > /env.copy\n\
                 RUN --mount=type=secret,id=absent ls /run/secrets/ > /listing || true\n"
            ),
        ),
        ("token.txt", "s3cr3t-value\n"),
    ])?;
    let token = ctx.path().join("token.txt").display().to_string();
    let out = daemon
        .docker_buildx_of(BUILDX)?
        .env("FROM_ENV", "env-secret")
        .args([
            "build",
            "--progress=plain",
            "--secret",
            &format!("id=token,src={token}"),
            "--secret",
            "id=fromenv,env=FROM_ENV",
            "-t",
            "secrets",
            &ctx.arg(),
        ])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    let want = format!("{:x}", Sha256::digest(b"s3cr3t-value\n"));
    let run = daemon.docker_ok(&[
        "run",
        "--rm",
        "secrets",
        "sh",
        "-c",
        "cat /token.sum /env.copy; ls /run/secrets 2>&1 || echo no-secrets-dir",
    ])?;
    ensure!(run.contains(&want) && run.contains("env-secret"), "{run}");
    ensure!(!run.contains("s3cr3t"), "a secret reached the image: {run}");

    // A required secret the client does not give fails the build (when
    // the step runs: a cached one does not ask, as in BuildKit).
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--no-cache",
            "-t",
            "nosecret",
            &ctx.arg(),
        ],
    )?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(t.contains("secret") && t.contains("token"), "{t}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn buildx_outputs_files_to_the_client() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    // The usual artifact stage: files built in one stage, copied alone
    // into a scratch stage, exported.
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base} AS build\n\
             RUN mkdir -p /out/sub && echo artifact > /out/app && echo two > /out/sub/b \\\n\
              && ln -s app /out/link && ln /out/app /out/hard && chmod 755 /out/app\n\
             FROM scratch\nCOPY --from=build /out/ /\n"
        ),
    )])?;
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--output",
            "type=local,dest=/tmp/dist",
            &ctx.arg(),
        ],
    )?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.contains("exporting to client directory"), "{t}");
    let listing = ok(
        &pod.exec("/bin/sh")
            .args([
                "-c",
                "cd /tmp/dist && find . | sort && cat app sub/b hard && readlink link && \
                 stat -c %a app",
            ])
            .output()?,
        "reading the exported directory",
    )?;
    for want in [
        "./app",
        "./sub/b",
        "./link",
        "./hard",
        "artifact\ntwo\nartifact\napp\n755",
    ] {
        ensure!(listing.contains(want), "no {want:?} in:\n{listing}");
    }
    ensure!(!listing.contains(".lock"), "{listing}");

    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "--output",
            "type=tar,dest=/tmp/dist.tar",
            &ctx.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let listing = ok(
        &pod.exec("/bin/tar")
            .args(["-tvf", "/tmp/dist.tar"])
            .output()?,
        "listing the exported tar",
    )?;
    for want in ["app", "sub/b", "link -> app"] {
        ensure!(listing.contains(want), "no {want:?} in:\n{listing}");
    }

    // The image itself, as a docker-archive and as an OCI layout: each
    // loads back as the image built, and skopeo reads the OCI one.
    for (kind, file, name) in [
        ("docker", "/tmp/image-docker.tar", "archived:docker"),
        ("oci", "/tmp/image-oci.tar", "archived:oci"),
    ] {
        let out = buildx(
            &daemon,
            &[
                "build",
                "--progress=plain",
                "--iidfile",
                "/tmp/iid",
                "-t",
                name,
                "--output",
                &format!("type={kind},dest={file}"),
                &ctx.arg(),
            ],
        )?;
        let t = text(&out);
        ensure!(out.status.success(), "{t}");
        ensure!(
            t.contains(&format!("exporting to {kind} image format")),
            "{t}"
        );
        let built = ok(&pod.exec("/bin/cat").arg("/tmp/iid").output()?, "iidfile")?;
        let files = ok(
            &pod.exec("/bin/tar").args(["-tf", file]).output()?,
            "tar -t",
        )?;
        ensure!(
            files.contains("index.json") && files.contains("oci-layout"),
            "{kind}: {files}"
        );
        ensure!(
            files.contains("manifest.json") == (kind == "docker"),
            "{kind}: {files}"
        );
        // Only exported, not named in the store (no image exporter).
        let absent = daemon.docker().args(["image", "inspect", name]).output()?;
        ensure!(!absent.status.success(), "{name} was named in the store");
        let loaded = daemon.docker_ok(&["load", "-i", file])?;
        ensure!(loaded.contains(name), "{kind}: {loaded}");
        let id = daemon.docker_ok(&["inspect", "-f", "{{.Id}}", name])?;
        ensure!(id.trim() == built.trim(), "{kind}: {id} vs {built}");
    }
    let skopeo = pod
        .exec("/usr/bin/skopeo")
        .args(["inspect", "--config", "oci-archive:/tmp/image-oci.tar"])
        .output()?;
    let config = ok(&skopeo, "skopeo inspect")?;
    ensure!(config.contains("rootfs"), "{config}");

    // tar=false: the blobs go into the client's directory through its
    // session's content store, and buildx names the manifest in its
    // index.json.
    let out = buildx(
        &daemon,
        &[
            "build",
            "--progress=plain",
            "-t",
            "archived:dir",
            "--output",
            "type=oci,dest=/tmp/image-oci-dir,tar=false",
            &ctx.arg(),
        ],
    )?;
    ensure!(out.status.success(), "{}", text(&out));
    let index = ok(
        &pod.exec("/bin/cat")
            .arg("/tmp/image-oci-dir/index.json")
            .output()?,
        "index.json",
    )?;
    ensure!(index.contains("archived:dir"), "{index}");
    let skopeo = pod
        .exec("/usr/bin/skopeo")
        .args(["inspect", "--config", "oci:/tmp/image-oci-dir"])
        .output()?;
    let config = ok(&skopeo, "skopeo inspect oci:")?;
    ensure!(config.contains("rootfs"), "{config}");
    daemon.stop()?;
    pod.stop()
}

/// `--platform linux/amd64,linux/arm64 --push` of a cross-compiling
/// Dockerfile (its RUN on `$BUILDPLATFORM`, the result `FROM scratch`):
/// one build per platform, vertexes named by platform; the store names
/// this machine's image and remembers the other, buildx's push (through
/// the API) sends both and an OCI index; a pull of the other platform
/// gets its own file; the cache holds both platforms' steps; an OCI
/// layout export holds both; exported as files (local or tar) each
/// platform is a directory of its own.
#[test]
fn multi_platform_builds_push_one_index() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&daemon)?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM --platform=$BUILDPLATFORM {base} AS build\n\
             ARG TARGETARCH\n\
             RUN echo built-for-$TARGETARCH | tee /out\n\
             FROM scratch\n\
             COPY --from=build /out /out\n"
        ),
    )])?;
    let image = registry.image_ref("multi:1");
    let cache = registry.image_ref("multi:cache");
    let platforms = "linux/amd64,linux/arm64";
    let build = |extra: &[&str]| {
        let context = ctx.arg();
        let mut args = vec!["build", "--progress=plain", "--platform", platforms];
        args.extend_from_slice(extra);
        args.push(&context);
        buildx(&daemon, &args)
    };
    let cache_to = format!("type=registry,ref={cache},mode=max");
    let meta_file = "/tmp/multi-meta";
    let out = build(&[
        "--push",
        "-t",
        &image,
        "--cache-to",
        &cache_to,
        "--metadata-file",
        meta_file,
    ])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains("built-for-amd64") && t.contains("built-for-arm64"),
        "{t}"
    );
    // The digest reported is the index's, which names the image here.
    let meta = ok(&pod.exec("/bin/cat").arg(meta_file).output()?, meta_file)?;
    let meta: serde_json::Value = serde_json::from_str(&meta)?;
    let index_digest = meta["containerimage.digest"]
        .as_str()
        .context("no containerimage.digest")?
        .to_owned();
    let link = registry
        .storage_dir()
        .join("docker/registry/v2/repositories/multi/_manifests/tags/1/current/link");
    let tagged = std::fs::read_to_string(&link).with_context(|| link.display().to_string())?;
    ensure!(index_digest == tagged.trim(), "{meta} vs {tagged}");
    let by_digest = daemon.docker_ok(&["inspect", "-f", "{{.Architecture}}", &index_digest])?;
    ensure!(by_digest.trim() == "amd64", "{index_digest}: {by_digest}");
    ensure!(
        t.contains("[linux/arm64 build 3/3] RUN") && t.contains("[linux/amd64 build 3/3] RUN"),
        "{t}"
    );
    let index = ok(
        &pod.exec("/usr/bin/curl")
            .args([
                "-sSf",
                "-H",
                "Accept: application/vnd.oci.image.index.v1+json",
                &format!("{}/v2/multi/manifests/1", registry.url()),
            ])
            .output()?,
        "the pushed index",
    )?;
    let index: serde_json::Value = serde_json::from_str(&index)?;
    let mut archs: Vec<&str> = index["manifests"]
        .as_array()
        .context("not an index")?
        .iter()
        .filter_map(|m| m["platform"]["architecture"].as_str())
        .collect();
    archs.sort_unstable();
    ensure!(archs == ["amd64", "arm64"], "{index}");
    let arch = daemon.docker_ok(&["image", "inspect", "-f", "{{.Architecture}}", &image])?;
    ensure!(arch.trim() == "amd64", "the name's image: {arch}");
    // The other platform's image belongs to the name, as in Docker's
    // listing of a multi-platform image: no dangling row, not pruned, so
    // the name still pushes whole.
    let dangling = daemon.docker_ok(&["images", "-q", "-f", "dangling=true"])?;
    ensure!(dangling.trim().is_empty(), "listed as dangling: {dangling}");
    daemon.docker_ok(&["image", "prune", "-f"])?;
    daemon.docker_ok(&["push", &image])?;

    // The cache holds both platforms' steps: with the build cache gone,
    // neither RUN runs again.
    ok(
        &buildx(&daemon, &["builder", "prune", "-af"])?,
        "builder prune",
    )?;
    let cache_from = format!("type=registry,ref={cache}");
    let out = build(&["--cache-from", &cache_from])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        !t.contains("built-for-amd64") && !t.contains("built-for-arm64"),
        "a RUN ran again:\n{t}"
    );

    // The other platform, pulled back: its own file.
    daemon.docker_ok(&["rmi", &image])?;
    // Without its name, the other platform's image is dangling.
    let dangling = daemon.docker_ok(&["images", "-q", "-f", "dangling=true"])?;
    ensure!(
        !dangling.trim().is_empty(),
        "the arm64 image is not dangling"
    );
    daemon.docker_ok(&["image", "prune", "-f"])?;
    daemon.docker_ok(&["pull", "--platform", "linux/arm64", &image])?;
    let arch = daemon.docker_ok(&["image", "inspect", "-f", "{{.Architecture}}", &image])?;
    ensure!(arch.trim() == "arm64", "pulled for arm64: {arch}");
    daemon.docker_ok(&[
        "create",
        "--platform",
        "linux/arm64",
        "--name",
        "arm",
        &image,
        "x",
    ])?;
    let tar = daemon.docker().args(["cp", "arm:/out", "-"]).output()?;
    ensure!(
        String::from_utf8_lossy(&tar.stdout).contains("built-for-arm64"),
        "{}",
        text(&tar)
    );

    // As an OCI layout: index.json names an index of both platforms,
    // which skopeo resolves per platform.
    let out = build(&["-t", "multi:oci", "-o", "type=oci,dest=/tmp/m.tar"])?;
    ensure!(out.status.success(), "{}", text(&out));
    for arch in ["amd64", "arm64"] {
        let inspect = pod
            .exec("/usr/bin/skopeo")
            .env("HOME", "/tmp")
            .args(["inspect", "--override-arch", arch, "oci-archive:/tmp/m.tar"])
            .output()?;
        let seen = ok(&inspect, "skopeo inspect")?;
        ensure!(
            seen.contains(&format!("\"Architecture\": \"{arch}\"")),
            "{arch}: {seen}"
        );
    }
    // As files: a directory per platform, as BuildKit splits them.
    let out = build(&["-o", "type=local,dest=/tmp/m-files"])?;
    ensure!(out.status.success(), "{}", text(&out));
    for arch in ["amd64", "arm64"] {
        let seen = pod
            .exec("/bin/cat")
            .arg(format!("/tmp/m-files/linux_{arch}/out"))
            .output()?;
        let seen = ok(&seen, "an exported platform's file")?;
        ensure!(seen == format!("built-for-{arch}\n"), "{arch}: {seen}");
    }
    let out = build(&["-o", "type=tar,dest=/tmp/m-files.tar"])?;
    ensure!(out.status.success(), "{}", text(&out));
    let listed = pod
        .exec("/bin/tar")
        .args(["-tf", "/tmp/m-files.tar"])
        .output()?;
    let listed = ok(&listed, "tar -t")?;
    ensure!(
        listed.lines().any(|l| l == "linux_amd64/out")
            && listed.lines().any(|l| l == "linux_arm64/out"),
        "{listed}"
    );
    // A docker archive holds one image per name: refused before the build.
    let out = build(&["-o", "type=docker,dest=/tmp/m-docker.tar"])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    daemon.stop()?;
    registry.stop()?;
    pod.stop()
}
