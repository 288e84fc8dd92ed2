//! Build caches in a content store rather than a registry (`--cache-to
//! type=local,dest=DIR`, `--cache-from type=local,src=DIR`): the same cache
//! manifest, config document and layer blobs as the registry cache (see
//! `remote_cache`), written as an OCI image layout whose `index.json` names
//! the manifest by tag (`latest` unless `tag=` says otherwise), as
//! BuildKit's local cache is laid out. Where the directory is depends on
//! the client: `hutch build` writes it itself ([`LayoutDir`]); buildx keeps
//! it on the client's side and serves it through its session, which the
//! API gives the builder as [`CacheStores`].
//!
//! Whatever a store returns is checked here against the digest asked for:
//! a store is the client's, and a directory anyone's.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hutch_images::digest::HashingWriter;
use hutch_images::oci::{self, Descriptor, Index};
use hutch_images::Digest;

/// One content store holding a build cache.
pub trait CacheStore: Send + Sync {
    /// How messages name it (`local:/path`).
    fn name(&self) -> String;
    /// Writes the blob `desc` from `data`; a blob the store has is kept.
    fn put(&self, desc: &Descriptor, data: &mut dyn Read) -> Result<(), String>;
    /// Streams the blob `digest` into `out` (the caller verifies it).
    fn copy_to(&self, digest: &Digest, out: &mut dyn Write) -> Result<(), String>;
    /// The manifest `index.json` names `tag`, if any.
    fn tagged(&self, tag: &str) -> Result<Option<Digest>, String>;
    /// Names `manifest` as `tag` (the export's last step).
    fn set_tag(&self, tag: &str, manifest: &Descriptor) -> Result<(), String>;
}

/// The stores a build's cache options name, opened by directory.
pub trait CacheStores: Send + Sync + std::fmt::Debug {
    fn open(&self, dir: &str) -> Result<Arc<dyn CacheStore>, String>;
}

/// Reads blob `digest` whole (at most `max` bytes) and checks it.
pub fn read_verified(store: &dyn CacheStore, digest: &Digest, max: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut limited = Limited {
        out: &mut bytes,
        left: max,
    };
    store.copy_to(digest, &mut limited)?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(format!(
            "{} gave content of digest {actual} for {digest}",
            store.name()
        ));
    }
    Ok(bytes)
}

/// A writer that refuses more than `left` bytes.
struct Limited<'a> {
    out: &'a mut Vec<u8>,
    left: u64,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other("larger than the cache allows"));
        }
        self.left -= buf.len() as u64;
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stores that are directories on this machine: `hutch build`'s.
#[derive(Debug)]
pub struct LocalDirs;

impl CacheStores for LocalDirs {
    fn open(&self, dir: &str) -> Result<Arc<dyn CacheStore>, String> {
        Ok(Arc::new(LayoutDir {
            dir: PathBuf::from(dir),
        }))
    }
}

/// An OCI image layout directory.
pub struct LayoutDir {
    dir: PathBuf,
}

/// Largest `index.json` read.
const MAX_INDEX: u64 = 4 << 20;

impl LayoutDir {
    fn blobs(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs().join(digest.hex())
    }

    fn index(&self) -> Result<Index, String> {
        let path = self.dir.join("index.json");
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Index {
                    schema_version: 2,
                    media_type: Some(oci::MEDIA_OCI_INDEX.to_owned()),
                    manifests: Vec::new(),
                    annotations: Default::default(),
                })
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut bytes = Vec::new();
        file.take(MAX_INDEX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() as u64 > MAX_INDEX {
            return Err(format!("{} is larger than 4 MiB", path.display()));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes `bytes` to `path` through a temp file and a rename.
    fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        tmp.write_all(bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        tmp.persist(path)
            .map_err(|e| format!("{}: {}", path.display(), e.error))?;
        Ok(())
    }
}

impl CacheStore for LayoutDir {
    fn name(&self) -> String {
        format!("local:{}", self.dir.display())
    }

    fn put(&self, desc: &Descriptor, data: &mut dyn Read) -> Result<(), String> {
        let target = self.blob(&desc.digest);
        if target.is_file() {
            return Ok(());
        }
        let blobs = self.blobs();
        std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
        let layout = self.dir.join("oci-layout");
        if !layout.is_file() {
            Self::replace(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let tmp = tempfile::NamedTempFile::new_in(&blobs)
            .map_err(|e| format!("{}: {e}", blobs.display()))?;
        let mut out = HashingWriter::new(std::io::BufWriter::new(tmp));
        std::io::copy(data, &mut out).map_err(|e| format!("writing {}: {e}", desc.digest))?;
        let (digest, size, buffered) = out.finish();
        if digest != desc.digest || size != desc.size {
            return Err(format!(
                "the blob written as {} was {digest} ({size} bytes)",
                desc.digest
            ));
        }
        let tmp = buffered
            .into_inner()
            .map_err(|e| format!("writing {}: {}", desc.digest, e.error()))?;
        tmp.persist(&target)
            .map_err(|e| format!("{}: {}", target.display(), e.error))?;
        Ok(())
    }

    fn copy_to(&self, digest: &Digest, out: &mut dyn Write) -> Result<(), String> {
        let path = self.blob(digest);
        let mut file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::copy(&mut file, out).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(())
    }

    fn tagged(&self, tag: &str) -> Result<Option<Digest>, String> {
        Ok(self
            .index()?
            .manifests
            .into_iter()
            .find(|m| {
                m.annotations
                    .get(oci::ANNOTATION_REF_NAME)
                    .map(String::as_str)
                    == Some(tag)
            })
            .map(|m| m.digest))
    }

    fn set_tag(&self, tag: &str, manifest: &Descriptor) -> Result<(), String> {
        let mut index = self.index()?;
        index.manifests.retain(|m| {
            m.annotations
                .get(oci::ANNOTATION_REF_NAME)
                .map(String::as_str)
                != Some(tag)
        });
        let mut named = manifest.clone();
        named
            .annotations
            .insert(oci::ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        index.manifests.push(named);
        let bytes = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
        Self::replace(&self.dir.join("index.json"), &bytes)
    }
}

/// Streams blob `desc` of `store` through a hash into `out`, checking
/// digest and size: for layers, too large to hold.
pub fn copy_verified(
    store: &dyn CacheStore,
    desc: &Descriptor,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut hashing = HashingWriter::new(out);
    store.copy_to(&desc.digest, &mut hashing)?;
    let (digest, size, _) = hashing.finish();
    if digest != desc.digest || size != desc.size {
        return Err(format!(
            "{} gave {digest} ({size} bytes) for {} ({} bytes)",
            store.name(),
            desc.digest,
            desc.size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            annotations: Default::default(),
            platform: None,
        }
    }

    #[test]
    fn a_layout_dir_keeps_blobs_and_tags() -> Result<(), String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let store = LayoutDir {
            dir: tmp.path().join("cache"),
        };
        let blob = b"some layer bytes".to_vec();
        store.put(&desc(&blob), &mut &blob[..])?;
        // Again: kept, not rewritten.
        store.put(&desc(&blob), &mut &blob[..])?;
        assert_eq!(read_verified(&store, &Digest::of(&blob), 1024)?, blob);
        assert!(read_verified(&store, &Digest::of(&blob), 4).is_err());
        assert!(tmp.path().join("cache/oci-layout").is_file());

        // A blob whose content is not what its descriptor says is refused
        // and nothing is left under its name.
        let lie = desc(b"promised");
        assert!(store.put(&lie, &mut &b"delivered"[..]).is_err());
        assert!(!store.blob(&lie.digest).exists());

        assert_eq!(store.tagged("latest")?, None);
        let m1 = desc(b"manifest one");
        let m2 = desc(b"manifest two");
        store.set_tag("latest", &m1)?;
        store.set_tag("other", &m2)?;
        store.set_tag("latest", &m2)?;
        assert_eq!(store.tagged("latest")?, Some(m2.digest.clone()));
        assert_eq!(store.tagged("other")?, Some(m2.digest));
        assert_eq!(store.index()?.manifests.len(), 2);

        // A file changed behind the store's back fails its check.
        std::fs::write(store.blob(&Digest::of(&blob)), b"tampered").map_err(|e| e.to_string())?;
        assert!(read_verified(&store, &Digest::of(&blob), 1024).is_err());
        let mut sink = Vec::new();
        assert!(copy_verified(&store, &desc(&blob), &mut sink).is_err());
        Ok(())
    }
}
