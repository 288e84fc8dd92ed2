//! `hutch version`.

use std::process::ExitCode;

use crate::server::go_arch;
use crate::server::version::{API_VERSION, MIN_API_VERSION};

pub fn run() -> anyhow::Result<ExitCode> {
    println!("hutch version {}", env!("CARGO_PKG_VERSION"));
    println!(" API version:     {API_VERSION} (minimum {MIN_API_VERSION})");
    println!(" OS/Arch:         linux/{}", go_arch());
    Ok(ExitCode::SUCCESS)
}
