//! The executor's side of the registry build cache (see `remote_cache`):
//! importing caches at the start of a build, replaying a step from one on
//! a local miss, and exporting the build's steps at the end.

use std::collections::BTreeMap;

use hutch_images::registry::build_cache::FetchedCache;
use hutch_images::{BuiltLayer, Digest, RegistryRequest};

use super::cache_store::{self, CacheStore};
use super::remote_cache::{
    self, CacheDest, CacheImport, Document, ImportSource, Imported, InlineCache, InlineDocument,
    LayerRecord, Record, CONFIG_MEDIA_TYPE, MAX_DOCUMENT_SIZE,
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

    /// Finds every `--cache-from`: an image with an inline cache in the
    /// local store (as `docker pull` left it), else a cache manifest or an
    /// image with an inline cache in the registry. One that is missing,
    /// unreachable or holds no hutch cache is a warning (as BuildKit's):
    /// the build goes on.
    pub(super) fn import_caches(
        &self,
        rt: &tokio::runtime::Runtime,
        opts: &BuildOptions,
        progress: &dyn Progress,
    ) -> Vec<Imported> {
        let mut out = Vec::new();
        for import in &opts.cache_from {
            let name = import.to_string();
            let found = match import {
                CacheImport::Registry(name) => match self.local_inline(name) {
                    Some(records) => Ok(Imported {
                        reference: name.clone(),
                        records,
                        source: ImportSource::Store,
                    }),
                    None => {
                        progress.message(&format!("importing cache manifest from {name}"));
                        self.fetch_import(rt, opts, name)
                    }
                },
                CacheImport::Local { src, tag, digest } => {
                    progress.message(&format!("importing cache manifest from {name}"));
                    local_import(opts, src, tag, digest.as_ref())
                }
            };
            match found {
                Ok(imported) => out.push(imported),
                Err(e) => progress.message(&format!(
                    "WARNING: failed to import cache from {name}: {e}; building without it"
                )),
            }
        }
        out
    }

    /// The inline cache of the local image `name`, if it has one.
    fn local_inline(&self, name: &str) -> Option<BTreeMap<String, Record>> {
        let details = self.store.inspect(name).ok()?;
        let layers: Vec<LayerRecord> = details
            .record
            .layers
            .iter()
            .map(|l| LayerRecord {
                digest: l.blob.clone(),
                size: l.blob_size,
                media_type: l.media_type.clone(),
                diff_id: l.diff_id.clone(),
            })
            .collect();
        match InlineDocument::read(&details.config, &layers) {
            Ok(InlineCache::Records(records)) => Some(records),
            _ => None,
        }
    }

    /// A cache manifest, or an image with an inline cache, in a registry.
    fn fetch_import(
        &self,
        rt: &tokio::runtime::Runtime,
        opts: &BuildOptions,
        name: &str,
    ) -> Result<Imported, String> {
        let registry = self.cache_registry(opts, name);
        let platform = opts.platform.as_ref().map(|p| p.to_string());
        let fetched = rt
            .block_on(self.store.fetch_build_cache(
                name,
                &registry,
                CONFIG_MEDIA_TYPE,
                MAX_DOCUMENT_SIZE,
                platform.as_deref(),
            ))
            .map_err(|e| e.to_string())?;
        let (records, source) = match fetched {
            FetchedCache::Cache { config, source } => (Document::parse(&config)?.records, source),
            FetchedCache::Image {
                config,
                layers,
                source,
            } => (image_inline(&config, &layers)?, source),
            FetchedCache::Other { media_type } => {
                return Err(format!(
                    "not a hutch build cache (its {media_type} is neither a \
                     {CONFIG_MEDIA_TYPE} manifest nor an image)"
                ))
            }
        };
        Ok(Imported {
            reference: name.to_owned(),
            records,
            source: ImportSource::Registry(source),
        })
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
            let content = self.store.content();
            match &imported.source {
                ImportSource::Registry(source) => rt.block_on(
                    self.store
                        .fetch_build_cache_layer(source, &desc, &l.diff_id, &chain),
                )?,
                ImportSource::Store => {
                    if !content.layers.contains(&chain) || !content.blobs.contains(&l.digest) {
                        return Err(BuildError::Invalid(format!(
                            "layer {} of {} is no longer stored",
                            l.diff_id, imported.reference
                        )));
                    }
                }
                // The blob is copied in, checked by digest and size; the
                // image added below unpacks it (checking its diff ID)
                // unless its layer is stored.
                ImportSource::Local(store) if !content.blobs.contains(&l.digest) => {
                    let store_err =
                        |e: hutch_images::store::StoreError| BuildError::Image(e.into());
                    let mut writer = content.blobs.writer().map_err(store_err)?;
                    cache_store::copy_verified(store.as_ref(), &desc, &mut writer)
                        .map_err(BuildError::Invalid)?;
                    let blob = writer
                        .finish(Some(&desc.digest), Some(desc.size))
                        .map_err(store_err)?;
                    content.blobs.commit(blob).map_err(store_err)?;
                }
                ImportSource::Local(_) => {}
            }
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
            let phase = match &export.dest {
                CacheDest::Registry(_) => "exporting cache to registry",
                CacheDest::Local { .. } => "exporting cache to client directory",
                CacheDest::Inline => continue,
            };
            let dest = export.dest.to_string();
            ctx.progress.phase(phase);
            ctx.progress.message(&format!("exporting cache to {dest}"));
            let selected = remote_cache::select(&steps, final_image, export.mode);
            let exported = self
                .cache_document(rt, &selected)
                .map(|(doc, blobs)| match ctx.opts.cache_merge {
                    true => self.merged(rt, ctx.opts, &export.dest, doc, blobs),
                    false => (doc, blobs),
                })
                .and_then(|(doc, blobs)| {
                    let n = doc.records.len();
                    match &export.dest {
                        CacheDest::Registry(reference) => {
                            self.export_registry(rt, ctx, reference, &doc, blobs)?
                        }
                        CacheDest::Local { dest, tag } => {
                            self.export_local(ctx.opts, dest, tag, &doc, blobs)?
                        }
                        CacheDest::Inline => {}
                    }
                    Ok(n)
                });
            match exported {
                Ok(n) => ctx
                    .progress
                    .message(&format!("exported {n} cache records to {dest}")),
                Err(e) if export.ignore_error => ctx
                    .progress
                    .message(&format!("WARNING: failed to export cache to {dest}: {e}")),
                Err(e) => {
                    return Err(BuildError::Invalid(format!(
                        "failed to export cache to {dest}: {e}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The inline cache of the image whose steps end at `final_image`:
    /// the records of its own chain of steps (`mode=min`), each layer by
    /// its index among that image's layers.
    pub(super) fn inline_cache(
        &self,
        ctx: &Ctx<'_>,
        final_image: &Digest,
    ) -> Result<serde_json::Value, BuildError> {
        let steps = ctx
            .steps
            .lock()
            .map(|s| s.clone())
            .map_err(|_| BuildError::Invalid("the step list is poisoned".into()))?;
        let mut doc = InlineDocument::new();
        for step in remote_cache::select(&steps, final_image, remote_cache::CacheMode::Min) {
            if doc.records.contains_key(&step.key) {
                continue;
            }
            let Some(made) = self.step_made(&step)? else {
                continue;
            };
            doc.records.insert(
                step.key.clone(),
                remote_cache::InlineRecord {
                    image: step.image.clone(),
                    parent: step.parent.clone(),
                    config: made.config,
                    layer: made.layer.map(|(index, _)| index),
                },
            );
        }
        serde_json::to_value(&doc)
            .map_err(|e| BuildError::Invalid(format!("encoding the inline cache: {e}")))
    }

    /// What a step made, as a cache record holds it; `None` when its image
    /// has more than one layer over its parent's (not replayable as one
    /// step).
    fn step_made(&self, step: &remote_cache::StepResult) -> Result<Option<StepMade>, BuildError> {
        let mut layers = self.store.inspect(&step.image.to_string())?.record.layers;
        let parent_layers = match &step.parent {
            Some(p) => self.store.inspect(&p.to_string())?.record.layers.len(),
            None => 0,
        };
        let layer = match layers.len().checked_sub(parent_layers) {
            Some(0) => None,
            Some(1) => layers.pop().map(|l| (parent_layers, l)),
            _ => return Ok(None),
        };
        let config = self
            .store
            .content()
            .blobs
            .read_small(&step.image, hutch_images::oci::MAX_CONFIG_SIZE)
            .map_err(|e| BuildError::Image(e.into()))?;
        let config = String::from_utf8(config).map_err(|_| {
            BuildError::Invalid(format!("the config of {} is not UTF-8", step.image))
        })?;
        Ok(Some(StepMade { config, layer }))
    }

    /// The cache document of `steps` and the layer blobs it names (built
    /// layers gzipped, as a registry gets them).
    fn cache_document(
        &self,
        rt: &tokio::runtime::Runtime,
        steps: &[remote_cache::StepResult],
    ) -> Result<(Document, Vec<hutch_images::oci::Descriptor>), BuildError> {
        let mut doc = Document::new();
        let mut blobs: Vec<hutch_images::oci::Descriptor> = Vec::new();
        for step in steps {
            if doc.records.contains_key(&step.key) {
                continue;
            }
            let Some(made) = self.step_made(step)? else {
                continue;
            };
            let layer = if let Some((_, l)) = &made.layer {
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
            } else {
                None
            };
            doc.records.insert(
                step.key.clone(),
                Record {
                    image: step.image.clone(),
                    parent: step.parent.clone(),
                    config: made.config,
                    layer,
                },
            );
        }
        Ok((doc, blobs))
    }

    /// `doc` and `blobs` with the records already at `dest` added (this
    /// build's win on a key both have). What cannot be read there is
    /// left out: the export then replaces it, as without merging.
    fn merged(
        &self,
        rt: &tokio::runtime::Runtime,
        opts: &super::BuildOptions,
        dest: &CacheDest,
        mut doc: Document,
        mut blobs: Vec<hutch_images::oci::Descriptor>,
    ) -> (Document, Vec<hutch_images::oci::Descriptor>) {
        let earlier = match dest {
            CacheDest::Registry(reference) => self
                .fetch_import(rt, opts, reference)
                .ok()
                .filter(|i| matches!(i.source, ImportSource::Registry(_))),
            CacheDest::Local { dest, tag } => local_import(opts, dest, tag, None).ok(),
            CacheDest::Inline => None,
        };
        let content = self.store.content();
        for (key, record) in earlier.into_iter().flat_map(|i| i.records) {
            // Only records whose layer this store has (an earlier build
            // of this solve made it) can be written again.
            if let Some(l) = &record.layer {
                if !content.blobs.contains(&l.digest) {
                    continue;
                }
                if !blobs.iter().any(|b| b.digest == l.digest) {
                    blobs.push(hutch_images::oci::Descriptor {
                        media_type: l.media_type.clone(),
                        digest: l.digest.clone(),
                        size: l.size,
                        annotations: Default::default(),
                        platform: None,
                    });
                }
            }
            doc.records.entry(key).or_insert(record);
        }
        (doc, blobs)
    }

    fn export_registry(
        &self,
        rt: &tokio::runtime::Runtime,
        ctx: &Ctx<'_>,
        reference: &str,
        doc: &Document,
        blobs: Vec<hutch_images::oci::Descriptor>,
    ) -> Result<(), BuildError> {
        let bytes = encode(doc)?;
        let registry = self.cache_registry(ctx.opts, reference);
        rt.block_on(self.store.push_build_cache(
            reference,
            &registry,
            CONFIG_MEDIA_TYPE,
            &bytes,
            blobs,
        ))?;
        Ok(())
    }

    /// Writes the cache to the local cache at `dir`: the layer blobs the
    /// store lacks, the document, the manifest, then its tag.
    fn export_local(
        &self,
        opts: &super::BuildOptions,
        dir: &str,
        tag: &str,
        doc: &Document,
        layers: Vec<hutch_images::oci::Descriptor>,
    ) -> Result<(), BuildError> {
        use hutch_images::oci::{self, Descriptor, Manifest};
        let store = open_local(opts, dir).map_err(BuildError::Invalid)?;
        let content = self.store.content();
        let store_err = |e: hutch_images::store::StoreError| BuildError::Image(e.into());
        {
            // Keep gc away from the blobs while they are read.
            let _content = content.locks.content_shared().map_err(store_err)?;
            for layer in &layers {
                let mut file = content.blobs.open(&layer.digest).map_err(store_err)?;
                store.put(layer, &mut file).map_err(BuildError::Invalid)?;
            }
        }
        let describe = |media_type: &str, bytes: &[u8]| Descriptor {
            media_type: media_type.to_owned(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        let config = encode(doc)?;
        let config_desc = describe(CONFIG_MEDIA_TYPE, &config);
        store
            .put(&config_desc, &mut &config[..])
            .map_err(BuildError::Invalid)?;
        let manifest = Manifest::oci(config_desc, layers);
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| BuildError::Invalid(format!("encoding the cache manifest: {e}")))?;
        let manifest_desc = describe(oci::MEDIA_OCI_MANIFEST, &bytes);
        store
            .put(&manifest_desc, &mut &bytes[..])
            .map_err(BuildError::Invalid)?;
        store
            .set_tag(tag, &manifest_desc)
            .map_err(BuildError::Invalid)
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

fn encode(doc: &Document) -> Result<Vec<u8>, BuildError> {
    serde_json::to_vec(doc)
        .map_err(|e| BuildError::Invalid(format!("encoding the cache document: {e}")))
}

/// The local cache at `dir`, through the client's stores.
fn open_local(
    opts: &super::BuildOptions,
    dir: &str,
) -> Result<std::sync::Arc<dyn CacheStore>, String> {
    opts.cache_stores
        .as_ref()
        .ok_or_else(|| {
            "type=local caches are kept by the client: use hutch build or docker buildx \
             (this API carries no directory)"
                .to_owned()
        })?
        .open(dir)
}

/// A local cache's records: the manifest its `index.json` names `tag`
/// (or `digest`, when the client looked it up), and the cache document
/// it points to, each checked against its digest.
fn local_import(
    opts: &super::BuildOptions,
    src: &str,
    tag: &str,
    digest: Option<&Digest>,
) -> Result<Imported, String> {
    use hutch_images::oci::{Manifest, MAX_MANIFEST_SIZE};
    let store = open_local(opts, src)?;
    let manifest_digest = match digest {
        Some(d) => d.clone(),
        None => store
            .tagged(tag)?
            .ok_or_else(|| format!("its index.json names no {tag:?}"))?,
    };
    let bytes = cache_store::read_verified(store.as_ref(), &manifest_digest, MAX_MANIFEST_SIZE)?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid cache manifest: {e}"))?;
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "not a hutch build cache (its manifest's config is {}, not {CONFIG_MEDIA_TYPE})",
            manifest.config.media_type
        ));
    }
    let config =
        cache_store::read_verified(store.as_ref(), &manifest.config.digest, MAX_DOCUMENT_SIZE)?;
    Ok(Imported {
        reference: format!("local:{src}"),
        records: Document::parse(&config)?.records,
        source: ImportSource::Local(store),
    })
}

/// What one step made: its result's config, byte for byte, and the layer
/// it added, with its index among the result's layers.
struct StepMade {
    config: String,
    layer: Option<(usize, hutch_images::store::LayerRef)>,
}

/// The hutch inline cache of a registry image: its layers are the
/// manifest's, with the diff IDs its config gives them.
fn image_inline(
    config: &[u8],
    layers: &[hutch_images::oci::Descriptor],
) -> Result<BTreeMap<String, Record>, String> {
    let config: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| format!("invalid image config: {e}"))?;
    let diff_ids: Vec<Digest> = config
        .pointer("/rootfs/diff_ids")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| format!("invalid rootfs.diff_ids in the image config: {e}"))?
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(format!(
            "the image's manifest has {} layers and its config {} diff IDs",
            layers.len(),
            diff_ids.len()
        ));
    }
    let layers: Vec<LayerRecord> = layers
        .iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| LayerRecord {
            digest: d.digest.clone(),
            size: d.size,
            media_type: d.media_type.clone(),
            diff_id,
        })
        .collect();
    match InlineDocument::read(&config, &layers)? {
        InlineCache::Records(records) => Ok(records),
        InlineCache::BuildKit => Err(format!(
            "it is an image with BuildKit's inline cache ({}), whose keys hutch does not \
             compute; build it with hutch and --cache-to type=inline",
            remote_cache::BUILDKIT_INLINE_KEY
        )),
        InlineCache::Absent => Err("it is an image without an inline cache (build it with \
             --cache-to type=inline or --build-arg BUILDKIT_INLINE_CACHE=1)"
            .into()),
    }
}
