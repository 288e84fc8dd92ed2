//! Adding what a builder made: a layer written as a tar stream (hashed for its
//! diff ID and gzip-compressed into a blob while it streams), and an image from
//! a config and its layers. Nothing is visible until [`ImageStore::add_built`]
//! commits, so a cancelled build leaves only temp files that are removed when
//! dropped.

use std::io::{self, Write};

use flate2::write::GzEncoder;

use crate::digest::{Digest, HashingWriter};
use crate::image_store::{ImageError, ImageStore};
use crate::import::{Importer, LayerSource};
use crate::oci;
use crate::reference::Reference;
use crate::store::{BlobWriter, StoreError, VerifiedBlob};

/// A layer being written as an uncompressed tar stream.
pub struct LayerWriter {
    out: HashingWriter<GzEncoder<BlobWriter>>,
}

/// A finished layer waiting for [`ImageStore::add_built`].
#[derive(Debug)]
pub struct NewLayer {
    pub blob: VerifiedBlob,
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

/// A layer of a built image: one the store has, or a new one.
#[derive(Debug)]
pub enum BuiltLayer {
    Stored { blob: Digest, media_type: String },
    New(NewLayer),
}

impl LayerWriter {
    /// Gzip level 1: build layers are written once per step and mostly read
    /// locally, so speed beats the last percent of size.
    fn new(blob: BlobWriter) -> LayerWriter {
        LayerWriter {
            out: HashingWriter::new(GzEncoder::new(blob, flate2::Compression::fast())),
        }
    }

    pub fn finish(self) -> Result<NewLayer, StoreError> {
        let (diff_id, tar_size, gz) = self.out.finish();
        let blob = gz
            .finish()
            .map_err(|e| StoreError::io(std::path::Path::new("ingest"), e))?;
        Ok(NewLayer {
            blob: blob.finish(None, None)?,
            diff_id,
            tar_size,
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
                        media_type: Some(oci::MEDIA_OCI_LAYER_GZIP.to_owned()),
                    });
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
    /// results), or with `stored_before` those stored before it, and collects
    /// the layers only they used. Returns the IDs.
    pub fn prune_intermediate(
        &self,
        stored_before: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<Digest>, ImageError> {
        let store = self.content();
        let mut deleted = Vec::new();
        {
            let _meta = store.locks.meta_exclusive()?;
            let index = store.records.index()?;
            for record in store.records.all()? {
                let old_enough = stored_before.is_none_or(|t| record.stored_at < t);
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
