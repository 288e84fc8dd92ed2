//! Shifted copies of layers for private-mode containers on a disk store
//! (DESIGN.md's third path for private ID ranges).
//!
//! The kernel idmaps only layers on a filesystem the engine's user
//! namespace owns, which the pod's volume never is. Without the tmpfs layer
//! store (`tmpfs_layers.rs`), a private container's lower layers are copies
//! whose owners are already those of its range: engine ID `x` of the layer
//! becomes `map(x)`, so the container's root owns what the engine's root
//! owned, and the overlay stacks on them with no idmapped mount at all.
//!
//! Copies live at `<data-root>/shifted-layers/<map>/<chain-id>`, one set per
//! ID map. The allocator hands out the lowest free range first, so the next
//! private container after a removal usually gets the same map and finds
//! its copies made: a `docker run --rm` loop pays for the copy once. A copy
//! goes when the layer it was made from is gone from the store (pruned when
//! the engine opens and after images are removed).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::copy_tree::copy_tree_shifted;
use super::private_layers::chain_id_of;
use crate::runtime::IdMap;

/// Under the data root.
pub const DIR: &str = "shifted-layers";
/// Suffix of a copy being made (a crash leaves it, the next copy replaces it).
const PARTIAL: &str = "partial";
/// Engine ID given to what a layer holds for IDs outside the container's
/// map: the engine's root, never in a private range, so the container sees
/// it as the overflow ID (`nobody`), as an idmapped mount would show it.
const UNMAPPED_OWNER: u32 = 0;

#[derive(Debug)]
pub struct ShiftedLayers {
    root: PathBuf,
    /// Serializes copies, so two starts never copy one layer twice.
    copying: Mutex<()>,
}

impl ShiftedLayers {
    /// The store at `<data_root>/shifted-layers` (made on first use).
    pub fn new(data_root: &Path) -> ShiftedLayers {
        ShiftedLayers {
            root: data_root.join(DIR),
            copying: Mutex::new(()),
        }
    }

    /// Where the copy of the disk layer `<store>/layers/<chain-id>/diff`
    /// for the container map `map` lives.
    pub fn path_for(&self, disk_layer: &Path, map: &IdMap) -> io::Result<PathBuf> {
        Ok(self
            .root
            .join(map_dir_name(map))
            .join(chain_id_of(disk_layer)?))
    }

    /// Makes the copies of `disk_layers` for `map` that do not exist yet.
    pub fn ensure(&self, disk_layers: &[PathBuf], map: &IdMap) -> io::Result<()> {
        let _guard = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        for layer in disk_layers {
            let copy = self.path_for(layer, map)?;
            if !copy.exists() {
                let parent = copy.parent().unwrap_or(&self.root);
                // Searchable by the container's root, another engine ID.
                make_searchable_dirs(&self.root, parent)?;
                let staging = copy.with_extension(PARTIAL);
                if staging.exists() {
                    remove_tree(&staging)?;
                }
                let started = std::time::Instant::now();
                let shift = |id| map.to_engine(id).unwrap_or(UNMAPPED_OWNER);
                copy_tree_shifted(layer, &staging, &shift)?;
                std::fs::rename(&staging, &copy)?;
                tracing::info!(
                    layer = %layer.display(),
                    copy = %copy.display(),
                    ms = started.elapsed().as_millis() as u64,
                    "layer copied with shifted owners for a private-mode container"
                );
            }
        }
        Ok(())
    }

    /// Removes the copies of layers for which `layer_exists(chain_id_hex)`
    /// is false, partial copies, and map directories left empty. Errors are
    /// logged: a copy left behind costs only space.
    pub fn prune(&self, layer_exists: &dyn Fn(&str) -> bool) {
        let _guard = self.copying.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(maps) = std::fs::read_dir(&self.root) else {
            return;
        };
        for map in maps.flatten() {
            let map_dir = map.path();
            let Ok(copies) = std::fs::read_dir(&map_dir) else {
                continue;
            };
            for copy in copies.flatten() {
                let name = copy.file_name();
                let name = name.to_string_lossy();
                let keep = !name.ends_with(&format!(".{PARTIAL}")) && layer_exists(&name);
                if !keep {
                    if let Err(e) = remove_tree(&copy.path()) {
                        tracing::warn!(copy = %copy.path().display(), error = %e, "could not remove a shifted layer copy");
                    }
                }
            }
            // Only succeeds when empty.
            let _ = std::fs::remove_dir(&map_dir);
        }
    }
}

/// A file name for `map`: its lines as `inside-outside-count`, joined by `_`.
fn map_dir_name(map: &IdMap) -> String {
    map.lines
        .iter()
        .map(|l| format!("{}-{}-{}", l.inside, l.outside, l.count))
        .collect::<Vec<_>>()
        .join("_")
}

/// Creates `dir` (under `root`) and the directories between, mode 0711.
fn make_searchable_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)?;
    for d in [root, dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// Removes a copied tree. Read-only directories need no chmod first: the
/// engine's root may write to every inode the copies hold (their owners are
/// IDs of its own namespace).
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::IdMapLine;

    fn map() -> IdMap {
        IdMap {
            lines: vec![
                IdMapLine {
                    inside: 0,
                    outside: 2048,
                    count: 1024,
                },
                IdMapLine {
                    inside: 65534,
                    outside: 65535,
                    count: 1,
                },
            ],
        }
    }

    #[test]
    fn a_copy_is_named_by_its_map_and_chain() -> io::Result<()> {
        let store = ShiftedLayers::new(Path::new("/data"));
        let path = store.path_for(Path::new("/data/layers/abc/diff"), &map())?;
        assert_eq!(
            path,
            Path::new("/data/shifted-layers/0-2048-1024_65534-65535-1/abc")
        );
        Ok(())
    }

    #[test]
    fn copies_of_removed_layers_and_partial_copies_are_pruned() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let layers = dir.path().join("layers");
        std::fs::create_dir_all(layers.join("kept/diff"))?;
        let store = ShiftedLayers::new(dir.path());
        let kept = store.path_for(&layers.join("kept/diff"), &map())?;
        let gone = store.path_for(&layers.join("gone/diff"), &map())?;
        let partial = kept.with_extension(PARTIAL);
        for d in [&kept, &gone, &partial] {
            std::fs::create_dir_all(d.join("etc"))?;
        }
        let exists = |chain: &str| layers.join(chain).exists();
        store.prune(&exists);
        assert!(kept.exists());
        assert!(!gone.exists() && !partial.exists());
        std::fs::remove_dir_all(layers.join("kept"))?;
        store.prune(&exists);
        assert!(!dir.path().join(DIR).join(map_dir_name(&map())).exists());
        Ok(())
    }
}
