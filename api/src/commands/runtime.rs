//! `hutch __runtime`: the runtime helper the engine spawns for each
//! container, and a daemonless entry that runs a container spec (used by the
//! runtime's tests and benchmark).

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::runtime::{helper, ContainerSpec, Output, Runtime, RuntimeError};

use crate::cli::{RuntimeCommand, RuntimeRunArgs};

pub fn run(cmd: RuntimeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RuntimeCommand::Create => {
            // SAFETY: fd 0 is the control socket the engine passed as stdin;
            // nothing else in this process owns it.
            let control = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
            Ok(exit_code(helper::serve(control)))
        }
        RuntimeCommand::Run(args) => run_spec(&args),
    }
}

fn run_spec(args: &RuntimeRunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("reading {}", args.spec.display()))?;
    let mut spec: ContainerSpec =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", args.spec.display()))?;
    let engine = bootstrap::enter(&BootstrapOptions {
        userns_base: args.userns_base,
    })?;
    for warning in &engine.warnings {
        eprintln!("WARNING: {warning}");
    }
    spec.namespaces.proc = engine.proc_mode;
    let runtime = Runtime::from_current_exe().context("locating the hutch binary")?;
    let mut code = 0;
    let mut timings = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let started = Instant::now();
        code = run_once(&runtime, &spec, args.pid_file.as_deref())?;
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    if args.timings {
        println!("{}", serde_json::json!({ "runs_ms": timings }));
    }
    Ok(exit_code(code))
}

/// create → start → wait → delete, as `docker run --rm` does.
fn run_once(
    runtime: &Runtime,
    spec: &ContainerSpec,
    pid_file: Option<&Path>,
) -> anyhow::Result<i32> {
    for dir in [&spec.rootfs.upper, &spec.rootfs.work, &spec.rootfs.target] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut container = match runtime.create(spec, Output::default()) {
        Ok(c) => c,
        Err(RuntimeError::Failed { code, message }) => {
            eprintln!("hutch: {message}");
            return Ok(code);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(file) = pid_file {
        std::fs::write(file, container.pid().to_string())
            .with_context(|| format!("writing {}", file.display()))?;
    }
    let code = match container.start() {
        Ok(()) => container.wait()?,
        Err(RuntimeError::Failed { code, message }) => {
            eprintln!("hutch: {message}");
            code
        }
        Err(e) => return Err(e.into()),
    };
    container.delete()?;
    Ok(code)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(125))
}
