//! `hutch __engine`: the engine API driven from the command line, without a
//! daemon, for the tests and benchmarks in podsim. Each invocation enters
//! an engine namespace and opens the data root exactly as the daemon does
//! (re-adopting running containers); `serve` keeps one engine open and
//! reads one command per line from stdin, like a daemon would receive them.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::containers::client::Output;
use hutch_engine::containers::config::{
    CreateOptions, HealthConfig, LogConfig, RestartPolicy, Ulimit, UsernsMode,
};
use hutch_engine::containers::logread::{LogsOptions, Stream};
use hutch_engine::containers::timefmt;
use hutch_engine::containers::{Engine, EngineError, EngineOptions, ExecOptions, WaitCondition};

use crate::cli::GlobalOptions;

#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Mount the tmpfs layer store for private-mode containers (a daemon
    /// option).
    #[arg(long)]
    private_layers_tmpfs: bool,
    #[command(subcommand)]
    command: EngineCommand,
}

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Create and start a container; without -d, wait for it, print its
    /// logs and exit with its code.
    Run(RunArgs),
    Create(RunArgs),
    Start {
        id: String,
    },
    Stop {
        #[arg(short = 't', long)]
        time: Option<i64>,
        id: String,
    },
    Kill {
        #[arg(short, long)]
        signal: Option<String>,
        id: String,
    },
    Restart {
        id: String,
    },
    Rm {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    Rename {
        id: String,
        name: String,
    },
    /// Print the exit code once the condition holds.
    Wait {
        #[arg(long, default_value = "not-running")]
        condition: String,
        id: String,
    },
    /// One JSON object per container.
    Ps {
        #[arg(short, long)]
        all: bool,
    },
    /// The container's config and state as JSON.
    Inspect {
        id: String,
    },
    Logs(LogsArgs),
    Exec(ExecArgs),
    /// Attach stdin/stdout/stderr; exits with the container's code.
    Attach {
        #[arg(long)]
        no_stdin: bool,
        id: String,
    },
    Resize {
        id: String,
        rows: u16,
        cols: u16,
    },
    /// Print this engine process's PID (for tests that kill it).
    Pid,
    /// Print this engine process's RSS and PSS in KiB (its /proc files are
    /// closed to the pod without CAP_SYS_PTRACE: it is non-dumpable).
    Memory,
    /// Read commands (one per line, shell-like words) from stdin and run
    /// them against one open engine; each answer ends with `--end CODE`.
    Serve,
    /// create → start → wait → remove `repeat` times; prints the
    /// latencies as JSON.
    Bench {
        #[arg(long, default_value_t = 20)]
        repeat: u32,
        image: String,
        cmd: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    name: Option<String>,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short, long)]
    workdir: Option<String>,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long)]
    interactive: bool,
    #[arg(long)]
    init: bool,
    #[arg(long)]
    read_only: bool,
    #[arg(long)]
    restart: Option<String>,
    #[arg(long)]
    entrypoint: Option<String>,
    #[arg(long)]
    health_cmd: Option<String>,
    #[arg(long, value_name = "MS")]
    health_interval_ms: Option<u64>,
    #[arg(long, value_name = "MS")]
    health_timeout_ms: Option<u64>,
    #[arg(long)]
    health_retries: Option<u32>,
    #[arg(long)]
    stop_timeout: Option<u32>,
    #[arg(long)]
    stop_signal: Option<String>,
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    #[arg(long)]
    network: Option<String>,
    /// `identity` (default) or `private`.
    #[arg(long)]
    userns: Option<String>,
    /// `NAME=SOFT[:HARD]`, repeatable.
    #[arg(long)]
    ulimit: Vec<String>,
    /// `seccomp=unconfined`, `no-new-privileges`, repeatable.
    #[arg(long)]
    security_opt: Vec<String>,
    #[arg(long)]
    cap_add: Vec<String>,
    image: String,
    #[arg(trailing_var_arg = true)]
    cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(short, long)]
    follow: bool,
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    tail: Option<usize>,
    #[arg(short, long)]
    timestamps: bool,
    /// Print the raw entries as `stream<TAB>message` lines.
    #[arg(long)]
    raw: bool,
    id: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long)]
    interactive: bool,
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short, long)]
    workdir: Option<String>,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(long)]
    privileged: bool,
    id: String,
    #[arg(trailing_var_arg = true, required = true)]
    cmd: Vec<String>,
}

/// The `serve` line parser.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct Line {
    #[command(subcommand)]
    command: EngineCommand,
}

pub fn run(global: &GlobalOptions, args: EngineArgs) -> anyhow::Result<ExitCode> {
    let cmd = args.command;
    let ns = bootstrap::enter(&BootstrapOptions::default())?;
    let engine = Engine::open(EngineOptions {
        data_root: global
            .data_root
            .clone()
            .unwrap_or_else(crate::defaults::data_root),
        exe: std::env::current_exe().context("locating the hutch binary")?,
        proc_mode: ns.proc_mode,
        warnings: ns.warnings,
        on_event: None,
        private_layers_on_tmpfs: args.private_layers_tmpfs,
        networks: None,
        cgroups: None,
        prime_starts: false,
    })?;
    let code = execute(&engine, cmd, &mut std::io::stdout().lock());
    engine.flush();
    Ok(ExitCode::from(u8::try_from(code?).unwrap_or(125)))
}

fn execute(engine: &Engine, cmd: EngineCommand, out: &mut dyn Write) -> anyhow::Result<i32> {
    match cmd {
        EngineCommand::Run(args) => {
            let detach = args.detach;
            let opts = create_options(&args)?;
            let id = engine.create(opts)?.id;
            match engine.start(&id) {
                Ok(()) => {}
                Err(EngineError::Failed { code, message }) => {
                    eprintln!("hutch: {message}");
                    return Ok(code);
                }
                Err(e) => return Err(e.into()),
            }
            if detach {
                writeln!(out, "{id}")?;
                return Ok(0);
            }
            let code = engine.wait(&id, WaitCondition::NotRunning)?;
            print_logs(
                engine,
                &id,
                &LogsOptions {
                    stdout: true,
                    stderr: true,
                    ..LogsOptions::default()
                },
                false,
                false,
                out,
            )?;
            Ok(code)
        }
        EngineCommand::Create(args) => {
            let id = engine.create(create_options(&args)?)?.id;
            writeln!(out, "{id}")?;
            Ok(0)
        }
        EngineCommand::Start { id } => match engine.start(&id) {
            Ok(()) => Ok(0),
            Err(EngineError::Failed { code, message }) => {
                eprintln!("hutch: {message}");
                Ok(code)
            }
            Err(e) => Err(e.into()),
        },
        EngineCommand::Stop { time, id } => unit(engine.stop(&id, time)),
        EngineCommand::Kill { signal, id } => unit(engine.kill(&id, signal.as_deref())),
        EngineCommand::Restart { id } => unit(engine.restart(&id, None)),
        EngineCommand::Rm { force, id } => unit(engine.remove(&id, force)),
        EngineCommand::Rename { id, name } => unit(engine.rename(&id, &name)),
        EngineCommand::Wait { condition, id } => {
            let condition = match condition.as_str() {
                "next-exit" => WaitCondition::NextExit,
                "removed" => WaitCondition::Removed,
                _ => WaitCondition::NotRunning,
            };
            writeln!(out, "{}", engine.wait(&id, condition)?)?;
            Ok(0)
        }
        EngineCommand::Ps { all } => {
            for c in engine.list(all) {
                let line = serde_json::json!({
                    "Id": c.config.id,
                    "Name": c.config.name,
                    "Status": c.state.status,
                    "ExitCode": c.state.exit_code,
                    "RestartCount": c.state.restart_count,
                    "Pid": c.state.pid,
                    "Health": c.state.health.as_ref().map(|h| h.status.as_str()),
                });
                writeln!(out, "{line}")?;
            }
            Ok(0)
        }
        EngineCommand::Inspect { id } => {
            let d = engine.inspect(&id)?;
            let v = serde_json::json!({
                "Id": d.config.id,
                "Name": format!("/{}", d.config.name),
                "Created": d.config.created,
                "Path": d.config.path,
                "Args": d.config.args,
                "State": d.state,
                "RestartCount": d.state.restart_count,
                "LogPath": d.log_path,
                "Config": d.config,
            });
            writeln!(out, "{v}")?;
            Ok(0)
        }
        EngineCommand::Logs(a) => {
            let opts = LogsOptions {
                stdout: true,
                stderr: true,
                since: a.since.as_deref().and_then(timefmt::parse_bound),
                until: a.until.as_deref().and_then(timefmt::parse_bound),
                tail: a.tail,
                follow: a.follow,
            };
            print_logs(engine, &a.id, &opts, a.timestamps, a.raw, out)?;
            Ok(0)
        }
        EngineCommand::Exec(a) => {
            let exec_id = engine.exec_create(
                &a.id,
                ExecOptions {
                    cmd: a.cmd,
                    env: a.env,
                    user: a.user,
                    working_dir: a.workdir,
                    tty: a.tty,
                    attach_stdin: a.interactive,
                    privileged: a.privileged,
                },
            )?;
            let mut stream = match engine.exec_start(&exec_id) {
                Ok(s) => s,
                Err(EngineError::Failed { code, message }) => {
                    eprintln!("hutch: {message}");
                    return Ok(code);
                }
                Err(e) => return Err(e.into()),
            };
            if a.interactive {
                let mut input = stream.input()?;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut stdin = std::io::stdin();
                    while let Ok(n) = stdin.read(&mut buf) {
                        if n == 0 || input.write(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = input.close();
                });
            }
            let code = loop {
                match stream.next_output()? {
                    Some(Output::Stdout(b)) => out.write_all(&b)?,
                    Some(Output::Stderr(b)) => std::io::stderr().write_all(&b)?,
                    Some(Output::Exit(info)) => break info.code,
                    None => break 125,
                }
            };
            out.flush()?;
            let recorded = engine.exec_inspect(&exec_id)?.exit_code;
            anyhow::ensure!(
                recorded == Some(code),
                "exec exit code not recorded: {recorded:?}"
            );
            Ok(code)
        }
        EngineCommand::Attach { no_stdin, id } => {
            let mut stream = engine.attach(&id, !no_stdin, true, true, None)?;
            if !no_stdin {
                let mut input = stream.input()?;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut stdin = std::io::stdin();
                    while let Ok(n) = stdin.read(&mut buf) {
                        if n == 0 || input.write(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = input.close();
                });
            }
            loop {
                match stream.next_output()? {
                    Some(Output::Stdout(b)) => {
                        out.write_all(&b)?;
                        out.flush()?;
                    }
                    Some(Output::Stderr(b)) => std::io::stderr().write_all(&b)?,
                    Some(Output::Exit(info)) if info.detached => {
                        writeln!(out, "[detached]")?;
                        return Ok(0);
                    }
                    Some(Output::Exit(info)) => return Ok(info.code),
                    None => return Ok(125),
                }
            }
        }
        EngineCommand::Resize { id, rows, cols } => unit(engine.resize(&id, rows, cols)),
        EngineCommand::Serve => serve(engine),
        EngineCommand::Pid => {
            writeln!(out, "{}", std::process::id())?;
            Ok(0)
        }
        EngineCommand::Memory => {
            let text = std::fs::read_to_string("/proc/self/smaps_rollup")?;
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .unwrap_or("0")
                    .to_string()
            };
            writeln!(out, "{} {}", field("Rss:"), field("Pss:"))?;
            Ok(0)
        }
        EngineCommand::Bench { repeat, image, cmd } => {
            let mut runs_ms = Vec::new();
            // Per phase: create, start, wait, remove.
            let mut phases_ms: [Vec<f64>; 4] = Default::default();
            for _ in 0..repeat.max(1) {
                let started = Instant::now();
                let mut lap = Instant::now();
                let mut mark = |phase: usize| {
                    phases_ms[phase].push(lap.elapsed().as_secs_f64() * 1000.0);
                    lap = Instant::now();
                };
                let id = engine
                    .create(CreateOptions {
                        image: image.clone(),
                        cmd: Some(cmd.clone()),
                        ..CreateOptions::default()
                    })?
                    .id;
                mark(0);
                engine.start(&id)?;
                mark(1);
                let code = engine.wait(&id, WaitCondition::NotRunning)?;
                mark(2);
                engine.remove(&id, false)?;
                mark(3);
                runs_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(code == 0, "bench container exited with {code}");
            }
            let [create_ms, start_ms, wait_ms, remove_ms] = phases_ms;
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "runs_ms": runs_ms,
                    "create_ms": create_ms,
                    "start_ms": start_ms,
                    "wait_ms": wait_ms,
                    "remove_ms": remove_ms,
                })
            )?;
            Ok(0)
        }
    }
}

fn unit(r: Result<(), EngineError>) -> anyhow::Result<i32> {
    match r {
        Ok(()) | Err(EngineError::NotModified) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn print_logs(
    engine: &Engine,
    id: &str,
    opts: &LogsOptions,
    timestamps: bool,
    raw: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut err = std::io::stderr();
    engine.logs(id, opts, &mut |line| {
        if raw {
            let stream = if line.stream == Stream::Stderr {
                "stderr"
            } else {
                "stdout"
            };
            let msg = serde_json::to_string(&String::from_utf8_lossy(&line.message))
                .map_err(std::io::Error::other)?;
            writeln!(out, "{stream}\t{}\t{msg}", line.time)?;
            return out.flush();
        }
        let bytes = line.render(timestamps);
        match line.stream {
            Stream::Stdout => out.write_all(&bytes),
            Stream::Stderr => err.write_all(&bytes),
        }?;
        out.flush()
    })?;
    Ok(())
}

fn create_options(a: &RunArgs) -> anyhow::Result<CreateOptions> {
    let mut log_opts = BTreeMap::new();
    for kv in &a.log_opt {
        let (k, v) = kv.split_once('=').context("--log-opt takes KEY=VALUE")?;
        log_opts.insert(k.to_string(), v.to_string());
    }
    let healthcheck = a.health_cmd.as_ref().map(|cmd| HealthConfig {
        test: vec!["CMD-SHELL".into(), cmd.clone()],
        interval: a.health_interval_ms.unwrap_or(0) * 1_000_000,
        timeout: a.health_timeout_ms.unwrap_or(0) * 1_000_000,
        start_period: 0,
        start_interval: 0,
        retries: a.health_retries.unwrap_or(0),
    });
    Ok(CreateOptions {
        name: a.name.clone(),
        image: a.image.clone(),
        cmd: (!a.cmd.is_empty()).then(|| a.cmd.clone()),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        env: a.env.clone(),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: a.interactive,
        init: a.init,
        read_only: a.read_only,
        restart_policy: match &a.restart {
            Some(p) => {
                RestartPolicy::parse(p).with_context(|| format!("invalid restart policy {p:?}"))?
            }
            None => RestartPolicy::default(),
        },
        healthcheck,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        log_config: LogConfig::from_opts(&log_opts).map_err(anyhow::Error::msg)?,
        network_mode: a.network.clone(),
        userns_mode: match &a.userns {
            Some(m) => {
                UsernsMode::parse(m).with_context(|| format!("invalid userns mode {m:?}"))?
            }
            None => UsernsMode::default(),
        },
        ulimits: a
            .ulimit
            .iter()
            .map(|u| Ulimit::parse(u))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        security_opt: a.security_opt.clone(),
        cap_add: a.cap_add.clone(),
        ..CreateOptions::default()
    })
}

/// One command per line; words split on whitespace (no quoting: tests pass
/// shell scripts with `run ... sh -c` through files or simple words).
fn serve(engine: &Engine) -> anyhow::Result<i32> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        let mut buf = Vec::new();
        let code = match Line::try_parse_from(&words) {
            Ok(l) => match execute(engine, l.command, &mut buf) {
                Ok(code) => code,
                Err(e) => {
                    let _ = writeln!(buf, "error: {e:#}");
                    125
                }
            },
            Err(e) => {
                let _ = writeln!(buf, "error: {e}");
                2
            }
        };
        out.write_all(&buf)?;
        writeln!(out, "--end {code}")?;
        out.flush()?;
    }
    Ok(0)
}
