//! Daemon restarts, as Docker handles them without live-restore (moby's
//! `Daemon.Shutdown` and `Daemon.restore`): a graceful shutdown stops every
//! running container with its stop signal and stop timeout; at start-up a
//! container still running whose network died with the previous daemon is
//! stopped the same way, and then every container whose restart policy
//! says so is started again (same addresses, MACs and host ports: the
//! network state keeps them).
//!
//! Why the new daemon cannot keep those containers: their veths lived in
//! the previous daemon's bridge netns, and the new daemon, in a new engine
//! user namespace, has no capability over their netns to plug them again
//! (nor can their old supervisors' restarts be plugged). Containers on
//! `none` or `host` lose nothing and keep running untouched (dockerd would
//! stop them too).

use std::time::{Duration, Instant};

use super::{Engine, EngineError, Result, WaitCondition};
use crate::containers::config::RestartPolicyName;
use crate::containers::state::State;
use crate::containers::timefmt::ZERO_TIME;
use crate::supervisor::restart;

/// How long a SIGKILLed container may take to be reported down.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// `container:` chains longer than this are not followed (a loop).
const MAX_JOIN_DEPTH: usize = 8;

impl Engine {
    /// The daemon's graceful shutdown: every running (or restarting,
    /// paused) container is stopped in parallel with its stop signal and
    /// stop timeout, the timeout bounded by `limit` seconds (dockerd's
    /// `--shutdown-timeout`; negative: no bound). Nothing is recorded as a
    /// user's stop, so the next daemon restarts what its policy says.
    pub fn shutdown_containers(&self, limit: i64) {
        self.unprime_all();
        let running = self.active_ids();
        if running.is_empty() {
            return;
        }
        tracing::info!(
            containers = running.len(),
            limit,
            "stopping the running containers"
        );
        self.stop_all_for_daemon(&running, limit, "the daemon is shutting down");
    }

    /// At daemon start-up, after [`Engine::open`] (which re-adopted the
    /// supervisors that kept running and serves the network hook): stops
    /// the containers that lost their network with the previous daemon
    /// (bounded as [`Engine::shutdown_containers`]), then starts every
    /// container whose restart policy wants it back after a daemon
    /// restart: `always`, and `unless-stopped` unless a user stopped it
    /// (`on-failure` does not, as Docker documents). A start that fails
    /// (a host port taken meanwhile) is logged and leaves the container
    /// exited.
    pub fn restore(&self, limit: i64) {
        let lost: Vec<String> = self
            .active_ids()
            .into_iter()
            .filter(|id| self.needs_previous_bridge(id, 0))
            .collect();
        self.stop_all_for_daemon(
            &lost,
            limit,
            "its network died with the previous daemon (a new daemon cannot plug a \
             running container again): stopping it; its restart policy decides whether it \
             starts again",
        );
        // Containers joined to another one's netns start after it.
        let (joiners, others): (Vec<String>, Vec<String>) = self
            .to_restart()
            .into_iter()
            .partition(|id| self.joined_to(id).is_some());
        for wave in [others, joiners] {
            std::thread::scope(|s| {
                for id in &wave {
                    s.spawn(move || {
                        tracing::info!(%id, "starting the container again (restart policy)");
                        if let Err(e) = self.start(id) {
                            tracing::warn!(
                                %id,
                                %e,
                                "the container could not start again after the daemon restart"
                            );
                        }
                    });
                }
            });
        }
    }

    fn active_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .containers
            .iter()
            .filter(|(_, r)| r.state.is_active())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The stopped containers that a daemon start brings back.
    fn to_restart(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .containers
            .iter()
            .filter(|(_, r)| {
                !r.config.options.auto_remove
                    && restarts_with_daemon(r.config.options.restart_policy.name, &r.state)
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Whether the container's network needs the previous daemon's bridge
    /// netns: it is on bridge networks (it has the network hook), or joins
    /// the netns of a container that is.
    fn needs_previous_bridge(&self, id: &str, depth: usize) -> bool {
        let hooked = self
            .inner
            .store
            .dir(id)
            .read_spec()
            .is_ok_and(|s| s.network_hook.is_some());
        if hooked {
            return true;
        }
        match self.joined_to(id) {
            Some(other) if depth < MAX_JOIN_DEPTH => self.needs_previous_bridge(&other, depth + 1),
            _ => false,
        }
    }

    /// The container whose netns this one joins (`container:<id>`).
    fn joined_to(&self, id: &str) -> Option<String> {
        let mode = self
            .lock()
            .containers
            .get(id)?
            .config
            .options
            .network_mode
            .clone()?;
        let other = mode.strip_prefix("container:")?;
        self.resolve(other).ok()
    }

    fn stop_all_for_daemon(&self, ids: &[String], limit: i64, why: &str) {
        std::thread::scope(|s| {
            for id in ids {
                s.spawn(move || {
                    tracing::warn!(%id, "{why}");
                    if let Err(e) = self.stop_for_daemon(id, limit) {
                        tracing::error!(%id, %e, "stopping the container");
                    }
                });
            }
        });
    }

    /// One container's stop by the daemon; returns once it is down (or
    /// its supervisor is found gone), or after the bound and a grace
    /// period for the SIGKILL, whichever comes first.
    fn stop_for_daemon(&self, id: &str, limit: i64) -> Result<()> {
        let dir = match self.dir_of_running(id) {
            Err(EngineError::NotRunning(_)) => return Ok(()),
            other => other?,
        };
        let sent = self.send_stop(id, &dir, |own| bounded(own, limit), true);
        let timeout = match sent {
            Ok(t) => t,
            Err(e) => {
                // The supervisor did not take the request: gone (or going)
                // since the engine opened. Record what became of it.
                self.wait_unwatched(id, Duration::from_secs(2));
                if !self.lock().containers.get(id).is_some_and(|r| r.watched) {
                    self.adopt(id, &dir);
                }
                self.refresh(id);
                let active = self
                    .lock()
                    .containers
                    .get(id)
                    .is_some_and(|r| r.state.is_active());
                return if active { Err(e) } else { Ok(()) };
            }
        };
        let deadline = (timeout >= 0)
            .then(|| Instant::now() + Duration::from_secs(timeout as u64) + KILL_GRACE);
        match self.wait_while(id, WaitCondition::NotRunning, &|| {
            deadline.is_none_or(|d| Instant::now() < d)
        }) {
            Ok(code) => {
                self.emit("stop", id, &[]);
                tracing::info!(%id, code, "stopped");
                Ok(())
            }
            Err(EngineError::Invalid(_)) => Err(EngineError::Io(std::io::Error::other(
                "the container did not stop in time",
            ))),
            Err(e) => Err(e),
        }
    }
}

/// A stop timeout (negative: none) bounded by the daemon's shutdown
/// timeout (negative: no bound).
fn bounded(own: i64, limit: i64) -> i64 {
    match (own < 0, limit < 0) {
        (_, true) => own,
        (true, false) => limit,
        (false, false) => own.min(limit),
    }
}

/// Docker's restart decision at daemon start (its restart manager with
/// the container's last state): `always` comes back even after a user's
/// stop; `unless-stopped` unless a user stopped it; `on-failure` and `no`
/// stay down; a container never started stays created.
pub(crate) fn restarts_with_daemon(policy: RestartPolicyName, state: &State) -> bool {
    !state.is_active()
        && state.started_at != ZERO_TIME
        && restart::restarts_with_daemon(policy, state.manually_stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_timeout_bounds_each_stop_timeout() {
        assert_eq!(bounded(10, 15), 10);
        assert_eq!(bounded(60, 15), 15);
        assert_eq!(bounded(-1, 15), 15);
        assert_eq!(bounded(60, -1), 60);
        assert_eq!(bounded(-1, -1), -1);
        assert_eq!(bounded(10, 0), 0);
    }

    #[test]
    fn policies_after_a_daemon_restart() {
        let mut ran = State::default();
        ran.set_running(7, "2024-01-01T00:00:00Z".into());
        ran.set_exited(143, String::new(), "2024-01-01T00:00:01Z".into());
        let mut stopped = ran.clone();
        stopped.manually_stopped = true;
        use RestartPolicyName::*;
        assert!(restarts_with_daemon(Always, &ran));
        assert!(restarts_with_daemon(Always, &stopped));
        assert!(restarts_with_daemon(UnlessStopped, &ran));
        assert!(!restarts_with_daemon(UnlessStopped, &stopped));
        assert!(!restarts_with_daemon(OnFailure, &ran));
        assert!(!restarts_with_daemon(No, &ran));
        // Never started: stays created.
        assert!(!restarts_with_daemon(Always, &State::default()));
        // Still running (kept by the new daemon): nothing to start.
        let mut running = State::default();
        running.set_running(7, "2024-01-01T00:00:00Z".into());
        assert!(!restarts_with_daemon(Always, &running));
    }
}
