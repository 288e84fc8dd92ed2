//! Container start latency inside the pod simulator, against baselines
//! measured in the same run and the same pod:
//!
//! * hutch: create → start → wait → delete of `busybox true` through the
//!   engine's runtime API (`hutch __runtime run --repeat N --timings`);
//! * floor: `unshare --user --map-root-user --mount --pid --fork --ipc --uts true`;
//! * crun: `crun run` of the same rootfs with a user namespace, when crun is
//!   installed and the pod lets it run at all (procMount: Unmasked).
//!
//! Prints the median of each and the ratios; asserts nothing about time.
//! `runtime-bench time --runs N -- CMD...` is the timing loop it runs inside
//! the pod for the baselines.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hutch_tests::podsim::PodSpec;
use hutch_tests::runtime::{Rig, LAYERS};
use serde::Deserialize;

#[derive(Parser)]
#[command(about = "Container start latency in the pod simulator")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Runs of each subject.
    #[arg(long, default_value_t = 50)]
    runs: u32,
    /// Which pod to measure in.
    #[arg(long, value_enum, default_value_t = PodKind::Unmasked)]
    pod: PodKind,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run CMD `runs` times and print the latencies as JSON (inside the pod).
    Time {
        #[arg(long)]
        runs: u32,
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PodKind {
    /// procMount: Unmasked (containers get a fresh /proc; crun works).
    Unmasked,
    /// The default masked pod (hutch runs in degraded proc mode).
    Default,
}

#[derive(Deserialize)]
struct Timings {
    runs_ms: Vec<f64>,
}

const FLOOR: &[&str] = &[
    "unshare",
    "--user",
    "--map-root-user",
    "--mount",
    "--pid",
    "--fork",
    "--ipc",
    "--uts",
    "true",
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Cmd::Time { runs, cmd }) => time_loop(runs, &cmd),
        None => bench(cli.runs, cli.pod),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runtime-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cmd` `runs` times, each to completion, and prints the latencies.
fn time_loop(runs: u32, cmd: &[String]) -> anyhow::Result<()> {
    let (program, args) = cmd.split_first().context("no command")?;
    let mut runs_ms = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {program}"))?;
        runs_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(status.success(), "{cmd:?}: {status}");
    }
    println!("{}", serde_json::json!({ "runs_ms": runs_ms }));
    Ok(())
}

fn bench(runs: u32, kind: PodKind) -> anyhow::Result<()> {
    let pod = match kind {
        PodKind::Unmasked => PodSpec::new().proc_unmasked(),
        PodKind::Default => PodSpec::new(),
    };
    let rig = Rig::start(&pod)?;
    let spec = rig.spec("bench", &["true"]);
    let runs_arg = runs.to_string();

    let out = rig
        .command(&[&spec], &["--repeat".into(), runs_arg, "--timings".into()])?
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "hutch: {}", out.status);
    let hutch = median(serde_json::from_slice::<Timings>(&out.stdout)?.runs_ms);

    let floor = median(time_in_pod(&rig, runs, FLOOR)?);

    let crun = if kind == PodKind::Unmasked && Path::new("/usr/bin/crun").exists() {
        let bundle = crun_bundle(&rig)?;
        Some(median(time_in_pod(
            &rig,
            runs,
            &["crun", "run", "--bundle", &bundle, "hutch-bench"],
        )?))
    } else {
        None
    };
    rig.pod.stop()?;

    let pod_name = match kind {
        PodKind::Unmasked => "procMount: Unmasked",
        PodKind::Default => "default (masked /proc)",
    };
    println!("container start latency, median of {runs}, pod {pod_name}:");
    println!("  hutch create→start→wait→delete  {hutch:7.2} ms");
    println!("  unshare floor                    {floor:7.2} ms");
    println!("  hutch / floor                    {:7.2}×", hutch / floor);
    match crun {
        Some(crun) => {
            println!("  crun run                         {crun:7.2} ms");
            println!("  hutch / crun                     {:7.2}×", hutch / crun);
        }
        None if kind == PodKind::Unmasked => println!("  crun run: not installed"),
        None => println!("  crun run: cannot run in a masked pod"),
    }
    Ok(())
}

/// `runtime-bench time` as pod root.
fn time_in_pod(rig: &Rig, runs: u32, cmd: &[&str]) -> anyhow::Result<Vec<f64>> {
    let me = std::env::current_exe()?;
    let out = rig
        .pod
        .exec(me)
        .args(["time", "--runs", &runs.to_string(), "--"])
        .args(cmd)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("timing {cmd:?} in the pod: {}", out.status);
    }
    Ok(serde_json::from_slice::<Timings>(&out.stdout)?.runs_ms)
}

/// An OCI bundle for crun over the same busybox layer: crun's own default
/// spec (Docker-like mounts, masks and capabilities), running `true` on the
/// read-only layer with a user namespace mapping the pod's IDs 1:1 (as
/// hutch's identity mode).
fn crun_bundle(rig: &Rig) -> anyhow::Result<String> {
    let host_dir = rig.pod.data_dir_host().join("specs/crun-bundle");
    std::fs::create_dir_all(&host_dir)?;
    // Writing the default spec is plain file output: no namespaces involved.
    let status = Command::new("crun")
        .args(["spec", "--rootless"])
        .current_dir(&host_dir)
        .status()?;
    ensure!(status.success(), "crun spec: {status}");
    let file = host_dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    config["process"]["args"] = serde_json::json!(["true"]);
    config["process"]["terminal"] = serde_json::json!(false);
    config["root"] = serde_json::json!({ "path": format!("{LAYERS}/busybox"), "readonly": true });
    let map = serde_json::json!([{ "containerID": 0, "hostID": 0, "size": 65536 }]);
    config["linux"]["uidMappings"] = map.clone();
    config["linux"]["gidMappings"] = map;
    std::fs::write(&file, serde_json::to_vec_pretty(&config)?)?;
    Ok(format!(
        "{}/specs/crun-bundle",
        rig.pod.data_root().display()
    ))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}
