//! Unpacked layers by chain ID: `layers/<chain-hex>/diff/` is the layer's
//! tree (an overlay lower dir) and `layers/<chain-hex>/layer.json` its
//! metadata.
//!
//! A layer is unpacked into a temp dir under `ingest/`, its metadata written
//! and the filesystem synced, and only then renamed into `layers/`, so a
//! layer that is there is complete. Removal renames it out of `layers/`
//! first for the same reason.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use super::fsutil::{digests_in, fsync_dir, read_limited};
use super::StoreError;
use crate::digest::Digest;

const META_FILE: &str = "layer.json";
const DIFF_DIR: &str = "diff";

/// What the store knows about an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub chain_id: Digest,
    pub diff_id: Digest,
    /// Bytes of regular-file content in the layer.
    pub size: u64,
    /// The highest UID owning anything in the layer, not counting the
    /// overflow ID 65534 (the runtime maps `nobody` separately).
    pub highest_uid: u32,
    pub highest_gid: u32,
    /// Whether anything is owned by 65534 (incl. clamped IDs).
    pub uses_overflow_id: bool,
    /// The blob this layer was unpacked from (its digest checked while it
    /// streamed), so an image naming that blob for this diff ID needs no
    /// second pass over it: what lets a pull interrupted after this layer
    /// was committed reuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_blob: Option<Digest>,
}

impl LayerMeta {
    /// The metadata of layer `chain_id`, unpacked with these results from
    /// the verified blob `source_blob`.
    pub fn from_stats(
        chain_id: &Digest,
        stats: &crate::unpack::UnpackStats,
        source_blob: &Digest,
    ) -> LayerMeta {
        LayerMeta {
            chain_id: chain_id.clone(),
            diff_id: stats.diff_id.clone(),
            size: stats.content_size,
            highest_uid: stats.highest_uid,
            highest_gid: stats.highest_gid,
            uses_overflow_id: stats.uses_overflow_id,
            source_blob: Some(source_blob.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    ingest: PathBuf,
    /// syncfs before a layer is committed (see `Durability`).
    sync: bool,
}

/// A layer being unpacked; dropping it removes the temp dir.
#[derive(Debug)]
pub struct PreparedLayer {
    dir: TempDir,
}

impl PreparedLayer {
    /// The (empty, at first) directory to unpack into.
    pub fn diff_dir(&self) -> PathBuf {
        self.dir.path().join(DIFF_DIR)
    }
}

impl LayerStore {
    pub(super) fn new(dir: PathBuf, ingest: PathBuf) -> LayerStore {
        LayerStore {
            dir,
            ingest,
            sync: false,
        }
    }

    pub(super) fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// The layer's tree, for use as an overlay lower dir.
    pub fn diff_path(&self, chain_id: &Digest) -> PathBuf {
        self.layer_dir(chain_id).join(DIFF_DIR)
    }

    pub fn contains(&self, chain_id: &Digest) -> bool {
        self.layer_dir(chain_id).join(META_FILE).is_file()
    }

    pub fn meta(&self, chain_id: &Digest) -> Result<LayerMeta, StoreError> {
        let path = self.layer_dir(chain_id).join(META_FILE);
        if !path.is_file() {
            return Err(StoreError::LayerNotFound(chain_id.clone()));
        }
        let bytes = read_limited(&path, 1 << 20)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    pub fn prepare(&self) -> Result<PreparedLayer, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&self.ingest)
            .map_err(|e| StoreError::io(&self.ingest, e))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| StoreError::io(dir.path(), e))?;
        let diff = dir.path().join(DIFF_DIR);
        fs::create_dir(&diff).map_err(|e| StoreError::io(&diff, e))?;
        fs::set_permissions(&diff, fs::Permissions::from_mode(0o755))
            .map_err(|e| StoreError::io(&diff, e))?;
        Ok(PreparedLayer { dir })
    }

    /// Makes a fully unpacked layer durable and visible. If another process
    /// committed the same chain ID meanwhile, ours is discarded.
    pub fn commit(&self, prepared: PreparedLayer, meta: &LayerMeta) -> Result<(), StoreError> {
        let target = self.layer_dir(&meta.chain_id);
        if self.contains(&meta.chain_id) {
            return Ok(());
        }
        let meta_path = prepared.dir.path().join(META_FILE);
        let json = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&meta_path, json).map_err(|e| StoreError::io(&meta_path, e))?;
        if self.sync {
            // One syncfs makes the whole unpacked tree durable, far cheaper
            // than an fsync per file.
            let dir_fd = fs::File::open(prepared.dir.path())
                .map_err(|e| StoreError::io(prepared.dir.path(), e))?;
            rustix::fs::syncfs(&dir_fd)
                .map_err(|e| StoreError::io(prepared.dir.path(), e.into()))?;
        }
        match fs::rename(prepared.dir.path(), &target) {
            Ok(()) => {
                // The temp dir is now the layer; make sure TempDir does not delete it.
                let _kept: PathBuf = prepared.dir.keep();
                // As for blobs: in relaxed mode the tree was not synced,
                // and the record's fsync carries the rename.
                if self.sync {
                    fsync_dir(&self.dir)?;
                }
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                Ok(())
            }
            Err(e) => Err(StoreError::io(&target, e)),
        }
    }

    /// Every committed layer's chain ID.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        digests_in(&self.dir)
    }

    /// Removes a layer: first out of `layers/` (atomically), then from disk.
    pub fn remove(&self, chain_id: &Digest) -> Result<(), StoreError> {
        let dir = self.layer_dir(chain_id);
        let trash = tempfile::Builder::new()
            .prefix("trash-")
            .tempdir_in(&self.ingest)
            .map_err(|e| StoreError::io(&self.ingest, e))?;
        let doomed = trash.path().join(chain_id.hex());
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        fsync_dir(&self.dir)?;
        remove_tree(trash.path())
    }
}

/// Removes a tree, making directories writable first when needed (a layer
/// may contain directories with mode 0500 or 0000).
pub(super) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(first) => {
            make_dirs_writable(path);
            fs::remove_dir_all(path).map_err(|_| StoreError::io(path, first))
        }
    }
}

fn make_dirs_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}
