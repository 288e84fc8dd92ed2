//! One module per subcommand; this one dispatches and sets up logging.

mod daemon;
mod doctor;
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
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Daemon(args) => daemon::run(&global, &args),
        Command::Doctor(args) => doctor::run(&global, &args),
        Command::Version => version::run(),
        Command::Pull(_) => not_yet("pull", 3),
        Command::Push(_) => not_yet("push", 3),
        Command::Images(_) => not_yet("images", 3),
        Command::Rmi(_) => not_yet("rmi", 3),
        Command::Tag(_) => not_yet("tag", 3),
        Command::Save(_) => not_yet("save", 3),
        Command::Load(_) => not_yet("load", 3),
        Command::Build(_) => not_yet("build", 7),
        Command::Runtime(cmd) => runtime::run(cmd),
    }
}

/// The CLI surface is fixed before every command works; a command whose
/// implementation has not landed says so plainly instead of pretending.
fn not_yet(command: &str, issue: u32) -> anyhow::Result<ExitCode> {
    eprintln!("hutch {command}: not implemented yet (tracked in issue #{issue})");
    Ok(ExitCode::from(2))
}
