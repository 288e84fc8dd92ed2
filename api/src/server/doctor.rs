//! What the daemon learns about its environment once, at start: the
//! doctor's report (run as a subprocess, since its probes fork and the
//! daemon has threads, started before the daemon leaves the pod's
//! namespaces) and the engine ID. `/info` reports both.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::Context;
use hutch_engine::doctor::Report;
use tokio::sync::watch;

#[derive(Debug)]
pub enum DoctorOutcome {
    Report(Box<Report>),
    /// The doctor could not run; `/info` says so in its warnings.
    Failed(String),
}

/// The doctor, started before the daemon enters the engine namespace so
/// that it probes the pod as the pod is. The daemon then lives in a forked
/// child of the process that spawned it, so it reads the report from the
/// pipes rather than waiting for the process.
#[derive(Debug)]
pub struct DoctorProcess {
    outcome: Result<(std::process::ChildStdout, std::process::ChildStderr), String>,
}

impl DoctorProcess {
    /// Starts `hutch --data-root ROOT doctor --json`. Creates no thread.
    pub fn spawn(data_root: &Path) -> DoctorProcess {
        let spawned = std::env::current_exe()
            .map_err(|e| format!("cannot find the hutch binary: {e}"))
            .and_then(|exe| {
                Command::new(exe)
                    .arg("--data-root")
                    .arg(data_root)
                    .args(["doctor", "--json"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("could not run the doctor: {e}"))
            });
        let outcome =
            spawned.and_then(
                |mut child| match (child.stdout.take(), child.stderr.take()) {
                    (Some(out), Some(err)) => Ok((out, err)),
                    _ => Err("the doctor's output pipes are missing".to_string()),
                },
            );
        DoctorProcess { outcome }
    }

    /// Reads the report (blocking until the doctor exits).
    fn read(self) -> DoctorOutcome {
        let (mut out, mut err) = match self.outcome {
            Ok(pipes) => pipes,
            Err(why) => return DoctorOutcome::Failed(why),
        };
        let mut stdout = Vec::new();
        let mut stderr = String::new();
        // The doctor writes a few lines to stderr at most: reading stdout
        // first cannot block on a full stderr pipe.
        let read = out.read_to_end(&mut stdout);
        let _ = err.read_to_string(&mut stderr);
        if let Err(e) = read {
            return DoctorOutcome::Failed(format!("reading the doctor's report: {e}"));
        }
        match serde_json::from_slice::<Report>(&stdout) {
            Ok(report) => DoctorOutcome::Report(Box::new(report)),
            Err(e) => DoctorOutcome::Failed(format!(
                "the doctor's report is not valid JSON ({e}); stderr: {}",
                stderr.trim()
            )),
        }
    }
}

/// The doctor's outcome, filled in by a background thread started with the
/// daemon; readers wait for it.
#[derive(Debug)]
pub struct DoctorCell {
    rx: watch::Receiver<Option<Arc<DoctorOutcome>>>,
}

impl DoctorCell {
    /// Collects the report of a doctor started with [`DoctorProcess::spawn`].
    pub fn start(doctor: DoctorProcess) -> DoctorCell {
        let (tx, rx) = watch::channel(None);
        tokio::task::spawn_blocking(move || {
            let outcome = doctor.read();
            if let DoctorOutcome::Failed(why) = &outcome {
                tracing::warn!(%why, "the doctor did not run");
            }
            // Nobody waiting is fine: the cell keeps the value.
            let _ = tx.send(Some(Arc::new(outcome)));
        });
        DoctorCell { rx }
    }

    pub async fn get(&self) -> Arc<DoctorOutcome> {
        let mut rx = self.rx.clone();
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(value) => value.as_ref().cloned(),
            Err(_) => None,
        };
        outcome.unwrap_or_else(|| {
            Arc::new(DoctorOutcome::Failed(
                "the doctor's thread ended without a report".into(),
            ))
        })
    }
}

/// The engine ID: a UUID made on first start and kept in the data root, as
/// moby's `engine-id` file.
pub fn engine_id(data_root: &Path) -> anyhow::Result<String> {
    let path = data_root.join("engine-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the engine ID")?;
    // RFC 4122 version 4, variant 1.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let tmp = data_root.join(".engine-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_id_is_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = engine_id(dir.path()).expect("made");
        assert_eq!(first.len(), 36);
        assert_eq!(first.as_bytes()[14], b'4');
        assert_eq!(engine_id(dir.path()).expect("read back"), first);
    }
}
