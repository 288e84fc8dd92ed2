//! Git repositories as build contexts, from a `git daemon` started in the
//! pod (tests reach no outside host): `docker build URL#ref:dir` through
//! the classic API (`remote=`) and through buildx (the context attribute),
//! and daemonless `hutch build URL`; branches, tags, a context directory,
//! `.git` left out; named contexts from git (`--build-context NAME=URL`);
//! ADD of a git repository (with and without `--keep-git-dir`), keyed by
//! the commit the remote names, so a cached step clones nothing; a ref
//! that is not there, a directory that leads out of
//! the repository by a symlink or by `..`, and URLs that are not git
//! refused with their reasons.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use anyhow::{ensure, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{ok, printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};

/// A repository with `main` (tagged `v1`) and `feature`, served by `git
/// daemon` on the pod's 127.0.0.1.
const REPO: &str = r#"set -e
export GIT_CONFIG_NOSYSTEM=1 HOME=/tmp
mkdir -p /tmp/gitsrv /tmp/work && cd /tmp/work
git init -q -b main . && git config user.email t@example.org && git config user.name t
printf 'FROM busybox\nCOPY . /src/\nRUN cat /src/msg\n' > Dockerfile
echo main-msg > msg
mkdir sub && printf 'FROM busybox\nCOPY data.txt /data.txt\n' > sub/Dockerfile
echo sub-data > sub/data.txt
ln -s /etc sub/escape
git add -A && git commit -qm one && git tag v1
git checkout -qb feature && echo feature-msg > msg && git commit -qam two
git checkout -q main && echo main-two > msg && git commit -qam three
git clone -q --bare /tmp/work /tmp/gitsrv/app.git
setsid git daemon --reuseaddr --export-all --base-path=/tmp/gitsrv \
  --listen=127.0.0.1 --port=9418 >/tmp/gitd.log 2>&1 </dev/null &
for i in $(seq 50); do git ls-remote -q git://127.0.0.1/app.git >/dev/null 2>&1 && exit 0; sleep 0.1; done
cat /tmp/gitd.log; exit 1
"#;

const URL: &str = "git://127.0.0.1/app.git";

#[test]
fn git_contexts_through_every_client() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    let script = Ctx::new(&[("repo.sh", REPO)])?;
    let repo = pod
        .exec("/bin/sh")
        .arg(script.path().join("repo.sh"))
        .output()?;
    ok(&repo, "making and serving the repository")?;

    // The classic API's `remote=` (docker-py's `build(path=URL)`; the
    // docker CLI clones a git context itself and sends a tar): a branch,
    // then a tag's subdirectory.
    let remote = |context: &str, tag: &str| -> Result<String> {
        let query = format!(
            "/build?t={tag}&remote={}",
            context
                .replace(':', "%3A")
                .replace('/', "%2F")
                .replace('#', "%23")
        );
        let reply = daemon.request("POST", &query, &[])?;
        ensure!(reply.status == 200, "{query}: {reply}");
        Ok(reply.body)
    };
    let body = remote(&format!("{URL}#feature"), "classic1")?;
    ensure!(body.contains("Successfully tagged classic1"), "{body}");
    let seen = daemon.docker_ok(&[
        "run",
        "--rm",
        "classic1",
        "sh",
        "-c",
        "cat /src/msg; ls -a /src",
    ])?;
    ensure!(seen.starts_with("feature-msg\n"), "{seen}");
    ensure!(
        !seen.contains(".git"),
        "the clone's .git reached the context: {seen}"
    );
    remote(&format!("{URL}#v1:sub"), "classic2")?;
    let seen = daemon.docker_ok(&["run", "--rm", "classic2", "cat", "/data.txt"])?;
    ensure!(seen == "sub-data\n", "{seen}");
    let reply = daemon.request(
        "POST",
        "/build?remote=git%3A%2F%2F127.0.0.1%2Fapp.git%23nosuchref",
        &[],
    )?;
    ensure!(
        reply.status == 400 && reply.body.contains("no branch, tag or commit"),
        "{reply}"
    );

    // buildx: the URL is the context attribute; the remote's HEAD.
    let out = daemon
        .docker_buildx()?
        .args(["build", "--progress=plain", "-t", "fromgit", URL])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains(&format!("load git source {URL}")) && t.contains("main-two"),
        "{t}"
    );

    // hutch build, daemonless.
    let out = pod
        .exec(hutch_bin())
        .args(["build", "-q", "-t", "hutchgit", &format!("{URL}#v1")])
        .output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    let seen = daemon.docker_ok(&["run", "--rm", "hutchgit", "cat", "/src/msg"])?;
    ensure!(seen == "main-msg\n", "{seen}");

    // A named context from git (`--build-context NAME=URL`), through
    // buildx and hutch build.
    let local = Ctx::new(&[(
        "Dockerfile",
        "FROM busybox\nCOPY --from=repo msg /from-repo\nCOPY --from=sub data.txt /from-sub\n",
    )])?;
    let named = [
        "--build-context",
        &format!("repo={URL}#feature"),
        "--build-context",
        &format!("sub={URL}#v1:sub"),
    ];
    let out = daemon
        .docker_buildx()?
        .args(["build", "--progress=plain", "-t", "named1"])
        .args(named)
        .arg(local.arg())
        .output()?;
    ensure!(out.status.success(), "{}", text(&out));
    let out = pod
        .exec(hutch_bin())
        .args(["build", "-q", "-t", "named2"])
        .args(named)
        .arg(local.arg())
        .output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    for image in ["named1", "named2"] {
        let seen = daemon.docker_ok(&["run", "--rm", image, "cat", "/from-repo", "/from-sub"])?;
        ensure!(seen == "feature-msg\nsub-data\n", "{image}: {seen}");
    }

    // ADD of a git repository (BuildKit's Dockerfile 1.6): a branch's
    // checkout without .git, a tag's with --keep-git-dir; a missing ref
    // fails the step with the Dockerfile's line.
    let add = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM busybox\nADD {URL}#feature /src\nADD --keep-git-dir=true {URL}#v1 /kept\n"),
    )])?;
    for via_buildx in [false, true] {
        let mut cmd = if via_buildx {
            daemon.docker_buildx()?
        } else {
            daemon.docker()
        };
        let tag = format!("addgit{}", u8::from(via_buildx));
        let out = cmd.args(["build", "-t", &tag, &add.arg()]).output()?;
        ensure!(out.status.success(), "{}", text(&out));
        let seen = daemon.docker_ok(&[
            "run",
            "--rm",
            &tag,
            "sh",
            "-c",
            "cat /src/msg; ls -a /src /kept | tr '\\n' ' '",
        ])?;
        ensure!(seen.starts_with("feature-msg\n"), "{seen}");
        ensure!(seen.contains("/kept: . .. .git"), "{seen}");
        ensure!(!seen.contains("/src: . .. .git"), "{seen}");
    }
    // The ref is resolved before the clone (`git ls-remote`) and the
    // commit is the step's key: with the server's objects gone (its refs
    // still listed) the same build is all cache and clones nothing; a
    // new commit on the branch, even an empty one, builds the step again.
    let server = |script: &str| -> Result<()> {
        let out = pod.exec("/bin/sh").args(["-c", script]).output()?;
        ok(&out, script).map(drop)
    };
    server(
        "cd /tmp/gitsrv/app.git && mv objects /tmp/gitsrv/objects.away \
         && mkdir -p objects/info objects/pack",
    )?;
    let out = daemon.docker().args(["build", &add.arg()]).output()?;
    let t = text(&out);
    ensure!(out.status.success(), "a clone was needed: {t}");
    ensure!(t.matches("Using cache").count() == 2, "{t}");
    server(
        "cd /tmp/gitsrv/app.git && rm -rf objects && mv /tmp/gitsrv/objects.away objects \
         && cd /tmp/work && export HOME=/tmp GIT_CONFIG_NOSYSTEM=1 \
         && git checkout -q feature && git commit -q --allow-empty -m four \
         && git push -q /tmp/gitsrv/app.git feature",
    )?;
    let out = daemon.docker().args(["build", &add.arg()]).output()?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(!t.contains("Using cache"), "a new commit, cached: {t}");

    let bad = Ctx::new(&[("Dockerfile", &format!("FROM busybox\nADD {URL}#nope /x\n"))])?;
    let out = pod.exec(hutch_bin()).args(["build", &bad.arg()]).output()?;
    let t = text(&out);
    ensure!(
        !out.status.success() && t.contains("Dockerfile:2") && t.contains("\"nope\""),
        "{t}"
    );

    // Refused, with the reason.
    for (context, want) in [
        (
            format!("{URL}#nosuchref"),
            "no branch, tag or commit \"nosuchref\"",
        ),
        (
            format!("{URL}#main:sub/escape"),
            "not a directory inside the repository",
        ),
        (format!("{URL}#main:../up"), "inside the repository"),
        ("git://127.0.0.1/absent.git".to_owned(), "not exported"),
    ] {
        let out = daemon.docker_buildx()?.args(["build", &context]).output()?;
        let t = text(&out);
        ensure!(!out.status.success(), "{context} built: {t}");
        ensure!(t.contains(want), "{context}: no {want:?} in {t}");
    }
    let reply = daemon.request(
        "POST",
        "/build?remote=file%3A%2F%2F%2Ftmp%2Fgitsrv%2Fapp.git",
        &["-H", "Content-Type: application/x-tar"],
    )?;
    ensure!(reply.status == 400, "a file:// remote: {reply}");
    daemon.stop()?;
    pod.stop()
}
