//! End-to-end API latency inside the pod simulator, with `hutch daemon` and
//! the real docker CLI, against a floor measured in the same run:
//!
//! * `docker run --rm busybox true` (create, attach, wait, start, the exit,
//!   the removal) against `docker version` on the same socket — the CLI's
//!   own start-up plus one round trip, the least any CLI command costs;
//!   and the same run with `--network none`, which shows what joining the
//!   default bridge network costs;
//! * the daemon's share of that run: the CLI's requests for it sent
//!   straight to the socket ([`direct`]), phase by phase, against a
//!   `GET /_ping` round trip; what is left of the CLI's time is its own
//!   work;
//! * `GET /containers/json?all=1` with 100 containers, p50 and p99, over one
//!   kept-alive connection.
//!
//! The daemon's data root is a fresh ext4 filesystem of its own
//! ([`LoopDisk`], as `runtime-bench` has), as a pod's emptyDir on a node's
//! disk would be: this machine's root filesystem is an ext4 without a
//! journal, on which file creation slows with every file deleted in the
//! last half minute (the runs' own container directories included), so a
//! run drifted with what ran before it. `--disk emptydir` measures on the
//! pod's data directory instead.
//!
//! The timing loops run inside the pod (`api-bench time` and `api-bench
//! list`), so `podsim exec` is not measured. Prints the figures and ratios;
//! asserts nothing about time.

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hutch_tests::daemon::{Daemon, DOCKER_CLI, DOCKER_HOST};
use hutch_tests::loop_disk::LoopDisk;
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

#[path = "api_bench/conn.rs"]
mod conn;
#[path = "api_bench/direct.rs"]
mod direct;

#[derive(Parser)]
#[command(about = "Docker API latency in the pod simulator")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Runs of each CLI subject.
    #[arg(long, default_value_t = 30)]
    runs: u32,
    /// Containers to list.
    #[arg(long, default_value_t = 100)]
    containers: u32,
    /// List requests to time.
    #[arg(long, default_value_t = 1000)]
    requests: u32,
    #[arg(long, value_enum, default_value_t = PodKind::Default)]
    pod: PodKind,
    /// Where the daemon's data root lives.
    #[arg(long, value_enum, default_value_t = Disk::Loop)]
    disk: Disk,
    /// Copy the daemon's debug log (request and phase timestamps) here;
    /// without it the daemon logs at its default level, as deployed.
    #[arg(long)]
    log: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Inside the pod: run each CMD (`;;`-separated) in turn, `runs` rounds,
    /// and print each one's latencies (ms) as a JSON list of lists.
    Time {
        #[arg(long)]
        runs: u32,
        #[arg(trailing_var_arg = true, required = true)]
        cmds: Vec<String>,
    },
    /// Inside the pod: `docker run --rm IMAGE true`'s requests without
    /// the CLI, `runs` rounds; prints each round's phases (ms) as JSON.
    Direct {
        #[arg(long)]
        runs: u32,
        image: String,
    },
    /// Inside the pod: GET `path` `requests` times on one connection and
    /// print the latencies (ms) as JSON.
    Get {
        #[arg(long)]
        requests: u32,
        path: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Disk {
    /// A fresh ext4 loop image of its own (repeatable).
    Loop,
    /// The pod's data directory, on the machine's shared disk.
    Emptydir,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PodKind {
    /// The default masked pod (the common case: degraded /proc mode).
    Default,
    /// procMount: Unmasked.
    Unmasked,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Time { runs, cmds }) => time(runs, &cmds),
        Some(Cmd::Direct { runs, image }) => direct::run(runs, &image),
        Some(Cmd::Get { requests, path }) => get(requests, &path),
        None => bench(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn time(runs: u32, words: &[String]) -> anyhow::Result<()> {
    let cmds: Vec<&[String]> = words.split(|w| w == ";;").collect();
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); cmds.len()];
    for _ in 0..runs {
        // Interleaved, so drift affects every subject alike.
        for (i, cmd) in cmds.iter().enumerate() {
            let (program, args) = cmd.split_first().context("an empty command")?;
            let started = Instant::now();
            let status = Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            out[i].push(started.elapsed().as_secs_f64() * 1000.0);
            ensure!(status.success(), "{cmd:?} failed: {status}");
        }
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn get(requests: u32, path: &str) -> anyhow::Result<()> {
    let mut c = conn::Conn::open()?;
    let mut times = Vec::with_capacity(requests as usize);
    let mut body = Vec::new();
    for _ in 0..requests {
        let started = Instant::now();
        c.send("GET", path, "", None)?;
        let head = c.head()?;
        ensure!(head.status == 200, "GET {path}: {}", head.status);
        ensure!(head.length.is_some(), "no content-length");
        body = c.body(&head)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let listed: serde_json::Value = serde_json::from_slice(&body)?;
    eprintln!(
        "listed {} containers",
        listed.as_array().map_or(0, Vec::len)
    );
    println!("{}", serde_json::to_string(&times)?);
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn bench(cli: &Cli) -> anyhow::Result<()> {
    let image = testimages::busybox()?;
    let spec = match cli.pod {
        PodKind::Default => PodSpec::new(),
        PodKind::Unmasked => PodSpec::new().proc_unmasked(),
    };
    // Mounted before the pod starts, so the pod's mount namespace has it.
    let disk = match cli.disk {
        Disk::Loop => Some(LoopDisk::make()?),
        Disk::Emptydir => None,
    };
    let pod = Pod::start(&spec)?;
    let data_root = match &disk {
        Some(d) => vec!["--data-root".to_string(), d.data_root_for(&pod)?],
        None => Vec::new(),
    };
    let data_root: Vec<&str> = data_root.iter().map(String::as_str).collect();
    // At the default level, as deployed (debug logging writes a dozen
    // lines per `docker run`); at debug only when its log is wanted.
    let level = if cli.log.is_some() {
        "info,hutch=debug"
    } else {
        "info"
    };
    let daemon = Daemon::start_logging(&pod, &data_root, level)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let me = std::env::current_exe()?;
    let in_pod = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = pod
            .exec(&me)
            .args(args)
            .env("DOCKER_HOST", DOCKER_HOST)
            .env("DOCKER_CONFIG", "/tmp/docker-config")
            .output()?;
        ensure!(
            out.status.success(),
            "api-bench {args:?} in the pod: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let runs = cli.runs.to_string();
    let timed = in_pod(&[
        "time",
        "--runs",
        &runs,
        "--",
        DOCKER_CLI,
        "version",
        ";;",
        DOCKER_CLI,
        "run",
        "--rm",
        &image.reference,
        "true",
        ";;",
        DOCKER_CLI,
        "run",
        "--rm",
        "--network",
        "none",
        &image.reference,
        "true",
    ])?;
    let series: Vec<Vec<f64>> = serde_json::from_value(timed)?;
    let [version, run, bare] =
        [0, 1, 2].map(|i| sorted(series.get(i).cloned().unwrap_or_default()));
    let (v50, r50) = (percentile(&version, 50.0), percentile(&run, 50.0));
    let n50 = percentile(&bare, 50.0);
    println!(
        "docker version (floor):      median {v50:7.2} ms  (p90 {:.2})",
        percentile(&version, 90.0)
    );
    println!(
        "docker run --rm busybox true: median {r50:7.2} ms  (p90 {:.2})  = {:.2}x the floor (target <= 2x)",
        percentile(&run, 90.0),
        r50 / v50
    );
    // The same without the default bridge network: the difference is what
    // the netns, veth, IPAM, DNS files and the hook round trip cost a run.
    println!(
        "  ... --network none:         median {n50:7.2} ms  (p90 {:.2})  = {:.2}x the floor; the bridge costs {:.2}x (+{:.1} ms)",
        percentile(&bare, 90.0),
        n50 / v50,
        r50 / n50,
        r50 - n50
    );
    let rounds: Vec<direct::Round> =
        serde_json::from_value(in_pod(&["direct", "--runs", &runs, &image.reference])?)?;
    let median =
        |f: fn(&direct::Round) -> f64| percentile(&sorted(rounds.iter().map(f).collect()), 50.0);
    let (ping, total) = (median(|r| r.ping), median(|r| r.total));
    println!(
        "  ... its requests without the CLI: median {total:7.2} ms = {:.1}x a /_ping round trip ({ping:.2} ms): create {:.2}, attach+wait {:.2}, start {:.2}, exit+removal {:.2}; the CLI's own work is the other {:.1} ms",
        total / ping,
        median(|r| r.create),
        median(|r| r.attach_wait),
        median(|r| r.start),
        median(|r| r.exit_removed),
        r50 - total
    );

    for _ in 0..cli.containers {
        daemon.docker_ok(&["create", "--label", "bench=1", &image.reference, "true"])?;
    }
    let requests = cli.requests.to_string();
    let times: Vec<f64> = serde_json::from_value(in_pod(&[
        "get",
        "--requests",
        &requests,
        "/v1.50/containers/json?all=1",
    ])?)?;
    let times = sorted(times);
    println!(
        "GET /containers/json, {} containers: p50 {:.2} ms, p99 {:.2} ms (target p99 <= 5 ms)",
        cli.containers,
        percentile(&times, 50.0),
        percentile(&times, 99.0)
    );
    daemon.docker_ok(&["container", "prune", "-f"])?;
    if let Some(path) = &cli.log {
        std::fs::write(path, daemon.log())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}
