//! One module per subcommand; this one dispatches and sets up logging.

pub mod archive;
pub mod build;
mod build_output;
mod build_progress;
mod daemon;
pub mod daemon_config;
mod dind;
mod dind_certs;
mod doctor;
pub mod engine;
mod humanize;
mod images;
mod net;
mod progress;
mod registry;
mod runtime;
mod version;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn init_logging(level: Option<&str>, debug: bool) {
    let level = match (level, debug) {
        (_, true) => "debug",
        (Some(level), false) => level,
        (None, false) => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUTCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut global = cli.global;
    match cli.command {
        Command::Daemon(args) => daemon::run(&global, &args),
        Command::Dind(mut args) => dind::run(&mut global, &mut args),
        Command::Doctor(args) => doctor::run(&global, &args),
        Command::Version => version::run(),
        Command::Pull(args) => registry::pull(&global, &args),
        Command::Push(args) => registry::push(&global, &args),
        Command::Images(args) => images::images(&global, &args),
        Command::Rmi(args) => images::rmi(&global, &args),
        Command::Tag(args) => images::tag(&global, &args),
        Command::Save(args) => images::save(&global, &args),
        Command::Load(args) => images::load(&global, &args),
        Command::Build(args) => build::run(&global, &args),
        Command::Runtime(cmd) => runtime::run(cmd),
        Command::Supervise => Ok(supervise()),
        Command::Engine(cmd) => engine::run(&global, *cmd),
        Command::Net(args) => net::run(&args),
        Command::Archive(cmd) => archive::run(cmd),
    }
}

/// `hutch __supervise`: a container's supervisor; stdin is its spawn socket.
/// `main` calls this before parsing arguments.
pub fn supervise() -> ExitCode {
    // SAFETY: fd 0 is the spawn socket the engine passed as stdin; nothing
    // else in this process owns it.
    let control = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(0) };
    let code = hutch_engine::supervisor::entry::main(control);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
