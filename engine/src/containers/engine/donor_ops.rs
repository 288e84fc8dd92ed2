//! `--pid`/`--ipc container:<id>`: the donor container is resolved and
//! checked at each start, as Docker does, and its init goes into the spec
//! (the supervisor refreshes it before a restart of its own).

use super::{Engine, EngineError, Result};
use crate::containers::config::UsernsMode;
use crate::containers::sharing;
use crate::containers::store::ContainerDir;
use crate::runtime::spec::{Donor, IpcMode};

impl Engine {
    /// Before a start: the spec's donor as it runs now. Refused, with
    /// Docker's words, when it does not exist, is not running, or (for its
    /// IPC) was not made shareable; and when it has a private ID range.
    pub(super) fn join_donor(&self, id: &str, dir: &ContainerDir) -> Result<()> {
        // From the table, so that a start without a donor reads nothing.
        let sharing = match self.lock().containers.get(id) {
            Some(r) => sharing::parse(&r.config.options).map_err(EngineError::Invalid)?,
            None => return Err(EngineError::NotFound(id.to_string())),
        };
        // Resolved by what was given each time: a name may now be another's.
        let Some(query) = sharing.donor else {
            return Ok(());
        };
        let donor_id = self
            .resolve(&query)
            .map_err(|_| EngineError::Invalid(format!("No such container: {query}")))?;
        if donor_id == id {
            return Err(EngineError::Invalid(
                "cannot join own PID or IPC namespace".into(),
            ));
        }
        let (shareable, private, state) = {
            let table = self.lock();
            let r = table
                .containers
                .get(&donor_id)
                .ok_or_else(|| EngineError::Invalid(format!("No such container: {query}")))?;
            let theirs = &r.config.options;
            (
                sharing::parse(theirs).is_ok_and(|s| s.shareable),
                theirs.userns_mode == UsernsMode::Private,
                r.state.clone(),
            )
        };
        if !state.running || state.restarting || state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "container {donor_id} is not running"
            )));
        }
        if sharing.ipc == IpcMode::Donor && !shareable {
            return Err(EngineError::Invalid(sharing::non_shareable(&donor_id)));
        }
        if private {
            return Err(EngineError::Invalid(format!(
                "cannot share the namespaces of container {donor_id}: it has a private ID range \
                 (--userns-mode private)"
            )));
        }
        let mut spec = dir.read_spec()?;
        spec.namespaces.donor = Some(Donor {
            id: donor_id,
            pid: state.pid,
            pid_ns: sharing.pid_ns,
        });
        dir.write_spec(&spec)?;
        Ok(())
    }
}
