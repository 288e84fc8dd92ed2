//! The `hutch` binary: the daemon (`hutch daemon`) and the daemonless CLI.

mod cli;
mod commands;
mod defaults;
mod server;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    commands::init_logging(cli.global.log_level.as_deref(), cli.global.debug);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hutch: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
