//! Small durable-write helpers: what is renamed into place has been synced,
//! and so has the directory entry that names it.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::StoreError;
use crate::digest::Digest;

/// Writes `bytes` to `path` so that readers see either the old or the new
/// content, never a mix, even across a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::io_msg(path, "has no parent directory"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| StoreError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| StoreError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| StoreError::io(path, e.error))?;
    fsync_dir(dir)
}

/// Makes a rename or unlink in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Reads a file that must be small (metadata), refusing anything larger
/// than `max` so that a corrupt or hostile file cannot exhaust memory.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| StoreError::io(path, e))?;
    if buf.len() as u64 > max {
        return Err(StoreError::TooLarge {
            what: path.display().to_string(),
            max,
        });
    }
    Ok(buf)
}

/// The entries of `dir` named by a digest's hex (blobs, layers); anything
/// else there (temp files, trash) is not an entry of the store.
pub fn digests_in(dir: &Path) -> Result<Vec<Digest>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        if let Some(digest) = entry
            .file_name()
            .to_str()
            .and_then(|n| Digest::from_hex(n).ok())
        {
            out.push(digest);
        }
    }
    Ok(out)
}
