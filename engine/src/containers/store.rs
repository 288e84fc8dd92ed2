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
//! containers/.removed/<id>-<n>    removed containers, deleted in the background
//! ```

use std::io;
use std::path::{Path, PathBuf};

use super::config::ContainerConfig;
use super::state::{read_json, write_json, State};
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
        write_json(&self.state(), state)
    }
}

/// All containers' directories.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Where removed containers' directories wait to be deleted.
    removed: PathBuf,
}

impl Store {
    /// `<data_root>/containers`, created if missing. Directories a previous
    /// engine removed but did not finish deleting are deleted in the
    /// background.
    pub fn open(data_root: &Path) -> io::Result<Store> {
        let root = data_root.join("containers");
        let removed = root.join(".removed");
        std::fs::create_dir_all(&removed)?;
        for entry in std::fs::read_dir(&removed)?.flatten() {
            delete_in_background(entry.path());
        }
        Ok(Store { root, removed })
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

    /// Deletes the container's directory and everything in it. The
    /// directory is renamed away at once (the container is gone for every
    /// reader) and deleted on a thread: deleting even a small tree takes
    /// tens of milliseconds on a filesystem mounted with `discard`, and
    /// `docker run --rm` waits for the removal.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let from = self.dir(id).path;
        let to = self.removed.join(format!("{id}-{}", std::process::id()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {
                delete_in_background(to);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // Another removal left one behind (same id, same process):
            // delete in place.
            Err(_) => match std::fs::remove_dir_all(&from) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

fn delete_in_background(path: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("rm-container".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %e, "deleting a removed container");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(%e, "starting a deletion thread");
    }
}
