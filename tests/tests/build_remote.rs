//! ADD of http(s) URLs (with and without `--checksum`) through daemonless
//! `hutch build` and `docker build` against `hutch daemon`, from an HTTP
//! server started in the pod's network namespace (tests reach no outside
//! host).
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::build_context::{hutch, load_busybox};
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::http_fixture::HttpFixture;
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use sha2::{Digest, Sha256};

const PORT: u16 = 18080;
/// `Last-Modified` of the served files.
const MTIME: u64 = 1_577_836_800;

fn url(path: &str) -> String {
    format!("http://127.0.0.1:{PORT}/{path}")
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Writes a served file dated `MTIME`.
fn serve_file(srv: &Ctx, name: &str, text: &str) -> Result<()> {
    serve_file_dated(srv, name, text, MTIME)
}

fn serve_file_dated(srv: &Ctx, name: &str, text: &str, mtime: u64) -> Result<()> {
    srv.write(name, text)?;
    let f = std::fs::File::options()
        .write(true)
        .open(srv.path().join(name))?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))?;
    Ok(())
}

/// The fixture's access log: `PATH STATUS` lines.
fn access_log(srv: &Ctx) -> String {
    std::fs::read_to_string(srv.path().join(".access.log")).unwrap_or_default()
}

/// A gzip tarball holding `dir/inner.txt`, served as `arch.tar.gz`.
fn serve_tarball(srv: &Ctx) -> Result<()> {
    let src = Ctx::new(&[("dir/inner.txt", "inside the tarball\n")])?;
    let made = std::process::Command::new("tar")
        .arg("-czf")
        .arg(srv.path().join("arch.tar.gz"))
        .args(["-C", &src.arg(), "dir"])
        .status()?;
    ensure!(made.success(), "tar -czf");
    hutch_tests::build_context::set_mode(&srv.path().join("arch.tar.gz"), 0o644)
}

const SHOW: &str = r#"CMD ["sh", "-c", "cd /dl && stat -c '%n %a %u:%g %Y' * && cat checked.txt hello.txt && tar -tzf arch.tar.gz && cat /unp/dir/inner.txt"]"#;

fn dockerfile(base: &str, sum: &str) -> String {
    format!(
        "FROM {base}\n\
         ADD --checksum=sha256:{sum} {} /dl/checked.txt\n\
         ADD {} /dl/\n\
         ADD --chown=1000:1000 --chmod=644 {} /dl/\n\
         ADD --unpack=true {} /unp/\n\
         {SHOW}\n",
        url("hello.txt"),
        url("hello.txt"),
        url("arch.tar.gz"),
        url("arch.tar.gz"),
    )
}

#[test]
fn hutch_build_add_url_names_checks_and_caches() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let srv = Ctx::new(&[])?;
    serve_file(&srv, "hello.txt", "hello over http\n")?;
    serve_tarball(&srv)?;
    let _server = HttpFixture::start(&pod, PORT, srv.path())?;
    let sum = sha256(b"hello over http\n");
    let ctx = Ctx::new(&[("Dockerfile", &dockerfile(&base, &sum))])?;

    let out = hutch(&pod, &["build", "-t", "add:1", &ctx.arg()])?;
    ensure!(out.status.success(), "build: {}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!log.contains("Using cache"), "{log}");

    // Unchanged remote content: every step from the cache, the files
    // revalidated (If-Modified-Since: 304), not downloaded again.
    let first_log = access_log(&srv);
    let again = hutch(&pod, &["build", "-t", "add:1", &ctx.arg()])?;
    ensure!(again.status.success(), "rebuild: {}", text(&again));
    let log2 = String::from_utf8_lossy(&again.stderr).to_string();
    ensure!(log2.matches("Using cache").count() == 5, "{log2}");
    ensure!(
        again.stdout == out.stdout,
        "{}\n{}",
        text(&out),
        text(&again)
    );
    let second_log = access_log(&srv)[first_log.len()..].to_string();
    ensure!(
        first_log.contains("/hello.txt 200") && second_log.contains("/hello.txt 304"),
        "first build:\n{first_log}second build:\n{second_log}"
    );
    ensure!(!second_log.contains(" 200"), "{second_log}");

    // Changed content: the ADD without --checksum runs again (and what
    // follows); the one with --checksum is keyed by it and stays cached.
    serve_file_dated(&srv, "hello.txt", "changed content\n", MTIME + 3600)?;
    let third = hutch(&pod, &["build", "-t", "add:2", &ctx.arg()])?;
    ensure!(third.status.success(), "third: {}", text(&third));
    let log3 = String::from_utf8_lossy(&third.stderr).to_string();
    ensure!(log3.matches("Using cache").count() == 1, "{log3}");

    let daemon = Daemon::start(&pod)?;
    let ran = daemon.docker_ok(&["run", "--rm", "add:1"])?;
    let want = format!(
        "arch.tar.gz 644 1000:1000 {MTIME}\nchecked.txt 600 0:0 {MTIME}\nhello.txt 600 0:0 {MTIME}\n\
         hello over http\nhello over http\ndir/\ndir/inner.txt\ninside the tarball\n"
    );
    // The tarball's own mtime is the served file's (not MTIME): compare
    // everything else.
    let ran_masked: Vec<String> = ran
        .lines()
        .map(|l| {
            if l.starts_with("arch.tar.gz ") {
                let mut f: Vec<&str> = l.split(' ').collect();
                f.truncate(3);
                format!("{} {MTIME}", f.join(" "))
            } else {
                l.to_string()
            }
        })
        .collect();
    ensure!(ran_masked.join("\n") + "\n" == want, "{ran}");
    let ran2 = daemon.docker_ok(&["run", "--rm", "add:2"])?;
    ensure!(
        ran2.contains("hello over http\nchanged content\n"),
        "{ran2}"
    );
    daemon.stop()?;
    pod.stop()
}

#[test]
fn hutch_build_add_url_errors() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let srv = Ctx::new(&[])?;
    serve_file(&srv, "hello.txt", "hello over http\n")?;
    let _server = HttpFixture::start(&pod, PORT, srv.path())?;
    let zeros = "0".repeat(64);
    let actual = sha256(b"hello over http\n");
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            format!("ADD --checksum=sha256:{zeros} {} /x", url("hello.txt")),
            vec![
                "Dockerfile:2".into(),
                format!("expected sha256:{zeros}"),
                format!("got sha256:{actual}"),
            ],
        ),
        (
            format!("ADD {} /x", url("missing.txt")),
            vec![url("missing.txt"), "404 Not Found".into()],
        ),
        (
            format!("ADD {} /x", url("loop")),
            vec![url("loop"), "redirect".into()],
        ),
        (
            format!("ADD {} /x", url("short")),
            vec![url("short"), "Dockerfile:2".into(), "end of file".into()],
        ),
        (
            "ADD http://127.0.0.1:1/file /x".into(),
            vec!["http://127.0.0.1:1/file".into(), "refused".into()],
        ),
        (
            // A git URL is cloned (build_git.rs): a server that has no
            // repository there is git's error.
            format!("ADD {} /src", url("repo.git")),
            vec![
                "Dockerfile:2".into(),
                "repository".into(),
                "not found".into(),
            ],
        ),
        (
            format!("COPY {} /x", url("hello.txt")),
            vec![
                "Dockerfile:2".into(),
                "source can't be a URL for COPY".into(),
            ],
        ),
        (
            format!("ADD --checksum=sha256:abc {} /x", url("hello.txt")),
            vec!["invalid --checksum".into()],
        ),
    ];
    for (line, wants) in cases {
        let ctx = Ctx::new(&[("Dockerfile", &format!("FROM {base}\n{line}\n"))])?;
        let out = hutch(&pod, &["build", &ctx.arg()])?;
        ensure!(!out.status.success(), "{line}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for w in wants {
            ensure!(err.contains(&w), "{line}: no {w:?} in {}", text(&out));
        }
    }
    pod.stop()
}

#[test]
fn docker_build_add_url() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let srv = Ctx::new(&[])?;
    serve_file(&srv, "hello.txt", "hello over http\n")?;
    serve_tarball(&srv)?;
    let _server = HttpFixture::start(&pod, PORT, srv.path())?;
    let sum = sha256(b"hello over http\n");
    let ctx = Ctx::new(&[("Dockerfile", &dockerfile(&base, &sum))])?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["build", "-t", "dadd", &ctx.arg()])?;
    let ran = daemon.docker_ok(&["run", "--rm", "dadd"])?;
    for want in [
        format!("checked.txt 600 0:0 {MTIME}\n"),
        format!("hello.txt 600 0:0 {MTIME}\n"),
        "arch.tar.gz 644 1000:1000 ".to_string(),
        "hello over http\nhello over http\ndir/\ndir/inner.txt\ninside the tarball\n".to_string(),
    ] {
        ensure!(ran.contains(&want), "no {want:?} in {ran}");
    }
    let again = daemon
        .docker()
        .args(["build", "-t", "dadd", &ctx.arg()])
        .env("DOCKER_BUILDKIT", "0")
        .output()?;
    let log = text(&again);
    ensure!(again.status.success(), "{log}");
    ensure!(log.matches("Using cache").count() == 5, "{log}");

    let zeros = "0".repeat(64);
    let bad = Ctx::new(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\nADD --checksum=sha256:{zeros} {} /x\n",
            url("hello.txt")
        ),
    )])?;
    let out = daemon.docker().args(["build", &bad.arg()]).output()?;
    ensure!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    for w in [
        "Dockerfile:2".to_string(),
        format!("expected sha256:{zeros}"),
        format!("got sha256:{sum}"),
    ] {
        ensure!(all.contains(&w), "no {w:?} in {all}");
    }
    daemon.stop()?;
    pod.stop()
}

/// Peak RSS (KiB) of `hutch build` (its largest process) under GNU time.
fn build_peak_rss(pod: &Pod, ctx: &Ctx) -> Result<u64> {
    let out = pod
        .exec("/usr/bin/time")
        .args(["-f", "maxrss=%M"])
        .arg(hutch_bin())
        .args(["build", "--no-cache", &ctx.arg()])
        .output()?;
    ensure!(out.status.success(), "build: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("maxrss="))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no maxrss in {err}"))
}

#[test]
fn hutch_build_add_url_streams_in_bounded_memory() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let srv = Ctx::new(&[])?;
    serve_file(&srv, "small.bin", "tiny\n")?;
    // 64 MiB of incompressible bytes.
    let big = srv.path().join("big.bin");
    let mut f = std::fs::File::create(&big)?;
    let mut rng = std::io::Read::take(std::fs::File::open("/dev/urandom")?, 64 << 20);
    std::io::copy(&mut rng, &mut f)?;
    drop(f);
    hutch_tests::build_context::set_mode(&big, 0o644)?;
    let _server = HttpFixture::start(&pod, PORT, srv.path())?;
    let small_ctx = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nADD {} /f\n", url("small.bin")),
    )])?;
    let big_ctx = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nADD {} /f\n", url("big.bin")),
    )])?;
    let small = build_peak_rss(&pod, &small_ctx)?;
    let large = build_peak_rss(&pod, &big_ctx)?;
    eprintln!("peak RSS: {small} KiB for a 5-byte ADD, {large} KiB for a 64 MiB ADD");
    ensure!(
        large < small + 24 * 1024,
        "a 64 MiB download raised the peak RSS from {small} KiB to {large} KiB"
    );
    pod.stop()
}
