//! The engine's side of per-container cgroups: made at create with the
//! limits, changed by `docker update`, frozen by pause, read by stats,
//! removed with the container. Only with a delegated hierarchy
//! ([`crate::cgroups::Cgroups::detect`]).

use super::{Engine, EngineError, Result};
use crate::cgroups::{Cgroups, ContainerCgroup, Limits, Stats};
use crate::containers::state::{State, Status};
use crate::runtime::ContainerSpec;

impl Engine {
    /// The delegated hierarchy, when there is one.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.inner.opts.cgroups.as_ref()
    }

    /// At create: the container's cgroup with its limits; the spec gets the
    /// files its processes join.
    pub(super) fn make_cgroup(
        &self,
        id: &str,
        limits: &Limits,
        spec: &mut ContainerSpec,
    ) -> Result<()> {
        let Some(cgroups) = self.cgroups() else {
            return Ok(());
        };
        limits.validate().map_err(EngineError::Invalid)?;
        let cgroup = cgroups.container(id);
        if let Err(e) = cgroup.create(limits) {
            let _ = cgroup.remove();
            return Err(EngineError::Invalid(e.to_string()));
        }
        spec.cgroup_procs = cgroup.procs_files();
        Ok(())
    }

    /// The create's warnings for limits this hierarchy cannot apply.
    pub(super) fn unapplied_limits(&self, limits: &Limits) -> Vec<String> {
        self.cgroups()
            .map(|c| c.unapplied(limits))
            .unwrap_or_default()
    }

    /// The container's cgroup, if it was given one.
    pub(super) fn cgroup_of(&self, id: &str) -> Option<ContainerCgroup> {
        let cgroups = self.cgroups()?;
        let spec = self.inner.store.dir(id).read_spec().ok()?;
        (!spec.cgroup_procs.is_empty()).then(|| cgroups.container(id))
    }

    /// At removal (its processes are gone).
    pub(super) fn remove_cgroup(&self, id: &str) {
        if let Some(cgroup) = self.cgroup_of(id) {
            if let Err(e) = cgroup.remove() {
                tracing::warn!(%id, "{e}");
            }
        }
    }

    /// What the kernel knows that the supervisor does not: a frozen cgroup
    /// (paused) and an OOM kill during the last run (`oom_base`: `exits`
    /// before the run and the cgroup's kill count then; returned updated).
    pub(super) fn cgroup_state(
        &self,
        id: &str,
        state: &mut State,
        oom_base: Option<(u64, u64)>,
    ) -> Option<(u64, u64)> {
        let Some(cgroup) = self.cgroup_of(id) else {
            return oom_base;
        };
        if state.running {
            // A new run: an earlier run's OOM kill may linger in state.json.
            state.oom_killed = false;
            let paused = cgroup.frozen();
            state.paused = paused;
            state.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
            // A run started by a restart policy is first seen here.
            return match oom_base {
                Some((exits, _)) if exits == state.exits => oom_base,
                _ => Some((state.exits, cgroup.oom_kills())),
            };
        }
        if state.exit_code == 137 {
            let before = oom_base
                .filter(|(exits, _)| exits + 1 == state.exits)
                .map_or(0, |(_, kills)| kills);
            state.oom_killed = cgroup.oom_kills() > before;
        }
        oom_base
    }

    /// Before a start: the OOM kills so far are not this run's.
    pub(super) fn note_oom_base(&self, id: &str) {
        if let Some(cgroup) = self.cgroup_of(id) {
            let kills = cgroup.oom_kills();
            if let Some(r) = self.lock().containers.get_mut(id) {
                r.oom_base = Some((r.state.exits, kills));
            }
        }
    }

    /// `docker pause` / `docker unpause`.
    pub fn set_paused(&self, query: &str, paused: bool) -> Result<()> {
        let id = self.resolve(query)?;
        let running = self
            .lock()
            .containers
            .get(&id)
            .map(|r| (r.state.running, r.state.paused));
        let Some((running, was_paused)) = running else {
            return Err(EngineError::NotFound(id));
        };
        if !running {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
        if paused && was_paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is already paused"
            )));
        }
        if !paused && !was_paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is not paused"
            )));
        }
        let cgroup = self
            .cgroup_of(&id)
            .filter(|_| self.cgroups().is_some_and(|c| c.has("freezer")))
            .ok_or_else(|| {
                EngineError::Invalid(
                    "pausing containers needs a delegated cgroup freezer, which this pod does not give"
                        .into(),
                )
            })?;
        cgroup.freeze(paused)?;
        if let Some(r) = self.lock().containers.get_mut(&id) {
            r.state.paused = paused;
            r.state.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
        }
        self.inner.changed.notify_all();
        self.emit(if paused { "pause" } else { "unpause" }, &id, &[]);
        Ok(())
    }

    /// Thaws a paused container so a signal can act (Docker resumes a
    /// paused container it stops or kills).
    pub(super) fn thaw(&self, id: &str) {
        if let Some(cgroup) = self.cgroup_of(id) {
            if cgroup.frozen() {
                let _ = cgroup.freeze(false);
            }
        }
    }

    /// A 409 for exec and attach into a paused container, as Docker.
    pub(super) fn refuse_paused(&self, id: &str) -> Result<()> {
        let paused = self
            .lock()
            .containers
            .get(id)
            .is_some_and(|r| r.state.paused);
        if paused {
            return Err(EngineError::Conflict(format!(
                "Container {id} is paused, unpause the container before exec"
            )));
        }
        Ok(())
    }

    /// `docker update`: the limits it sets replace the container's (the
    /// others stay, as in Docker), on its cgroup (running or not) and in its
    /// config; `None` without a delegated hierarchy, else the warnings for
    /// limits it cannot apply (a controller it lacks).
    pub fn update_limits(&self, query: &str, update: &Limits) -> Result<Option<Vec<String>>> {
        let id = self.resolve(query)?;
        // A primed supervisor read the container's config before this.
        self.unprime(&id);
        if self.cgroups().is_none() {
            return Ok(None);
        }
        let cgroup = self
            .cgroup_of(&id)
            .ok_or_else(|| EngineError::Invalid(format!("container {id} has no cgroup")))?;
        let mut config = self
            .lock()
            .containers
            .get(&id)
            .map(|r| r.config.clone())
            .ok_or_else(|| EngineError::NotFound(id.clone()))?;
        let merged = config.options.limits.merged(update);
        merged.validate().map_err(EngineError::Invalid)?;
        cgroup
            .apply(&merged)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        config.options.limits = merged;
        self.inner.store.dir(&id).write_config(&config)?;
        if let Some(r) = self.lock().containers.get_mut(&id) {
            r.config.options.limits = config.options.limits;
        }
        Ok(Some(self.unapplied_limits(update)))
    }

    /// `docker stats` figures from the container's cgroup.
    pub fn cgroup_stats(&self, query: &str) -> Result<Option<Stats>> {
        let id = self.resolve(query)?;
        Ok(self.cgroup_of(&id).map(|c| c.stats()))
    }
}
