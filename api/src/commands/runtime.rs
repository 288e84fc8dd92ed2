//! `hutch __runtime`: the runtime helper the engine spawns for each
//! container, and a daemonless entry that runs a container spec (used by the
//! runtime's tests and benchmark).

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::runtime::{
    helper, image_ids, ContainerSpec, IdAllocator, Output, Runtime, RuntimeError,
};

use crate::cli::{RuntimeCommand, RuntimeRunArgs, UsernsMode};

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
    let mut specs = Vec::new();
    for file in &args.spec {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let spec: ContainerSpec =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        specs.push(spec);
    }
    let engine = bootstrap::enter(&BootstrapOptions {
        userns_base: args.userns_base,
    })?;
    for warning in &engine.warnings {
        eprintln!("WARNING: {warning}");
    }
    prepare_engine(args)?;
    let mut ids = IdAllocator::default();
    for spec in &mut specs {
        spec.namespaces.proc = engine.proc_mode;
        if args.userns_mode == UsernsMode::Private {
            let request = image_ids::private_request(&spec.rootfs.lower)?;
            spec.id_map = ids.allocate(&request)?;
        }
    }
    let runtime = Runtime::from_current_exe().context("locating the hutch binary")?;
    let mut code = 0;
    let mut timings = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let started = Instant::now();
        code = run_round(&runtime, &specs, args.pid_file.as_deref())?;
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    if args.timings {
        println!("{}", serde_json::json!({ "runs_ms": timings }));
    }
    Ok(exit_code(code))
}

/// Mounts the requested tmpfs instances in the engine's mount namespace and
/// runs the setup command there.
fn prepare_engine(args: &RuntimeRunArgs) -> anyhow::Result<()> {
    for dir in &args.tmpfs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=0755"),
        )
        .with_context(|| format!("mounting a tmpfs on {}", dir.display()))?;
    }
    if let Some(cmd) = &args.setup {
        let status = Command::new("/bin/sh")
            .args(["-c", cmd])
            .status()
            .context("running the setup command")?;
        anyhow::ensure!(status.success(), "the setup command failed: {status}");
    }
    Ok(())
}

/// create → start → wait → delete of every container, as `docker run --rm`
/// does; returns the last container's exit code.
fn run_round(
    runtime: &Runtime,
    specs: &[ContainerSpec],
    pid_file: Option<&Path>,
) -> anyhow::Result<i32> {
    let mut running = Vec::new();
    let mut codes = vec![0; specs.len()];
    for (i, spec) in specs.iter().enumerate() {
        for dir in [&spec.rootfs.upper, &spec.rootfs.work, &spec.rootfs.target] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        match runtime.create(spec, Output::default()) {
            Ok(c) => running.push((i, c)),
            Err(RuntimeError::Failed { code, message }) => {
                eprintln!("hutch: {}: {message}", spec.id);
                codes[i] = code;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut started = Vec::new();
    for (i, mut container) in running {
        match container.start() {
            Ok(()) => started.push((i, container)),
            Err(RuntimeError::Failed { code, message }) => {
                eprintln!("hutch: {}: {message}", container.id());
                codes[i] = code;
                container.delete()?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(file) = pid_file {
        let pids: String = started
            .iter()
            .map(|(_, c)| format!("{}\n", c.pid()))
            .collect();
        write_atomically(file, &pids)?;
    }
    for (i, mut container) in started {
        codes[i] = container.wait()?;
        container.delete()?;
    }
    Ok(codes.last().copied().unwrap_or(0))
}

/// Writes `text` so that readers polling for `file` never see it half-written.
fn write_atomically(file: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("renaming to {}", file.display()))
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(125))
}
