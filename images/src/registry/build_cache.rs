//! Moving a build cache through a registry (`--cache-to` / `--cache-from
//! type=registry`): an OCI manifest whose config is the builder's own
//! document (key → step result) and whose layers are the steps' layer
//! blobs, gzipped as a push sends them. The builder owns the document's
//! meaning; this module only moves bytes, with the same endpoints,
//! credentials, digest checks and blob skipping as pull and push.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::auth::{resolve_credential, Credential};
use super::client::{Access, RegistryError, Session};
use super::config::{Endpoint, RegistrySettings};
use super::platform::{self, parse_platform};
use super::pull::{self, LayerJob, PullError};
use super::push::{self, PushError, Pushed};
use crate::digest::Digest;
use crate::image_store::{ImageError, ImageStore, RegistryRequest};
use crate::oci::{self, Descriptor, Manifest};
use crate::progress::NoProgress;
use crate::reference::Reference;
use crate::store::StoreError;

/// Blob uploads at once, as a push.
const CONCURRENT_UPLOADS: usize = 5;

/// What `--cache-from` found at a reference.
#[derive(Debug, Clone)]
pub enum FetchedCache {
    /// A cache manifest: its config document (digest-checked), and where
    /// to fetch its layers from.
    Cache {
        config: Vec<u8>,
        source: Arc<CacheSource>,
    },
    /// An image (from an index: the one for the platform asked for): its
    /// config (digest-checked; it may carry an inline cache) and layers.
    Image {
        config: Vec<u8>,
        layers: Vec<Descriptor>,
        source: Arc<CacheSource>,
    },
    /// Something else (another tool's cache, an index without the
    /// platform, an artifact).
    Other { media_type: String },
}

/// The registry session a cache was fetched on, kept for its layers.
pub struct CacheSource {
    reference: Reference,
    endpoint: Endpoint,
    credential: Credential,
    session: Session,
}

impl std::fmt::Debug for CacheSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSource")
            .field("reference", &self.reference.to_string())
            .field("endpoint", &self.endpoint.host)
            .finish()
    }
}

impl ImageStore {
    /// The blob a registry gets for a layer: a built (uncompressed) one is
    /// gzipped into a blob of its own (deterministic, so the same layer
    /// always gives the same digest); a compressed one goes as it is.
    pub async fn registry_layer(
        &self,
        blob: &Digest,
        media_type: &str,
    ) -> Result<Descriptor, ImageError> {
        let store = self.content();
        let gz_type = match media_type {
            oci::MEDIA_OCI_LAYER => Some(oci::MEDIA_OCI_LAYER_GZIP),
            "application/vnd.docker.image.rootfs.diff.tar" => {
                Some("application/vnd.docker.image.rootfs.diff.tar.gzip")
            }
            _ => None,
        };
        let Some(gz_type) = gz_type else {
            return Ok(Descriptor {
                media_type: media_type.to_owned(),
                digest: blob.clone(),
                size: store.blobs.size(blob)?,
                annotations: Default::default(),
                platform: None,
            });
        };
        let blobs = store.blobs.clone();
        let source = blob.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || push::gzip_blob(&blobs, &source))
            .await
            .map_err(|e| PushError::Invalid(format!("compressing a layer: {e}")))??;
        Ok(Descriptor {
            media_type: gz_type.to_owned(),
            digest,
            size,
            annotations: Default::default(),
            platform: None,
        })
    }

    /// Pushes a cache manifest to `name`: the blobs the registry lacks
    /// (from the store: `layers` must be there), the config document, then
    /// an OCI manifest tagged `name`.
    pub async fn push_build_cache(
        &self,
        name: &str,
        request: &RegistryRequest,
        config_media_type: &str,
        config: &[u8],
        layers: Vec<Descriptor>,
    ) -> Result<Pushed, ImageError> {
        let store = self.content();
        let reference = Reference::parse(name)?;
        let credential = resolve_credential(request.auth.as_ref(), reference.domain())?;
        // Keep gc away from the blobs while they are read; the config is a
        // blob of its own (unreferenced locally, so gc removes it later).
        let _content = store.locks.content_shared()?;
        let config_desc = Descriptor {
            media_type: config_media_type.to_owned(),
            digest: Digest::of(config),
            size: config.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        if !store.blobs.contains(&config_desc.digest) {
            store.blobs.put(
                &mut &config[..],
                Some(&config_desc.digest),
                Some(config_desc.size),
            )?;
        }
        let endpoint = push::push_endpoint(&request.settings, &reference)?;
        let session = Session::open(&endpoint, &reference, &credential, Access::Push).await?;
        let mut blobs: Vec<Descriptor> = Vec::new();
        for d in layers.iter().chain(std::iter::once(&config_desc)) {
            if !store.blobs.contains(&d.digest) {
                return Err(StoreError::BlobNotFound(d.digest.clone()).into());
            }
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d.clone());
            }
        }
        let progress: Arc<dyn crate::progress::ProgressSink> = Arc::new(NoProgress);
        let session = &session;
        let results: Vec<Result<push::BlobPushed, PushError>> = stream::iter(blobs)
            .map(|desc| {
                let progress = progress.clone();
                async move { push::push_blob(store, session, &desc, &[], &progress).await }
            })
            .buffer_unordered(CONCURRENT_UPLOADS)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let manifest = Manifest::oci(config_desc, layers);
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| PushError::Invalid(format!("encoding the cache manifest: {e}")))?;
        Ok(push::put_manifest(
            session,
            &reference,
            Bytes::from(bytes),
            oci::MEDIA_OCI_MANIFEST.to_owned(),
        )
        .await?)
    }

    /// Fetches the cache manifest at `name` and, when its config is of
    /// `config_media_type`, the config document (at most `max` bytes,
    /// checked against its digest). An image there (from an index: the
    /// one for `platform`, the machine's when `None`) comes back with its
    /// config, for the inline cache it may carry.
    pub async fn fetch_build_cache(
        &self,
        name: &str,
        request: &RegistryRequest,
        config_media_type: &str,
        max: u64,
        platform: Option<&str>,
    ) -> Result<FetchedCache, ImageError> {
        let reference = Reference::parse(name)?;
        let platform = match platform {
            Some(p) => parse_platform(p)?,
            None => oci::host_platform(),
        };
        let want = CacheWanted {
            config_media_type,
            max,
            platform: &platform,
        };
        let credential = resolve_credential(request.auth.as_ref(), reference.domain())?;
        let endpoints = pull_endpoints(&request.settings, &reference);
        let mut last = None;
        for (n, endpoint) in endpoints.iter().enumerate() {
            let session = Session::open(endpoint, &reference, &credential, Access::Pull).await?;
            match fetch_cache_on(self, &session, &reference, &want).await {
                Err(ImageError::Pull(PullError::Registry(e)))
                    if n + 1 < endpoints.len() && endpoint.may_fall_back =>
                {
                    last = Some(e);
                }
                Ok(found) => {
                    let source = || {
                        Arc::new(CacheSource {
                            reference,
                            endpoint: endpoint.clone(),
                            credential,
                            session,
                        })
                    };
                    return Ok(match found {
                        Found::Cache(config) => FetchedCache::Cache {
                            config,
                            source: source(),
                        },
                        Found::Image(config, layers) => FetchedCache::Image {
                            config,
                            layers,
                            source: source(),
                        },
                        Found::Other(media_type) => FetchedCache::Other { media_type },
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(e) => PullError::Registry(e).into(),
            None => PullError::Internal("no registry endpoint".into()).into(),
        })
    }

    /// Fetches one cache layer blob from the cache's repository into the
    /// store, verified by digest and size, and unpacks it as the layer
    /// `chain` (its content must have `diff_id`) unless that layer is
    /// stored. The step's image is then added with
    /// [`ImageStore::add_built`]. The session the cache was fetched on is
    /// reused; if it fails (e.g. its token expired), a fresh one is tried.
    pub async fn fetch_build_cache_layer(
        &self,
        source: &CacheSource,
        desc: &Descriptor,
        diff_id: &Digest,
        chain: &Digest,
    ) -> Result<(), ImageError> {
        let store = self.content();
        let has_layer = store.layers.contains(chain);
        if has_layer && store.blobs.contains(&desc.digest) {
            return Ok(());
        }
        if !oci::is_layer(&desc.media_type) {
            return Err(PullError::Unsupported {
                reference: source.reference.to_string(),
                reason: format!("unsupported layer media type {:?}", desc.media_type),
            }
            .into());
        }
        let job = || LayerJob {
            desc: desc.clone(),
            diff_id: diff_id.clone(),
            chain: chain.clone(),
            unpack: !has_layer,
        };
        let limits = self.limits();
        match pull::fetch_layer(store, &source.session, job(), limits, Arc::new(NoProgress)).await {
            Err(PullError::Registry(e)) => {
                tracing::debug!(error = %e, "cache blob: retrying on a fresh session");
            }
            other => return other.map(|_| ()).map_err(ImageError::from),
        }
        let session = Session::open(
            &source.endpoint,
            &source.reference,
            &source.credential,
            Access::Pull,
        )
        .await?;
        session.authenticate_pull().await?;
        pull::fetch_layer(store, &session, job(), limits, Arc::new(NoProgress)).await?;
        Ok(())
    }
}

/// What `--cache-from` looks for.
struct CacheWanted<'a> {
    config_media_type: &'a str,
    max: u64,
    platform: &'a oci::Platform,
}

/// What [`fetch_cache_on`] found.
enum Found {
    Cache(Vec<u8>),
    Image(Vec<u8>, Vec<Descriptor>),
    Other(String),
}

/// The config of the cache manifest or image at `reference` (an index
/// is followed to its entry for the platform), or the media type of what
/// is there instead.
async fn fetch_cache_on(
    images: &ImageStore,
    session: &Session,
    reference: &Reference,
    want: &CacheWanted<'_>,
) -> Result<Found, ImageError> {
    let malformed = |what: &str, e: serde_json::Error| PullError::Malformed {
        reference: reference.to_string(),
        what: what.into(),
        reason: e.to_string(),
    };
    let mut fetched = session
        .manifest(reference.tag(), reference.digest())
        .await
        .map_err(PullError::from)?;
    if oci::is_index(&fetched.media_type) {
        let index: oci::Index =
            serde_json::from_slice(&fetched.bytes).map_err(|e| malformed("the index", e))?;
        let Some(entry) = platform::select(&index.manifests, want.platform) else {
            return Ok(Found::Other(format!(
                "{} without an image for {}",
                fetched.media_type,
                platform::display(want.platform)
            )));
        };
        fetched = session
            .manifest(None, Some(&entry.digest))
            .await
            .map_err(PullError::from)?;
    }
    if !oci::is_manifest(&fetched.media_type) {
        return Ok(Found::Other(fetched.media_type));
    }
    let manifest: Manifest =
        serde_json::from_slice(&fetched.bytes).map_err(|e| malformed("the manifest", e))?;
    let is_cache = manifest.config.media_type == want.config_media_type;
    if !is_cache && !oci::is_config(&manifest.config.media_type) {
        return Ok(Found::Other(manifest.config.media_type));
    }
    let max = if is_cache {
        want.max
    } else {
        oci::MAX_CONFIG_SIZE
    };
    if manifest.config.size > max {
        return Err(PullError::Unsupported {
            reference: reference.to_string(),
            reason: format!("the config is larger than {max} bytes"),
        }
        .into());
    }
    let store = images.content();
    let blob = pull::fetch_small_blob(store, session, &manifest.config).await?;
    // Read from the verified temp file; it is dropped (not committed).
    let config = crate::store::read_limited(blob.path(), max)?;
    Ok(if is_cache {
        Found::Cache(config)
    } else {
        Found::Image(config, manifest.layers)
    })
}

/// Pushes go to the registry itself, never to a mirror.
/// A cache lives in the registry it names: mirrors (of Docker Hub images)
/// are not asked for it.
fn pull_endpoints(settings: &RegistrySettings, reference: &Reference) -> Vec<Endpoint> {
    settings
        .endpoints(reference.domain())
        .into_iter()
        .filter(|e| !e.mirror)
        .collect()
}

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> ImageError {
        ImageError::Pull(PullError::Registry(e))
    }
}
