//! Idmapped lower layers for private-mode containers.
//!
//! Layers are unpacked once as the engine's root. A private-mode container's
//! root is some other engine ID, so it would see every image file as owned
//! by nobody and could not copy one up. An idmapped mount of each layer
//! shifts the owners by the container's own ID map: a file of engine ID 0
//! appears as the container's root. The kernel allows that only for a
//! filesystem whose superblock the engine's user namespace owns (a tmpfs the
//! engine mounted), and only on a detached mount. Overlayfs in turn takes a
//! detached lower layer only from a mount namespace owned by a user
//! namespace the mounter has CAP_SYS_ADMIN in. So the work is split: the
//! init clones each layer into a detached mount (owned by the container's
//! user namespace) and passes the fds to the helper, the helper (holding
//! CAP_SYS_ADMIN over the layer store) idmaps them with the container's
//! maps, and the init stacks its overlay on them. The upper dir is never
//! idmapped (the kernel then refuses writes through it): the helper chowns
//! it instead.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::statfs::statfs;

use crate::mount_api;

/// A layer the kernel would not idmap. The engine idmaps only layers on its
/// tmpfs store and gives a disk store's containers shifted copies, so this
/// means a spec that asked for idmapped layers somewhere else.
#[derive(Debug, thiserror::Error)]
#[error(
    "idmapped layers need a filesystem the engine owns (the daemon's tmpfs layer store), but \
     layer {layer} is on {fs}, which the kernel does not let the engine idmap ({source})"
)]
pub struct RefusedLayer {
    pub layer: PathBuf,
    pub fs: String,
    #[source]
    pub source: io::Error,
}

/// Idmaps the detached mounts `trees` of `layers` (as [`clone_layer`] made
/// them) with the user namespace `userns` (the container's, its maps
/// already written).
pub fn idmap_layers(
    layers: &[PathBuf],
    trees: &[OwnedFd],
    userns: &OwnedFd,
) -> Result<(), RefusedLayer> {
    for (layer, tree) in layers.iter().zip(trees) {
        idmap(tree, userns).map_err(|source| RefusedLayer {
            layer: layer.clone(),
            fs: fs_name(layer),
            source,
        })?;
    }
    Ok(())
}

/// A detached copy of the mount at `layer` (open_tree with OPEN_TREE_CLONE),
/// in a mount namespace of its own owned by the caller's user namespace.
pub fn clone_layer(layer: &Path) -> io::Result<OwnedFd> {
    mount_api::clone_tree(layer).map_err(io::Error::from)
}

fn idmap(tree: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    mount_api::set_idmap(tree.as_fd(), userns.as_fd()).map_err(io::Error::from)
}

/// The filesystem type of `path`, for the refusal message.
fn fs_name(path: &Path) -> String {
    let Ok(st) = statfs(path) else {
        return "an unknown filesystem".into();
    };
    let magic = st.filesystem_type().0 as u64;
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "a tmpfs that the engine did not mount".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("a filesystem of type {other:#x}"),
    }
}
