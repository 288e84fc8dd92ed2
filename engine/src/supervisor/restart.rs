//! The restart policy's decision and Docker's backoff between restarts.

use std::time::Duration;

use crate::containers::config::{RestartPolicy, RestartPolicyName};

/// Docker's first delay before a restart; it doubles on each restart.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A container that ran this long resets the backoff.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether the container starts again after exiting with `code`, having
/// been restarted `restarts` times already.
pub fn should_restart(policy: RestartPolicy, code: i32, restarts: u32, manual: bool) -> bool {
    if manual {
        return false;
    }
    match policy.name {
        RestartPolicyName::No => false,
        RestartPolicyName::Always | RestartPolicyName::UnlessStopped => true,
        RestartPolicyName::OnFailure => {
            code != 0 && (policy.maximum_retry_count == 0 || restarts < policy.maximum_retry_count)
        }
    }
}

/// Whether a stopped container starts again when the daemon starts
/// (Docker's documented behaviour): `always` does, even after a user's
/// stop; `unless-stopped` unless a user stopped it; `on-failure` does not
/// (moby's code restarts one whose last exit code was not 0, its docs say
/// it does not; the docs are what users rely on).
pub fn restarts_with_daemon(policy: RestartPolicyName, manual: bool) -> bool {
    match policy {
        RestartPolicyName::Always => true,
        RestartPolicyName::UnlessStopped => !manual,
        RestartPolicyName::OnFailure | RestartPolicyName::No => false,
    }
}

/// The delay before the next restart, after `previous` and a run that
/// lasted `ran`.
pub fn next_delay(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(d) if ran < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> RestartPolicy {
        RestartPolicy::parse(text).unwrap_or_default()
    }

    #[test]
    fn policies_decide_as_docker() {
        assert!(!should_restart(policy("no"), 1, 0, false));
        assert!(should_restart(policy("always"), 0, 7, false));
        assert!(!should_restart(policy("always"), 0, 0, true));
        assert!(should_restart(policy("unless-stopped"), 0, 0, false));
        let two = policy("on-failure:2");
        assert!(!should_restart(two, 0, 0, false));
        assert!(should_restart(two, 1, 0, false));
        assert!(should_restart(two, 1, 1, false));
        assert!(!should_restart(two, 1, 2, false));
        assert!(should_restart(policy("on-failure"), 3, 100, false));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let short = Duration::from_secs(1);
        let d1 = next_delay(None, short);
        assert_eq!(d1, Duration::from_millis(100));
        let d2 = next_delay(Some(d1), short);
        assert_eq!(d2, Duration::from_millis(200));
        assert_eq!(next_delay(Some(Duration::from_secs(50)), short), MAX_DELAY);
        assert_eq!(next_delay(Some(d2), Duration::from_secs(11)), FIRST_DELAY);
    }
}
