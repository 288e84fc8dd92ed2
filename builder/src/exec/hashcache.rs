//! Content hashes of context files, remembered by what `stat` says about
//! them (path, device, inode, size, mtime and ctime, as BuildKit's
//! contenthash does), so a rebuild with nothing changed does not read the
//! whole context again. The cache only saves reading: the build cache key is
//! still the content hash. ctime cannot be set from user space and changes
//! with every write, so a file whose stat matches has the content hashed.
//!
//! Kept in `<data root>/builder/hashcache` (one `key hash` line each),
//! rewritten after a build with the entries that build used plus the
//! newest older ones, up to a bound.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

/// Most entries kept between builds.
const MAX_ENTRIES: usize = 200_000;

pub struct HashCache {
    file: PathBuf,
    old: HashMap<String, [u8; 32]>,
    used: Mutex<HashMap<String, [u8; 32]>>,
}

impl HashCache {
    pub fn open(data_root: &Path) -> HashCache {
        let file = data_root.join(super::cache_dirs::FILE_HASHES);
        let mut old = HashMap::new();
        if let Ok(text) = fs::read_to_string(&file) {
            for line in text.lines() {
                let Some((k, v)) = line.split_once(' ') else {
                    continue;
                };
                if let Some(h) = decode(v) {
                    old.insert(k.to_owned(), h);
                }
            }
        }
        HashCache {
            file,
            old,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// The SHA-256 of `path`'s content (a regular file).
    pub fn file_hash(&self, path: &Path) -> io::Result<[u8; 32]> {
        let meta = fs::symlink_metadata(path)?;
        let key = stat_key(path, &meta);
        let known = self
            .used
            .lock()
            .ok()
            .and_then(|u| u.get(&key).copied())
            .or_else(|| self.old.get(&key).copied());
        if let Some(h) = known {
            self.remember(key, h);
            return Ok(h);
        }
        let h = hash_file(path)?;
        // A file written during the hashing would have a newer ctime: only
        // remember a hash whose stat did not move meanwhile.
        if fs::symlink_metadata(path).is_ok_and(|m| stat_key(path, &m) == key) {
            self.remember(key, h);
        }
        Ok(h)
    }

    fn remember(&self, key: String, h: [u8; 32]) {
        if let Ok(mut u) = self.used.lock() {
            u.insert(key, h);
        }
    }

    /// Writes the entries this build used, then older ones up to the bound.
    pub fn save(&self) {
        let Ok(used) = self.used.lock() else { return };
        if used.is_empty() {
            return;
        }
        let mut text = String::with_capacity((used.len() + self.old.len()) * 130);
        let mut n = 0;
        for (k, v) in used.iter() {
            text.push_str(&format!("{k} {}\n", encode(v)));
            n += 1;
        }
        for (k, v) in &self.old {
            if n >= MAX_ENTRIES {
                break;
            }
            if !used.contains_key(k) {
                text.push_str(&format!("{k} {}\n", encode(v)));
                n += 1;
            }
        }
        let write = || -> io::Result<()> {
            if let Some(dir) = self.file.parent() {
                fs::create_dir_all(dir)?;
            }
            let tmp = self
                .file
                .with_extension(format!("tmp{}", std::process::id()));
            fs::write(&tmp, text.as_bytes())?;
            fs::rename(&tmp, &self.file)
        };
        if let Err(e) = write() {
            tracing::warn!(%e, "saving the builder's hash cache");
        }
    }
}

fn stat_key(path: &Path, m: &fs::Metadata) -> String {
    let mut h = Sha256::new();
    h.update(path.as_os_str().as_encoded_bytes());
    h.update([0]);
    for n in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    encode(&h.finalize().into())
}

pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

fn encode(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_stat_and_sees_changes() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("a");
        fs::write(&f, "one")?;
        let c = HashCache::open(dir.path());
        let h1 = c.file_hash(&f)?;
        assert_eq!(h1, hash_file(&f)?);
        c.save();
        let c2 = HashCache::open(dir.path());
        assert_eq!(c2.old.len(), 1);
        assert_eq!(c2.file_hash(&f)?, h1);
        // Same size, new content: the ctime moves, the hash follows.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, "two")?;
        assert_ne!(c2.file_hash(&f)?, h1);
        assert_eq!(c2.file_hash(&f)?, hash_file(&f)?);
        Ok(())
    }
}
