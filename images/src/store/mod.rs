//! The content store under the data root:
//!
//! ```text
//! blobs/sha256/<hex>         content by digest (configs, manifests, layer blobs)
//! layers/<chain-hex>/diff/   unpacked layers, each unpacked once and shared
//! layers/<chain-hex>/layer.json
//! images/<config-hex>.json   image records
//! repositories.json          tag index: names -> image IDs
//! ingest/                    temp files and dirs of operations in flight
//! locks/                     flock files (see `lock`)
//! ```
//!
//! Everything outside `ingest/` is only ever created by an atomic rename of
//! complete, verified content, so an interrupted operation leaves only its
//! `ingest/` leftovers, which the next `open` removes when no other process
//! is working.

mod blobs;
mod fsutil;
pub(crate) use fsutil::read_limited;
mod gc;
mod layers;
mod lock;
mod records;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use blobs::{BlobStore, BlobWriter, VerifiedBlob};
pub use gc::GcReport;
pub use layers::{LayerMeta, LayerStore, PreparedLayer};
pub use lock::{LockGuard, Locks};
pub use records::{HistoryEntry, ImageRecord, LayerRef, ManifestRef, RecordStore, TagIndex};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error(
        "content verification failed: expected {expected}, got {actual}; \
         the data is corrupt or was tampered with, nothing was stored"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "size mismatch for {digest}: expected {expected} bytes, got {actual}; \
         the data is truncated or corrupt, nothing was stored"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the store")]
    BlobNotFound(Digest),
    #[error("layer {0} is not in the store")]
    LayerNotFound(Digest),
    #[error("{path} is corrupt ({reason}); remove it or the image it belongs to")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{what} is larger than the {max} byte limit")]
    TooLarge { what: String, max: u64 },
}

impl StoreError {
    pub(crate) fn io(path: &Path, cause: io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            cause,
        }
    }

    pub(crate) fn io_msg(path: &Path, msg: &str) -> StoreError {
        StoreError::io(path, io::Error::other(msg.to_owned()))
    }
}

/// How hard the store works to survive a power loss or kernel crash (a
/// killed process never loses anything either way: every object appears
/// by an atomic rename of complete, verified content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Bulk content (blobs, unpacked layer trees) is left to the kernel's
    /// writeback, as Docker leaves it; records and the tag index are still
    /// written atomically and fsynced. After a *machine* crash a recent
    /// layer may hold truncated files. The data root is usually a pod's
    /// emptyDir, and syncing costs about as much as the whole pull (writing
    /// 170 MB through to disk for a 50 MB image). Nor are the directories
    /// they are renamed into fsynced (a durable name for content that may
    /// not be is worth nothing): a pull does 4 fsyncs instead of 8, those
    /// of the image record and the tag index, whose journal commit on
    /// ext4/xfs also carries the earlier renames.
    #[default]
    Relaxed,
    /// Blobs are fsynced and layer trees syncfs'd before they appear.
    Full,
}

/// The store's parts, rooted at one data root.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub blobs: BlobStore,
    pub layers: LayerStore,
    pub records: RecordStore,
    pub locks: Locks,
    ingest: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store under `data_root`, and removes
    /// leftovers of interrupted operations if no other process is busy.
    pub fn open(data_root: &Path) -> Result<Store, StoreError> {
        let root = data_root.to_owned();
        let blobs_dir = root.join("blobs/sha256");
        let layers_dir = root.join("layers");
        let images_dir = root.join("images");
        let ingest = root.join("ingest");
        let locks_dir = root.join("locks");
        for dir in [&blobs_dir, &layers_dir, &images_dir, &ingest, &locks_dir] {
            fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let store = Store {
            blobs: BlobStore::new(blobs_dir, ingest.clone()),
            layers: LayerStore::new(layers_dir, ingest.clone()),
            records: RecordStore::new(images_dir, root.join("repositories.json")),
            locks: Locks::new(locks_dir),
            ingest,
            root,
        };
        if let Some(_guard) = store.locks.try_content_exclusive()? {
            let removed = store.clean_ingest()?;
            if removed > 0 {
                tracing::info!(removed, "removed leftovers of interrupted image operations");
            }
        }
        Ok(store)
    }

    /// Removes everything in `ingest/`. Only call with the content lock held
    /// exclusively: anything there then belongs to a dead operation.
    fn clean_ingest(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let entries = fs::read_dir(&self.ingest).map_err(|e| StoreError::io(&self.ingest, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.ingest, e))?;
            let path = entry.path();
            let is_dir = entry
                .file_type()
                .map_err(|e| StoreError::io(&path, e))?
                .is_dir();
            if is_dir {
                layers::remove_tree(&path)?;
            } else {
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    pub fn set_durability(&mut self, durability: Durability) {
        let sync = durability == Durability::Full;
        self.blobs.set_sync(sync);
        self.layers.set_sync(sync);
    }

    /// The ingest dir, for temp files that must be on the store's filesystem.
    pub fn ingest_dir(&self) -> &Path {
        &self.ingest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_commit_verifies_digest_and_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let good = Digest::of(b"hello");
        let (d, n) = store
            .blobs
            .put(&mut &b"hello"[..], Some(&good), Some(5))
            .expect("matching blob is stored");
        assert_eq!((d.clone(), n), (good.clone(), 5));
        assert!(store.blobs.contains(&good));
        assert_eq!(store.blobs.size(&good).expect("size"), 5);

        let wrong = Digest::of(b"other");
        let err = store
            .blobs
            .put(&mut &b"hello!"[..], Some(&wrong), None)
            .expect_err("mismatch must fail");
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.blobs.contains(&wrong));
        assert!(!store.blobs.contains(&Digest::of(b"hello!")));

        let err = store
            .blobs
            .put(&mut &b"hell"[..], Some(&good), Some(5))
            .expect_err("short blob must fail");
        assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
        assert_eq!(
            fs::read_dir(store.ingest_dir()).expect("ingest").count(),
            0,
            "failed ingests leave no temp files"
        );
    }

    #[test]
    fn open_removes_ingest_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        fs::write(store.ingest_dir().join("blob-dead"), b"partial").expect("write leftover");
        fs::create_dir_all(store.ingest_dir().join("layer-dead/diff/x")).expect("mkdir");
        let busy = store.locks.content_shared().expect("lock");
        Store::open(dir.path()).expect("reopen while busy");
        assert_eq!(
            fs::read_dir(store.ingest_dir()).expect("ingest").count(),
            2,
            "leftovers stay while another operation holds the content lock"
        );
        drop(busy);
        Store::open(dir.path()).expect("reopen");
        assert_eq!(fs::read_dir(store.ingest_dir()).expect("ingest").count(), 0);
    }

    #[test]
    fn records_and_index_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let id = Digest::of(b"config");
        let record = ImageRecord {
            id: id.clone(),
            manifests: vec![],
            layers: vec![],
            created: None,
            labels: Default::default(),
            history: vec![],
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            size: 0,
            stored_at: chrono::Utc::now(),
            intermediate: false,
        };
        store.records.put(&record).expect("put");
        assert_eq!(store.records.get(&id).expect("get"), Some(record));
        assert_eq!(store.records.ids().expect("ids"), vec![id.clone()]);
        let mut index = store.records.index().expect("empty index");
        index
            .refs
            .insert("docker.io/library/a:latest".into(), id.clone());
        store.records.save_index(&index).expect("save index");
        assert_eq!(
            store.records.index().expect("index").names_of(&id),
            vec!["docker.io/library/a:latest".to_string()]
        );
        store.records.delete(&id).expect("delete");
        assert_eq!(store.records.get(&id).expect("get"), None);
    }
}
