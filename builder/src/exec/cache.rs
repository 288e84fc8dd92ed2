//! The local build cache: a key per step (the parent image, the instruction
//! after expansion, the build args it sees and, for COPY/ADD, a checksum of
//! the files' content and metadata, never their mtimes) → the image the step
//! made, kept under `<data root>/builder/cache/`. An entry whose image is gone
//! is a miss.
//!
//! An entry is the image ID, then (after its first hit) a line with the
//! number of hits; its mtime is when it last served a build (set when it is
//! written and on each hit). `docker builder prune --filter until=` keeps
//! what was used since, as BuildKit's last use does, not only what was made
//! since; `docker system df` shows both.

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
            dir: data_root.join(super::cache_dirs::STEP_KEYS),
        }
    }

    pub fn get(&self, key: &str) -> Option<Digest> {
        read_entry(&self.dir.join(key)).map(|(id, _)| id)
    }

    /// Notes that `key`'s entry served a build now: one more hit, and its
    /// mtime. Advisory: a failure (or a concurrent build's hit) only makes
    /// the entry look older or less used.
    pub fn used(&self, key: &str) {
        let Some((id, hits)) = read_entry(&self.dir.join(key)) else {
            return;
        };
        if let Err(e) = self.write(key, &format!("{id}\n{}\n", hits + 1)) {
            tracing::debug!(%e, "marking a build cache entry used");
        }
    }

    /// How each step image has served builds, over all its entries.
    pub fn uses(&self) -> HashMap<Digest, Use> {
        let mut uses: HashMap<Digest, Use> = HashMap::new();
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let (Some((id, hits)), Ok(modified)) = (
                read_entry(&entry.path()),
                entry.metadata().and_then(|m| m.modified()),
            ) else {
                continue;
            };
            let u = uses.entry(id).or_insert(Use {
                last: modified,
                hits: 0,
            });
            u.last = u.last.max(modified);
            u.hits += hits;
        }
        uses
    }

    pub fn put(&self, key: &str, id: &Digest) {
        if let Err(e) = self.write(key, &format!("{id}\n")) {
            tracing::warn!(%e, "writing a build cache entry");
        }
    }

    /// Replaces `key`'s entry at once (a temp file of its own renamed over
    /// it, so concurrent builds never mix their writes).
    fn write(&self, key: &str, text: &str) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".entry-")
            .tempfile_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes())?;
        tmp.persist(self.dir.join(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// How a step image has served builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    /// The last time (its making, if never hit since).
    pub last: SystemTime,
    /// Cache hits.
    pub hits: u64,
}

/// An entry's image ID and hit count; `None` if unreadable (a miss).
fn read_entry(path: &Path) -> Option<(Digest, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let id = lines.next()?.trim().parse().ok()?;
    let hits = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Some((id, hits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hits_move_the_last_use_forward_and_are_counted() -> std::io::Result<()> {
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
        let before = cache.uses();
        assert_eq!(before.get(&a), Some(&Use { last: old, hits: 0 }));
        assert_eq!(before.get(&b), Some(&Use { last: old, hits: 0 }));

        cache.used("k2");
        cache.used("k2");
        cache.used("k1");
        let after = cache.uses();
        assert!(after[&a].last > old, "the hits are uses of a");
        assert_eq!(after[&a].hits, 3, "hits over both of a's entries");
        assert_eq!(after.get(&b), Some(&Use { last: old, hits: 0 }));
        // An entry with hits is still read as its image.
        assert_eq!(cache.get("k2"), Some(a.clone()));
        // A missing entry is no error, and no use.
        cache.used("nosuch");
        assert_eq!(cache.uses().len(), 2);
        Ok(())
    }
}
