//! docker-archive and OCI image layout: `load` (both docker-archive forms,
//! OCI layout as a directory or a tar) and `save` (the Docker 25+
//! docker-archive, which is also an OCI layout).

mod files;
mod load;
mod save;

pub use load::{load_dir, load_tar, load_tar_with_progress};
pub use save::{save, save_platforms, ArchiveFormat, SaveItem};

use crate::digest::{Digest, DigestError};
use crate::import::ImportError;
use crate::reference::ReferenceError;
use crate::store::StoreError;

/// `manifest.json` of a docker-archive: one item per image.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestItem {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "not an image archive: it has neither manifest.json (docker-archive) nor \
         index.json (OCI layout)"
    )]
    UnknownFormat,
    #[error("the archive is not a valid tar file: {0}")]
    Tar(std::io::Error),
    #[error("the archive is missing {0}, which it refers to")]
    Missing(String),
    #[error("{file} in the archive is invalid: {reason}")]
    Invalid { file: String, reason: String },
    #[error(
        "{path} in the archive does not match its name: its content has digest {actual}; \
         the archive is corrupt or was tampered with, nothing was loaded"
    )]
    BlobMismatch { path: String, actual: Digest },
    #[error("{path} in the archive: {cause}")]
    BadDigest { path: String, cause: DigestError },
    #[error("the archive tags an image {tag:?}: {cause}")]
    BadTag { tag: String, cause: ReferenceError },
    #[error("no image in the archive is for this platform ({0})")]
    NoPlatform(String),
    #[error("the archive contains no image")]
    Empty,
    #[error(transparent)]
    Import(Box<ImportError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the archive: {0}")]
    Write(std::io::Error),
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
}

impl From<ImportError> for ArchiveError {
    fn from(e: ImportError) -> ArchiveError {
        ArchiveError::Import(Box::new(e))
    }
}
