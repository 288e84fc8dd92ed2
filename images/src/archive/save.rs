//! `save`: writes images as a Docker 25+ docker-archive, which is an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/`) plus the
//! legacy `manifest.json` and `repositories` that older tools read, or as
//! the OCI image layout alone (BuildKit's `oci` exporter).
//!
//! Blobs are written as stored, so every digest (config = image ID,
//! manifest, layers) survives a `save` → `load` round trip. An image that
//! came without a manifest (legacy docker-archive) gets a generated OCI
//! manifest, deterministic so that repeated saves agree.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use super::{ArchiveError, ManifestItem};
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Index, Manifest, Platform};
use crate::reference::Reference;
use crate::store::{ImageRecord, Store};

/// One image to save and the names to save it under.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub record: ImageRecord,
    /// Tagged names (digest references are not written as tags).
    pub names: Vec<Reference>,
}

/// What `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s: the OCI layout plus `manifest.json` and
    /// `repositories`.
    Docker,
    /// The OCI image layout alone.
    Oci,
}

enum BlobData {
    Stored,
    Memory(Vec<u8>),
}

pub fn save<W: Write>(
    store: &Store,
    items: &[SaveItem],
    format: ArchiveFormat,
    writer: W,
) -> Result<(), ArchiveError> {
    let _content = store.locks.content_shared()?;
    let mut blobs: BTreeMap<Digest, BlobData> = BTreeMap::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_INDEX.to_owned()),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let mut items_json = Vec::new();
    let mut repositories: Repositories = BTreeMap::new();

    for item in items {
        let record = &item.record;
        let manifest_desc = manifest_for(store, record, &mut blobs)?;
        blobs.insert(record.id.clone(), BlobData::Stored);
        for layer in &record.layers {
            blobs.insert(layer.blob.clone(), BlobData::Stored);
        }
        let tags: Vec<&Reference> = item.names.iter().filter(|n| n.tag().is_some()).collect();
        let platform = Some(Platform {
            architecture: record.architecture.clone(),
            os: record.os.clone(),
            variant: record.variant.clone(),
        });
        if tags.is_empty() {
            index.manifests.push(Descriptor {
                platform: platform.clone(),
                ..manifest_desc.clone()
            });
        }
        for tag in &tags {
            index.manifests.push(Descriptor {
                annotations: name_annotations(tag),
                platform: platform.clone(),
                ..manifest_desc.clone()
            });
            if let (Some(t), Some(top)) = (tag.tag(), record.layers.last()) {
                repositories
                    .entry(tag.familiar_name())
                    .or_default()
                    .insert(t.to_owned(), top.blob.hex().to_owned());
            }
        }
        items_json.push(ManifestItem {
            config: format!("blobs/sha256/{}", record.id.hex()),
            repo_tags: Some(tags.iter().map(|t| t.familiar()).collect()),
            layers: record
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.blob.hex()))
                .collect(),
        });
    }

    let legacy = (format == ArchiveFormat::Docker).then_some((&items_json[..], &repositories));
    write_archive(store, &blobs, &index, legacy, writer)
}

/// Writes one image of several platforms (`records`) as an OCI layout
/// whose `index.json` names, under each of `names`, an image index of
/// the platforms' manifests: what BuildKit's `oci` exporter writes for a
/// multi-platform build.
pub fn save_platforms<W: Write>(
    store: &Store,
    records: &[ImageRecord],
    names: &[Reference],
    writer: W,
) -> Result<(), ArchiveError> {
    let _content = store.locks.content_shared()?;
    let mut blobs: BTreeMap<Digest, BlobData> = BTreeMap::new();
    let mut platforms = Vec::with_capacity(records.len());
    for record in records {
        let manifest_desc = manifest_for(store, record, &mut blobs)?;
        blobs.insert(record.id.clone(), BlobData::Stored);
        for layer in &record.layers {
            blobs.insert(layer.blob.clone(), BlobData::Stored);
        }
        platforms.push(Descriptor {
            platform: Some(Platform {
                architecture: record.architecture.clone(),
                os: record.os.clone(),
                variant: record.variant.clone(),
            }),
            ..manifest_desc
        });
    }
    let inner = json(&Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_INDEX.to_owned()),
        manifests: platforms,
        annotations: BTreeMap::new(),
    })?;
    let inner_desc = Descriptor {
        media_type: oci::MEDIA_OCI_INDEX.to_owned(),
        digest: Digest::of(&inner),
        size: inner.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    };
    blobs.insert(inner_desc.digest.clone(), BlobData::Memory(inner));
    let mut index = Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_INDEX.to_owned()),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let tags: Vec<&Reference> = names.iter().filter(|n| n.tag().is_some()).collect();
    if tags.is_empty() {
        index.manifests.push(inner_desc.clone());
    }
    for tag in tags {
        index.manifests.push(Descriptor {
            annotations: name_annotations(tag),
            ..inner_desc.clone()
        });
    }
    write_archive(store, &blobs, &index, None, writer)
}

/// How `index.json` names an image: its full name (containerd's) and
/// its tag (the OCI ref name).
fn name_annotations(tag: &Reference) -> BTreeMap<String, String> {
    BTreeMap::from([
        (oci::ANNOTATION_IMAGE_NAME.to_owned(), tag.to_string()),
        (
            oci::ANNOTATION_REF_NAME.to_owned(),
            tag.tag().unwrap_or_default().to_owned(),
        ),
    ])
}

/// `repositories` of a docker-archive: repository → tag → top layer.
type Repositories = BTreeMap<String, BTreeMap<String, String>>;

/// The tar: the blobs, `index.json`, `oci-layout`, and with `legacy`
/// docker-archive's `manifest.json` and `repositories`.
fn write_archive<W: Write>(
    store: &Store,
    blobs: &BTreeMap<Digest, BlobData>,
    index: &Index,
    legacy: Option<(&[ManifestItem], &Repositories)>,
    writer: W,
) -> Result<(), ArchiveError> {
    let mut out = tar::Builder::new(writer);
    append_dir(&mut out, "blobs/")?;
    append_dir(&mut out, "blobs/sha256/")?;
    for (digest, data) in blobs {
        let path = format!("blobs/sha256/{}", digest.hex());
        match data {
            BlobData::Memory(bytes) => {
                append_file(&mut out, &path, bytes.len() as u64, &bytes[..])?
            }
            BlobData::Stored => {
                let size = store.blobs.size(digest)?;
                let file = store.blobs.open(digest)?;
                append_file(&mut out, &path, size, file)?;
            }
        }
    }
    let index_bytes = json(index)?;
    append_file(
        &mut out,
        "index.json",
        index_bytes.len() as u64,
        &index_bytes[..],
    )?;
    if let Some((items, _)) = legacy {
        let items_bytes = json(items)?;
        append_file(
            &mut out,
            "manifest.json",
            items_bytes.len() as u64,
            &items_bytes[..],
        )?;
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append_file(&mut out, "oci-layout", layout.len() as u64, &layout[..])?;
    if let Some((_, repositories)) = legacy.filter(|(_, r)| !r.is_empty()) {
        let repos = json(repositories)?;
        append_file(&mut out, "repositories", repos.len() as u64, &repos[..])?;
    }
    out.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(ArchiveError::Write)?;
    Ok(())
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ArchiveError> {
    serde_json::to_vec(value).map_err(|e| ArchiveError::Write(io::Error::other(e)))
}

/// The image's stored manifest, or a generated one; registers its blob.
fn manifest_for(
    store: &Store,
    record: &ImageRecord,
    blobs: &mut BTreeMap<Digest, BlobData>,
) -> Result<Descriptor, ArchiveError> {
    let stored = record
        .manifests
        .iter()
        .find(|m| oci::is_manifest(&m.media_type) && store.blobs.contains(&m.digest));
    if let Some(m) = stored {
        blobs.insert(m.digest.clone(), BlobData::Stored);
        return Ok(Descriptor {
            media_type: m.media_type.clone(),
            digest: m.digest.clone(),
            size: m.size,
            annotations: BTreeMap::new(),
            platform: None,
        });
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_MANIFEST.to_owned()),
        config: Descriptor {
            media_type: oci::MEDIA_OCI_CONFIG.to_owned(),
            digest: record.id.clone(),
            size: store.blobs.size(&record.id)?,
            annotations: BTreeMap::new(),
            platform: None,
        },
        layers: record
            .layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: l.blob.clone(),
                size: l.blob_size,
                annotations: BTreeMap::new(),
                platform: None,
            })
            .collect(),
        annotations: BTreeMap::new(),
    };
    let bytes = json(&manifest)?;
    let digest = Digest::of(&bytes);
    let desc = Descriptor {
        media_type: oci::MEDIA_OCI_MANIFEST.to_owned(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    };
    blobs.insert(digest, BlobData::Memory(bytes));
    Ok(desc)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(out: &mut tar::Builder<W>, path: &str) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    out.append_data(&mut h, path, io::empty())
        .map_err(ArchiveError::Write)
}

fn append_file<W: Write, R: Read>(
    out: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: R,
) -> Result<(), ArchiveError> {
    let mut h = header(tar::EntryType::Regular, 0o644, size);
    out.append_data(&mut h, path, data)
        .map_err(ArchiveError::Write)
}
