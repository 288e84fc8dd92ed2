//! Image build time inside the pod simulator: daemonless `hutch build`
//! against Debian's buildah (`buildah bud --layers`) in the same pod, same
//! Dockerfile, same context, both storing under the pod's data directory:
//!
//! ```text
//! FROM busybox AS build
//! COPY ctx/ /src/            # 2,000 files, 50 MB of incompressible data
//! RUN mkdir /gen && ...      # writes 1,000 files
//! FROM busybox
//! COPY --from=build /gen /gen
//! ```
//!
//! Figures: a cold build (no build cache: `--no-cache`), a rebuild with
//! nothing changed, and a rebuild after one source file changed (which
//! steps rerun). Prints medians and hutch/buildah ratios; asserts only that
//! the builds work and that the touched-file rebuild reran exactly the steps
//! after the COPY.
//!
//! buildah runs as pod root inside a user namespace this binary makes (the
//! pod's 65,536 IDs mapped 1:1, a mount namespace with a tmpfs on
//! /var/cache, which is the host's), with `--isolation chroot`: the default
//! pod has no CAP_SYS_ADMIN for buildah's mounts, its crun cannot set the
//! sysctls containers.conf asks for in a pod's read-only /proc/sys, and
//! `unshare --map-root-user` denies the setgroups buildah's RUN needs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::testimages;

#[derive(Parser)]
#[command(about = "Image build time in the pod simulator, against buildah")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Runs of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run CMD once and print `{"ms": ..., "output": ...}` (inside the pod).
    Time {
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
    /// Run CMD as root of a new user namespace mapping IDs 0-65535 1:1, with
    /// a mount namespace of its own (inside the pod).
    Userns {
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Time { cmd }) => time_once(&cmd),
        Some(Cmd::Userns { cmd }) => userns_exec(&cmd),
        None => bench(cli.runs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("build-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn time_once(cmd: &[String]) -> anyhow::Result<()> {
    let (program, args) = cmd.split_first().context("no command")?;
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "{cmd:?}: {}\n{output}", out.status);
    println!("{}", serde_json::json!({ "ms": ms, "output": output }));
    Ok(())
}

/// Forks a child that unshares a user and mount namespace; the parent (pod
/// root, which holds CAP_SETUID/CAP_SETGID over the pod's IDs) writes its
/// ID maps, then the child execs CMD.
fn userns_exec(cmd: &[String]) -> anyhow::Result<()> {
    use nix::sched::{unshare, CloneFlags};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, read, write, ForkResult};
    use std::os::unix::process::CommandExt;

    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // SAFETY: the child only makes syscalls and execs (this process is
    // single-threaded here).
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(ready_r);
            drop(go_w);
            let unshared = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS);
            let _ = write(&ready_w, &[u8::from(unshared.is_ok())]);
            let mut b = [0u8; 1];
            if unshared.is_err() || read(&go_r, &mut b) != Ok(1) || b[0] != 1 {
                std::process::exit(125);
            }
            let (program, args) = match cmd.split_first() {
                Some(p) => p,
                None => std::process::exit(125),
            };
            let err = Command::new(program).args(args).exec();
            eprintln!("exec {program}: {err}");
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(go_r);
            let mut b = [0u8; 1];
            ensure!(
                read(&ready_r, &mut b) == Ok(1) && b[0] == 1,
                "the child could not unshare a user namespace"
            );
            let pid = child.as_raw();
            let mapped = std::fs::write(format!("/proc/{pid}/uid_map"), "0 0 65536\n")
                .and_then(|()| std::fs::write(format!("/proc/{pid}/gid_map"), "0 0 65536\n"));
            write(&go_w, &[u8::from(mapped.is_ok())])?;
            mapped.context("writing the child's ID maps")?;
            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => bail!("{cmd:?}: {status:?}"),
            }
        }
    }
}

/// A tiny xorshift generator: incompressible, reproducible content fast.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

const FILES: usize = 2000;
const FILE_SIZE: usize = 25 * 1024;

fn make_context(dir: &Path, base: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; FILE_SIZE];
    for i in 0..FILES {
        let sub = dir.join(format!("ctx/d{:02}", i % 20));
        std::fs::create_dir_all(&sub)?;
        noise.fill(&mut buf);
        std::fs::write(sub.join(format!("f{i:04}")), &buf)?;
    }
    let df = format!(
        "FROM {base} AS build\n\
         COPY ctx/ /src/\n\
         RUN mkdir /gen && for i in $(seq 1 1000); do echo $i > /gen/f$i; done\n\
         FROM {base}\n\
         COPY --from=build /gen /gen\n"
    );
    std::fs::write(dir.join("Dockerfile"), df)?;
    // The pod reads the context as "other".
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()?;
    ensure!(status.success(), "chmod the context");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

struct Timed {
    ms: f64,
    output: String,
}

fn timed(pod: &Pod, bench: &Path, cmd: &[&str]) -> anyhow::Result<Timed> {
    let out = pod
        .exec(bench)
        .arg("time")
        .arg("--")
        .args(cmd)
        .env("HOME", "/tmp")
        .env("XDG_CONFIG_HOME", "/tmp/config")
        .output()
        .context("podsim exec")?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim().lines().last().unwrap_or(""))
        .with_context(|| format!("not JSON: {text}"))?;
    Ok(Timed {
        ms: v["ms"].as_f64().unwrap_or(f64::NAN),
        output: v["output"].as_str().unwrap_or_default().to_owned(),
    })
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One builder's commands.
struct Builder {
    name: &'static str,
    build: Vec<String>,
    no_cache: Vec<String>,
    /// How its log says a step came from the cache.
    cached_marker: &'static str,
}

fn bench(runs: u32) -> anyhow::Result<()> {
    let image = testimages::busybox()?;
    let ctx = hutch_tests::workspace::target_dir().join("bench-build-context");
    make_context(&ctx, &image.reference)?;
    let ctx_s = ctx.display().to_string();
    let bench_bin = std::env::current_exe()?;
    let pod = Pod::start(&PodSpec::new())?;
    let hutch = hutch_bin().display().to_string();
    let archive = image.docker_archive.display().to_string();

    // Base image into both stores.
    let out = pod.exec(&hutch).args(["load", "-i", &archive]).output()?;
    ensure!(out.status.success(), "hutch load: {out:?}");
    let buildah_root = "/var/lib/hutch/buildah";
    let bah = |args: &str| -> Vec<String> {
        vec![
            bench_bin.display().to_string(),
            "userns".into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "mount --make-rprivate / && mount -t tmpfs tmpfs /var/cache && \
                 exec /usr/bin/buildah --root {buildah_root}/root --runroot {buildah_root}/run \
                 --storage-driver overlay {args}"
            ),
        ]
    };
    let pull = bah(&format!(
        "pull -q docker-archive:{archive} && /usr/bin/buildah --root {buildah_root}/root \
         --runroot {buildah_root}/run --storage-driver overlay tag \
         $(/usr/bin/buildah --root {buildah_root}/root --runroot {buildah_root}/run \
         --storage-driver overlay images -q | head -1) {}",
        image.reference
    ));
    let pull_refs: Vec<&str> = pull.iter().map(String::as_str).collect();
    timed(&pod, &bench_bin, &pull_refs).context("loading the base image into buildah")?;

    let builders = [
        Builder {
            name: "hutch",
            build: vec![
                hutch.clone(),
                "build".into(),
                "-t".into(),
                "bench".into(),
                ctx_s.clone(),
            ],
            no_cache: vec![
                hutch.clone(),
                "build".into(),
                "--no-cache".into(),
                "-t".into(),
                "bench".into(),
                ctx_s.clone(),
            ],
            cached_marker: "Using cache",
        },
        Builder {
            name: "buildah",
            build: bah(&format!("bud --isolation chroot --layers -t bench {ctx_s}")),
            no_cache: bah(&format!(
                "bud --isolation chroot --layers --no-cache -t bench {ctx_s}"
            )),
            cached_marker: "Using cache",
        },
    ];

    let mut rows = Vec::new();
    for b in &builders {
        let mut cold = Vec::new();
        for _ in 0..runs {
            // Cold means no cache of any kind: hutch's stat-keyed hashes go too.
            let forgot = pod
                .exec("/bin/rm")
                .args(["-f", "/var/lib/hutch/builder/hashcache"])
                .status()?;
            ensure!(forgot.success(), "removing the hash cache");
            cold.push(timed(&pod, &bench_bin, &refs(&b.no_cache))?.ms);
        }
        // Fill the cache from the current context, then rebuild unchanged.
        timed(&pod, &bench_bin, &refs(&b.build))?;
        let mut warm = Vec::new();
        let mut warm_log = String::new();
        for _ in 0..runs.max(3) {
            let t = timed(&pod, &bench_bin, &refs(&b.build))?;
            warm.push(t.ms);
            warm_log = t.output;
        }
        let warm_hits = warm_log.matches(b.cached_marker).count();
        // One source file changes: only the steps after that COPY rerun.
        let mut touched = Vec::new();
        let mut touched_hits = Vec::new();
        for i in 0..runs {
            let f = ctx.join("ctx/d07/f0007");
            let mut file = std::fs::OpenOptions::new().append(true).open(&f)?;
            writeln!(file, "change {i} for {}", b.name)?;
            let t = timed(&pod, &bench_bin, &refs(&b.build))?;
            touched.push(t.ms);
            touched_hits.push(t.output.matches(b.cached_marker).count());
        }
        // The machine is shared and noisy: show the spread, not only medians.
        let ms = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>();
        println!(
            "{} samples (ms): cold {:?}, no change {:?}, one file touched {:?}",
            b.name,
            ms(&cold),
            ms(&warm),
            ms(&touched)
        );
        rows.push((
            b.name,
            median(cold),
            median(warm),
            warm_hits,
            median(touched),
            touched_hits,
        ));
    }

    println!("build benchmark in podsim: FROM busybox, COPY {FILES} files / {} MB, RUN writing 1,000 files, COPY --from; {runs} runs each, medians",
        FILES * FILE_SIZE / 1_000_000);
    println!(
        "{:<8} {:>12} {:>18} {:>20}",
        "", "cold (ms)", "no change (ms)", "one file touched (ms)"
    );
    for (name, cold, warm, hits, touched, th) in &rows {
        println!(
            "{name:<8} {cold:>12.0} {warm:>12.0} ({hits} cached) {touched:>12.0} ({th:?} cached)"
        );
    }
    let (h, b) = (&rows[0], &rows[1]);
    println!(
        "ratios hutch/buildah: cold {:.2}x, no change {:.2}x, one file touched {:.2}x",
        h.1 / b.1,
        h.2 / b.2,
        h.4 / b.4
    );
    println!(
        "targets: cold <= 0.5x buildah ({}), no-change rebuild <= 300 ms ({:.0} ms)",
        if h.1 / b.1 <= 0.5 { "met" } else { "not met" },
        h.2
    );
    // hutch: unchanged, all 3 non-FROM steps hit; one file touched, the
    // COPY and the RUN rerun, and the second stage's COPY --from hits again
    // (its key is the content of /gen, which did not change).
    ensure!(
        h.3 == 3 && h.5.iter().all(|&n| n == 1),
        "hutch cache hits: unchanged {} (want 3), touched {:?} (want 1 each)",
        h.3,
        h.5
    );
    // Empty the data directory first: podsim's teardown has a time limit,
    // and both stores hold hundreds of MB in thousands of files by now.
    let emptied = pod
        .exec("/bin/sh")
        .args(["-c", "rm -rf /var/lib/hutch/* 2>&1"])
        .output()?;
    if !emptied.status.success() {
        eprintln!(
            "emptying the data directory: {}",
            String::from_utf8_lossy(&emptied.stdout)
        );
    }
    pod.stop()?;
    std::fs::remove_dir_all(&ctx).ok();
    Ok(())
}
