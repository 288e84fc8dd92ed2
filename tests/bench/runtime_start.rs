//! Container start latency inside the pod simulator, against baselines
//! measured in the same run and the same pod:
//!
//! * hutch engine: create → start → wait → remove of `busybox true` through
//!   the engine API the daemon calls (`hutch __engine bench`): container
//!   record, a pre-spawned supervisor, logs, state files — the full path;
//! * hutch runtime: the same through the bare runtime API and a runtime
//!   helper process (`hutch __runtime run --repeat N --timings`), which,
//!   having no zygote, compiles the seccomp profile for each container;
//! * floor: `unshare --user --map-root-user --mount --pid --fork --ipc --uts true`;
//! * crun: `crun run` of the same rootfs with a user namespace, when crun is
//!   installed and the pod lets it run at all (procMount: Unmasked).
//!
//! The engine's data root is a fresh ext4 filesystem of its own (a loop
//! image mounted before the pod starts, as `pull.sh` does): on a shared
//! disk, ext4 creates files several times slower for a while after many
//! recent deletions (its inode allocator skips recently deleted inodes), so
//! back-to-back runs drifted from 3x to 7-10x the floor. `--disk emptydir`
//! measures on the pod's data directory instead.
//!
//! Prints the median of each and the ratios; asserts nothing about time.
//! `runtime-bench time --runs N -- CMD...` is the timing loop it runs inside
//! the pod for the baselines.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use clap::{Parser, Subcommand, ValueEnum};
use hutch_tests::engine::IMAGE;
use hutch_tests::loop_disk::LoopDisk;
use hutch_tests::podsim::{hutch_bin, PodSpec};
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
    /// Where the engine's data root lives.
    #[arg(long, value_enum, default_value_t = Disk::Loop)]
    disk: Disk,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Disk {
    /// A fresh ext4 loop image of its own (repeatable).
    Loop,
    /// The pod's data directory on the node's disk (as in production).
    Emptydir,
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

/// `__engine bench`'s figures: the whole, and each phase.
#[derive(Deserialize)]
struct EngineTimings {
    runs_ms: Vec<f64>,
    create_ms: Vec<f64>,
    start_ms: Vec<f64>,
    wait_ms: Vec<f64>,
    remove_ms: Vec<f64>,
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
        None => bench(cli.runs, cli.pod, cli.disk),
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

fn bench(runs: u32, kind: PodKind, disk: Disk) -> anyhow::Result<()> {
    let pod = match kind {
        PodKind::Unmasked => PodSpec::new().proc_unmasked(),
        PodKind::Default => PodSpec::new(),
    };
    // Mounted before the pod starts, so the pod's mount namespace has it.
    let loop_disk = match disk {
        Disk::Loop => Some(LoopDisk::make()?),
        Disk::Emptydir => None,
    };
    let rig = Rig::start(&pod)?;
    let data_root = match &loop_disk {
        Some(d) => d.data_root_for(&rig.pod)?,
        None => "/var/lib/hutch".to_string(),
    };
    let data_root = data_root.as_str();
    load_busybox(&rig, data_root)?;
    let engine_out = rig
        .pod
        .exec(hutch_bin())
        .args(["--data-root", data_root, "__engine", "bench", "--repeat"])
        .arg(runs.to_string())
        .args([IMAGE, "true"])
        .stderr(Stdio::inherit())
        .output()?;
    ensure!(
        engine_out.status.success(),
        "hutch __engine bench: {}",
        engine_out.status
    );
    let phases = serde_json::from_slice::<EngineTimings>(&engine_out.stdout)?;
    let engine = median(phases.runs_ms);
    let phases = [
        ("create", median(phases.create_ms)),
        ("start", median(phases.start_ms)),
        ("wait", median(phases.wait_ms)),
        ("remove", median(phases.remove_ms)),
    ];
    let rss = idle_rss(&rig, data_root, IDLE_CONTAINERS)?;
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
    drop(loop_disk);

    let pod_name = match kind {
        PodKind::Unmasked => "procMount: Unmasked",
        PodKind::Default => "default (masked /proc)",
    };
    let disk_name = match disk {
        Disk::Loop => "a fresh ext4 loop image",
        Disk::Emptydir => "the pod's emptyDir",
    };
    println!(
        "container start latency, median of {runs}, pod {pod_name}, data root on {disk_name}:"
    );
    println!("  hutch engine create→start→wait→rm {engine:7.2} ms");
    let phases: Vec<String> = phases
        .iter()
        .map(|(name, ms)| format!("{name} {ms:.2}"))
        .collect();
    println!("    phase medians (ms): {}", phases.join(", "));
    println!(
        "  hutch runtime (helper process)     {hutch:7.2} ms  (compiles seccomp each time, ~12 ms)"
    );
    println!("  unshare floor                      {floor:7.2} ms");
    println!(
        "  engine / floor                     {:7.2}×",
        engine / floor
    );
    println!(
        "  runtime / floor                    {:7.2}×",
        hutch / floor
    );
    match crun {
        Some(crun) => {
            println!("  crun run                         {crun:7.2} ms");
            println!(
                "  engine / crun                      {:7.2}×",
                engine / crun
            );
        }
        None if kind == PodKind::Unmasked => println!("  crun run: not installed"),
        None => println!("  crun run: cannot run in a masked pod"),
    }
    println!(
        "memory, {} idle `sleep 3600` containers: supervisors {:.0} KiB RSS ({:.0} KiB PSS) each; \
         engine process {:.1} MiB RSS ({:.1} MiB PSS), {:.1} MiB RSS before the first container; \
         supervisor zygote {:.0} KiB RSS ({:.0} KiB PSS)",
        rss.containers,
        rss.supervisor_rss_kib,
        rss.supervisor_pss_kib,
        rss.engine.0 / 1024.0,
        rss.engine.1 / 1024.0,
        rss.engine_idle_rss_kib / 1024.0,
        rss.zygote.0,
        rss.zygote.1,
    );
    println!(
        "  per container (engine growth + supervisor, RSS / PSS): {:.0} KiB / {:.0} KiB",
        rss.supervisor_rss_kib + (rss.engine.0 - rss.engine_idle_rss_kib) / rss.containers as f64,
        rss.supervisor_pss_kib + (rss.engine.1 - rss.engine_idle_pss_kib) / rss.containers as f64,
    );
    Ok(())
}

/// Containers started for the memory figure.
const IDLE_CONTAINERS: usize = 100;

struct Memory {
    containers: usize,
    supervisor_rss_kib: f64,
    supervisor_pss_kib: f64,
    /// (RSS, PSS) in KiB.
    engine: (f64, f64),
    engine_idle_rss_kib: f64,
    engine_idle_pss_kib: f64,
    zygote: (f64, f64),
}

/// (RSS, PSS) in KiB of a pod process, from /proc/PID/smaps_rollup.
fn rss_pss(rig: &Rig, pid: &str) -> anyhow::Result<(f64, f64)> {
    let out = rig
        .pod
        .exec("cat")
        .arg(format!("/proc/{pid}/smaps_rollup"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} of {pid}: {text}"))
    };
    Ok((field("Rss:")?, field("Pss:")?))
}

/// `hutch load` of the busybox test image into the pod's data root.
fn load_busybox(rig: &Rig, data_root: &str) -> anyhow::Result<()> {
    let image = hutch_tests::testimages::busybox()?;
    let status = rig
        .pod
        .exec(hutch_bin())
        .args(["--data-root", data_root, "load", "-q", "-i"])
        .arg(&image.docker_archive)
        .status()?;
    ensure!(status.success(), "hutch load: {status}");
    Ok(())
}

/// Starts `n` idle containers from one engine process (`__engine serve`),
/// then measures the supervisors' and the engine's memory from
/// /proc/PID/smaps_rollup inside the pod.
fn idle_rss(rig: &Rig, data_root: &str, n: usize) -> anyhow::Result<Memory> {
    let mut child = rig
        .pod
        .exec(hutch_bin())
        .args(["--data-root", data_root, "__engine", "serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().context("serve stdin")?;
    let mut stdout = std::io::BufReader::new(child.stdout.take().context("serve stdout")?);
    let mut call = |line: &str| -> anyhow::Result<String> {
        use std::io::{BufRead, Write};
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        let mut out = String::new();
        loop {
            let mut l = String::new();
            ensure!(stdout.read_line(&mut l)? > 0, "serve ended");
            if let Some(code) = l.trim_end().strip_prefix("--end ") {
                ensure!(code == "0", "{line}: {out}");
                return Ok(out);
            }
            out.push_str(&l);
        }
    };
    let engine_pid = call("pid")?.trim().to_string();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The engine is non-dumpable: it reports its own figures.
    let (engine_idle_rss_kib, engine_idle_pss_kib) = two_numbers(&call("memory")?)?;
    let zygote_pid = rig
        .pod
        .exec("cat")
        .arg(format!("/proc/{engine_pid}/task/{engine_pid}/children"))
        .output()?;
    let zygote_pid = String::from_utf8_lossy(&zygote_pid.stdout)
        .split_whitespace()
        .next()
        .context("the supervisor zygote")?
        .to_string();
    for i in 0..n {
        call(&format!("run -d --name idle{i} {IMAGE} sleep 3600"))?;
    }
    // Idle means settled: a supervisor lets go of the code pages it ran
    // once it has been idle for two seconds (engine/src/supervisor/trim.rs).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let engine = two_numbers(&call("memory")?)?;
    let zygote = rss_pss(rig, &zygote_pid)?;
    let script = format!(
        "for f in {data_root}/containers/*/state.json; do \
           p=$(grep -o 'SupervisorPid.:[0-9]*' $f | cut -d: -f2); \
           awk '/^Rss:/ {{r=$2}} /^Pss:/ {{p=$2}} END {{print r, p}}' /proc/$p/smaps_rollup; \
         done | awk '{{r+=$1; p+=$2; n++}} END {{print n, r/n, p/n}}'"
    );
    let out = rig.pod.exec("sh").args(["-c", &script]).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    ensure!(
        f.len() == 3,
        "measuring memory: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..n {
        call(&format!("rm -f idle{i}"))?;
    }
    drop(stdin);
    let _ = child.wait();
    Ok(Memory {
        containers: f[0] as usize,
        supervisor_rss_kib: f[1],
        supervisor_pss_kib: f[2],
        engine,
        engine_idle_rss_kib,
        engine_idle_pss_kib,
        zygote,
    })
}

/// "RSS PSS" as `__engine memory` prints them.
fn two_numbers(text: &str) -> anyhow::Result<(f64, f64)> {
    let f: Vec<f64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match f[..] {
        [rss, pss] => Ok((rss, pss)),
        _ => bail!("engine memory: {text}"),
    }
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
