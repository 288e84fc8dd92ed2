//! The on-disk layout of containers under the data root:
//!
//! ```text
//! containers/<id>/config.json     ContainerConfig (the engine writes it)
//!                 spec.json       the runtime's ContainerSpec
//!                 state.json      State (the supervisor writes it while it lives)
//!                 <id>-json.log   json-file log, rotated to .1, .2, ...
//!                 sock            the supervisor's unix socket
//!                 upper/ work/    the rootfs overlay's writable layer
//!                 rootfs/         where the rootfs is mounted (in the
//!                                 container's own mount namespace only)
//! containers/.removed-<id>       a removed container, deleted in the background
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::config::ContainerConfig;
use super::state::{read_json, write_json, write_state_json, State};
use crate::runtime::ContainerSpec;

/// One container's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    pub path: PathBuf,
}

impl ContainerDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ContainerDir { path: path.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.path.join("config.json")
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.json")
    }
    pub fn state(&self) -> PathBuf {
        self.path.join("state.json")
    }
    pub fn sock(&self) -> PathBuf {
        self.path.join("sock")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.path.join(format!("{id}-json.log"))
    }
    pub fn upper(&self) -> PathBuf {
        self.path.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.path.join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    pub fn read_config(&self) -> io::Result<ContainerConfig> {
        read_json(&self.config())
    }
    pub fn write_config(&self, config: &ContainerConfig) -> io::Result<()> {
        write_json(&self.config(), config)
    }
    pub fn read_spec(&self) -> io::Result<ContainerSpec> {
        read_json(&self.spec())
    }
    pub fn write_spec(&self, spec: &ContainerSpec) -> io::Result<()> {
        write_json(&self.spec(), spec)
    }
    pub fn read_state(&self) -> io::Result<State> {
        read_json(&self.state())
    }
    pub fn write_state(&self, state: &State) -> io::Result<()> {
        write_state_json(&self.state(), state)
    }
}

/// All containers' directories.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Deletions of removed containers' directories still running.
    deleting: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// A removed container's directory, renamed out of the way until deleted.
const REMOVED_PREFIX: &str = ".removed-";

impl Store {
    /// `<data_root>/containers`, created if missing. Directories a previous
    /// engine removed but did not finish deleting are deleted in the
    /// background.
    pub fn open(data_root: &Path) -> io::Result<Store> {
        let root = data_root.join("containers");
        std::fs::create_dir_all(&root)?;
        Ok(Store {
            root,
            deleting: Arc::default(),
        })
    }

    pub fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir::new(self.root.join(id))
    }

    /// Makes a new container's directory with its rootfs directories.
    pub fn create(&self, id: &str) -> io::Result<ContainerDir> {
        let dir = self.dir(id);
        std::fs::create_dir(&dir.path)?;
        for sub in [dir.upper(), dir.work(), dir.rootfs()] {
            std::fs::create_dir(sub)?;
        }
        Ok(dir)
    }

    /// The IDs of every container with a config (half-created ones, with
    /// none, are removed).
    pub fn ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(REMOVED_PREFIX) {
                // Left by an engine that ended while deleting it.
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            if name.len() != 64 || !name.chars().all(|c| c.is_ascii_hexdigit()) {
                continue;
            }
            if self.dir(&name).config().exists() {
                ids.push(name);
            } else {
                tracing::warn!(id = %name, "removing a container directory without config");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(ids)
    }

    /// Removes the container's directory: renamed out of the store at once
    /// (the container is gone for every reader), deleted with everything in
    /// it on a background thread, off the caller's path. [`Store::flush`]
    /// waits for the deletions; an engine that ends before they finish
    /// leaves the renamed directory, deleted at the next open.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let trash = self.root.join(format!("{REMOVED_PREFIX}{id}"));
        match std::fs::rename(&self.dir(id).path, &trash) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let delete = move || {
            if let Err(e) = std::fs::remove_dir_all(&trash) {
                tracing::warn!(path = %trash.display(), %e, "deleting a removed container");
            }
        };
        let mut deleting = self.deleting.lock().unwrap_or_else(|p| p.into_inner());
        deleting.retain(|h| !h.is_finished());
        match std::thread::Builder::new()
            .name("rm".into())
            .stack_size(64 * 1024)
            .spawn(delete.clone())
        {
            Ok(handle) => deleting.push(handle),
            Err(_) => delete(),
        }
        Ok(())
    }

    /// Waits for the deletions of removed containers to finish.
    pub fn flush(&self) {
        let handles = std::mem::take(&mut *self.deleting.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}
