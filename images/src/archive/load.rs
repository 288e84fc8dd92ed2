//! `load`: docker-archive (legacy `<id>/layer.tar` form and the Docker 25+
//! OCI-layout form) and OCI image layouts.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::files::{normalize, DirFiles, Files, TarFiles};
use super::{ArchiveError, ManifestItem};
use crate::digest::Digest;
use crate::import::{Importer, LayerSource, LoadedImage};
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::progress::{NoProgress, ProgressSink};
use crate::reference::Reference;
use crate::store::{ManifestRef, Store};
use crate::unpack::UnpackLimits;

/// Loads every image of a docker-archive or OCI-layout tar read from
/// `reader`. Either all images are stored or none.
pub fn load_tar<R: Read>(
    store: &Store,
    reader: R,
    limits: UnpackLimits,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    load_tar_with_progress(store, reader, limits, Arc::new(NoProgress))
}

/// As [`load_tar`], reporting each layer it unpacks to `progress`.
pub fn load_tar_with_progress<R: Read>(
    store: &Store,
    reader: R,
    limits: UnpackLimits,
    progress: Arc<dyn ProgressSink>,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let mut importer = Importer::new(store, limits)?.with_progress(progress);
    let mut files = TarFiles::read(reader, &mut importer)?;
    load_from(&mut files, importer)
}

/// Loads every image of an OCI layout directory.
pub fn load_dir(
    store: &Store,
    dir: &Path,
    limits: UnpackLimits,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let importer = Importer::new(store, limits)?;
    let mut files = DirFiles::new(dir);
    load_from(&mut files, importer)
}

fn load_from(
    files: &mut dyn Files,
    mut importer: Importer<'_>,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let items: Option<Vec<ManifestItem>> = read_json(
        files,
        &mut importer,
        "manifest.json",
        oci::MAX_MANIFEST_SIZE,
    )?;
    let index: Option<Index> =
        read_json(files, &mut importer, "index.json", oci::MAX_MANIFEST_SIZE)?;
    let from_index = match &index {
        Some(index) => manifests_of(index, files, &mut importer)?,
        None => Vec::new(),
    };
    match (items, index) {
        (Some(items), _) => load_docker(&items, &from_index, files, &mut importer)?,
        (None, Some(_)) => load_oci(&from_index, files, &mut importer)?,
        (None, None) => return Err(ArchiveError::UnknownFormat),
    }
    let loaded = importer.commit()?;
    if loaded.is_empty() {
        return Err(ArchiveError::Empty);
    }
    Ok(loaded)
}

fn read_json<T: DeserializeOwned>(
    files: &mut dyn Files,
    importer: &mut Importer<'_>,
    path: &str,
    max: u64,
) -> Result<Option<T>, ArchiveError> {
    let Some(digest) = files.get(path, importer)? else {
        return Ok(None);
    };
    let bytes = importer.read_blob(&digest, max)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ArchiveError::Invalid {
            file: path.to_owned(),
            reason: e.to_string(),
        })
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Stages the blob a descriptor names and checks its size.
fn descriptor_blob(
    desc: &Descriptor,
    files: &mut dyn Files,
    importer: &mut Importer<'_>,
) -> Result<Digest, ArchiveError> {
    let path = blob_path(&desc.digest);
    let digest = files
        .get(&path, importer)?
        .ok_or_else(|| ArchiveError::Missing(path.clone()))?;
    let size = importer.blob_size(&digest)?;
    if size != desc.size {
        return Err(ArchiveError::Invalid {
            file: path,
            reason: format!("{size} bytes, but its descriptor says {}", desc.size),
        });
    }
    Ok(digest)
}

/// An image manifest found through index.json, with the names the
/// top-level descriptor gives it.
struct Found {
    desc: Descriptor,
    manifest: Manifest,
    names: Vec<Reference>,
}

fn manifests_of(
    index: &Index,
    files: &mut dyn Files,
    importer: &mut Importer<'_>,
) -> Result<Vec<Found>, ArchiveError> {
    let mut out = Vec::new();
    for desc in &index.manifests {
        let names = names_from_annotations(desc)?;
        if let Some((desc, manifest)) = resolve(desc, files, importer, 0)? {
            out.push(Found {
                desc,
                manifest,
                names,
            });
        }
    }
    Ok(out)
}

/// Follows a descriptor to an image manifest, choosing this machine's
/// platform in (nested) indexes. `None` for artefacts that are not images.
fn resolve(
    desc: &Descriptor,
    files: &mut dyn Files,
    importer: &mut Importer<'_>,
    depth: usize,
) -> Result<Option<(Descriptor, Manifest)>, ArchiveError> {
    if depth > 4 {
        return Err(ArchiveError::Invalid {
            file: blob_path(&desc.digest),
            reason: "indexes nested too deeply".into(),
        });
    }
    let parse_err = |e: serde_json::Error| ArchiveError::Invalid {
        file: blob_path(&desc.digest),
        reason: e.to_string(),
    };
    if oci::is_manifest(&desc.media_type) {
        let digest = descriptor_blob(desc, files, importer)?;
        let bytes = importer.read_blob(&digest, oci::MAX_MANIFEST_SIZE)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(parse_err)?;
        if !oci::is_config(&manifest.config.media_type) {
            tracing::info!(manifest = %desc.digest, media_type = %manifest.config.media_type,
                "skipping a manifest that is not a container image");
            return Ok(None);
        }
        return Ok(Some((desc.clone(), manifest)));
    }
    if oci::is_index(&desc.media_type) {
        let digest = descriptor_blob(desc, files, importer)?;
        let bytes = importer.read_blob(&digest, oci::MAX_MANIFEST_SIZE)?;
        let nested: Index = serde_json::from_slice(&bytes).map_err(parse_err)?;
        let host = oci::host_platform();
        let candidates: Vec<&Descriptor> = nested
            .manifests
            .iter()
            .filter(|d| match &d.platform {
                Some(p) => oci::platform_matches(p, &host),
                None => nested.manifests.len() == 1,
            })
            .collect();
        let Some(chosen) = candidates.first() else {
            return Err(ArchiveError::NoPlatform(format!(
                "{}/{}",
                host.os, host.architecture
            )));
        };
        return resolve(chosen, files, importer, depth + 1);
    }
    tracing::info!(digest = %desc.digest, media_type = %desc.media_type,
        "skipping an index entry of unknown media type");
    Ok(None)
}

/// Names an OCI index entry gives its image: the full name containerd and
/// Docker write, else `ref.name` when it is a whole reference (a bare tag
/// such as `latest` names no repository).
fn names_from_annotations(desc: &Descriptor) -> Result<Vec<Reference>, ArchiveError> {
    let name = desc
        .annotations
        .get(oci::ANNOTATION_IMAGE_NAME)
        .or_else(|| {
            desc.annotations
                .get(oci::ANNOTATION_REF_NAME)
                .filter(|n| n.contains('/') || n.contains(':'))
        });
    match name {
        None => Ok(Vec::new()),
        Some(name) => {
            Reference::parse(name)
                .map(|r| vec![r])
                .map_err(|cause| ArchiveError::BadTag {
                    tag: name.clone(),
                    cause,
                })
        }
    }
}

fn load_docker(
    items: &[ManifestItem],
    from_index: &[Found],
    files: &mut dyn Files,
    importer: &mut Importer<'_>,
) -> Result<(), ArchiveError> {
    let by_config: HashMap<&Digest, &Found> = from_index
        .iter()
        .map(|f| (&f.manifest.config.digest, f))
        .collect();
    for item in items {
        let get = |files: &mut dyn Files, importer: &mut Importer<'_>, raw: &str| {
            let path = normalize(raw).ok_or_else(|| ArchiveError::Invalid {
                file: "manifest.json".into(),
                reason: format!("path {raw:?} contains \"..\""),
            })?;
            files
                .get(&path, importer)?
                .ok_or(ArchiveError::Missing(path))
        };
        let config = get(files, importer, &item.config)?;
        let mut layers = Vec::new();
        for raw in &item.layers {
            layers.push(LayerSource {
                blob: get(files, importer, raw)?,
                media_type: None,
            });
        }
        let mut manifest = None;
        if let Some(found) = by_config.get(&config) {
            let listed: Vec<&Digest> = found.manifest.layers.iter().map(|l| &l.digest).collect();
            let have: Vec<&Digest> = layers.iter().map(|l| &l.blob).collect();
            if listed != have {
                return Err(ArchiveError::Invalid {
                    file: "manifest.json".into(),
                    reason: format!(
                        "the layers of {} differ from those of its manifest {}",
                        item.config, found.desc.digest
                    ),
                });
            }
            for (layer, desc) in layers.iter_mut().zip(&found.manifest.layers) {
                layer.media_type = Some(desc.media_type.clone());
            }
            manifest = Some(manifest_ref(&found.desc));
        }
        let mut names = Vec::new();
        for tag in item.repo_tags.iter().flatten() {
            names.push(Reference::parse(tag).map_err(|cause| ArchiveError::BadTag {
                tag: tag.clone(),
                cause,
            })?);
        }
        importer.add_image(&config, manifest, &layers, names)?;
    }
    Ok(())
}

fn load_oci(
    found: &[Found],
    files: &mut dyn Files,
    importer: &mut Importer<'_>,
) -> Result<(), ArchiveError> {
    for f in found {
        let config = descriptor_blob(&f.manifest.config, files, importer)?;
        let mut layers = Vec::new();
        for desc in &f.manifest.layers {
            if !oci::is_layer(&desc.media_type) {
                return Err(ArchiveError::Invalid {
                    file: blob_path(&f.desc.digest),
                    reason: format!("unsupported layer media type {:?}", desc.media_type),
                });
            }
            layers.push(LayerSource {
                blob: descriptor_blob(desc, files, importer)?,
                media_type: Some(desc.media_type.clone()),
            });
        }
        importer.add_image(
            &config,
            Some(manifest_ref(&f.desc)),
            &layers,
            f.names.clone(),
        )?;
    }
    Ok(())
}

fn manifest_ref(desc: &Descriptor) -> ManifestRef {
    ManifestRef {
        digest: desc.digest.clone(),
        media_type: desc.media_type.clone(),
        size: desc.size,
    }
}
