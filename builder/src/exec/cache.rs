//! The local build cache: a key per step (the parent image, the instruction
//! after expansion, the build args it sees and, for COPY/ADD, a checksum of
//! the files' content and metadata, never their mtimes) → the image the step
//! made, kept under `<data root>/builder/cache/`. An entry whose image is gone
//! is a miss.

use std::fs;
use std::path::PathBuf;

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
    pub fn open(data_root: &std::path::Path) -> Cache {
        Cache {
            dir: data_root.join("builder/cache"),
        }
    }

    pub fn get(&self, key: &str) -> Option<Digest> {
        let text = fs::read_to_string(self.dir.join(key)).ok()?;
        text.trim().parse().ok()
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
