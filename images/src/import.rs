//! Turning verified blobs into a stored image: unpack (or verify) its
//! layers, build its record, then commit everything at once.
//!
//! Nothing becomes visible until `commit`: blobs wait in `ingest/` as
//! `VerifiedBlob`s and layers as `PreparedLayer`s, so an import that fails
//! half-way leaves nothing behind (their temp files go when dropped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::built::BuiltTree;
use crate::digest::{chain_ids, Digest};
use crate::oci::{self, ImageConfig};
use crate::progress::{NoProgress, ProgressEvent, ProgressSink};
use crate::reference::Reference;
use crate::store::{
    ImageRecord, LayerMeta, LayerRef, LockGuard, ManifestRef, PreparedLayer, Store, StoreError,
    VerifiedBlob,
};
use crate::unpack::{diff_id_of, unpack_layer_unhashed, Compression, UnpackError, UnpackLimits};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("layer {index} ({blob}) of image {image}: {cause}")]
    Unpack {
        image: Digest,
        index: usize,
        blob: Digest,
        cause: Box<UnpackError>,
    },
    #[error("image config {digest} is invalid: {reason}")]
    Config { digest: Digest, reason: String },
    #[error(
        "image {image} lists {layers} layers but its config has {diff_ids} diff IDs; \
         the image is malformed"
    )]
    LayerCount {
        image: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error(
        "layer {index} of image {image} does not match the config: its content has diff ID \
         {actual}, the config says {expected}; the image is corrupt or was tampered with"
    )]
    DiffIdMismatch {
        image: Digest,
        index: usize,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {0} is needed but was not provided")]
    MissingBlob(Digest),
}

/// An image that an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub id: Digest,
    /// The names it was tagged with (none for an untagged image).
    pub names: Vec<Reference>,
}

/// A layer of an image to import: its blob and, when the cause says, its
/// media type (otherwise derived from the detected compression).
#[derive(Debug, Clone)]
pub struct LayerSource {
    pub blob: Digest,
    pub media_type: Option<String>,
}

pub struct Importer<'s> {
    store: &'s Store,
    limits: UnpackLimits,
    staged: HashMap<Digest, VerifiedBlob>,
    layers: Vec<(PreparedLayer, LayerMeta)>,
    /// Layer metadata known so far: committed ones and ones prepared here.
    known_layers: HashMap<Digest, LayerMeta>,
    images: Vec<(ImageRecord, Vec<Reference>)>,
    /// (blob, diff ID) pairs already proven, with the blob's compression:
    /// unpacked in this import, or recorded by an earlier one.
    verified: HashMap<(Digest, Digest), Compression>,
    /// Whether the pairs of the stored records are in `verified` yet.
    records_scanned: bool,
    /// Trees a builder made for (blob, diff ID) pairs it wrote itself.
    trees: HashMap<(Digest, Digest), BuiltTree>,
    /// Told how far each unpacked layer's blob has been read (`docker
    /// load`'s "Loading layer" bars).
    progress: Arc<dyn ProgressSink>,
    _content: LockGuard,
}

impl<'s> Importer<'s> {
    /// Starts an import; holds the store's content lock (shared) so garbage
    /// collection cannot remove what is being added.
    pub fn new(store: &'s Store, limits: UnpackLimits) -> Result<Importer<'s>, ImportError> {
        Ok(Importer {
            _content: store.locks.content_shared()?,
            store,
            limits,
            staged: HashMap::new(),
            layers: Vec::new(),
            known_layers: HashMap::new(),
            images: Vec::new(),
            verified: HashMap::new(),
            records_scanned: false,
            trees: HashMap::new(),
            progress: Arc::new(NoProgress),
        })
    }

    /// Reports each layer it unpacks to `progress`, as `Extracting` events
    /// (by diff ID, bytes of the blob read so far of its size).
    pub fn with_progress(mut self, progress: Arc<dyn ProgressSink>) -> Importer<'s> {
        self.progress = progress;
        self
    }

    /// Whether `blob` is known to have diff ID `diff_id` without reading it:
    /// this import unpacked it, or a stored image (verified when it was
    /// stored) pairs them.
    pub fn is_verified(&mut self, blob: &Digest, diff_id: &Digest) -> Result<bool, ImportError> {
        self.scan_records()?;
        Ok(self.verified.contains_key(&(blob.clone(), diff_id.clone())))
    }

    fn scan_records(&mut self) -> Result<(), ImportError> {
        if self.records_scanned {
            return Ok(());
        }
        for record in self.store.records.all()? {
            for layer in &record.layers {
                let compression = if layer.media_type.ends_with("zstd") {
                    Compression::Zstd
                } else if layer.media_type.ends_with("gzip") {
                    Compression::Gzip
                } else {
                    Compression::None
                };
                self.verified
                    .entry((layer.blob.clone(), layer.diff_id.clone()))
                    .or_insert(compression);
            }
        }
        self.records_scanned = true;
        Ok(())
    }

    pub fn store(&self) -> &Store {
        self.store
    }

    /// Adds a layer a pull has already committed (blob and unpacked tree,
    /// its diff ID checked as it streamed), so the image can use it
    /// without reading the blob again.
    pub fn add_committed(&mut self, blob: &Digest, meta: LayerMeta, compression: Compression) {
        self.verified
            .insert((blob.clone(), meta.diff_id.clone()), compression);
        self.known_layers.insert(meta.chain_id.clone(), meta);
    }

    /// Adds the tree a builder made for the uncompressed layer blob it wrote
    /// (so its diff ID is the blob's digest): the layer is committed from
    /// it instead of unpacking the blob.
    pub fn add_tree(&mut self, blob: &Digest, diff_id: &Digest, tree: BuiltTree) {
        self.trees.insert((blob.clone(), diff_id.clone()), tree);
    }

    /// The compression of a staged or stored blob, from its magic bytes.
    fn compression_of(&self, digest: &Digest) -> Result<Compression, ImportError> {
        let path = self.blob_path(digest)?;
        let mut head = Vec::with_capacity(4);
        File::open(&path)
            .and_then(|f| f.take(4).read_to_end(&mut head))
            .map_err(|e| StoreError::Io { path, cause: e })?;
        Ok(Compression::detect(&head))
    }

    /// Keeps a verified blob for the commit.
    pub fn stage(&mut self, blob: VerifiedBlob) {
        self.staged.entry(blob.digest.clone()).or_insert(blob);
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.staged.contains_key(digest) || self.store.blobs.contains(digest)
    }

    fn blob_path(&self, digest: &Digest) -> Result<PathBuf, ImportError> {
        if let Some(blob) = self.staged.get(digest) {
            return Ok(blob.path().to_owned());
        }
        if self.store.blobs.contains(digest) {
            return Ok(self.store.blobs.path(digest));
        }
        Err(ImportError::MissingBlob(digest.clone()))
    }

    pub fn blob_size(&self, digest: &Digest) -> Result<u64, ImportError> {
        if let Some(blob) = self.staged.get(digest) {
            return Ok(blob.size);
        }
        Ok(self.store.blobs.size(digest)?)
    }

    /// Reads a staged or stored blob that must be small.
    pub fn read_blob(&self, digest: &Digest, max: u64) -> Result<Vec<u8>, ImportError> {
        let path = self.blob_path(digest)?;
        Ok(crate::store::read_limited(&path, max)?)
    }

    /// Adds an image: unpacks the layers the store does not have yet,
    /// verifies every layer against the config's diff IDs, and builds the
    /// record. Nothing is visible until `commit`.
    pub fn add_image(
        &mut self,
        config: &Digest,
        manifest: Option<ManifestRef>,
        layers: &[LayerSource],
        names: Vec<Reference>,
    ) -> Result<Digest, ImportError> {
        let config_bytes = self.read_blob(config, oci::MAX_CONFIG_SIZE)?;
        let parsed: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| ImportError::Config {
                digest: config.clone(),
                reason: e.to_string(),
            })?;
        let diff_ids = &parsed.rootfs.diff_ids;
        if diff_ids.len() != layers.len() {
            return Err(ImportError::LayerCount {
                image: config.clone(),
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let chains = chain_ids(diff_ids);
        let mut layer_refs = Vec::with_capacity(layers.len());
        let mut size = 0;
        for (index, layer) in layers.iter().enumerate() {
            let (meta, compression) =
                self.ensure_layer(config, index, &layer.blob, &diff_ids[index], &chains[index])?;
            size += meta.size;
            let media_type = layer.media_type.clone().unwrap_or_else(|| {
                match compression {
                    Compression::None => oci::MEDIA_OCI_LAYER,
                    Compression::Gzip => oci::MEDIA_OCI_LAYER_GZIP,
                    Compression::Zstd => oci::MEDIA_OCI_LAYER_ZSTD,
                }
                .to_owned()
            });
            layer_refs.push(LayerRef {
                blob: layer.blob.clone(),
                media_type,
                blob_size: self.blob_size(&layer.blob)?,
                diff_id: diff_ids[index].clone(),
                chain_id: chains[index].clone(),
            });
        }
        let created = parsed
            .created
            .as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&Utc));
        let labels: BTreeMap<String, String> = parsed
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let record = ImageRecord {
            id: config.clone(),
            manifests: manifest.into_iter().collect(),
            layers: layer_refs,
            created,
            labels,
            history: parsed.history,
            os: parsed.os,
            architecture: parsed.architecture,
            variant: parsed.variant,
            size,
            stored_at: Utc::now(),
            intermediate: false,
        };
        self.images.push((record, names));
        Ok(config.clone())
    }

    /// Makes sure the layer `chain` exists (unpacking `blob` if needed) and
    /// that `blob` really has diff ID `diff_id`.
    fn ensure_layer(
        &mut self,
        image: &Digest,
        index: usize,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
    ) -> Result<(LayerMeta, Compression), ImportError> {
        let path = self.blob_path(blob)?;
        let open = || {
            File::open(&path)
                .map(|f| BufReader::with_capacity(256 * 1024, f))
                .map_err(|e| StoreError::Io {
                    path: path.clone(),
                    cause: e,
                })
        };
        let unpack_err = |cause| ImportError::Unpack {
            image: image.clone(),
            index,
            blob: blob.clone(),
            cause: Box::new(cause),
        };
        let mismatch = |actual: Digest| ImportError::DiffIdMismatch {
            image: image.clone(),
            index,
            expected: diff_id.clone(),
            actual,
        };
        if self.trees.contains_key(&(blob.clone(), diff_id.clone())) {
            // Written by this builder from the tree: its own digest.
            self.verified
                .insert((blob.clone(), diff_id.clone()), Compression::None);
        }
        let existing = match self.known_layers.get(chain) {
            Some(meta) => Some(meta.clone()),
            None if self.store.layers.contains(chain) => Some(self.store.layers.meta(chain)?),
            None => None,
        };
        if let Some(meta) = existing {
            if meta.diff_id == *diff_id && meta.source_blob.as_ref() == Some(blob) {
                // Unpacked from this very blob (e.g. by a pull that was
                // interrupted after committing it): proven then.
                let compression = self.compression_of(blob)?;
                self.verified
                    .insert((blob.clone(), diff_id.clone()), compression);
            }
            if self.is_verified(blob, diff_id)? {
                let compression = self.verified[&(blob.clone(), diff_id.clone())];
                self.known_layers.insert(chain.clone(), meta.clone());
                return Ok((meta, compression));
            }
            // The layer is there; still prove this blob is that layer.
            let (compression, actual) = diff_id_of(open()?, self.limits).map_err(unpack_err)?;
            if actual != *diff_id {
                return Err(mismatch(actual));
            }
            self.verified
                .insert((blob.clone(), diff_id.clone()), compression);
            self.known_layers.insert(chain.clone(), meta.clone());
            return Ok((meta, compression));
        }
        if let Some(tree) = self.trees.remove(&(blob.clone(), diff_id.clone())) {
            let meta = LayerMeta {
                chain_id: chain.clone(),
                diff_id: diff_id.clone(),
                size: tree.content_size,
                highest_uid: tree.highest_uid,
                highest_gid: tree.highest_gid,
                uses_overflow_id: tree.uses_overflow_id,
                source_blob: Some(blob.clone()),
            };
            self.verified
                .insert((blob.clone(), diff_id.clone()), Compression::None);
            self.known_layers.insert(chain.clone(), meta.clone());
            self.layers.push((tree.prepared, meta.clone()));
            return Ok((meta, Compression::None));
        }
        let prepared = self.store.layers.prepare()?;
        let reader = ProgressReader {
            inner: open()?,
            layer: diff_id.clone(),
            read: 0,
            total: std::fs::metadata(&path).map_or(0, |m| m.len()),
            reported: 0,
            progress: self.progress.clone(),
        };
        // The blob was verified when it was staged or stored: no need to
        // hash it again.
        let stats =
            unpack_layer_unhashed(reader, &prepared.diff_dir(), self.limits).map_err(unpack_err)?;
        if stats.diff_id != *diff_id {
            return Err(mismatch(stats.diff_id));
        }
        let meta = LayerMeta::from_stats(chain, &stats, blob);
        self.verified
            .insert((blob.clone(), diff_id.clone()), stats.compression);
        self.known_layers.insert(chain.clone(), meta.clone());
        self.layers.push((prepared, meta.clone()));
        Ok((meta, stats.compression))
    }

    /// Marks the image added last as a build step's result (see
    /// `ImageRecord::intermediate`).
    pub fn mark_intermediate(&mut self) {
        if let Some((record, _)) = self.images.last_mut() {
            record.intermediate = true;
        }
    }

    /// Makes everything added visible: blobs, layers, records, then names.
    pub fn commit(mut self) -> Result<Vec<LoadedImage>, ImportError> {
        let mut needed: HashSet<Digest> = HashSet::new();
        for (record, _) in &self.images {
            needed.extend(record.blobs().cloned());
        }
        for (digest, blob) in self.staged.drain() {
            if needed.contains(&digest) {
                self.store.blobs.commit(blob)?;
            }
        }
        for (prepared, meta) in self.layers.drain(..) {
            self.store.layers.commit(prepared, &meta)?;
        }
        let _meta = self.store.locks.meta_exclusive()?;
        let mut index = self.store.records.index()?;
        let mut loaded = Vec::new();
        for (mut record, names) in self.images.drain(..) {
            if let Some(existing) = self.store.records.get(&record.id)? {
                record.stored_at = existing.stored_at;
                // A build step never hides an image that was stored visible.
                record.intermediate &= existing.intermediate;
                for m in existing.manifests {
                    if !record.manifests.iter().any(|n| n.digest == m.digest) {
                        record.manifests.push(m);
                    }
                }
            }
            self.store.records.put(&record)?;
            for name in &names {
                index.refs.insert(name.to_string(), record.id.clone());
            }
            loaded.push(LoadedImage {
                id: record.id.clone(),
                names,
            });
        }
        self.store.records.save_index(&index)?;
        Ok(loaded)
    }
}

/// A layer blob being unpacked, reporting how much of it was read every
/// `PROGRESS_STEP` bytes and at its end.
struct ProgressReader<R> {
    inner: R,
    layer: Digest,
    read: u64,
    total: u64,
    reported: u64,
    progress: Arc<dyn ProgressSink>,
}

/// Bytes between two progress reports of a layer being loaded (moby's
/// progress reader reports every 512 KiB).
const PROGRESS_STEP: u64 = 512 * 1024;

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if (n == 0 && self.reported < self.read) || self.read - self.reported >= PROGRESS_STEP {
            self.reported = self.read;
            self.progress.event(ProgressEvent::Extracting {
                layer: self.layer.clone(),
                current: self.read,
                total: Some(self.total),
            });
        }
        Ok(n)
    }
}
