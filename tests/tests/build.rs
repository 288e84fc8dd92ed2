//! Image builds: daemonless `hutch build` and `docker build` / docker-py
//! against `hutch daemon`, inside a simulated pod, with the busybox test image
//! as the base.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::{hutch, load_busybox};
use hutch_tests::build_context::{set_mode, BuildContext as Ctx};
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};

const MULTI: &str = r#"FROM busybox AS base
RUN mkdir -p /out && echo built > /out/file && echo gone > /out/tmp && rm /out/tmp
COPY src/ /src/
RUN cat /src/a.txt > /out/a && rm /bin/vi

FROM busybox
ENV GREETING=hello
WORKDIR /app
COPY --from=base /out/ ./
RUN echo "$GREETING" > /app/env && rm -f /etc/group
USER 1000:1000
CMD ["sh", "-c", "echo $GREETING; cat /app/file /app/a /app/env; ls /etc/group /bin/vi 2>&1; id -u"]
"#;

#[test]
fn hutch_build_multi_stage_runs_and_caches() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let df = MULTI.replace("FROM busybox", &format!("FROM {base}"));
    let ctx = Ctx::new(&[("Dockerfile", &df), ("src/a.txt", "from context\n")])?;

    let out = hutch(&pod, &["build", "-t", "built:1", &ctx.arg()])?;
    ensure!(out.status.success(), "build: {}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(log.contains("Step 1/11 : FROM"), "{log}");
    ensure!(
        !log.contains("Using cache"),
        "first build used the cache: {log}"
    );
    ensure!(log.contains("Successfully tagged built:1"), "{log}");

    // Rebuild: every step from the cache, same image.
    let again = hutch(&pod, &["build", "-t", "built:1", &ctx.arg()])?;
    ensure!(again.status.success(), "rebuild: {}", text(&again));
    let log2 = String::from_utf8_lossy(&again.stderr).to_string();
    ensure!(log2.matches("Using cache").count() == 9, "{log2}");
    ensure!(
        again.stdout == out.stdout,
        "{}\n{}",
        text(&out),
        text(&again)
    );

    // Touching a source reruns the COPY and what follows only.
    ctx.write("src/a.txt", "changed\n")?;
    let third = hutch(&pod, &["build", "-t", "built:2", &ctx.arg()])?;
    ensure!(third.status.success(), "third: {}", text(&third));
    let log3 = String::from_utf8_lossy(&third.stderr).to_string();
    // Cached: the first RUN, ENV and WORKDIR; rerun: everything after the COPY.
    ensure!(log3.matches("Using cache").count() == 3, "{log3}");

    // Run the result with the daemon.
    let daemon = Daemon::start(&pod)?;
    let ran = daemon.docker_ok(&["run", "--rm", "built:2"])?;
    ensure!(
        ran == "hello\nbuilt\nchanged\nhello\nls: /etc/group: No such file or directory\n/bin/vi\n1000\n",
        "{ran}"
    );
    let inspect = daemon.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}|{{len .RootFS.Layers}}",
        "built:2",
    ])?;
    ensure!(inspect.contains("\"WorkingDir\":\"/app\""), "{inspect}");
    ensure!(inspect.contains("\"User\":\"1000:1000\""), "{inspect}");
    ensure!(inspect.contains("GREETING=hello"), "{inspect}");
    // busybox has 1 layer; WORKDIR, COPY and RUN add one each.
    ensure!(inspect.trim().ends_with("|4"), "{inspect}");
    // Images lists the tagged results, not the steps.
    let images = daemon.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
    ensure!(images.lines().count() == 3, "{images}");
    daemon.stop()?;
    pod.stop()
}

#[test]
fn hutch_build_errors_and_reproducible_digest() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;

    // SOURCE_DATE_EPOCH: two uncached builds give the same image.
    let df = format!(
        "FROM {base}\nCOPY a.txt /a.txt\nRUN echo x > /made && mkdir /d\nCMD [\"cat\", \"/a.txt\"]\n"
    );
    let ctx = Ctx::new(&[("Dockerfile", &df), ("a.txt", "a\n")])?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = hutch(
            &pod,
            &[
                "build",
                "--no-cache",
                "--build-arg",
                "SOURCE_DATE_EPOCH=1700000000",
                &ctx.arg(),
            ],
        )?;
        ensure!(out.status.success(), "build: {}", text(&out));
        ensure!(
            !String::from_utf8_lossy(&out.stderr).contains("Using cache"),
            "{}",
            text(&out)
        );
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    ensure!(ids[0] == ids[1] && ids[0].starts_with("sha256:"), "{ids:?}");

    // A failing RUN: its exit code and output.
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo about to fail; exit 3\n"),
    )])?;
    let out = hutch(&pod, &["build", &ctx.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(t.contains("returned a non-zero code: 3"), "{t}");
    ensure!(t.matches("about to fail").count() >= 2, "{t}");

    // A broken Dockerfile: file, line and column.
    let ctx = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nRUNN echo\n"))])?;
    let out = hutch(&pod, &["build", &ctx.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(
        t.contains("Dockerfile:2:1: unknown instruction: RUNN"),
        "{t}"
    );

    // COPY from outside the context is refused.
    let ctx = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nCOPY ../x /x\n"))])?;
    let out = hutch(&pod, &["build", &ctx.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(t.contains("outside the build context"), "{t}");

    // A missing source names it.
    let ctx = Ctx::new(&[("Dockerfile", &format!("FROM {base}\nCOPY nothere /x\n"))])?;
    let out = hutch(&pod, &["build", &ctx.arg()])?;
    let t = text(&out);
    ensure!(
        !out.status.success() && t.contains("\"/nothere\": not found"),
        "{t}"
    );
    pod.stop()
}

#[test]
fn hutch_build_push_lands_in_the_registry() -> Result<()> {
    use hutch_tests::registry::{Registry, RegistryVariant};
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let name = registry.image_ref("built/app:1");
    let ctx = Ctx::new(&[
        (
            "Dockerfile",
            &format!("FROM {base}\nCOPY msg /msg\nCMD [\"cat\", \"/msg\"]\n"),
        ),
        ("msg", "pushed and pulled\n"),
    ])?;
    let out = hutch(&pod, &["build", "--push", "-t", &name, &ctx.arg()])?;
    ensure!(out.status.success(), "build --push: {}", text(&out));
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["rmi", &name])?;
    let pulled = daemon.docker_ok(&["pull", &name])?;
    ensure!(pulled.contains("Downloaded newer image"), "{pulled}");
    let ran = daemon.docker_ok(&["run", "--rm", &name])?;
    ensure!(ran == "pushed and pulled\n", "{ran}");
    daemon.stop()?;
    registry.stop()?;
    pod.stop()
}

/// Built layers are stored uncompressed and a RUN's layer tree is its upper
/// dir moved into the layer store; a push gzips them. The tree a RUN made
/// must be exactly what its pushed layer unpacks to when pulled back, and
/// the image keeps its ID through push and pull (pushing twice: same digest).
#[test]
fn hutch_build_run_tree_matches_pushed_layer() -> Result<()> {
    use hutch_tests::registry::{Registry, RegistryVariant};
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let name = registry.image_ref("built/tree:1");
    let run = "mkdir -p /made/sub && echo one > /made/one && ln /made/one /made/two \\
        && ln -s one /made/link && mkfifo /made/fifo && chmod 0700 /made/sub \\
        && chown 1000:1001 /made/one && touch /made/nobody && chown 65534:65534 /made/nobody \\
        && rm /bin/vi /data/a && rm -rf /data/d && mkdir /data/d && echo c > /data/d/c";
    let df = format!("FROM {base}\nCOPY data/ /data/\nRUN {run}\n");
    let ctx = Ctx::new(&[("Dockerfile", &df), ("data/a", "a\n"), ("data/d/b", "b\n")])?;
    let out = hutch(&pod, &["build", "-t", &name, &ctx.arg()])?;
    ensure!(out.status.success(), "build: {}", text(&out));
    // The RUN's layer tree is its upper dir, moved: file times keep their
    // nanoseconds, which a tree unpacked from the tar (whole seconds) lacks.
    // (Each path is in one layer only: data/a is also a whiteout above.)
    let times = pod
        .exec("/bin/sh")
        .args([
            "-c",
            "stat -c %y /var/lib/hutch/layers/*/diff/made/one /var/lib/hutch/layers/*/diff/data/d/b",
        ])
        .output()?;
    let times = String::from_utf8_lossy(&times.stdout).to_string();
    let mut lines = times.lines();
    let (run_file, copied_file) = (lines.next(), lines.next());
    ensure!(
        run_file.is_some_and(|t| !t.contains(".000000000"))
            && copied_file.is_some_and(|t| t.contains(".000000000"))
            && lines.next().is_none(),
        "the RUN layer was not moved into place (or the COPY not unpacked): {times}"
    );
    let daemon = Daemon::start(&pod)?;
    let listing = "cd / && find made data -exec stat -c '%n %F %a %u:%g %s %h %Y' {} + \
        | sort; test -e bin/vi && echo vi-present; readlink made/link; cat made/two";
    let inspect_id = |d: &Daemon| d.docker_ok(&["inspect", "--format", "{{.Id}}", &name]);
    let id = inspect_id(&daemon)?;
    let built = daemon.docker_ok(&["run", "--rm", &name, "sh", "-c", listing])?;
    for want in [
        "made/one regular file 644 1000:1001 4 2 ",
        "made/two regular file 644 1000:1001 4 2 ",
        "made/fifo fifo",
        "made/sub directory 700 0:0",
        "data/d/c regular file 644 0:0 2 1 ",
    ] {
        ensure!(built.contains(want), "missing {want:?} in\n{built}");
    }
    ensure!(
        built.contains("65534:65534") && built.contains("made/link symbolic link"),
        "{built}"
    );
    for gone in ["vi-present", "data/a ", "data/d/b"] {
        ensure!(
            !built.contains(gone),
            "whiteout of {gone} not applied:\n{built}"
        );
    }
    ensure!(built.ends_with("one\none\n"), "{built}");

    // save -> load into another store keeps the ID and the (uncompressed)
    // layer blobs.
    let record_layers = |root: &str| -> Result<Vec<(String, String)>> {
        let hex = id.trim().trim_start_matches("sha256:");
        let out = pod
            .exec("/bin/cat")
            .arg(format!("{root}/images/{hex}.json"))
            .output()?;
        ensure!(out.status.success(), "record in {root}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["layers"]
            .as_array()
            .context("layers")?
            .iter()
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (s("blob"), s("media_type"))
            })
            .collect())
    };
    let saved = pod.data_root().join("built.tar").display().to_string();
    let second = pod.data_root().join("second").display().to_string();
    let out = hutch(&pod, &["save", "-o", &saved, &name])?;
    ensure!(out.status.success(), "save: {}", text(&out));
    let out = hutch(&pod, &["--data-root", &second, "load", "-i", &saved])?;
    ensure!(out.status.success(), "load: {}", text(&out));
    let built_layers = record_layers(&pod.data_root().display().to_string())?;
    ensure!(
        built_layers
            .last()
            .is_some_and(|l| l.1 == "application/vnd.oci.image.layer.v1.tar"),
        "built layer not stored uncompressed: {built_layers:?}"
    );
    ensure!(
        record_layers(&second)? == built_layers,
        "save -> load changed the layers"
    );

    let digest_of = |out: &str| {
        out.split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .map(str::to_string)
    };
    let first = daemon.docker_ok(&["push", &name])?;
    let again = daemon.docker_ok(&["push", &name])?;
    ensure!(
        digest_of(&first).is_some() && digest_of(&first) == digest_of(&again),
        "push digests differ:\n{first}\n{again}"
    );
    // The registry has gzip layers.
    let manifest = pod
        .exec("/usr/bin/curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            &format!("{}/v2/built/tree/manifests/1", registry.url()),
        ])
        .output()?;
    ensure!(manifest.status.success(), "manifest: {}", text(&manifest));
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout)?;
    let layers = manifest["layers"].as_array().context("layers")?;
    ensure!(!layers.is_empty(), "{manifest}");
    for l in layers {
        let t = l["mediaType"].as_str().unwrap_or_default();
        ensure!(t.ends_with("gzip"), "layer not gzipped: {manifest}");
    }

    daemon.docker_ok(&["rmi", &name])?;
    daemon.docker_ok(&["pull", &name])?;
    ensure!(
        inspect_id(&daemon)? == id,
        "the image ID changed through the registry"
    );
    let pulled = daemon.docker_ok(&["run", "--rm", &name, "sh", "-c", listing])?;
    ensure!(
        pulled == built,
        "the pulled tree differs from the built one:\nbuilt:\n{built}\npulled:\n{pulled}"
    );
    daemon.stop()?;
    registry.stop()?;
    pod.stop()
}

#[test]
fn hutch_build_run_mounts_add_tar_and_copy_heredoc() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    const SECRET: &str = "s3cr3t-v4lue-never-stored";
    let secrets = Ctx::new(&[("token", SECRET)])?;
    let df = format!(
        r#"FROM {base}
RUN --mount=type=secret,id=tok echo "secret-len=$(wc -c < /run/secrets/tok)" > /secret-info
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/x > /from-bind
RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/f && grep -q ' /scratch tmpfs ' /proc/mounts && echo tmpfs-ok > /tmpfs-ok
ADD arch.tar.gz /unpacked/
COPY <<EOF /etc/motd
hello from a heredoc
EOF
CMD ["sh", "-c", "cat /secret-info /from-bind /tmpfs-ok /unpacked/dir/inner.txt /etc/motd; ls /scratch /mnt/data /run/secrets 2>&1 | sort"]
"#
    );
    let ctx = Ctx::new(&[("Dockerfile", &df), ("data/x", "bound file\n")])?;
    // A tar.gz in the context: ADD extracts it.
    let src = Ctx::new(&[("dir/inner.txt", "inside the tarball\n")])?;
    let tgz = ctx.path().join("arch.tar.gz");
    let made = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .args(["-C", &src.arg(), "dir"])
        .status()?;
    ensure!(made.success(), "tar -czf");
    set_mode(&tgz, 0o644)?;

    let secret_arg = format!("id=tok,src={}/token", secrets.arg());
    let out = hutch(
        &pod,
        &["build", "--secret", &secret_arg, "-t", "mounts", &ctx.arg()],
    )?;
    ensure!(out.status.success(), "build: {}", text(&out));

    let daemon = Daemon::start(&pod)?;
    let ran = daemon.docker_ok(&["run", "--rm", "mounts"])?;
    let want = format!(
        "secret-len={}\nbound file\ntmpfs-ok\ninside the tarball\nhello from a heredoc\n",
        SECRET.len()
    );
    ensure!(ran.starts_with(&want), "{ran}");
    for gone in ["/scratch", "/mnt/data", "/run/secrets"] {
        ensure!(
            ran.contains(&format!("ls: {gone}: No such file or directory")),
            "{gone} was left in the image: {ran}"
        );
    }
    // The secret is in no layer and not in the history.
    let history = daemon.docker_ok(&["history", "--no-trunc", "mounts"])?;
    ensure!(!history.contains(SECRET), "{history}");
    let saved = daemon
        .docker()
        .args(["save", "mounts"])
        .output()
        .context("docker save")?;
    ensure!(saved.status.success(), "save: {}", text(&saved));
    let mut archive = tar::Archive::new(std::io::Cursor::new(saved.stdout));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)?;
            out
        } else {
            bytes
        };
        ensure!(
            !plain.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            entry.path()?.display()
        );
    }
    daemon.stop()?;
    pod.stop()
}

/// `cut -d' ' -f1 /proc/uptime`: a clock every container of the pod shares.
const PAR: &str = r#"FROM busybox AS a
RUN cut -d' ' -f1 /proc/uptime > /a-start && sleep 2 && cut -d' ' -f1 /proc/uptime > /a-end
FROM busybox AS b
RUN cut -d' ' -f1 /proc/uptime > /b-start && sleep 2 && cut -d' ' -f1 /proc/uptime > /b-end
FROM busybox
COPY --from=a /a-start /a-end /t/
COPY --from=b /b-start /b-end /t/
CMD ["sh", "-c", "cat /t/a-start /t/a-end /t/b-start /t/b-end"]
"#;

#[test]
fn hutch_build_runs_independent_stages_in_parallel() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let df = PAR.replace("FROM busybox", &format!("FROM {base}"));
    let ctx = Ctx::new(&[("Dockerfile", &df)])?;
    let out = hutch(&pod, &["build", "-t", "par", &ctx.arg()])?;
    ensure!(out.status.success(), "build: {}", text(&out));
    let daemon = Daemon::start(&pod)?;
    let ran = daemon.docker_ok(&["run", "--rm", "par"])?;
    let t: Vec<f64> = ran
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("times: {ran}"))?;
    ensure!(t.len() == 4, "{ran}");
    // Both RUNs were sleeping at the same time.
    ensure!(
        t[0].max(t[2]) < t[1].min(t[3]),
        "stages a and b did not overlap: {t:?}"
    );
    daemon.stop()?;

    // A failing stage stops its sibling and is the error reported.
    let broken = df.replace("sleep 2 && cut -d' ' -f1 /proc/uptime > /a-end", "exit 5");
    let ctx = Ctx::new(&[("Dockerfile", &broken)])?;
    let out = hutch(&pod, &["build", "--no-cache", &ctx.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(t.contains("returned a non-zero code: 5"), "{t}");
    pod.stop()
}

/// `COPY --exclude` (`.dockerignore` patterns: a top-level source by its
/// path, what is under a directory source by its path there) and `COPY
/// --parents` (each source keeps its path under the destination), checked
/// by a RUN of the same build.
#[test]
fn hutch_build_copy_exclude_and_parents() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let df = format!(
        r#"FROM {base}
COPY --exclude=*.md --exclude=**/tmp app/ /app/
COPY --exclude=*.log hom* /home-files/
COPY --parents x/a.txt y/b/c.txt /p/
COPY --parents --exclude=**/skip.txt tree /q/
RUN find /app /home-files /p /q | sort > /listing
"#
    );
    let ctx = Ctx::new(&[
        ("Dockerfile", &df),
        ("app/main.c", "int main;\n"),
        ("app/README.md", "readme\n"),
        ("app/sub/notes.md", "notes\n"),
        ("app/sub/keep.txt", "keep\n"),
        ("app/sub/tmp/x", "scratch\n"),
        ("homework.txt", "hw\n"),
        ("homepage.log", "log\n"),
        ("x/a.txt", "a\n"),
        ("y/b/c.txt", "c\n"),
        ("tree/one.txt", "1\n"),
        ("tree/deep/skip.txt", "skip\n"),
        ("tree/deep/two.txt", "2\n"),
    ])?;
    let out = hutch(&pod, &["build", "-t", "flags", &ctx.arg()])?;
    ensure!(out.status.success(), "build: {}", text(&out));
    let daemon = Daemon::start(&pod)?;
    let listing = daemon.docker_ok(&["run", "--rm", "flags", "cat", "/listing"])?;
    // `*.md` matches at the top of the source only, as in .dockerignore.
    let want = "/app\n/app/main.c\n/app/sub\n/app/sub/keep.txt\n/app/sub/notes.md\n/home-files\n/home-files/homework.txt\n\
                /p\n/p/x\n/p/x/a.txt\n/p/y\n/p/y/b\n/p/y/b/c.txt\n\
                /q\n/q/tree\n/q/tree/deep\n/q/tree/deep/two.txt\n/q/tree/one.txt\n";
    ensure!(listing == want, "got:\n{listing}\nwant:\n{want}");
    // A bad pattern is a clear error.
    let bad = format!("FROM {base}\nCOPY --exclude=[ app/ /app/\n");
    let ctx2 = Ctx::new(&[("Dockerfile", &bad), ("app/f", "f\n")])?;
    let out = hutch(&pod, &["build", "-t", "bad", &ctx2.arg()])?;
    ensure!(
        !out.status.success() && text(&out).contains("--exclude"),
        "a bad --exclude pattern: {}",
        text(&out)
    );
    daemon.stop()?;
    pod.stop()
}

/// `hutch build --output`, read as buildx reads it: the image as a
/// docker-archive or an OCI layout (each loads back as the image built,
/// and skopeo reads the OCI one), its files as a tar or in a directory (a
/// bare DIR), the tar on stdout (a bare `-`, the image ID then not
/// printed), and bad specs refused before the build.
#[test]
fn hutch_build_outputs_archives_and_files() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let ctx = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base} AS build\n\
             RUN mkdir -p /out/sub && echo artifact > /out/app && echo two > /out/sub/b \
             && ln -s app /out/link && chmod 755 /out/app\n\
             FROM scratch\nCOPY --from=build /out/ /\n"
        ),
    )])?;
    let sh = |script: &str| -> Result<String> {
        let out = pod.exec("/bin/sh").args(["-c", script]).output()?;
        ensure!(out.status.success(), "{script}: {}", text(&out));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let build = |args: &[&str]| -> Result<String> {
        let mut all = vec!["build", "-q"];
        all.extend_from_slice(args);
        let context = ctx.arg();
        all.push(&context);
        let out = hutch(&pod, &all)?;
        ensure!(out.status.success(), "build {args:?}: {}", text(&out));
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };

    let id = build(&["-o", "/tmp/dist"])?;
    ensure!(id.starts_with("sha256:"), "{id}");
    let files =
        sh("cd /tmp/dist && find . | sort && cat app sub/b && readlink link && stat -c %a app")?;
    ensure!(
        files.contains("./sub/b") && files.contains("artifact\ntwo\napp\n755"),
        "{files}"
    );
    build(&["-o", "type=tar,dest=/tmp/fs.tar"])?;
    let listing = sh("tar -tvf /tmp/fs.tar")?;
    ensure!(
        listing.contains("sub/b") && listing.contains("link -> app"),
        "{listing}"
    );
    let piped = sh(&format!(
        "{} build -q -o - {} > /tmp/p.tar && tar -tf /tmp/p.tar && \
         if grep -q sha256: /tmp/p.tar; then echo ID-IN-TAR; fi",
        hutch_tests::podsim::hutch_bin().display(),
        ctx.arg()
    ))?;
    ensure!(
        piped.contains("sub/b") && !piped.contains("ID-IN-TAR"),
        "{piped}"
    );

    for (kind, file, name) in [
        ("docker", "/tmp/image-docker.tar", "archived:docker"),
        ("oci", "/tmp/image-oci.tar", "archived:oci"),
    ] {
        let built = build(&["-t", name, "-o", &format!("type={kind},dest={file}")])?;
        let listing = sh(&format!("tar -tf {file}"))?;
        ensure!(
            listing.contains("index.json")
                && listing.contains("manifest.json") == (kind == "docker"),
            "{kind}: {listing}"
        );
        let second = pod.data_root().join(format!("load-{kind}"));
        let second = second.display().to_string();
        let out = hutch(&pod, &["--data-root", &second, "load", "-i", file])?;
        ensure!(
            out.status.success() && text(&out).contains(name),
            "load {kind}: {}",
            text(&out)
        );
        let out = hutch(
            &pod,
            &["--data-root", &second, "images", "-q", "--no-trunc"],
        )?;
        ensure!(
            String::from_utf8_lossy(&out.stdout).contains(&built),
            "{kind}: loaded {} vs built {built}",
            text(&out)
        );
    }
    let config = sh("skopeo inspect --config oci-archive:/tmp/image-oci.tar")?;
    ensure!(config.contains("rootfs"), "{config}");

    for bad in [
        "type=registry,dest=x",
        "type=oci",
        "type=tar,dest=x,bogus=1",
    ] {
        let out = hutch(&pod, &["build", "-o", bad, &ctx.arg()])?;
        ensure!(!out.status.success(), "{bad} accepted: {}", text(&out));
        ensure!(text(&out).contains("--output"), "{bad}: {}", text(&out));
    }
    pod.stop()
}
