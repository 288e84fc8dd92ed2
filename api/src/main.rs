//! The `hutch` binary: the daemon (`hutch daemon`) and the daemonless CLI.

mod cli;
mod columns;
mod commands;
mod defaults;
mod server;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // A container's supervisor (one per running container) is dispatched
    // before anything else: no argument parsing, no logging setup, no
    // allocations beyond its own, so it touches as little of this binary as
    // it can and stays small.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "__supervise")
    {
        return commands::supervise();
    }
    let mut cli = cli::Cli::parse();
    // The daemon's config file may set the log level: read it first.
    if let cli::Command::Daemon(args) | cli::Command::Dind(args) = &mut cli.command {
        if let Err(err) = commands::daemon_config::apply(&mut cli.global, args) {
            eprintln!("hutch: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    commands::init_logging(cli.global.log_level.as_deref(), cli.global.debug);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hutch: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
