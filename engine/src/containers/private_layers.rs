//! Where private-mode containers get image layers their root owns: the
//! engine-owned tmpfs, idmapped per container (`tmpfs_layers.rs`, the
//! daemon's `--private-layers-tmpfs`), or else copies on the data root
//! with the owners shifted per ID map (`shifted_layers.rs`). A container
//! keeps the kind it was created with (its spec says which).

use std::io;
use std::path::{Path, PathBuf};

use super::shifted_layers::ShiftedLayers;
use super::tmpfs_layers::TmpfsLayers;
use crate::runtime::IdMap;

#[derive(Debug)]
pub struct PrivateLayers {
    /// Copies as they are, on a tmpfs; the runtime idmaps them.
    tmpfs: Option<TmpfsLayers>,
    /// Copies with shifted owners, on the data root; used as they are.
    shifted: ShiftedLayers,
}

#[derive(Debug, thiserror::Error)]
pub enum LayersError {
    /// A container's layers were copied to the tmpfs of a daemon started
    /// with `--private-layers-tmpfs`, and this one was not.
    #[error(
        "this private-mode container was created to use the tmpfs layer store, which this \
         daemon was not started with (--private-layers-tmpfs); start the daemon with it, or \
         recreate the container to use shifted copies on the data root"
    )]
    NoTmpfs,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The chain ID directory name of a disk layer `<store>/layers/<chain-id>/diff`,
/// which names its copies.
pub(super) fn chain_id_of(disk_layer: &Path) -> io::Result<&std::ffi::OsStr> {
    disk_layer
        .parent()
        .and_then(Path::file_name)
        .ok_or_else(|| io::Error::other(format!("unexpected layer path {}", disk_layer.display())))
}

impl PrivateLayers {
    /// With the tmpfs store when asked for (mounted now, in the engine's
    /// mount namespace).
    pub fn open(data_root: &Path, on_tmpfs: bool) -> io::Result<PrivateLayers> {
        Ok(PrivateLayers {
            tmpfs: on_tmpfs
                .then(|| TmpfsLayers::mount(data_root))
                .transpose()?,
            shifted: ShiftedLayers::new(data_root),
        })
    }

    /// Whether a container created now gets shifted copies (the runtime
    /// must then not idmap them) rather than idmapped tmpfs layers.
    pub fn shifts(&self) -> bool {
        self.tmpfs.is_none()
    }

    /// The paths a container with `map` uses for the disk layers `layers`.
    pub fn paths(&self, layers: &[PathBuf], map: &IdMap) -> io::Result<Vec<PathBuf>> {
        layers
            .iter()
            .map(|l| match &self.tmpfs {
                Some(t) => t.path_for(l),
                None => self.shifted.path_for(l, map),
            })
            .collect()
    }

    /// Makes the layers of a container with `map`, as shifted copies or on
    /// the tmpfs (`shifted`, as its spec says), where missing.
    pub fn ensure(
        &self,
        layers: &[PathBuf],
        map: &IdMap,
        shifted: bool,
    ) -> Result<(), LayersError> {
        match (&self.tmpfs, shifted) {
            (_, true) => Ok(self.shifted.ensure(layers, map)?),
            (Some(tmpfs), false) => Ok(tmpfs.ensure(layers)?),
            (None, false) => Err(LayersError::NoTmpfs),
        }
    }

    /// Drops shifted copies of layers no longer in the image store (the
    /// tmpfs goes whole with the engine).
    pub fn prune(&self, layer_exists: &dyn Fn(&str) -> bool) {
        self.shifted.prune(layer_exists);
    }
}
