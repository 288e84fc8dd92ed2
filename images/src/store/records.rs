//! Image records (`images/<config-hex>.json`) and the tag index
//! (`repositories.json`).
//!
//! A record holds what never changes for an image: its config (whose digest
//! is the image ID), manifests and layers. Names (tags and repo digests) live
//! only in the tag index, so moving a tag is one atomic write and the two can
//! never disagree.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fsutil::{read_limited, write_atomic};
use super::StoreError;
use crate::digest::Digest;

const MAX_RECORD: u64 = 16 << 20;

/// A manifest an image was pulled or loaded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRef {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// One layer of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The blob as distributed (usually compressed).
    pub blob: Digest,
    pub media_type: String,
    pub blob_size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// One entry of the config's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: Digest,
    /// Manifests known for this image (empty for images loaded from a legacy
    /// docker-archive, which carries none).
    pub manifests: Vec<ManifestRef>,
    pub layers: Vec<LayerRef>,
    pub created: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
    pub history: Vec<HistoryEntry>,
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Bytes of file content in all layers (Docker's SIZE).
    pub size: u64,
    /// When this store first recorded the image.
    pub stored_at: DateTime<Utc>,
    /// A build step's result kept for the build cache (Docker's intermediate
    /// images): hidden from `images` unless tagged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intermediate: bool,
}

impl ImageRecord {
    /// Every blob the image needs kept.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        std::iter::once(&self.id)
            .chain(self.manifests.iter().map(|m| &m.digest))
            .chain(self.layers.iter().map(|l| &l.blob))
    }
}

/// Names → image IDs. Keys are full references: `domain/path:tag` or
/// `domain/path@digest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagIndex {
    pub refs: BTreeMap<String, Digest>,
    /// Names of multi-platform images (a build for several platforms):
    /// the images of every platform, one of which is the name's. A push
    /// of the name pushes them all and their index; once the name points
    /// at an image not among them, the entry means nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, Vec<Digest>>,
}

impl TagIndex {
    /// Whether `id` is one platform's image of a multi-platform name that
    /// still stands (the name points at one of its platforms' images).
    pub fn holds_platform_image(&self, id: &Digest) -> bool {
        self.platforms.iter().any(|(name, images)| {
            images.contains(id) && self.refs.get(name).is_some_and(|t| images.contains(t))
        })
    }

    /// The names that point at `id`, sorted.
    pub fn names_of(&self, id: &Digest) -> Vec<String> {
        self.refs
            .iter()
            .filter(|(_, target)| *target == id)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
    index: PathBuf,
}

impl RecordStore {
    pub(super) fn new(dir: PathBuf, index: PathBuf) -> RecordStore {
        RecordStore { dir, index }
    }

    fn path(&self, id: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", id.hex()))
    }

    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>, StoreError> {
        let path = self.path(id);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = read_limited(&path, MAX_RECORD)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    pub fn put(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let path = self.path(&record.id);
        let json = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }

    pub fn delete(&self, id: &Digest) -> Result<(), StoreError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// IDs of all stored images.
    pub fn ids(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let name = entry.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|hex| Digest::from_hex(hex).ok())
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn all(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let mut out = Vec::new();
        for id in self.ids()? {
            if let Some(record) = self.get(&id)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    pub fn index(&self) -> Result<TagIndex, StoreError> {
        if !self.index.is_file() {
            return Ok(TagIndex::default());
        }
        let bytes = read_limited(&self.index, MAX_RECORD)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.index.clone(),
            reason: e.to_string(),
        })
    }

    pub fn save_index(&self, index: &TagIndex) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(index).map_err(|e| StoreError::Corrupt {
            path: self.index.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.index, &json)
    }
}
