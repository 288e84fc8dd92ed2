//! Adding what a builder made: a layer written as a tar stream into an
//! uncompressed blob (its digest is the diff ID, hashed once while it
//! streams), and an image from a config and its layers. Nothing is visible
//! until [`ImageStore::add_built`] commits, so a cancelled build leaves only
//! temp files that are removed when dropped.
//!
//! Built layers stay uncompressed locally, as Docker's and buildah's do:
//! compressing costs seconds for a large COPY and only a push needs it (the
//! push gzips them, see `registry::push`). A builder that already has the
//! layer's tree on disk (a RUN's upper directory) hands it over as a
//! [`BuiltTree`], so the store renames it into place instead of unpacking
//! the blob it just wrote.

use std::io::{self, Write};

use crate::digest::Digest;
use crate::image_store::{ImageError, ImageStore};
use crate::import::{Importer, LayerSource};
use crate::oci;
use crate::reference::Reference;
use crate::store::{BlobWriter, PreparedLayer, StoreError, VerifiedBlob};

/// A layer being written as an uncompressed tar stream.
pub struct LayerWriter {
    out: BlobWriter,
}

/// A finished layer waiting for [`ImageStore::add_built`].
#[derive(Debug)]
pub struct NewLayer {
    pub blob: VerifiedBlob,
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// The layer's tree, already made (else the blob is unpacked).
    pub tree: Option<BuiltTree>,
}

impl NewLayer {
    /// The media type the image record gives this layer.
    pub fn media_type(&self) -> &'static str {
        oci::MEDIA_OCI_LAYER
    }
}

/// A layer's tree made by the builder in a store temp dir
/// ([`ImageStore::prepare_layer`]), in the layer store's form (overlay
/// whiteouts and opaque xattrs, no other overlay xattrs), with what the
/// store records about it. It must be exactly the tree the layer's tar
/// unpacks to, apart from modification times a `SOURCE_DATE_EPOCH` clamped
/// in the tar.
#[derive(Debug)]
pub struct BuiltTree {
    pub prepared: PreparedLayer,
    /// Bytes of regular-file content.
    pub content_size: u64,
    /// Highest UID/GID owning anything, not counting the overflow ID 65534.
    pub highest_uid: u32,
    pub highest_gid: u32,
    pub uses_overflow_id: bool,
}

/// A layer of a built image: one the store has, or a new one.
#[derive(Debug)]
pub enum BuiltLayer {
    Stored { blob: Digest, media_type: String },
    New(NewLayer),
}

impl LayerWriter {
    fn new(blob: BlobWriter) -> LayerWriter {
        LayerWriter { out: blob }
    }

    pub fn finish(self) -> Result<NewLayer, StoreError> {
        let blob = self.out.finish(None, None)?;
        Ok(NewLayer {
            diff_id: blob.digest.clone(),
            tar_size: blob.size,
            blob,
            tree: None,
        })
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl ImageStore {
    /// Starts a new layer blob.
    pub fn layer_writer(&self) -> Result<LayerWriter, ImageError> {
        Ok(LayerWriter::new(self.content().blobs.writer()?))
    }

    /// An empty layer tree in the store's temp area, for a [`BuiltTree`]
    /// (removed when dropped unless committed).
    pub fn prepare_layer(&self) -> Result<PreparedLayer, ImageError> {
        Ok(self.content().layers.prepare()?)
    }

    /// Stores an image made of `config` (the image config JSON) and `layers`
    /// (bottom first, matching the config's diff IDs), tagged with `names`.
    /// `intermediate` keeps it out of `images` unless tagged (a build step's
    /// result, kept for the build cache). Returns the image ID.
    pub fn add_built(
        &self,
        config: &[u8],
        layers: Vec<BuiltLayer>,
        names: Vec<Reference>,
        intermediate: bool,
    ) -> Result<Digest, ImageError> {
        let store = self.content();
        let mut importer = Importer::new(store, self.limits()).map_err(import_err)?;
        let mut sources = Vec::with_capacity(layers.len());
        for layer in layers {
            match layer {
                BuiltLayer::Stored { blob, media_type } => sources.push(LayerSource {
                    blob,
                    media_type: Some(media_type),
                }),
                BuiltLayer::New(new) => {
                    sources.push(LayerSource {
                        blob: new.blob.digest.clone(),
                        media_type: Some(new.media_type().to_owned()),
                    });
                    if let Some(tree) = new.tree {
                        importer.add_tree(&new.blob.digest, &new.diff_id, tree);
                    }
                    importer.stage(new.blob);
                }
            }
        }
        let mut writer = store.blobs.writer()?;
        writer
            .write_all(config)
            .map_err(|e| StoreError::io(store.ingest_dir(), e))?;
        let config_blob = writer.finish(None, None)?;
        let config_digest = config_blob.digest.clone();
        importer.stage(config_blob);
        let id = importer
            .add_image(&config_digest, None, &sources, names)
            .map_err(import_err)?;
        if intermediate {
            importer.mark_intermediate();
        }
        importer.commit().map_err(import_err)?;
        Ok(id)
    }
}

impl ImageStore {
    /// Deletes every untagged intermediate image (the build cache's step
    /// results), or with `unused_since` those neither stored nor used
    /// (`last_used`, the builder's record of cache hits) since then, and
    /// collects the layers only they used. Returns the IDs.
    pub fn prune_intermediate(
        &self,
        unused_since: Option<chrono::DateTime<chrono::Utc>>,
        last_used: &std::collections::HashMap<Digest, chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<Digest>, ImageError> {
        let store = self.content();
        let mut deleted = Vec::new();
        {
            let _meta = store.locks.meta_exclusive()?;
            let index = store.records.index()?;
            for record in store.records.all()? {
                let last = last_used
                    .get(&record.id)
                    .map_or(record.stored_at, |used| record.stored_at.max(*used));
                let old_enough = unused_since.is_none_or(|t| last < t);
                if record.intermediate && old_enough && index.names_of(&record.id).is_empty() {
                    store.records.delete(&record.id)?;
                    deleted.push(record.id);
                }
            }
        }
        if !deleted.is_empty() {
            store.gc()?;
        }
        Ok(deleted)
    }
}

fn import_err(e: crate::import::ImportError) -> ImageError {
    ImageError::Archive(crate::archive::ArchiveError::from(e))
}
