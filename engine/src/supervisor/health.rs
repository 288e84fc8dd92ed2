//! Healthcheck bookkeeping: Docker's `State.Health` after each probe.

use std::time::Duration;

use crate::containers::state::{Health, HealthLog, HealthStatus};

/// Probe results kept in `Health.Log`.
const KEEP: usize = 5;
/// Output kept per probe, as Docker.
pub const MAX_OUTPUT: usize = 4096;

/// Exit code recorded for a probe that timed out or could not run.
pub const PROBE_FAILED: i32 = -1;

/// Records one probe; `in_start_period` failures do not count toward
/// `retries` (a success still makes the container healthy). Returns true
/// when the status changed.
pub fn record(health: &mut Health, log: HealthLog, retries: u32, in_start_period: bool) -> bool {
    let before = health.status;
    if log.exit_code == 0 {
        health.status = HealthStatus::Healthy;
        health.failing_streak = 0;
    } else if !in_start_period {
        health.failing_streak += 1;
        if health.failing_streak >= retries {
            health.status = HealthStatus::Unhealthy;
        }
    }
    health.log.push(log);
    if health.log.len() > KEEP {
        let extra = health.log.len() - KEEP;
        health.log.drain(..extra);
    }
    health.status != before
}

/// The output Docker records for a probe that ran past its timeout.
pub fn timeout_message(timeout: Duration) -> String {
    format!("Health check exceeded timeout ({}s)", timeout.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> HealthLog {
        HealthLog {
            start: "s".into(),
            end: "e".into(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_turn_unhealthy_after_retries_and_success_heals() {
        let mut h = Health::default();
        assert!(!record(&mut h, probe(1), 2, false));
        assert_eq!(h.failing_streak, 1);
        assert!(record(&mut h, probe(1), 2, false));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert!(record(&mut h, probe(0), 2, false));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
    }

    #[test]
    fn start_period_failures_do_not_count_and_log_keeps_five() {
        let mut h = Health::default();
        for _ in 0..4 {
            record(&mut h, probe(1), 1, true);
        }
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Starting, 0));
        for _ in 0..4 {
            record(&mut h, probe(1), 1, false);
        }
        assert_eq!(h.log.len(), 5);
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }
}
