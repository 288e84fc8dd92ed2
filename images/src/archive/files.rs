//! The files of an archive, brought into the store's staging area as
//! verified blobs: all at once when reading a tar stream (it cannot be
//! re-read), on demand when reading a directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::ArchiveError;
use crate::digest::Digest;
use crate::import::Importer;

/// Normalises a path inside an archive: no `.`, no empty components, no
/// leading `/`. A `..` makes it invalid (`None`).
pub fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

/// If `path` is `blobs/sha256/<hex>`, the digest its name promises.
pub fn digest_from_blob_path(path: &str) -> Result<Option<Digest>, ArchiveError> {
    match path.strip_prefix("blobs/sha256/") {
        Some(hex) => Digest::from_hex(hex)
            .map(Some)
            .map_err(|cause| ArchiveError::BadDigest {
                path: path.to_owned(),
                cause,
            }),
        None => Ok(None),
    }
}

pub trait Files {
    /// The digest of the file at `path` (normalised), staging it in the
    /// importer; `None` if the archive has no such file.
    fn get(
        &mut self,
        path: &str,
        importer: &mut Importer<'_>,
    ) -> Result<Option<Digest>, ArchiveError>;
}

/// Copies `reader` into a staged blob, checking the digest a
/// `blobs/sha256/` name promises.
fn stage(
    reader: &mut dyn Read,
    path: &str,
    importer: &mut Importer<'_>,
) -> Result<Digest, ArchiveError> {
    let expected = digest_from_blob_path(path)?;
    let mut writer = importer.store().blobs.writer()?;
    io::copy(reader, &mut writer).map_err(ArchiveError::Tar)?;
    let blob = writer.finish(None, None)?;
    if let Some(expected) = expected {
        if expected != blob.digest {
            return Err(ArchiveError::BlobMismatch {
                path: path.to_owned(),
                actual: blob.digest,
            });
        }
    }
    let digest = blob.digest.clone();
    importer.stage(blob);
    Ok(digest)
}

/// A tar stream, staged whole on construction.
pub struct TarFiles {
    by_path: HashMap<String, Digest>,
    /// Symlinks and hard links: path -> target path.
    aliases: HashMap<String, String>,
}

impl TarFiles {
    pub fn read<R: Read>(reader: R, importer: &mut Importer<'_>) -> Result<TarFiles, ArchiveError> {
        let mut archive = tar::Archive::new(reader);
        let mut by_path = HashMap::new();
        let mut aliases = HashMap::new();
        for entry in archive.entries().map_err(ArchiveError::Tar)? {
            let mut entry = entry.map_err(ArchiveError::Tar)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(path) = normalize(&raw) else {
                // Never used as a filesystem path, but no valid archive has it.
                return Err(ArchiveError::Invalid {
                    file: raw,
                    reason: "path contains \"..\"".into(),
                });
            };
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let digest = stage(&mut entry, &path, importer)?;
                by_path.insert(path, digest);
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let target = if kind.is_symlink() && !target.starts_with('/') {
                    let dir = Path::new(&path)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    format!("{dir}/{target}")
                } else {
                    target
                };
                if let Some(target) = normalize(&target) {
                    aliases.insert(path, target);
                }
            }
        }
        Ok(TarFiles { by_path, aliases })
    }
}

impl Files for TarFiles {
    fn get(
        &mut self,
        path: &str,
        _importer: &mut Importer<'_>,
    ) -> Result<Option<Digest>, ArchiveError> {
        let mut path = path.to_owned();
        for _ in 0..16 {
            if let Some(d) = self.by_path.get(&path) {
                return Ok(Some(d.clone()));
            }
            match self.aliases.get(&path) {
                Some(target) => path = target.clone(),
                None => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// An OCI layout directory; files are staged when first asked for.
pub struct DirFiles {
    root: PathBuf,
    seen: HashMap<String, Digest>,
}

impl DirFiles {
    pub fn new(root: &Path) -> DirFiles {
        DirFiles {
            root: root.to_owned(),
            seen: HashMap::new(),
        }
    }
}

impl Files for DirFiles {
    fn get(
        &mut self,
        path: &str,
        importer: &mut Importer<'_>,
    ) -> Result<Option<Digest>, ArchiveError> {
        if let Some(d) = self.seen.get(path) {
            return Ok(Some(d.clone()));
        }
        let full = self.root.join(path);
        let mut file = match File::open(&full) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => {
                return Err(ArchiveError::Read {
                    path: full.display().to_string(),
                    cause,
                })
            }
        };
        let digest = stage(&mut file, path, importer)?;
        self.seen.insert(path.to_owned(), digest.clone());
        Ok(Some(digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_archive_paths() {
        assert_eq!(
            normalize("./manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(
            normalize("/blobs//sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalize("a/../b"), None);
        assert!(digest_from_blob_path("blobs/sha256/zz").is_err());
        assert!(digest_from_blob_path("abc/layer.tar")
            .expect("not a blob path")
            .is_none());
    }
}
