//! Steps in flight. Two builds that reach the same step at once (bake's
//! targets sharing a stage, two CI jobs on one daemon) would each run it
//! and store two different results; BuildKit runs a shared vertex once.
//! Here the first build to claim a step's cache key runs it, and the others
//! wait for it and then find the result in the cache. A claim is a `flock`
//! (released when the build process dies, however it dies), so it also
//! holds between the daemon and a daemonless `hutch build` on one data
//! root. Keys share 256 lock files by their first byte: lock files are
//! never removed (removing one while another build waits on it would let
//! two builds hold "the" lock), so their number must stay bounded; an
//! unrelated step that shares a file only waits a little.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};

use super::BuildError;

/// Where the lock files live, under the data root.
pub const DIR: &str = "builder/inflight";
/// How often a waiting build looks at its cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// A held claim; dropping it (closing the file) releases it.
pub struct Claim {
    _file: File,
}

/// Claims step `key` (hex), waiting while another build holds it. Returns
/// `Ok(None)` if the build is cancelled while waiting.
pub fn claim(
    data_root: &Path,
    key: &str,
    cancel: &AtomicBool,
) -> Result<Option<Claim>, BuildError> {
    let dir = data_root.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io("creating builder/inflight", e))?;
    let stripe = key.get(..2).unwrap_or("00");
    let path = dir.join(stripe);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| BuildError::io("opening a step lock", e))?;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(Claim { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(BuildError::io("locking a step", e.into())),
        }
        if cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_second_claim_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("dir");
        let cancel = Arc::new(AtomicBool::new(false));
        let first = claim(dir.path(), "ab12", &cancel)
            .expect("claims")
            .expect("not cancelled");
        let (root, flag) = (dir.path().to_path_buf(), cancel.clone());
        let waiter = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let got = claim(&root, "ab99", &flag).expect("claims");
            (got.is_some(), start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        let (got, waited) = waiter.join().expect("thread");
        assert!(got && waited >= Duration::from_millis(150), "{waited:?}");

        // A cancelled build stops waiting.
        let _held = claim(dir.path(), "cd", &cancel).expect("claims");
        cancel.store(true, Ordering::SeqCst);
        assert!(claim(dir.path(), "cd", &cancel).expect("answers").is_none());
    }
}
