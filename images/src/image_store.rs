//! `ImageStore`: the typed API the daemon and the daemonless CLI use.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::archive::{self, ArchiveError, SaveItem};
use crate::digest::Digest;
use crate::filters::{reference_matches, FilterError, ListFilters};
use crate::import::LoadedImage;
use crate::progress::ProgressSink;
use crate::reference::{Reference, ReferenceError};
use crate::registry::auth::resolve_credential;
use crate::registry::platform::{parse_platform, PlatformError};
use crate::registry::{
    distribution, pull, push, AuthConfig, AuthError, DistributionInfo, PullError, PullOptions,
    Pulled, PushError, Pushed, RegistrySettings,
};
use crate::store::{GcReport, ImageRecord, Store, StoreError, TagIndex};
use crate::unpack::UnpackLimits;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0:?} matches more than one image ID; give more of the ID")]
    Ambiguous(String),
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in \
         multiple repositories"
    )]
    MultipleNames { id: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

/// How to reach registries for one pull or push.
#[derive(Debug, Clone, Default)]
pub struct RegistryRequest {
    pub settings: RegistrySettings,
    /// Credentials sent with the request (the API's `X-Registry-Auth`);
    /// when absent, the user's Docker config is consulted.
    pub auth: Option<AuthConfig>,
}

/// One image as `images` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: Digest,
    /// `name:tag` references, sorted.
    pub repo_tags: Vec<Reference>,
    /// `name@digest` references, sorted.
    pub repo_digests: Vec<Reference>,
    pub created: Option<DateTime<Utc>>,
    /// Bytes of file content in all layers.
    pub size: u64,
    pub labels: BTreeMap<String, String>,
}

/// Everything the store knows about an image, for `inspect`.
#[derive(Debug, Clone)]
pub struct ImageDetails {
    pub summary: ImageSummary,
    pub record: ImageRecord,
    /// The image config as stored (Docker's `Config`, `RootFS`, ...).
    pub config: serde_json::Value,
    /// Highest UID/GID in any layer, not counting 65534 (for sizing
    /// private ID ranges), and whether 65534 is used.
    pub highest_uid: u32,
    pub highest_gid: u32,
    pub uses_overflow_id: bool,
}

/// What `remove` did, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(Reference),
    Deleted(Digest),
}

/// The image store under a data root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    store: Store,
    limits: UnpackLimits,
}

impl ImageStore {
    /// Opens the store under `data_root`, creating it if needed and removing
    /// leftovers of interrupted operations when no other process is busy.
    pub fn open(data_root: &Path) -> Result<ImageStore, ImageError> {
        Ok(ImageStore {
            store: Store::open(data_root)?,
            limits: UnpackLimits::default(),
        })
    }

    /// Sets the decompression limits for layers loaded from now on.
    pub fn with_limits(mut self, limits: UnpackLimits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// Sets how durable new content is (default: `Durability::Relaxed`).
    pub fn with_durability(mut self, durability: crate::store::Durability) -> ImageStore {
        self.store.set_durability(durability);
        self
    }

    /// The underlying content store (for the registry client).
    pub fn content(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> UnpackLimits {
        self.limits
    }

    /// Loads a docker-archive or OCI-layout tar.
    pub fn load(&self, reader: impl Read) -> Result<Vec<LoadedImage>, ImageError> {
        Ok(archive::load_tar(&self.store, reader, self.limits)?)
    }

    /// As [`ImageStore::load`], reporting each layer it unpacks to
    /// `progress` (`Extracting` events by diff ID).
    pub fn load_with_progress(
        &self,
        reader: impl Read,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        Ok(archive::load_tar_with_progress(
            &self.store,
            reader,
            self.limits,
            progress,
        )?)
    }

    /// Loads an OCI layout directory.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<LoadedImage>, ImageError> {
        Ok(archive::load_dir(&self.store, dir, self.limits)?)
    }

    /// Saves images (by name or ID) as a docker-archive. A name saves under
    /// that name; an ID saves under all the image's tags.
    pub fn save(&self, names: &[&str], writer: impl Write) -> Result<(), ImageError> {
        let mut items: Vec<SaveItem> = Vec::new();
        {
            let _meta = self.store.locks.meta_shared()?;
            let index = self.store.records.index()?;
            for name in names {
                let (id, by_name) = self.resolve_in(&index, name)?;
                let record = self.record(&id)?;
                let names: Vec<Reference> = match by_name {
                    Some(r) if r.tag().is_some() => vec![r],
                    Some(_) => Vec::new(),
                    None => tags_of(&index, &id),
                };
                match items.iter_mut().find(|i| i.record.id == id) {
                    Some(item) => {
                        for n in names {
                            if !item.names.contains(&n) {
                                item.names.push(n);
                            }
                        }
                    }
                    None => items.push(SaveItem { record, names }),
                }
            }
        }
        archive::save(&self.store, &items, archive::ArchiveFormat::Docker, writer)?;
        Ok(())
    }

    /// Saves the images `ids` (one per platform) as one multi-platform
    /// image in an OCI layout, named `names`.
    pub fn save_platforms(
        &self,
        ids: &[Digest],
        names: &[Reference],
        writer: impl Write,
    ) -> Result<(), ImageError> {
        let records = ids
            .iter()
            .map(|id| self.record(id))
            .collect::<Result<Vec<_>, _>>()?;
        archive::save_platforms(&self.store, &records, names, writer)?;
        Ok(())
    }

    /// Saves one image (by ID or name) under `names` alone, whatever its
    /// tags in the store: what a build's archive exporter writes.
    pub fn save_image(
        &self,
        image: &str,
        names: &[Reference],
        format: archive::ArchiveFormat,
        writer: impl Write,
    ) -> Result<(), ImageError> {
        let record = {
            let _meta = self.store.locks.meta_shared()?;
            let index = self.store.records.index()?;
            let (id, _) = self.resolve_in(&index, image)?;
            self.record(&id)?
        };
        let item = SaveItem {
            record,
            names: names.to_vec(),
        };
        archive::save(&self.store, &[item], format, writer)?;
        Ok(())
    }

    /// Lists images matching `filters`, newest first.
    pub fn list(&self, filters: &ListFilters) -> Result<Vec<ImageSummary>, ImageError> {
        let _meta = self.store.locks.meta_shared()?;
        let index = self.store.records.index()?;
        let created_of = |name: &str| -> Result<Option<DateTime<Utc>>, ImageError> {
            let (id, _) = self.resolve_in(&index, name)?;
            Ok(self.record(&id)?.created)
        };
        let before = filters.before.as_deref().map(created_of).transpose()?;
        let since = filters.since.as_deref().map(created_of).transpose()?;
        let mut out = Vec::new();
        for record in self.store.records.all()? {
            let mut summary = summarize(&index, &record);
            let dangling = summary.repo_tags.is_empty();
            // Build-cache images, and the other platforms' images of a
            // multi-platform name, are not images of their own to a user
            // (Docker lists a multi-platform image once, by its name), so
            // neither are they listed nor pruned as dangling.
            let hidden = record.intermediate || index.holds_platform_image(&record.id);
            if dangling && hidden && summary.repo_digests.is_empty() {
                continue;
            }
            if filters.dangling.is_some_and(|want| want != dangling) {
                continue;
            }
            if !filters.reference.is_empty() {
                // As moby: only the names that match are listed (`docker
                // images REPO` shows no row for the image's other names), and
                // an image with none is left out.
                let matches =
                    |r: &Reference| filters.reference.iter().any(|p| reference_matches(p, r));
                summary.repo_tags.retain(matches);
                summary.repo_digests.retain(matches);
                if summary.repo_tags.is_empty() && summary.repo_digests.is_empty() {
                    continue;
                }
            }
            let labels_ok = filters.labels.iter().all(|(k, v)| match v {
                Some(v) => summary.labels.get(k) == Some(v),
                None => summary.labels.contains_key(k),
            });
            if !labels_ok {
                continue;
            }
            if let Some(Some(limit)) = before {
                if summary.created.is_none_or(|c| c >= limit) {
                    continue;
                }
            }
            if let Some(Some(limit)) = since {
                if summary.created.is_none_or(|c| c <= limit) {
                    continue;
                }
            }
            out.push(summary);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The image's ID, by name (`busybox`, `busybox:1`, `name@digest`), full
    /// ID (`sha256:...`) or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<Digest, ImageError> {
        let _meta = self.store.locks.meta_shared()?;
        let index = self.store.records.index()?;
        Ok(self.resolve_in(&index, name)?.0)
    }

    pub fn inspect(&self, name: &str) -> Result<ImageDetails, ImageError> {
        let (record, summary) = {
            let _meta = self.store.locks.meta_shared()?;
            let index = self.store.records.index()?;
            let (id, _) = self.resolve_in(&index, name)?;
            let record = self.record(&id)?;
            let summary = summarize(&index, &record);
            (record, summary)
        };
        let bytes = self
            .store
            .blobs
            .read_small(&record.id, crate::oci::MAX_CONFIG_SIZE)?;
        let config = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: self.store.blobs.path(&record.id),
            reason: e.to_string(),
        })?;
        let (mut highest_uid, mut highest_gid, mut uses_overflow_id) = (0, 0, false);
        for layer in &record.layers {
            let meta = self.store.layers.meta(&layer.chain_id)?;
            highest_uid = highest_uid.max(meta.highest_uid);
            highest_gid = highest_gid.max(meta.highest_gid);
            uses_overflow_id |= meta.uses_overflow_id;
        }
        Ok(ImageDetails {
            summary,
            record,
            config,
            highest_uid,
            highest_gid,
            uses_overflow_id,
        })
    }

    /// Gives the image `source` names the additional name `target`.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let target = Reference::parse(target)?;
        let _meta = self.store.locks.meta_exclusive()?;
        let mut index = self.store.records.index()?;
        let (id, _) = self.resolve_in(&index, source)?;
        // The name is one image now, not a multi-platform build's.
        index.platforms.remove(&target.to_string());
        index.refs.insert(target.to_string(), id);
        self.store.records.save_index(&index)?;
        Ok(())
    }

    /// Names image `id` `target`, as the image of one platform among
    /// `platforms` (all of a multi-platform build's images): pushing the
    /// name then pushes every platform and their index.
    pub fn tag_platforms(
        &self,
        id: &Digest,
        target: &str,
        platforms: &[Digest],
    ) -> Result<(), ImageError> {
        let target = Reference::parse(target)?;
        let _meta = self.store.locks.meta_exclusive()?;
        let mut index = self.store.records.index()?;
        for p in platforms {
            self.record(p)?;
        }
        index.refs.insert(target.to_string(), id.clone());
        index
            .platforms
            .insert(target.to_string(), platforms.to_vec());
        self.store.records.save_index(&index)?;
        Ok(())
    }

    /// Removes a name, and the image once no tag names it. By ID, removes
    /// the image with all its names, which needs `force` if it has several.
    /// Unreferenced layers and blobs are collected afterwards.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<Removed>, ImageError> {
        let mut removed = Vec::new();
        {
            let _meta = self.store.locks.meta_exclusive()?;
            let mut index = self.store.records.index()?;
            let (id, by_name) = self.resolve_in(&index, name)?;
            let tags = tags_of(&index, &id);
            let delete = match by_name {
                Some(name) => {
                    index.refs.remove(&name.to_string());
                    index.platforms.remove(&name.to_string());
                    removed.push(Removed::Untagged(name.clone()));
                    // Digest names die with the last tag, as in Docker.
                    name.tag().is_none() || tags.iter().all(|t| *t == name)
                }
                None => {
                    if tags.len() > 1 && !force {
                        return Err(ImageError::MultipleNames {
                            id: id.short().to_owned(),
                        });
                    }
                    true
                }
            };
            if delete {
                for n in index.names_of(&id) {
                    index.refs.remove(&n);
                    index.platforms.remove(&n);
                    if let Ok(r) = Reference::parse(&n) {
                        removed.push(Removed::Untagged(r));
                    }
                }
                self.store.records.save_index(&index)?;
                self.store.records.delete(&id)?;
                removed.push(Removed::Deleted(id));
            } else {
                self.store.records.save_index(&index)?;
            }
        }
        if removed.iter().any(|r| matches!(r, Removed::Deleted(_))) {
            // Best effort: if a load is in flight, the next gc catches up.
            self.store.try_gc()?;
        }
        Ok(removed)
    }

    /// The image's layer directories, bottom layer first (overlay's
    /// `lowerdir` lists them top first: reverse this).
    pub fn layer_chain(&self, name: &str) -> Result<Vec<PathBuf>, ImageError> {
        let id = self.resolve(name)?;
        self.layer_dirs(&self.record(&id)?)
    }

    /// The unpacked layer directories of an image already read (from
    /// [`ImageStore::inspect`]), bottom first: the same image's layers even
    /// if its name moved since, and no second read of the tag index.
    pub fn layer_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        let mut out = Vec::with_capacity(record.layers.len());
        for layer in &record.layers {
            if !self.store.layers.contains(&layer.chain_id) {
                return Err(StoreError::LayerNotFound(layer.chain_id.clone()).into());
            }
            out.push(self.store.layers.diff_path(&layer.chain_id));
        }
        Ok(out)
    }

    /// Pulls `name` (`busybox`, `reg:5000/app:1`, `app@sha256:...`) from its
    /// registry. `platform` is `--platform` (the machine's when `None`).
    /// Must run on a multi-threaded tokio runtime.
    pub async fn pull(
        &self,
        name: &str,
        platform: Option<&str>,
        request: &RegistryRequest,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Pulled, ImageError> {
        let reference = Reference::parse(name)?;
        let options = PullOptions {
            platform: platform.map(parse_platform).transpose()?,
            limits: self.limits,
        };
        let credential = resolve_credential(request.auth.as_ref(), reference.domain())?;
        Ok(pull::pull(
            &self.store,
            &request.settings,
            &credential,
            &reference,
            &options,
            progress,
        )
        .await?)
    }

    /// The tags the registry has for `repository`'s repository (its tag or
    /// digest, if any, ignored), for `pull --all-tags`.
    pub async fn tags(
        &self,
        repository: &Reference,
        request: &RegistryRequest,
    ) -> Result<Vec<String>, ImageError> {
        let repository = repository.repository();
        let credential = resolve_credential(request.auth.as_ref(), repository.domain())?;
        Ok(pull::tags(&request.settings, &credential, &repository).await?)
    }

    /// What the registry says `name` is (`GET /distribution/{name}/json`),
    /// without pulling it.
    pub async fn distribution(
        &self,
        name: &str,
        request: &RegistryRequest,
    ) -> Result<DistributionInfo, ImageError> {
        let reference = Reference::parse(name)?;
        let credential = resolve_credential(request.auth.as_ref(), reference.domain())?;
        Ok(distribution::inspect(&request.settings, &credential, &reference).await?)
    }

    /// Pushes the image `name` names to the registry in the name, and
    /// records the pushed digest as a repo digest.
    pub async fn push(
        &self,
        name: &str,
        request: &RegistryRequest,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Pushed, ImageError> {
        let reference = Reference::parse(name)?;
        let (record, candidates) = {
            let _meta = self.store.locks.meta_shared()?;
            let index = self.store.records.index()?;
            let id = index
                .refs
                .get(&reference.to_string())
                .cloned()
                .ok_or_else(|| PushError::NotFound(reference.familiar()))?;
            if let Some(platforms) = index
                .platforms
                .get(&reference.to_string())
                .filter(|p| p.len() > 1 && p.contains(&id))
                .cloned()
            {
                drop(_meta);
                let pushed = self.push_index(name, &platforms, request, progress).await?;
                // The index's digest names the image here, as a pull of
                // it would (this machine's platform's image).
                self.record_repo_digest(&reference, &pushed.digest, &id)?;
                return Ok(pushed);
            }
            let record = self.record(&id)?;
            (
                record.clone(),
                self.mount_candidates(&index, &reference, &record)?,
            )
        };
        // Keep gc away from the blobs while they are read.
        let _content = self.store.locks.content_shared()?;
        let credential = resolve_credential(request.auth.as_ref(), reference.domain())?;
        let pushed = push::push(
            &self.store,
            &request.settings,
            &credential,
            &reference,
            &record,
            &candidates,
            progress,
        )
        .await?;
        self.record_repo_digest(&reference, &pushed.digest, &record.id)?;
        Ok(pushed)
    }

    /// Records `repository@digest` (a pushed manifest or index) as a name
    /// of the image `id`: its RepoDigests, as Docker's push adds it.
    fn record_repo_digest(
        &self,
        reference: &Reference,
        digest: &Digest,
        id: &Digest,
    ) -> Result<(), ImageError> {
        let _meta = self.store.locks.meta_exclusive()?;
        let mut index = self.store.records.index()?;
        index.refs.insert(
            reference
                .repository()
                .with_digest(digest.clone())
                .to_string(),
            id.clone(),
        );
        self.store.records.save_index(&index)?;
        Ok(())
    }

    /// Pushes the images `ids` (one per platform) to `name`'s repository
    /// by digest, then an OCI index of them tagged `name`: a
    /// multi-platform image, as `docker buildx build --platform A,B
    /// --push` makes one. Returns the index's digest.
    pub async fn push_index(
        &self,
        name: &str,
        ids: &[Digest],
        request: &RegistryRequest,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Pushed, ImageError> {
        let reference = Reference::parse(name)?;
        let mut records = Vec::with_capacity(ids.len());
        let mut candidates = Vec::new();
        {
            let _meta = self.store.locks.meta_shared()?;
            let index = self.store.records.index()?;
            for id in ids {
                let record = self.record(id)?;
                for c in self.mount_candidates(&index, &reference, &record)? {
                    if !candidates.contains(&c) {
                        candidates.push(c);
                    }
                }
                records.push(record);
            }
        }
        let _content = self.store.locks.content_shared()?;
        let credential = resolve_credential(request.auth.as_ref(), reference.domain())?;
        let mut manifests = Vec::with_capacity(records.len());
        for record in &records {
            // By digest: only the index gets the tag.
            let untagged = reference.repository().with_digest(record.id.clone());
            let pushed = push::push(
                &self.store,
                &request.settings,
                &credential,
                &untagged,
                record,
                &candidates,
                progress.clone(),
            )
            .await?;
            manifests.push(crate::oci::Descriptor {
                media_type: pushed.media_type,
                digest: pushed.digest,
                size: pushed.size,
                annotations: Default::default(),
                platform: Some(crate::oci::Platform {
                    architecture: record.architecture.clone(),
                    os: record.os.clone(),
                    variant: record.variant.clone(),
                }),
            });
        }
        Ok(push::push_index(&request.settings, &credential, &reference, manifests).await?)
    }

    /// Other repositories of the same registry holding images that share
    /// blobs with `record`: where a cross-repository mount may succeed.
    fn mount_candidates(
        &self,
        index: &TagIndex,
        target: &Reference,
        record: &ImageRecord,
    ) -> Result<Vec<String>, ImageError> {
        let blobs: std::collections::HashSet<&Digest> =
            record.layers.iter().map(|l| &l.blob).collect();
        let mut out: Vec<String> = Vec::new();
        for (name, id) in &index.refs {
            let Ok(r) = Reference::parse(name) else {
                continue;
            };
            if r.domain() != target.domain() || r.path() == target.path() {
                continue;
            }
            if out.iter().any(|p| p == r.path()) {
                continue;
            }
            let shares = id == &record.id
                || self
                    .store
                    .records
                    .get(id)?
                    .is_some_and(|other| other.layers.iter().any(|l| blobs.contains(&l.blob)));
            if shares {
                out.push(r.path().to_owned());
            }
        }
        out.truncate(3);
        Ok(out)
    }

    /// Removes blobs and layers no image needs, waiting for operations in
    /// flight.
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        Ok(self.store.gc()?)
    }

    fn record(&self, id: &Digest) -> Result<ImageRecord, ImageError> {
        self.store
            .records
            .get(id)?
            .ok_or_else(|| ImageError::NotFound(id.to_string()))
    }

    /// Resolves `name`; the second value is the name when it was one.
    fn resolve_in(
        &self,
        index: &TagIndex,
        name: &str,
    ) -> Result<(Digest, Option<Reference>), ImageError> {
        if let Ok(digest) = name.parse::<Digest>() {
            if self.store.records.get(&digest)?.is_some() {
                return Ok((digest, None));
            }
            // A manifest's (or index's) digest the image was pulled or
            // pushed by, as Docker with the containerd image store, whose
            // image IDs these are, resolves it (buildx's `--iidfile` of a
            // pushed build holds it).
            let suffix = format!("@{digest}");
            let ids: std::collections::BTreeSet<&Digest> = index
                .refs
                .iter()
                .filter(|(name, _)| name.ends_with(&suffix))
                .map(|(_, id)| id)
                .collect();
            let mut ids = ids.into_iter();
            return match (ids.next(), ids.next()) {
                (Some(id), None) => Ok((id.clone(), None)),
                _ => Err(ImageError::NotFound(name.to_owned())),
            };
        }
        let parsed = Reference::parse(name);
        if let Ok(reference) = &parsed {
            if let Some(id) = index.refs.get(&reference.to_string()) {
                return Ok((id.clone(), Some(reference.clone())));
            }
        }
        let is_hex = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex {
            let matches: Vec<Digest> = self
                .store
                .records
                .ids()?
                .into_iter()
                .filter(|id| id.hex().starts_with(name))
                .collect();
            match matches.len() {
                0 => {}
                1 => return Ok((matches[0].clone(), None)),
                _ => return Err(ImageError::Ambiguous(name.to_owned())),
            }
        }
        match parsed {
            Err(e) if !is_hex => Err(e.into()),
            _ => Err(ImageError::NotFound(name.to_owned())),
        }
    }
}

fn tags_of(index: &TagIndex, id: &Digest) -> Vec<Reference> {
    index
        .names_of(id)
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .filter(|r| r.tag().is_some())
        .collect()
}

fn summarize(index: &TagIndex, record: &ImageRecord) -> ImageSummary {
    let (mut repo_tags, mut repo_digests) = (Vec::new(), Vec::new());
    for name in index.names_of(&record.id) {
        if let Ok(r) = Reference::parse(&name) {
            if r.tag().is_some() {
                repo_tags.push(r);
            } else {
                repo_digests.push(r);
            }
        }
    }
    ImageSummary {
        id: record.id.clone(),
        repo_tags,
        repo_digests,
        created: record.created,
        size: record.size,
        labels: record.labels.clone(),
    }
}
