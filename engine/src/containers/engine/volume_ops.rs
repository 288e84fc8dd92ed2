//! The engine's volume API (`docker volume ...`) and the volume side of
//! container create and remove. A volume is in use while any container,
//! running or not, has it among its mounts (Docker's reference counting).

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use super::{Engine, EngineError, Result};
use crate::containers::config::{ContainerConfig, CreateOptions};
use crate::containers::mounts::{self, MountInputs};
use crate::runtime::ContainerSpec;
use crate::volumes::{MountPoint, Volume, VolumeCreate, VolumeError};

/// A volume with what uses it (`volume ls`, `system df`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUsage {
    pub volume: Volume,
    /// IDs of the containers that mount it.
    pub users: Vec<String>,
}

/// What `volume prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumesPruned {
    pub names: Vec<String>,
    pub bytes: u64,
}

impl From<VolumeError> for EngineError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::NotFound(name) => EngineError::VolumeNotFound(name),
            VolumeError::Invalid(m) => EngineError::Invalid(m),
            VolumeError::Conflict(m) => EngineError::Conflict(m),
            VolumeError::Io(e) => EngineError::Io(e),
        }
    }
}

impl Engine {
    pub(super) fn lock_volumes(&self) -> MutexGuard<'_, ()> {
        self.inner
            .volumes_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves a new container's mounts into its record and spec; the
    /// volumes this made are returned (to drop if the create fails).
    pub(super) fn add_mounts(
        &self,
        opts: &CreateOptions,
        config: &mut ContainerConfig,
        spec: &mut ContainerSpec,
    ) -> Result<Vec<String>> {
        let from = |query: &str| -> std::result::Result<Vec<MountPoint>, String> {
            let id = self.resolve(query).map_err(|e| e.to_string())?;
            Ok(self
                .lock()
                .containers
                .get(&id)
                .map(|r| r.config.mounts.clone())
                .unwrap_or_default())
        };
        let resolved = mounts::resolve(&MountInputs {
            opts,
            image_volumes: &config.image_volumes,
            volumes: &self.inner.volumes,
            data_root: &self.inner.opts.data_root,
            id_map: &spec.id_map,
            volumes_from: &from,
        })
        .map_err(EngineError::Invalid)?;
        match mounts::runtime_mounts(&resolved.points, &self.inner.volumes) {
            Ok(specs) => spec.mounts.extend(specs),
            Err(e) => {
                self.drop_volumes(&resolved.created);
                return Err(EngineError::Invalid(e));
            }
        }
        config.mounts = resolved.points;
        Ok(resolved.created)
    }

    /// Removes volumes a failed create made.
    pub(super) fn drop_volumes(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self.inner.volumes.remove(name) {
                tracing::warn!(%name, %e, "removing a volume of a failed create");
            }
        }
    }

    /// `rm -v` and `--rm`: the anonymous volumes of the container being
    /// removed (`id`) that no other container uses.
    pub(super) fn remove_anonymous_volumes(&self, config: &ContainerConfig, id: &str) {
        let _guard = self.lock_volumes();
        for name in mounts::volume_names(&config.mounts) {
            let anonymous = self.inner.volumes.get(name).is_ok_and(|v| v.is_anonymous());
            if !anonymous || self.volume_users(name).iter().any(|u| u != id) {
                continue;
            }
            if let Err(e) = self.inner.volumes.remove(name) {
                tracing::warn!(%name, %e, "removing an anonymous volume");
            }
        }
    }

    /// IDs of the containers that mount `name`.
    fn volume_users(&self, name: &str) -> Vec<String> {
        let table = self.lock();
        let mut users: Vec<String> = table
            .containers
            .iter()
            .filter(|(_, r)| mounts::volume_names(&r.config.mounts).any(|n| n == name))
            .map(|(id, _)| id.clone())
            .collect();
        users.sort();
        users
    }

    /// `docker volume create` (idempotent for an existing name).
    pub fn volume_create(&self, req: &VolumeCreate) -> Result<Volume> {
        let (volume, _) = self.inner.volumes.create(req)?;
        Ok(volume)
    }

    /// `docker volume inspect`.
    pub fn volume_inspect(&self, name: &str) -> Result<Volume> {
        Ok(self.inner.volumes.get(name)?)
    }

    /// Every volume with its users.
    pub fn volume_list(&self) -> Result<Vec<VolumeUsage>> {
        let volumes = self.inner.volumes.list()?;
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, r) in &self.lock().containers {
            for name in mounts::volume_names(&r.config.mounts) {
                users.entry(name.to_string()).or_default().push(id.clone());
            }
        }
        Ok(volumes
            .into_iter()
            .map(|v| VolumeUsage {
                users: users.remove(&v.name).unwrap_or_default(),
                volume: v,
            })
            .collect())
    }

    /// Bytes a volume's content takes (`system df`).
    pub fn volume_size(&self, name: &str) -> u64 {
        self.inner.volumes.size(name)
    }

    /// `docker volume rm [-f]`: a volume in use is refused with Docker's
    /// 409 even with `force` (as Docker: force only makes a missing volume
    /// no error).
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let _guard = self.lock_volumes();
        match self.inner.volumes.get(name) {
            Ok(_) => {}
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.inner.volumes.remove(name)?;
        Ok(())
    }

    /// `docker volume prune`: unused volumes that `wanted` accepts
    /// (anonymous ones only unless `all`).
    pub fn volume_prune(
        &self,
        all: bool,
        wanted: &dyn Fn(&Volume) -> bool,
    ) -> Result<VolumesPruned> {
        let _guard = self.lock_volumes();
        let mut out = VolumesPruned::default();
        for usage in self.volume_list()? {
            let v = &usage.volume;
            if !usage.users.is_empty() || (!all && !v.is_anonymous()) || !wanted(v) {
                continue;
            }
            let size = self.inner.volumes.size(&v.name);
            match self.inner.volumes.remove(&v.name) {
                Ok(()) => {
                    out.bytes += size;
                    out.names.push(v.name.clone());
                }
                Err(e) => tracing::warn!(name = %v.name, %e, "pruning a volume"),
            }
        }
        Ok(out)
    }
}
