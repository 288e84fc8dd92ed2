//! http(s) URLs as build contexts, from a web server started in the pod
//! (tests reach no outside host), as moby and BuildKit read them: a tar,
//! plain or gzip, is the context; any other body is the Dockerfile of an
//! otherwise empty context; as a named context (`--build-context
//! NAME=URL`) the download is one file named `context`. Through the
//! classic API (`remote=`,
//! docker-py's `build(path=URL)`), buildx (the context attribute), the
//! docker CLI (which downloads it itself) and daemonless `hutch build
//! URL`. A tar whose entry climbs out of the context, a 404 and a server
//! that is not there are refused with their reasons, and nothing is
//! written outside the context.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use anyhow::{ensure, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{ok, printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};

/// The files served on the pod's 127.0.0.1:8089: a context as a gzip and
/// a plain tar, a bare Dockerfile, and a tar with an entry `../escape`.
const SERVE: &str = r#"set -e
mkdir -p /tmp/www /tmp/ctx && cd /tmp/ctx
printf 'FROM busybox\nCOPY msg /msg\nRUN cat /msg\n' > Dockerfile
echo from-a-tarball > msg
tar czf /tmp/www/ctx.tar.gz Dockerfile msg
tar cf /tmp/www/ctx.tar Dockerfile msg
printf 'FROM busybox\nRUN echo from-a-dockerfile > /m\n' > /tmp/www/Dockerfile.txt
python3 - <<'PY'
import io, tarfile
with tarfile.open('/tmp/www/evil.tar', 'w') as t:
    for name, data in [('Dockerfile', b'FROM busybox\n'), ('../escape', b'x')]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
PY
cd /tmp/www
setsid python3 -m http.server 8089 --bind 127.0.0.1 >/tmp/www.log 2>&1 </dev/null &
for i in $(seq 50); do python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8089/ctx.tar")' 2>/dev/null && exit 0; sleep 0.1; done
cat /tmp/www.log; exit 1
"#;

const BASE: &str = "http://127.0.0.1:8089";

fn escaped(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

#[test]
fn http_contexts_through_every_client() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.load_busybox()?;
    let script = Ctx::new(&[("serve.sh", SERVE)])?;
    let served = pod
        .exec("/bin/sh")
        .arg(script.path().join("serve.sh"))
        .output()?;
    ok(&served, "serving the contexts")?;

    // The classic API's `remote=`: a gzip tar, a plain tar, a Dockerfile.
    for (file, tag) in [("ctx.tar.gz", "gz"), ("ctx.tar", "plain")] {
        let query = format!(
            "/build?t={tag}&remote={}",
            escaped(&format!("{BASE}/{file}"))
        );
        let reply = daemon.request("POST", &query, &[])?;
        ensure!(
            reply.status == 200 && reply.body.contains(&format!("Successfully tagged {tag}")),
            "{file}: {reply}"
        );
        let seen = daemon.docker_ok(&["run", "--rm", tag, "cat", "/msg"])?;
        ensure!(seen == "from-a-tarball\n", "{file}: {seen}");
    }
    let query = format!(
        "/build?t=df&remote={}",
        escaped(&format!("{BASE}/Dockerfile.txt"))
    );
    let reply = daemon.request("POST", &query, &[])?;
    ensure!(reply.status == 200, "{reply}");
    let seen = daemon.docker_ok(&["run", "--rm", "df", "cat", "/m"])?;
    ensure!(seen == "from-a-dockerfile\n", "{seen}");

    // buildx: the URL is the context attribute, loaded by the daemon.
    let url = format!("{BASE}/ctx.tar.gz");
    let out = daemon
        .docker_buildx()?
        .args(["build", "--progress=plain", "-t", "viabuildx", &url])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains(&format!("load remote build context {url}")),
        "{t}"
    );
    let seen = daemon.docker_ok(&["run", "--rm", "viabuildx", "cat", "/msg"])?;
    ensure!(seen == "from-a-tarball\n", "{seen}");
    let out = daemon
        .docker_buildx()?
        .args(["build", "-t", "buildxdf", &format!("{BASE}/Dockerfile.txt")])
        .output()?;
    ensure!(out.status.success(), "{}", text(&out));

    // The docker CLI's classic builder downloads the URL itself.
    let out = daemon
        .docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", "viacli", &url])
        .output()?;
    ensure!(out.status.success(), "{}", text(&out));

    // hutch build, daemonless.
    let out = pod
        .exec(hutch_bin())
        .args(["build", "-q", "-t", "viahutch", &format!("{BASE}/ctx.tar")])
        .output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    let seen = daemon.docker_ok(&["run", "--rm", "viahutch", "cat", "/msg"])?;
    ensure!(seen == "from-a-tarball\n", "{seen}");

    // A named context from an http URL: one file named `context`, not
    // unpacked (BuildKit's http named context), through buildx and
    // hutch build.
    let uses = Ctx::new(&[(
        "Dockerfile",
        "FROM busybox\nCOPY --from=tool context /tool.tar\nRUN tar -tf /tool.tar | sort | tr '\\n' ' ' > /listed\n",
    )])?;
    let named = format!("tool={BASE}/ctx.tar");
    let out = daemon
        .docker_buildx()?
        .args([
            "build",
            "-t",
            "named1",
            "--build-context",
            &named,
            &uses.arg(),
        ])
        .output()?;
    ensure!(out.status.success(), "{}", text(&out));
    let out = pod
        .exec(hutch_bin())
        .args([
            "build",
            "-q",
            "-t",
            "named2",
            "--build-context",
            &named,
            &uses.arg(),
        ])
        .output()?;
    ensure!(out.status.success(), "hutch build: {}", text(&out));
    for image in ["named1", "named2"] {
        let seen = daemon.docker_ok(&["run", "--rm", image, "cat", "/listed"])?;
        ensure!(seen == "Dockerfile msg ", "{image}: {seen}");
    }

    // Refused, with the reason; the escaping entry lands nowhere.
    for (url, want) in [
        (format!("{BASE}/evil.tar"), "outside"),
        (format!("{BASE}/absent.tar"), "404"),
        (
            "http://127.0.0.1:1/ctx.tar".to_owned(),
            "failed to download",
        ),
    ] {
        let query = format!("/build?remote={}", escaped(&url));
        let reply = daemon.request("POST", &query, &[])?;
        ensure!(
            reply.status == 400 && reply.body.contains(want),
            "{url}: no {want:?} in {reply}"
        );
        let out = daemon.docker_buildx()?.args(["build", &url]).output()?;
        let t = text(&out);
        ensure!(
            !out.status.success() && t.contains(want),
            "buildx {url}: {t}"
        );
    }
    let escaped_to = pod
        .exec("/bin/sh")
        .args([
            "-c",
            &format!("find {} -name escape", pod.data_root().display()),
        ])
        .output()?;
    let found = ok(&escaped_to, "find")?;
    ensure!(
        found.trim().is_empty(),
        "the escaping entry was written: {found}"
    );
    let reply = daemon.request("POST", "/build?remote=ftp%3A%2F%2F127.0.0.1%2Fx", &[])?;
    ensure!(
        reply.status == 400 && reply.body.contains("neither a git repository nor"),
        "{reply}"
    );
    daemon.stop()?;
    pod.stop()
}
