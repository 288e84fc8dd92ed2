//! Blobs by digest under `blobs/sha256/<hex>`.
//!
//! Content is written to a temp file under `ingest/`, hashed as it is
//! written, verified against the expected digest and size, synced, and only
//! then renamed into place. A blob that is in `blobs/` is therefore always
//! complete and correct; a mismatch stores nothing.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempPath};

use super::fsutil::{digests_in, fsync_dir, read_limited};
use super::StoreError;
use crate::digest::{Digest, HashingWriter};

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    ingest: PathBuf,
    /// fsync each blob before it is committed (see `Durability`).
    sync: bool,
}

impl BlobStore {
    pub(super) fn new(dir: PathBuf, ingest: PathBuf) -> BlobStore {
        BlobStore {
            dir,
            ingest,
            sync: false,
        }
    }

    pub(super) fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn open(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::io(&path, e),
        })
    }

    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
                _ => StoreError::io(&path, e),
            })
    }

    /// Reads a small blob (a manifest or config) whole.
    pub fn read_small(&self, digest: &Digest, max: u64) -> Result<Vec<u8>, StoreError> {
        if !self.contains(digest) {
            return Err(StoreError::BlobNotFound(digest.clone()));
        }
        read_limited(&self.path(digest), max)
    }

    /// Starts writing a new blob into `ingest/`.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.ingest)
            .map_err(|e| StoreError::io(&self.ingest, e))?;
        Ok(BlobWriter {
            sync: self.sync,
            out: HashingWriter::new(BufWriter::with_capacity(256 * 1024, tmp)),
        })
    }

    /// Copies `reader` into the store, verifying it when `expected` is given.
    pub fn put(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64), StoreError> {
        let mut writer = self.writer()?;
        io::copy(reader, &mut writer).map_err(|e| StoreError::io(&self.ingest, e))?;
        let verified = writer.finish(expected, expected_size)?;
        let out = (verified.digest.clone(), verified.size);
        self.commit(verified)?;
        Ok(out)
    }

    /// Moves a verified blob into place. Another writer may have committed
    /// the same content meanwhile, which is fine: the content is identical.
    pub fn commit(&self, blob: VerifiedBlob) -> Result<(), StoreError> {
        let target = self.path(&blob.digest);
        if target.is_file() {
            return Ok(());
        }
        blob.temp
            .persist(&target)
            .map_err(|e| StoreError::io(&target, e.error))?;
        // Relaxed: the content was not synced, so syncing its name alone
        // makes nothing durable; the image record fsynced after it carries
        // the rename to disk on a journaling filesystem (see `Durability`).
        if self.sync {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        digests_in(&self.dir)
    }

    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }
}

/// A blob being written; dropping it discards the temp file.
pub struct BlobWriter {
    sync: bool,
    out: HashingWriter<BufWriter<NamedTempFile>>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// Checks the content against what the caller expected (and syncs it
    /// when the store is durable).
    /// On a mismatch the temp file is removed and nothing is stored.
    pub fn finish(
        self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<VerifiedBlob, StoreError> {
        let (digest, size, buffered) = self.out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| StoreError::io(Path::new("ingest"), e.into_error()))?;
        if let Some(want) = expected_size {
            if want != size {
                return Err(StoreError::SizeMismatch {
                    digest: expected.cloned().unwrap_or(digest),
                    expected: want,
                    actual: size,
                });
            }
        }
        if let Some(want) = expected {
            if *want != digest {
                return Err(StoreError::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        if self.sync {
            file.as_file()
                .sync_all()
                .map_err(|e| StoreError::io(file.path(), e))?;
        }
        Ok(VerifiedBlob {
            digest,
            size,
            temp: file.into_temp_path(),
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Verified content waiting in `ingest/` to be committed (or
/// discarded when dropped). It holds no open file descriptor.
#[derive(Debug)]
pub struct VerifiedBlob {
    pub digest: Digest,
    pub size: u64,
    temp: TempPath,
}

impl VerifiedBlob {
    /// Where the content can be read before it is committed.
    pub fn path(&self) -> &Path {
        &self.temp
    }
}
