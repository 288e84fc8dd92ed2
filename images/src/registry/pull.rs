//! Streaming pull: every layer is downloaded, verified, decompressed and
//! unpacked in one pass, several layers at once.
//!
//! Each layer's HTTP body is fed through a small bounded channel to a
//! blocking thread whose reader tees every chunk to the blob store's writer
//! (which writes and hashes it on a thread of its own, see `blob_sink`)
//! while the unpacker decompresses and applies it, so memory stays bounded
//! whatever the layer's size and the layer is on disk by the time the last
//! byte has arrived. Only then are the blob
//! digest, size and diff ID checked; a mismatch discards both the blob and
//! the unpacked tree.
//!
//! Each layer is committed (its blob and unpacked tree) as soon as it is
//! verified, so a pull interrupted or failed half-way leaves only complete,
//! verified layers, which the next pull reuses ("Already exists"), as
//! Docker's does. The config, the manifest, the image record and its names
//! are committed together at the end by the [`Importer`]: the image itself
//! is visible only once all of it is there. Unreferenced layers left by an
//! abandoned pull go with the next garbage collection.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::auth::Credential;
use super::blob_sink::BlobSink;
use super::client::{Access, FetchedManifest, RegistryError, Session};
use super::config::RegistrySettings;
use super::platform;
use crate::digest::{chain_ids, Digest};
use crate::import::{ImportError, Importer, LayerSource};
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::progress::{ProgressEvent, ProgressSink};
use crate::reference::Reference;
use crate::store::{LayerMeta, ManifestRef, PreparedLayer, Store, StoreError, VerifiedBlob};
use crate::unpack::{unpack_layer_unhashed, Compression, UnpackError, UnpackLimits};

/// Layers downloaded at once (Docker's default, too).
const CONCURRENT_LAYERS: usize = 3;
/// Chunks in flight between a download and its unpacker.
const CHANNEL_CHUNKS: usize = 32;
/// Progress is reported at most this often (in bytes) per layer.
const PROGRESS_STEP: u64 = 512 * 1024;
/// Index → manifest → ... nesting allowed.
const MAX_INDEX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("{reference}: {what} is not valid JSON of its kind: {reason}")]
    Malformed {
        reference: String,
        what: String,
        reason: String,
    },
    #[error("{reference}: no image for platform {platform} (the index has {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{reference}: {reason}")]
    Unsupported { reference: String, reason: String },
    #[error("layer {digest}: {cause}")]
    Layer { digest: Digest, cause: LayerError },
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "its content has diff ID {actual} but the image config says {expected}; \
         the image is corrupt or was tampered with"
    )]
    DiffId { expected: Digest, actual: Digest },
    #[error("download failed: {0}")]
    Download(io::Error),
    #[error("cannot write the blob to the store: {0}")]
    BlobWrite(io::Error),
}

/// What to pull and how.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index; the machine's when `None`.
    pub platform: Option<Platform>,
    pub limits: UnpackLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Something new was stored or the name moved to another image.
    Downloaded,
    /// The name already pointed at this image, which is complete.
    UpToDate,
}

impl PullStatus {
    /// Docker's words for it, on the closing `Status:` line of a pull.
    pub fn status_text(self) -> &'static str {
        match self {
            PullStatus::Downloaded => "Downloaded newer image for",
            PullStatus::UpToDate => "Image is up to date for",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub reference: Reference,
    /// The image ID (config digest).
    pub id: Digest,
    /// The digest the name resolved to (the index's, for a multi-platform
    /// image), as Docker prints it.
    pub digest: Digest,
    pub status: PullStatus,
}

/// The manifest chosen for this machine, with its index if there was one.
struct Resolved {
    top: FetchedManifest,
    manifest: FetchedManifest,
    parsed: Manifest,
}

pub async fn pull(
    store: &Store,
    settings: &RegistrySettings,
    credential: &Credential,
    reference: &Reference,
    options: &PullOptions,
    progress: Arc<dyn ProgressSink>,
) -> Result<Pulled, PullError> {
    progress.event(ProgressEvent::Resolving {
        reference: reference.to_string(),
    });
    let endpoints = settings.endpoints(reference.domain());
    let mut last_err = None;
    for (n, endpoint) in endpoints.iter().enumerate() {
        let session = Session::open(endpoint, reference, credential, Access::Pull).await?;
        let resolved = match resolve(&session, reference, options).await {
            Ok(r) => r,
            Err(e) if n + 1 < endpoints.len() && endpoint.gives_way(is_tls_only(&e)) => {
                tracing::info!(endpoint = %endpoint.host, error = %e, "trying the next endpoint");
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        return fetch_image(store, &session, reference, resolved, options, progress).await;
    }
    Err(last_err.unwrap_or_else(|| PullError::Internal("no registry endpoint".into())))
}

/// The tags of `repository`'s repository (`pull --all-tags`), from the
/// first of its endpoints that answers, as a pull picks one
/// ([`Endpoint::gives_way`](super::config::Endpoint::gives_way)).
pub async fn tags(
    settings: &RegistrySettings,
    credential: &Credential,
    repository: &Reference,
) -> Result<Vec<String>, PullError> {
    let endpoints = settings.endpoints(repository.domain());
    let mut last_err = None;
    for (n, endpoint) in endpoints.iter().enumerate() {
        let session = Session::open(endpoint, repository, credential, Access::Pull).await?;
        match session.tags().await {
            Ok(tags) => return Ok(tags),
            Err(e) if n + 1 < endpoints.len() && endpoint.gives_way(e.is_tls_only_server()) => {
                tracing::info!(endpoint = %endpoint.host, error = %e, "trying the next endpoint");
                last_err = Some(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_err.unwrap_or_else(|| PullError::Internal("no registry endpoint".into())))
}

fn is_tls_only(err: &PullError) -> bool {
    matches!(err, PullError::Registry(e) if e.is_tls_only_server())
}

async fn resolve(
    session: &Session,
    reference: &Reference,
    options: &PullOptions,
) -> Result<Resolved, PullError> {
    let want = options.platform.clone().unwrap_or_else(oci::host_platform);
    let top = session
        .manifest(reference.tag(), reference.digest())
        .await?;
    let mut current = top.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        if oci::is_manifest(&current.media_type) {
            let parsed: Manifest = parse(reference, "the manifest", &current.bytes)?;
            return Ok(Resolved {
                top,
                manifest: current,
                parsed,
            });
        }
        let index: Index = parse(reference, "the index", &current.bytes)?;
        let Some(chosen) = platform::select(&index.manifests, &want) else {
            let available: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(platform::display))
                .collect();
            return Err(PullError::NoPlatform {
                reference: reference.to_string(),
                platform: platform::display(&want),
                available: available.join(", "),
            });
        };
        current = session.manifest(None, Some(&chosen.digest)).await?;
    }
    Err(PullError::Unsupported {
        reference: reference.to_string(),
        reason: "indexes are nested too deeply".into(),
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    reference: &Reference,
    what: &str,
    bytes: &[u8],
) -> Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|e| PullError::Malformed {
        reference: reference.to_string(),
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

async fn fetch_image(
    store: &Store,
    session: &Session,
    reference: &Reference,
    resolved: Resolved,
    options: &PullOptions,
    progress: Arc<dyn ProgressSink>,
) -> Result<Pulled, PullError> {
    let Resolved {
        top,
        manifest,
        parsed,
    } = resolved;
    if !oci::is_config(&parsed.config.media_type) {
        return Err(PullError::Unsupported {
            reference: reference.to_string(),
            reason: format!(
                "not a container image (config media type {:?})",
                parsed.config.media_type
            ),
        });
    }
    if let Some(bad) = parsed.layers.iter().find(|l| !oci::is_layer(&l.media_type)) {
        return Err(PullError::Unsupported {
            reference: reference.to_string(),
            reason: format!("unsupported layer media type {:?}", bad.media_type),
        });
    }
    let id = parsed.config.digest.clone();
    let names = names_for(reference, &top.digest);
    if is_up_to_date(store, reference, &id)? {
        let pulled = Pulled {
            reference: reference.clone(),
            id: id.clone(),
            digest: top.digest,
            status: PullStatus::UpToDate,
        };
        record_names(store, &names, &id)?;
        progress.event(ProgressEvent::Complete { image: id });
        return Ok(pulled);
    }

    let mut importer = Importer::new(store, options.limits)?;
    // The config: small, fetched whole into the blob store.
    if !importer.has_blob(&id) {
        let config_desc = Descriptor {
            size: parsed.config.size.min(oci::MAX_CONFIG_SIZE + 1),
            ..parsed.config.clone()
        };
        if parsed.config.size > oci::MAX_CONFIG_SIZE {
            return Err(PullError::Unsupported {
                reference: reference.to_string(),
                reason: format!(
                    "the image config is larger than {} bytes",
                    oci::MAX_CONFIG_SIZE
                ),
            });
        }
        let blob = fetch_small_blob(store, session, &config_desc).await?;
        importer.stage(blob);
    }
    let config: ImageConfig = parse(
        reference,
        "the image config",
        &importer.read_blob(&id, oci::MAX_CONFIG_SIZE)?,
    )?;
    if let Some(want) = &options.platform {
        let have = platform::normalize(Platform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        });
        if have.os != want.os || have.architecture != want.architecture {
            return Err(PullError::Unsupported {
                reference: reference.to_string(),
                reason: format!(
                    "the image was found but does not match the specified platform: \
                     wanted {}, actual: {}",
                    platform::display(want),
                    platform::display(&have)
                ),
            });
        }
    }
    let diff_ids = config.rootfs.diff_ids.clone();
    if diff_ids.len() != parsed.layers.len() {
        return Err(ImportError::LayerCount {
            image: id,
            layers: parsed.layers.len(),
            diff_ids: diff_ids.len(),
        }
        .into());
    }
    let chains = chain_ids(&diff_ids);

    // Which layers must be fetched: those not stored with their blob.
    let mut wanted = Vec::new();
    for (i, desc) in parsed.layers.iter().enumerate() {
        let have_layer = store.layers.contains(&chains[i]);
        if have_layer && importer.has_blob(&desc.digest) {
            progress.event(ProgressEvent::AlreadyExists {
                layer: desc.digest.clone(),
            });
        } else if wanted
            .iter()
            .any(|j: &LayerJob| j.desc.digest == desc.digest && j.chain == chains[i])
        {
            // The same layer twice in one image: fetched once.
        } else {
            progress.event(ProgressEvent::Waiting {
                layer: desc.digest.clone(),
            });
            wanted.push(LayerJob {
                desc: desc.clone(),
                diff_id: diff_ids[i].clone(),
                chain: chains[i].clone(),
                unpack: !have_layer,
            });
        }
    }

    // After a layer fails no new one starts, but those under way finish
    // and are committed: the next pull reuses them.
    let failed = AtomicBool::new(false);
    let results: Vec<Result<Option<Fetched>, PullError>> = stream::iter(wanted)
        .map(|job| async {
            if failed.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let result = fetch_layer(store, session, job, options.limits, progress.clone()).await;
            if result.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            result.map(Some)
        })
        .buffer_unordered(CONCURRENT_LAYERS)
        .collect()
        .await;
    for result in results {
        if let Some(Fetched {
            blob,
            layer: Some((meta, compression)),
        }) = result?
        {
            importer.add_committed(&blob, meta, compression);
        }
    }

    // Manifests are stored as fetched, so a push sends the same bytes.
    let manifest_blob = store_bytes(store, &manifest)?;
    importer.stage(manifest_blob);
    let layers: Vec<LayerSource> = parsed
        .layers
        .iter()
        .map(|d| LayerSource {
            blob: d.digest.clone(),
            media_type: Some(d.media_type.clone()),
        })
        .collect();
    let manifest_ref = ManifestRef {
        digest: manifest.digest.clone(),
        media_type: manifest.media_type.clone(),
        size: manifest.bytes.len() as u64,
    };
    let store_for_blocking = importer;
    // Adding the image may read blobs of layers that already exist (to
    // prove them), and committing syncs: both block.
    let id_for_task = id.clone();
    let loaded = tokio::task::block_in_place(move || {
        let mut importer = store_for_blocking;
        importer.add_image(&id_for_task, Some(manifest_ref), &layers, names)?;
        importer.commit()
    })?;
    let id = loaded.first().map_or(id, |l| l.id.clone());
    progress.event(ProgressEvent::Complete { image: id.clone() });
    Ok(Pulled {
        reference: reference.clone(),
        id,
        digest: top.digest,
        status: PullStatus::Downloaded,
    })
}

/// The names a pull records: the tag (if any) and `name@digest`.
fn names_for(reference: &Reference, digest: &Digest) -> Vec<Reference> {
    let mut names = Vec::new();
    if reference.tag().is_some() && reference.digest().is_none() {
        names.push(reference.clone());
    }
    names.push(reference.repository().with_digest(digest.clone()));
    names
}

/// The name already points at `id`, whose record and layers are complete.
fn is_up_to_date(store: &Store, reference: &Reference, id: &Digest) -> Result<bool, PullError> {
    let _meta = store.locks.meta_shared()?;
    let index = store.records.index()?;
    let named = match reference.digest() {
        Some(_) => index
            .names_of(id)
            .iter()
            .any(|n| *n == reference.to_string()),
        None => index.refs.get(&reference.to_string()) == Some(id),
    };
    if !named {
        return Ok(false);
    }
    let Some(record) = store.records.get(id)? else {
        return Ok(false);
    };
    Ok(record
        .layers
        .iter()
        .all(|l| store.layers.contains(&l.chain_id))
        && record.blobs().all(|b| store.blobs.contains(b)))
}

fn record_names(store: &Store, names: &[Reference], id: &Digest) -> Result<(), PullError> {
    let _meta = store.locks.meta_exclusive()?;
    let mut index = store.records.index()?;
    for name in names {
        index.refs.insert(name.to_string(), id.clone());
    }
    store.records.save_index(&index)?;
    Ok(())
}

fn store_bytes(store: &Store, manifest: &FetchedManifest) -> Result<VerifiedBlob, PullError> {
    let mut writer = store.blobs.writer()?;
    writer
        .write_all(&manifest.bytes)
        .map_err(|e| StoreError::io(store.ingest_dir(), e))?;
    Ok(writer.finish(Some(&manifest.digest), Some(manifest.bytes.len() as u64))?)
}

/// Fetches a small blob (a config) straight into the blob store.
pub(crate) async fn fetch_small_blob(
    store: &Store,
    session: &Session,
    desc: &Descriptor,
) -> Result<VerifiedBlob, PullError> {
    let layer_err = |cause: LayerError| PullError::Layer {
        digest: desc.digest.clone(),
        cause,
    };
    let mut body = session.blob(desc).await?;
    let mut writer = store.blobs.writer()?;
    while let Some(chunk) = body.stream.next().await {
        let chunk = chunk.map_err(|e| layer_err(LayerError::Download(e)))?;
        if writer.written() + chunk.len() as u64 > desc.size {
            return Err(layer_err(LayerError::Store(StoreError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: writer.written() + chunk.len() as u64,
            })));
        }
        writer
            .write_all(&chunk)
            .map_err(|e| StoreError::io(store.ingest_dir(), e))?;
    }
    writer
        .finish(Some(&desc.digest), Some(desc.size))
        .map_err(|e| layer_err(LayerError::Store(e)))
}

pub(crate) struct LayerJob {
    pub(crate) desc: Descriptor,
    pub(crate) diff_id: Digest,
    pub(crate) chain: Digest,
    /// False when the layer is stored but its blob is not: fetch the blob only.
    pub(crate) unpack: bool,
}

/// A layer blob fetched, verified and committed, with the unpacked layer
/// when it was unpacked too.
pub(crate) struct Fetched {
    blob: Digest,
    layer: Option<(LayerMeta, Compression)>,
}

pub(crate) async fn fetch_layer(
    store: &Store,
    session: &Session,
    job: LayerJob,
    limits: UnpackLimits,
    progress: Arc<dyn ProgressSink>,
) -> Result<Fetched, PullError> {
    let digest = job.desc.digest.clone();
    let layer_err = |cause: LayerError| PullError::Layer {
        digest: digest.clone(),
        cause,
    };
    let mut body = session.blob(&job.desc).await?;
    progress.event(ProgressEvent::Downloading {
        layer: digest.clone(),
        current: 0,
        total: Some(job.desc.size),
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let sink =
        BlobSink::spawn(store.blobs.writer()?).map_err(|e| layer_err(LayerError::BlobWrite(e)))?;
    let prepared = if job.unpack {
        Some(store.layers.prepare()?)
    } else {
        None
    };
    let worker = {
        let progress = progress.clone();
        let job_desc = job.desc.clone();
        tokio::task::spawn_blocking(move || {
            let reader = TeeReader {
                rx,
                current: Bytes::new(),
                sink: Some(sink),
                sink_failed: false,
                received: 0,
                progress,
                layer: job_desc.digest.clone(),
                total: job_desc.size,
                reported: 0,
            };
            store_layer(
                reader,
                prepared,
                &job_desc,
                &job.diff_id,
                &job.chain,
                limits,
            )
        })
    };
    // Feed the worker; when it stops early (an error), its result says why.
    while let Some(chunk) = body.stream.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    let result = worker
        .await
        .map_err(|e| PullError::Internal(format!("layer worker: {e}")))?;
    let (blob, layer) = result.map_err(layer_err)?;
    // Verified: commit now, so an interruption after this point keeps it.
    let committed = tokio::task::block_in_place(|| -> Result<Fetched, StoreError> {
        store.blobs.commit(blob)?;
        let layer = match layer {
            Some((prepared, meta, compression)) => {
                store.layers.commit(prepared, &meta)?;
                Some((meta, compression))
            }
            None => None,
        };
        Ok(Fetched {
            blob: digest.clone(),
            layer,
        })
    })
    .map_err(|e| layer_err(LayerError::Store(e)))?;
    progress.event(ProgressEvent::Done { layer: digest });
    Ok(committed)
}

/// What a layer worker hands back: the verified blob, and the unpacked
/// layer when it unpacked one; both still in `ingest/`.
type Verified = (
    VerifiedBlob,
    Option<(PreparedLayer, LayerMeta, Compression)>,
);

/// Runs on a blocking thread: unpacks (or only hashes) the stream while the
/// reader tees it into the blob store, then verifies everything.
fn store_layer(
    mut reader: TeeReader,
    prepared: Option<PreparedLayer>,
    desc: &Descriptor,
    diff_id: &Digest,
    chain: &Digest,
    limits: UnpackLimits,
) -> Result<Verified, LayerError> {
    let layer = match prepared {
        Some(prepared) => {
            // The blob sink hashes the raw stream: the unpacker need not.
            let stats = unpack_layer_unhashed(&mut reader, &prepared.diff_dir(), limits)
                .map_err(|e| reader.explain(e))?;
            if stats.diff_id != *diff_id {
                return Err(LayerError::DiffId {
                    expected: diff_id.clone(),
                    actual: stats.diff_id,
                });
            }
            let meta = LayerMeta::from_stats(chain, &stats, &desc.digest);
            Some((prepared, meta, stats.compression))
        }
        None => {
            io::copy(&mut reader, &mut io::sink())
                .map_err(|e| reader.explain(UnpackError::Read(e)))?;
            None
        }
    };
    reader.progress.event(ProgressEvent::Verifying {
        layer: desc.digest.clone(),
    });
    let writer = reader
        .sink
        .take()
        .ok_or_else(|| LayerError::BlobWrite(io::Error::other("the blob writer is gone")))?
        .finish()
        .map_err(LayerError::BlobWrite)?;
    let blob = writer.finish(Some(&desc.digest), Some(desc.size))?;
    if layer.is_some() {
        reader.progress.event(ProgressEvent::Extracting {
            layer: desc.digest.clone(),
            current: desc.size,
            total: Some(desc.size),
        });
    }
    Ok((blob, layer))
}

/// Reads the chunks a download sends, passing each to the blob store's
/// writer as it goes by.
struct TeeReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    sink: Option<BlobSink>,
    /// The sink stopped taking chunks: its error is the cause.
    sink_failed: bool,
    /// Bytes received so far.
    received: u64,
    progress: Arc<dyn ProgressSink>,
    layer: Digest,
    total: u64,
    reported: u64,
}

impl TeeReader {
    fn written(&self) -> u64 {
        self.received
    }

    /// An unpack error caused by the blob's write is reported as such, one
    /// caused by the download as a download error, and a stream longer than
    /// announced as a size mismatch.
    fn explain(&mut self, err: UnpackError) -> LayerError {
        if self.sink_failed {
            if let Some(sink) = self.sink.take() {
                if let Err(e) = sink.finish() {
                    return LayerError::BlobWrite(e);
                }
            }
        }
        if self.written() > self.total {
            return LayerError::Store(StoreError::SizeMismatch {
                digest: self.layer.clone(),
                expected: self.total,
                actual: self.written(),
            });
        }
        match err {
            UnpackError::Read(e) => LayerError::Download(e),
            // The stream ended early without an error of its own.
            _ if self.rx.is_closed() && self.written() < self.total => {
                LayerError::Store(StoreError::SizeMismatch {
                    digest: self.layer.clone(),
                    expected: self.total,
                    actual: self.written(),
                })
            }
            other => LayerError::Unpack(other),
        }
    }
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => {
                    let written = self.written();
                    if written < self.total {
                        return Err(io::Error::other(format!(
                            "the body ended after {written} of {} bytes: truncated ({e})",
                            self.total
                        )));
                    }
                    return Err(e);
                }
                Some(Ok(chunk)) => {
                    let written = self.received + chunk.len() as u64;
                    self.received = written;
                    // A body longer than its descriptor is an error at once,
                    // not after the whole surplus has been stored.
                    if written > self.total {
                        return Err(io::Error::other(format!(
                            "the registry sent more than the {} bytes the manifest lists",
                            self.total
                        )));
                    }
                    if !self.sink.as_ref().is_some_and(|s| s.send(chunk.clone())) {
                        self.sink_failed = true;
                        return Err(io::Error::other("the blob writer stopped"));
                    }
                    if written - self.reported >= PROGRESS_STEP || written == self.total {
                        self.reported = written;
                        self.progress.event(ProgressEvent::Downloading {
                            layer: self.layer.clone(),
                            current: written,
                            total: Some(self.total),
                        });
                    }
                    self.current = chunk;
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
