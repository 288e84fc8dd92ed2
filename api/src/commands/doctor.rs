//! `hutch doctor`: filled in by the doctor work.

use std::process::ExitCode;

use crate::cli::{DoctorArgs, GlobalOptions};

pub fn run(_global: &GlobalOptions, _args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("doctor is not implemented yet")
}
