//! What the daemon learns about its environment once, at start: the
//! doctor's report (run as a subprocess, since its probes fork and the
//! daemon has threads) and the engine ID. `/info` reports both.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::Context;
use hutch_engine::doctor::{report_from, Report};
use tokio::sync::watch;

#[derive(Debug)]
pub enum DoctorOutcome {
    Report(Box<Report>),
    /// The doctor could not run; `/info` says so in its warnings.
    Failed(String),
}

/// The doctor's outcome, filled in by a background thread started with the
/// daemon; readers wait for it.
#[derive(Debug)]
pub struct DoctorCell {
    rx: watch::Receiver<Option<Arc<DoctorOutcome>>>,
}

impl DoctorCell {
    /// Starts `hutch --data-root ROOT doctor --json` in the background.
    pub fn start(data_root: &Path) -> DoctorCell {
        let (tx, rx) = watch::channel(None);
        let data_root = data_root.to_owned();
        tokio::task::spawn_blocking(move || {
            let outcome = match std::env::current_exe() {
                Err(err) => DoctorOutcome::Failed(format!("cannot find the hutch binary: {err}")),
                Ok(exe) => {
                    let mut cmd = Command::new(exe);
                    cmd.arg("--data-root").arg(&data_root);
                    match report_from(&mut cmd) {
                        Ok(report) => DoctorOutcome::Report(Box::new(report)),
                        Err(err) => DoctorOutcome::Failed(err.to_string()),
                    }
                }
            };
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
