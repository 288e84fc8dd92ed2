//! The doctor for multi-threaded callers: the probes fork without exec, so a
//! process with threads (the daemon under tokio) runs `hutch doctor --json`
//! as a subprocess and reads its report back.

use std::process::Command;

use super::report::Report;

#[derive(Debug, thiserror::Error)]
pub enum SubprocessError {
    #[error("could not run the doctor: {0}")]
    Spawn(#[from] std::io::Error),
    /// Exit status other than 0 (all fine) or 1 (a hard requirement missing).
    #[error("the doctor failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("the doctor's report is not valid JSON ({error}); stderr: {stderr}")]
    Parse {
        error: serde_json::Error,
        stderr: String,
    },
}

/// Runs `doctor --json` with `hutch`, a command for the hutch binary (with
/// any global options such as `--data-root` already added), and parses the
/// report. Blocking: call it from a blocking thread.
pub fn report_from(hutch: &mut Command) -> Result<Report, SubprocessError> {
    let out = hutch.arg("doctor").arg("--json").output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(SubprocessError::Failed {
            status: out.status.to_string(),
            stderr,
        });
    }
    serde_json::from_slice(&out.stdout).map_err(|error| SubprocessError::Parse { error, stderr })
}
