//! The last download of each ADD URL, so a rebuild asks the server
//! `If-None-Match`/`If-Modified-Since` and a `304 Not Modified` costs no
//! transfer (BuildKit's http source does the same). Under
//! `<data root>/builder/http-cache/`: `blobs/<sha256 hex>` (content, by
//! digest, never changed once written) and `<sha256 of the URL>.json` (the
//! validators and the digest), replaced atomically. A build takes the
//! content by hardlinking the blob into its own temp directory, so a
//! concurrent build replacing it cannot change what this one reads.
//! Everything here is best effort: a miss means a plain download.
//! `docker builder prune` removes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What an earlier download answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    pub etag: Option<String>,
    /// The `Last-Modified` header as sent.
    pub last_modified: Option<String>,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
}

pub struct HttpCache {
    dir: PathBuf,
}

impl HttpCache {
    pub fn open(data_root: &Path) -> HttpCache {
        HttpCache {
            dir: data_root.join(super::cache_dirs::HTTP),
        }
    }

    fn meta_path(&self, url: &str) -> PathBuf {
        let key: String = Sha256::digest(url.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{key}.json"))
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.dir.join("blobs").join(hex))
    }

    /// The last download of `url`, if its content is still here.
    pub fn lookup(&self, url: &str) -> Option<Cached> {
        let text = fs::read(self.meta_path(url)).ok()?;
        let cached: Cached = serde_json::from_slice(&text).ok()?;
        if cached.etag.is_none() && cached.last_modified.is_none() {
            return None;
        }
        let blob = self.blob_path(&cached.digest)?;
        fs::metadata(blob)
            .is_ok_and(|m| m.len() == cached.size)
            .then_some(cached)
    }

    /// Hardlinks the cached content to `dest`.
    pub fn link_into(&self, cached: &Cached, dest: &Path) -> io::Result<()> {
        let blob = self
            .blob_path(&cached.digest)
            .ok_or_else(|| io::Error::other("bad digest in the HTTP cache"))?;
        fs::hard_link(blob, dest)
    }

    /// Remembers `file` (just downloaded from `url`) for the next build.
    pub fn store(&self, url: &str, cached: &Cached, file: &Path) -> io::Result<()> {
        if cached.etag.is_none() && cached.last_modified.is_none() {
            return Ok(());
        }
        let blob = self
            .blob_path(&cached.digest)
            .ok_or_else(|| io::Error::other("bad digest"))?;
        fs::create_dir_all(self.dir.join("blobs"))?;
        if !blob.exists() {
            // Linked under a temporary name first: the blob appears whole.
            let tmp = blob.with_extension(format!("tmp-{}", std::process::id()));
            let _ = fs::remove_file(&tmp);
            fs::hard_link(file, &tmp)?;
            fs::rename(&tmp, &blob)?;
        }
        let meta = self.meta_path(url);
        let previous = fs::read(&meta)
            .ok()
            .and_then(|t| serde_json::from_slice::<Cached>(&t).ok());
        let tmp = meta.with_extension(format!("json.tmp-{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(cached).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &meta)?;
        if let Some(old) = previous.filter(|p| p.digest != cached.digest) {
            self.drop_unreferenced(&old.digest);
        }
        Ok(())
    }

    /// Removes a blob no URL's record points at any more.
    fn drop_unreferenced(&self, digest: &str) {
        let Some(blob) = self.blob_path(digest) else {
            return;
        };
        let referenced = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|t| serde_json::from_slice::<Cached>(&t).ok())
            .any(|c| c.digest == digest);
        if !referenced {
            let _ = fs::remove_file(blob);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_links_and_replaces() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let cache = HttpCache::open(root.path());
        let file = root.path().join("dl");
        fs::write(&file, "one")?;
        let one = Cached {
            etag: Some("\"1\"".into()),
            last_modified: None,
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 3,
        };
        assert!(cache.lookup("http://h/f").is_none());
        cache.store("http://h/f", &one, &file)?;
        assert_eq!(cache.lookup("http://h/f"), Some(one.clone()));
        let linked = root.path().join("linked");
        cache.link_into(&one, &linked)?;
        assert_eq!(fs::read_to_string(&linked)?, "one");
        // A new version replaces the record and drops the old blob.
        let file2 = root.path().join("dl2");
        fs::write(&file2, "two!")?;
        let two = Cached {
            digest: format!("sha256:{}", "b".repeat(64)),
            size: 4,
            ..one.clone()
        };
        cache.store("http://h/f", &two, &file2)?;
        assert_eq!(cache.lookup("http://h/f"), Some(two));
        assert!(cache.blob_path(&one.digest).is_some_and(|p| !p.exists()));
        Ok(())
    }
}
