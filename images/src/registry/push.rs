//! Push: blobs the registry lacks go up (mounted from another repository
//! of the same registry when it allows, else uploaded in chunks), then the
//! manifest, last, so the image only appears once it is complete.
//!
//! The manifest pushed is the stored one, byte for byte, so the registry's
//! digest is the one the image was pulled or loaded with. An image loaded
//! from a legacy docker-archive has none; one is generated (deterministic
//! JSON, so pushing twice gives the same digest).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;

use super::auth::Credential;
use super::client::{Access, RegistryError, Session};
use super::config::{Endpoint, RegistrySettings};
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Manifest};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::reference::Reference;
use crate::store::{ImageRecord, Store, StoreError};

/// Blob uploads at once (Docker's default: 5).
const CONCURRENT_UPLOADS: usize = 5;
/// Bytes read from a blob file per chunk sent.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("An image does not exist locally with the tag: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub reference: Reference,
    pub digest: Digest,
    pub size: u64,
    /// The manifest's (or index's) media type.
    pub media_type: String,
}

/// How a blob got to the registry, for progress messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPushed {
    AlreadyExists,
    Mounted { from: String },
    Uploaded,
}

pub async fn push(
    store: &Store,
    settings: &RegistrySettings,
    credential: &Credential,
    reference: &Reference,
    record: &ImageRecord,
    mount_candidates: &[String],
    progress: Arc<dyn ProgressSink>,
) -> Result<Pushed, PushError> {
    let record = &gzip_built_layers(store, record).await?;
    let (manifest_bytes, media_type) = manifest_for(store, record)?;
    let digest = Digest::of(&manifest_bytes);
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| PushError::Invalid(format!("stored manifest {digest}: {e}")))?;
    // Push goes to the registry itself, never to a mirror.
    let endpoint = push_endpoint(settings, reference)?;
    let session = Session::open(&endpoint, reference, credential, Access::Push).await?;

    let mut blobs: Vec<Descriptor> = manifest.layers.clone();
    blobs.push(manifest.config.clone());
    for desc in &blobs {
        if !store.blobs.contains(&desc.digest) {
            return Err(StoreError::BlobNotFound(desc.digest.clone()).into());
        }
        progress.event(ProgressEvent::Waiting {
            layer: desc.digest.clone(),
        });
    }
    let session = &session;
    let results: Vec<Result<(), PushError>> = stream::iter(blobs)
        .map(|desc| {
            let progress = progress.clone();
            async move {
                let how = push_blob(store, session, &desc, mount_candidates, &progress).await?;
                match how {
                    BlobPushed::AlreadyExists => progress.event(ProgressEvent::AlreadyExists {
                        layer: desc.digest.clone(),
                    }),
                    BlobPushed::Mounted { from } => progress.event(ProgressEvent::Mounted {
                        layer: desc.digest.clone(),
                        from,
                    }),
                    BlobPushed::Uploaded => progress.event(ProgressEvent::Done {
                        layer: desc.digest.clone(),
                    }),
                }
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENT_UPLOADS)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;

    put_manifest(session, reference, manifest_bytes, media_type).await
}

/// Puts a manifest (or index) of `media_type` as `reference`'s tag (by its
/// digest when it has none), its blobs already there.
pub(crate) async fn put_manifest(
    session: &Session,
    reference: &Reference,
    bytes: Bytes,
    media_type: String,
) -> Result<Pushed, PushError> {
    let digest = Digest::of(&bytes);
    let size = bytes.len() as u64;
    session
        .push_manifest(reference.tag(), &digest, bytes, &media_type)
        .await?;
    Ok(Pushed {
        reference: reference.clone(),
        digest,
        size,
        media_type,
    })
}

/// Pushes an OCI index of `manifests` (already in the repository) as
/// `reference`'s tag.
pub async fn push_index(
    settings: &RegistrySettings,
    credential: &Credential,
    reference: &Reference,
    manifests: Vec<Descriptor>,
) -> Result<Pushed, PushError> {
    let endpoint = push_endpoint(settings, reference)?;
    let session = Session::open(&endpoint, reference, credential, Access::Push).await?;
    let index = crate::oci::Index {
        schema_version: 2,
        media_type: Some(crate::oci::MEDIA_OCI_INDEX.to_owned()),
        manifests,
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&index)
        .map_err(|e| PushError::Invalid(format!("encoding the image index: {e}")))?;
    put_manifest(
        &session,
        reference,
        Bytes::from(bytes),
        crate::oci::MEDIA_OCI_INDEX.to_owned(),
    )
    .await
}

/// Where a push goes: the registry itself, never a mirror.
pub(crate) fn push_endpoint(
    settings: &RegistrySettings,
    reference: &Reference,
) -> Result<Endpoint, PushError> {
    settings
        .endpoints(reference.domain())
        .into_iter()
        .find(|e| !e.mirror)
        .ok_or_else(|| PushError::Invalid("no registry endpoint".into()))
}

pub(crate) async fn push_blob(
    store: &Store,
    session: &Session,
    desc: &Descriptor,
    mount_candidates: &[String],
    progress: &Arc<dyn ProgressSink>,
) -> Result<BlobPushed, PushError> {
    if session.blob_exists(&desc.digest).await? {
        return Ok(BlobPushed::AlreadyExists);
    }
    for from in mount_candidates {
        if session.mount(&desc.digest, from).await? {
            return Ok(BlobPushed::Mounted { from: from.clone() });
        }
    }
    let path = store.blobs.path(&desc.digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| StoreError::io(&path, e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| StoreError::io(&path, e))?
        .len();
    let layer = desc.digest.clone();
    let sink = progress.clone();
    // The blob is read as it is sent: one chunk in memory at a time.
    let body = stream::unfold((file, 0u64), move |(mut file, sent)| {
        let sink = sink.clone();
        let layer = layer.clone();
        async move {
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    sink.event(ProgressEvent::Downloading {
                        layer,
                        current: sent,
                        total: Some(size),
                    });
                    Some((Ok::<Bytes, _>(buf.freeze()), (file, sent)))
                }
                Err(e) => Some((
                    Err(oci_client::errors::OciDistributionError::IoError(e)),
                    (file, sent),
                )),
            }
        }
    });
    session.push_blob(&desc.digest, size, body).await?;
    Ok(BlobPushed::Uploaded)
}

/// Built layers are stored uncompressed (see `built`); a registry gets
/// them gzipped, as `docker push` sends them. For an image with no stored
/// manifest, each uncompressed layer is compressed into a blob of its own
/// (deterministic output, so pushing twice gives the same digests) and the
/// returned record names that blob instead. The image's ID and diff IDs do
/// not change; the gzipped blobs are not referenced locally, so gc removes
/// them later.
async fn gzip_built_layers(store: &Store, record: &ImageRecord) -> Result<ImageRecord, PushError> {
    let mut out = record.clone();
    if record
        .manifests
        .iter()
        .any(|m| store.blobs.contains(&m.digest))
    {
        return Ok(out);
    }
    for layer in &mut out.layers {
        let gz_type = match layer.media_type.as_str() {
            oci::MEDIA_OCI_LAYER => oci::MEDIA_OCI_LAYER_GZIP,
            "application/vnd.docker.image.rootfs.diff.tar" => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            _ => continue,
        };
        let blobs = store.blobs.clone();
        let blob = layer.blob.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || gzip_blob(&blobs, &blob))
            .await
            .map_err(|e| PushError::Invalid(format!("compressing a layer: {e}")))??;
        layer.blob = digest;
        layer.blob_size = size;
        layer.media_type = gz_type.to_owned();
    }
    Ok(out)
}

pub(crate) fn gzip_blob(
    blobs: &crate::store::BlobStore,
    blob: &Digest,
) -> Result<(Digest, u64), StoreError> {
    let mut input = std::io::BufReader::with_capacity(256 * 1024, blobs.open(blob)?);
    let mut gz = flate2::write::GzEncoder::new(blobs.writer()?, flate2::Compression::default());
    let path = blobs.path(blob);
    std::io::copy(&mut input, &mut gz).map_err(|e| StoreError::io(&path, e))?;
    let verified = gz
        .finish()
        .map_err(|e| StoreError::io(&path, e))?
        .finish(None, None)?;
    let out = (verified.digest.clone(), verified.size);
    blobs.commit(verified)?;
    Ok(out)
}

/// The stored manifest of the image, or a generated Docker schema2 one.
fn manifest_for(store: &Store, record: &ImageRecord) -> Result<(Bytes, String), PushError> {
    for m in &record.manifests {
        if store.blobs.contains(&m.digest) {
            let bytes = store.blobs.read_small(&m.digest, oci::MAX_MANIFEST_SIZE)?;
            return Ok((Bytes::from(bytes), m.media_type.clone()));
        }
    }
    let config_size = store.blobs.size(&record.id)?;
    let oci_layers = record
        .layers
        .iter()
        .any(|l| l.media_type.starts_with("application/vnd.oci."));
    let (media_type, config_type) = if oci_layers {
        (oci::MEDIA_OCI_MANIFEST, oci::MEDIA_OCI_CONFIG)
    } else {
        (oci::MEDIA_DOCKER_MANIFEST, oci::MEDIA_DOCKER_CONFIG)
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type.to_owned()),
        config: Descriptor {
            media_type: config_type.to_owned(),
            digest: record.id.clone(),
            size: config_size,
            annotations: Default::default(),
            platform: None,
        },
        layers: record
            .layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: l.blob.clone(),
                size: l.blob_size,
                annotations: Default::default(),
                platform: None,
            })
            .collect(),
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| PushError::Invalid(format!("generating a manifest: {e}")))?;
    Ok((Bytes::from(bytes), media_type.to_owned()))
}
