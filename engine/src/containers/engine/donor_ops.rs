//! `--pid`/`--ipc container:<id>`: the donor container is resolved and
//! checked at each start, as Docker does, and its init goes into the spec
//! (the supervisor refreshes it before a restart of its own).

use super::{Engine, EngineError, Result};
use crate::containers::config::UsernsMode;
use crate::containers::sharing;
use crate::containers::store::ContainerDir;

impl Engine {
    /// Before a start: the spec's donor as it runs now. Refused, with
    /// Docker's words, when it does not exist, is not running, or (for its
    /// IPC) was not made shareable; and when it has a private ID range.
    pub(super) fn join_donor(&self, id: &str, dir: &ContainerDir) -> Result<()> {
        let mut spec = dir.read_spec()?;
        let Some(donor) = spec.namespaces.donor.as_mut() else {
            return Ok(());
        };
        let config = dir.read_config()?;
        let query = sharing::parse(&config.options)
            .map_err(EngineError::Invalid)?
            .donor
            .unwrap_or_else(|| donor.id.clone());
        let donor_id = self
            .resolve(&query)
            .map_err(|_| EngineError::Invalid(format!("No such container: {query}")))?;
        if donor_id == id {
            return Err(EngineError::Invalid(
                "cannot join own PID or IPC namespace".into(),
            ));
        }
        let (options, state) = {
            let table = self.lock();
            let r = table
                .containers
                .get(&donor_id)
                .ok_or_else(|| EngineError::Invalid(format!("No such container: {query}")))?;
            (r.config.options.clone(), r.state.clone())
        };
        if !state.running || state.restarting || state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "container {donor_id} is not running"
            )));
        }
        if spec.namespaces.ipc == crate::runtime::spec::IpcMode::Donor
            && options.ipc_mode != "shareable"
        {
            return Err(EngineError::Invalid(sharing::non_shareable(&donor_id)));
        }
        if options.userns_mode == UsernsMode::Private {
            return Err(EngineError::Invalid(format!(
                "cannot share the namespaces of container {donor_id}: it has a private ID range \
                 (--userns-mode private)"
            )));
        }
        donor.id = donor_id;
        donor.pid = state.pid;
        dir.write_spec(&spec)?;
        Ok(())
    }
}
