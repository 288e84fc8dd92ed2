//! Choosing the pod's host ID range, as the kubelet does: 65536 IDs starting
//! at a multiple of 65536, never shared by two live pods.
//!
//! Each candidate range has a lock file `/run/podsim/base-<N>.lock`; the shim
//! holds an exclusive flock on it for the pod's whole life, and writes the
//! pod's id into it. Ranges are handed out round-robin (the cursor lives in
//! `/run/podsim/next`), so a range just released is not reused at once and a
//! test can still check "nothing of mine is left" after its pod stopped.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use hutch_tests::podsim::{procscan, ID_RANGE_SIZE};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::layout;

/// First range handed out: 32 * 65536 = 2097152, above the subordinate ID
/// ranges distributions hand to local users (100000 + a few times 65536).
const FIRST_SLOT: u32 = 32;
/// How many ranges podsim cycles through.
const SLOTS: u32 = 1024;

/// A host ID range reserved for one pod.
pub struct BaseLease {
    pub base: u32,
    lock: Flock<File>,
}

/// Reserves a free range for pod `pod_id`. Notes about stale state found on
/// the way (a previous holder that died without cleaning up) go to `notes`.
pub fn allocate(pod_id: &str, notes: &mut Vec<String>) -> anyhow::Result<BaseLease> {
    let dir = layout::run_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The cursor is read and advanced under one global lock; the per-range
    // locks are what actually keeps two pods apart.
    let cursor_lock = open_lock(&dir.join("alloc.lock"))?;
    let _cursor_guard = Flock::lock(cursor_lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the range allocator")?;
    let cursor_path = dir.join("next");
    let start: u32 = std::fs::read_to_string(&cursor_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);

    for step in 0..SLOTS {
        let offset = (start + step) % SLOTS;
        let slot = FIRST_SLOT + offset;
        let base = slot * ID_RANGE_SIZE;
        let file = open_lock(&dir.join(format!("base-{slot}.lock")))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => return Err(e).context("locking an ID range"),
        };
        let squatters = procscan::live_processes_in_uid_range(base, ID_RANGE_SIZE);
        if !squatters.is_empty() {
            notes.push(format!(
                "skipping range {base}: {} process(es) outside podsim's control use it (first: pid {} {})",
                squatters.len(),
                squatters[0].pid,
                squatters[0].name
            ));
            continue;
        }
        let mut previous = String::new();
        lock.read_to_string(&mut previous)
            .context("reading an ID range lock")?;
        let previous = previous.trim();
        if !previous.is_empty() {
            remove_stale_pod_dir(previous, notes);
        }
        lock.set_len(0).context("truncating an ID range lock")?;
        lock.rewind().context("rewinding an ID range lock")?;
        lock.write_all(pod_id.as_bytes())
            .context("recording the pod in its ID range lock")?;
        std::fs::write(&cursor_path, format!("{}\n", (offset + 1) % SLOTS))
            .context("advancing the range cursor")?;
        return Ok(BaseLease { base, lock });
    }
    bail!("all {SLOTS} podsim ID ranges are in use")
}

impl BaseLease {
    /// Gives the range back after a clean teardown: the emptied lock file
    /// tells the next holder there is nothing stale to clean.
    pub fn release(self) -> anyhow::Result<()> {
        self.lock.set_len(0).context("clearing an ID range lock")?;
        drop(self.lock);
        Ok(())
    }
}

fn open_lock(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// A pod whose shim died without teardown leaves its directory behind; its
/// processes died with the shim (parent-death signals), the files did not.
fn remove_stale_pod_dir(pod_id: &str, notes: &mut Vec<String>) {
    if pod_id.contains('/') || pod_id.starts_with('.') {
        return;
    }
    let dir: PathBuf = layout::pod_dir(pod_id);
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => notes.push(format!("removed {} left by a crashed podsim", dir.display())),
            Err(e) => notes.push(format!("could not remove stale {}: {e}", dir.display())),
        }
    }
}
