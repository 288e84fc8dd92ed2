//! The executor's side of the registry build cache (see `remote_cache`):
//! importing caches at the start of a build, replaying a step from one on
//! a local miss, and exporting the build's steps at the end.

use hutch_images::registry::build_cache::FetchedCache;
use hutch_images::{BuiltLayer, Digest, RegistryRequest};

use super::remote_cache::{
    self, CacheExport, Document, Imported, LayerRecord, Record, CONFIG_MEDIA_TYPE,
    MAX_DOCUMENT_SIZE,
};
use super::{auth_for, BuildError, BuildOptions, Ctx, Executor, ImageState, Progress};

impl Executor {
    fn cache_registry(&self, opts: &BuildOptions, name: &str) -> RegistryRequest {
        let mut registry = self.registry.clone();
        if let Some(auth) = auth_for(&opts.registry_auths, name) {
            registry.auth = Some(auth);
        }
        registry
    }

    /// Fetches every `--cache-from`. One that is missing, unreachable or
    /// not a hutch cache is a warning (as BuildKit's): the build goes on.
    pub(super) fn import_caches(
        &self,
        rt: &tokio::runtime::Runtime,
        opts: &BuildOptions,
        progress: &dyn Progress,
    ) -> Vec<Imported> {
        let mut out = Vec::new();
        for import in &opts.cache_from {
            let name = &import.reference;
            progress.message(&format!("importing cache manifest from {name}"));
            let registry = self.cache_registry(opts, name);
            let fetched = rt.block_on(self.store.fetch_build_cache(
                name,
                &registry,
                CONFIG_MEDIA_TYPE,
                MAX_DOCUMENT_SIZE,
            ));
            let doc = match fetched {
                Ok(FetchedCache::Cache { config, source }) => {
                    Document::parse(&config).map(|d| (d, source))
                }
                Ok(FetchedCache::Other { media_type }) => Err(format!(
                    "not a hutch build cache (its {media_type} is not a \
                     {CONFIG_MEDIA_TYPE} manifest)"
                )),
                Err(e) => Err(e.to_string()),
            };
            match doc {
                Ok((doc, source)) => out.push(Imported {
                    reference: name.clone(),
                    records: doc.records,
                    source,
                }),
                Err(e) => progress.message(&format!(
                    "WARNING: failed to import cache from {name}: {e}; building without it"
                )),
            }
        }
        out
    }

    /// A step found in an imported cache, replayed: its layer pulled and
    /// its result image stored as the exporting build stored it. A record
    /// that cannot be used (a blob that fails verification, a registry
    /// gone) is a warning and the step runs.
    pub(super) fn remote_hit(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        parent: &ImageState,
    ) -> Option<ImageState> {
        let rt = ctx.rt.as_ref()?;
        for imported in &ctx.remote {
            let Some(record) = imported.records.get(key) else {
                continue;
            };
            if record.parent != parent.id {
                continue;
            }
            match self.replay(rt, imported, record, parent) {
                Ok(img) => {
                    ctx.cache.put(key, &record.image);
                    return Some(img);
                }
                Err(e) => ctx.progress.message(&format!(
                    "WARNING: the cached result from {} cannot be used, running the step: {e}",
                    imported.reference
                )),
            }
        }
        None
    }

    fn replay(
        &self,
        rt: &tokio::runtime::Runtime,
        imported: &Imported,
        record: &Record,
        parent: &ImageState,
    ) -> Result<ImageState, BuildError> {
        if let Ok(img) = ImageState::load(&self.store, &record.image.to_string()) {
            return Ok(img);
        }
        let mut layers = parent.stored_layers();
        if let Some(l) = &record.layer {
            let chain = Digest::chain(parent.layers.last().map(|p| &p.chain_id), &l.diff_id);
            let desc = hutch_images::oci::Descriptor {
                media_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
                annotations: Default::default(),
                platform: None,
            };
            rt.block_on(self.store.fetch_build_cache_layer(
                &imported.source,
                &desc,
                &l.diff_id,
                &chain,
            ))?;
            layers.push(BuiltLayer::Stored {
                blob: l.digest.clone(),
                media_type: l.media_type.clone(),
            });
        }
        // The importer checks the config's diff IDs against the layers.
        let id = self
            .store
            .add_built(record.config.as_bytes(), layers, Vec::new(), true)?;
        if id != record.image {
            return Err(BuildError::Invalid(format!(
                "the cached config stored as {id}, not {}",
                record.image
            )));
        }
        Ok(ImageState::load(&self.store, &id.to_string())?)
    }

    /// Writes the build's steps to every `--cache-to`. A failed export
    /// fails the build (as BuildKit's) unless `ignore-error=true`.
    pub(super) fn export_caches(
        &self,
        rt: &tokio::runtime::Runtime,
        ctx: &Ctx<'_>,
        final_image: &Digest,
    ) -> Result<(), BuildError> {
        let steps = ctx
            .steps
            .lock()
            .map(|s| s.clone())
            .map_err(|_| BuildError::Invalid("the step list is poisoned".into()))?;
        for export in &ctx.opts.cache_to {
            ctx.progress
                .message(&format!("exporting cache to {}", export.reference));
            let selected = remote_cache::select(&steps, final_image, export.mode);
            match self.export_one(rt, ctx, export, &selected) {
                Ok(n) => ctx.progress.message(&format!(
                    "exported {n} cache records to {}",
                    export.reference
                )),
                Err(e) if export.ignore_error => ctx.progress.message(&format!(
                    "WARNING: failed to export cache to {}: {e}",
                    export.reference
                )),
                Err(e) => {
                    return Err(BuildError::Invalid(format!(
                        "failed to export cache to {}: {e}",
                        export.reference
                    )))
                }
            }
        }
        Ok(())
    }

    fn export_one(
        &self,
        rt: &tokio::runtime::Runtime,
        ctx: &Ctx<'_>,
        export: &CacheExport,
        steps: &[remote_cache::StepResult],
    ) -> Result<usize, BuildError> {
        let mut doc = Document::new();
        let mut blobs: Vec<hutch_images::oci::Descriptor> = Vec::new();
        for step in steps {
            if doc.records.contains_key(&step.key) {
                continue;
            }
            let content = self.store.content();
            let config = content
                .blobs
                .read_small(&step.image, hutch_images::oci::MAX_CONFIG_SIZE)
                .map_err(|e| BuildError::Image(e.into()))?;
            let config = String::from_utf8(config).map_err(|_| {
                BuildError::Invalid(format!("the config of {} is not UTF-8", step.image))
            })?;
            let layers = self.store.inspect(&step.image.to_string())?.record.layers;
            let parent_layers = match &step.parent {
                Some(p) => self.store.inspect(&p.to_string())?.record.layers.len(),
                None => 0,
            };
            let layer = if layers.len() == parent_layers + 1 {
                let l = &layers[parent_layers];
                let desc = self.registry_layer(rt, &l.blob, &l.media_type)?;
                let rec = LayerRecord {
                    digest: desc.digest.clone(),
                    size: desc.size,
                    media_type: desc.media_type.clone(),
                    diff_id: l.diff_id.clone(),
                };
                if !blobs.iter().any(|b| b.digest == desc.digest) {
                    blobs.push(desc);
                }
                Some(rec)
            } else if layers.len() == parent_layers {
                None
            } else {
                continue;
            };
            doc.records.insert(
                step.key.clone(),
                Record {
                    image: step.image.clone(),
                    parent: step.parent.clone(),
                    config,
                    layer,
                },
            );
        }
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| BuildError::Invalid(format!("encoding the cache document: {e}")))?;
        let registry = self.cache_registry(ctx.opts, &export.reference);
        rt.block_on(self.store.push_build_cache(
            &export.reference,
            &registry,
            CONFIG_MEDIA_TYPE,
            &bytes,
            blobs,
        ))?;
        Ok(doc.records.len())
    }

    /// A layer as a registry gets it (gzipped), remembering which gzip blob
    /// an uncompressed built layer became (`<data root>/builder/gzipped/`),
    /// so exporting again does not compress it again while that blob is
    /// in the store (gc removes it once no image uses it).
    fn registry_layer(
        &self,
        rt: &tokio::runtime::Runtime,
        blob: &Digest,
        media_type: &str,
    ) -> Result<hutch_images::oci::Descriptor, BuildError> {
        let memo_dir = self.data_root.join(super::cache_dirs::GZIPPED);
        let memo = memo_dir.join(blob.hex());
        let remembered = std::fs::read_to_string(&memo)
            .ok()
            .and_then(|text| serde_json::from_str::<hutch_images::oci::Descriptor>(&text).ok());
        if let Some(desc) = remembered {
            if self.store.content().blobs.contains(&desc.digest) {
                return Ok(desc);
            }
        }
        let desc = rt.block_on(self.store.registry_layer(blob, media_type))?;
        if desc.digest != *blob {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(&memo_dir)?;
                let tmp = memo_dir.join(format!(".{}.tmp", blob.hex()));
                std::fs::write(&tmp, serde_json::to_vec(&desc)?)?;
                std::fs::rename(&tmp, &memo)
            };
            if let Err(e) = write() {
                tracing::warn!(%e, "remembering a gzipped layer");
            }
        }
        Ok(desc)
    }
}
