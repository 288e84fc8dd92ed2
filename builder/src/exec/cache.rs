//! The local build cache: a key per step (the parent image, the instruction
//! after expansion, the build args it sees and, for COPY/ADD, a checksum of
//! the files' content and metadata, never their mtimes) → the image the step
//! made, kept under `<data root>/builder/cache/`. An entry whose image is gone
//! is a miss.
//!
//! An entry's mtime is when it last served a build (set when it is written
//! and on each hit): `docker builder prune --filter until=` keeps what was
//! used since, as BuildKit's last-use does, not only what was made since.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hutch_images::Digest;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A step's cache key, built from its parts.
#[derive(Default, Clone)]
pub struct Key(Sha256);

impl Key {
    pub fn new(parent: Option<&Digest>) -> Key {
        let mut k = Key(Sha256::new());
        k.add(
            parent
                .map(|d| d.to_string())
                .unwrap_or_else(|| "scratch".into())
                .as_bytes(),
        );
        k
    }

    /// Adds one length-prefixed part (so parts cannot run into each other).
    pub fn add(&mut self, part: &[u8]) {
        self.0.update((part.len() as u64).to_le_bytes());
        self.0.update(part);
    }

    pub fn finish(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Cache {
    pub fn open(data_root: &Path) -> Cache {
        Cache {
            dir: data_root.join("builder/cache"),
        }
    }

    pub fn get(&self, key: &str) -> Option<Digest> {
        let text = fs::read_to_string(self.dir.join(key)).ok()?;
        text.trim().parse().ok()
    }

    /// Notes that `key`'s entry served a build now. Advisory: a failure
    /// only makes the entry look older to a prune.
    pub fn used(&self, key: &str) {
        let touched = fs::File::options()
            .write(true)
            .open(self.dir.join(key))
            .and_then(|f| f.set_modified(SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!(%e, "marking a build cache entry used");
        }
    }

    /// When each step image last served a build, by its entries' mtimes.
    pub fn last_uses(&self) -> HashMap<Digest, SystemTime> {
        let mut uses: HashMap<Digest, SystemTime> = HashMap::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let (Ok(text), Ok(modified)) = (
                fs::read_to_string(entry.path()),
                entry.metadata().and_then(|m| m.modified()),
            ) else {
                continue;
            };
            let Ok(id) = text.trim().parse::<Digest>() else {
                continue;
            };
            let last = uses.entry(id).or_insert(modified);
            *last = (*last).max(modified);
        }
        uses
    }

    pub fn put(&self, key: &str, id: &Digest) {
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let tmp = self.dir.join(format!(".{key}.tmp"));
            fs::write(&tmp, id.to_string())?;
            fs::rename(&tmp, self.dir.join(key))
        };
        if let Err(e) = write() {
            tracing::warn!(%e, "writing a build cache entry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_hit_moves_the_steps_last_use_forward() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let cache = Cache::open(root.path());
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        cache.put("k1", &a);
        cache.put("k2", &a);
        cache.put("k3", &b);
        // An hour ago, as if made then.
        let old = SystemTime::now() - Duration::from_secs(3600);
        for key in ["k1", "k2", "k3"] {
            fs::File::options()
                .write(true)
                .open(root.path().join("builder/cache").join(key))?
                .set_modified(old)?;
        }
        let before = cache.last_uses();
        assert_eq!(before.get(&a), Some(&old));
        assert_eq!(before.get(&b), Some(&old));

        cache.used("k2");
        let after = cache.last_uses();
        assert!(after[&a] > old, "the hit on k2 is a use of a");
        assert_eq!(after.get(&b), Some(&old));
        assert_eq!(cache.get("k2"), Some(a.clone()));
        // A missing entry is no error, and no use.
        cache.used("nosuch");
        assert_eq!(cache.last_uses().len(), 2);
        Ok(())
    }
}
