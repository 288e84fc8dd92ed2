//! Cross-process locks (flock) on files under `locks/`, so the daemon and a
//! daemonless `hutch` command can share one data root.
//!
//! Two locks, always taken in this order:
//! - `content`: held *shared* by every operation that adds blobs or layers
//!   (load, pull) for its whole duration, and *exclusive* by garbage
//!   collection and startup cleanup, which must not delete what an operation
//!   in flight has written but not yet referenced.
//! - `meta`: held *exclusive* for read-modify-write of image records and the
//!   tag index, *shared* for consistent reads of several of them.
//!
//! flock locks belong to the open file description, so two threads of one
//! process exclude each other as two processes do.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

use super::StoreError;

#[derive(Debug, Clone)]
pub struct Locks {
    dir: PathBuf,
}

/// Holds a lock until dropped (closing the file releases it).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

#[derive(Clone, Copy)]
enum Mode {
    Shared,
    Exclusive,
}

impl Locks {
    pub fn new(dir: PathBuf) -> Locks {
        Locks { dir }
    }

    pub fn content_shared(&self) -> Result<LockGuard, StoreError> {
        self.take("content", Mode::Shared)
    }

    pub fn content_exclusive(&self) -> Result<LockGuard, StoreError> {
        self.take("content", Mode::Exclusive)
    }

    /// The exclusive content lock if nobody else holds the content lock now.
    pub fn try_content_exclusive(&self) -> Result<Option<LockGuard>, StoreError> {
        let path = self.dir.join("content.lock");
        let file = open_lock_file(&path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(LockGuard { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::io(&path, e.into())),
        }
    }

    pub fn meta_shared(&self) -> Result<LockGuard, StoreError> {
        self.take("meta", Mode::Shared)
    }

    pub fn meta_exclusive(&self) -> Result<LockGuard, StoreError> {
        self.take("meta", Mode::Exclusive)
    }

    fn take(&self, name: &str, mode: Mode) -> Result<LockGuard, StoreError> {
        let path = self.dir.join(format!("{name}.lock"));
        let file = open_lock_file(&path)?;
        let op = match mode {
            Mode::Shared => FlockOperation::LockShared,
            Mode::Exclusive => FlockOperation::LockExclusive,
        };
        flock(&file, op).map_err(|e| StoreError::io(&path, e.into()))?;
        Ok(LockGuard { _file: file })
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_content_lock_waits_for_shared_holders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let locks = Locks::new(dir.path().to_owned());
        let shared = locks.content_shared().expect("shared lock");
        let second_shared = locks.content_shared().expect("shared locks coexist");
        assert!(locks.try_content_exclusive().expect("try lock").is_none());
        drop(shared);
        drop(second_shared);
        assert!(locks.try_content_exclusive().expect("try lock").is_some());
    }
}
