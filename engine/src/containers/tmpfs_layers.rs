//! The layer store for private-mode containers: a tmpfs the engine mounts
//! in its own mount namespace (a daemon option), holding copies of the
//! layers private containers use. The kernel idmaps layers only on a
//! filesystem whose superblock the engine's user namespace owns, which the
//! disk store (the pod's volume) never is. Each layer is copied on first use
//! by an engine process, then shared by every private container, whatever
//! its ID range: the copies keep the engine's IDs, and each container's
//! idmapped mounts of them shift the owners.
//!
//! The mount lives as long as the engine's mount namespace: a restarted
//! engine mounts a new, empty one and fills it again on demand, while the
//! containers started before keep the old one through their supervisors.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::mount::{mount, MsFlags};

use super::copy_tree::copy_tree;
use super::private_layers::chain_id_of;

/// Where, under the data root, the tmpfs is mounted (in the engine's mount
/// namespace only; the directory stays empty on disk).
pub const DIR: &str = "private-layers";

#[derive(Debug)]
pub struct TmpfsLayers {
    root: PathBuf,
    /// Serializes copies, so two starts never copy one layer twice.
    copying: Mutex<()>,
}

impl TmpfsLayers {
    /// Mounts the tmpfs at `<data_root>/private-layers`. Must run in the
    /// engine's own mount namespace.
    pub fn mount(data_root: &Path) -> io::Result<TmpfsLayers> {
        let root = data_root.join(DIR);
        std::fs::create_dir_all(&root)?;
        // World-searchable: a private container's root (another engine ID)
        // opens its layers through this directory.
        mount(
            Some("tmpfs"),
            &root,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0711"),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "mounting the private-mode layer tmpfs on {}: {e}",
                    root.display()
                ),
            )
        })?;
        Ok(TmpfsLayers {
            root,
            copying: Mutex::new(()),
        })
    }

    /// The tmpfs copy's path for a disk layer `<store>/layers/<chain-id>/diff`.
    pub fn path_for(&self, disk_layer: &Path) -> io::Result<PathBuf> {
        Ok(self.root.join(chain_id_of(disk_layer)?))
    }

    /// Copies the layers that are not on the tmpfs yet.
    pub fn ensure(&self, disk_layers: &[PathBuf]) -> io::Result<()> {
        let _guard = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        for layer in disk_layers {
            let copy = self.path_for(layer)?;
            if !copy.exists() {
                let staging = copy.with_extension("partial");
                if staging.exists() {
                    std::fs::remove_dir_all(&staging)?;
                }
                copy_tree(layer, &staging)?;
                std::fs::rename(&staging, &copy)?;
                tracing::debug!(layer = %layer.display(), "layer copied to the private-mode tmpfs");
            }
        }
        Ok(())
    }
}
