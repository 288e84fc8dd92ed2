//! A build's own directory under `<data root>/builder/tmp`, for everything
//! temporary (the API's unpacked context, RUN directories, views,
//! downloads, secrets from the environment), removed when the build ends.
//!
//! Each entry holds an exclusive flock on its `.lock` file for as long as
//! its build lives, so a build that crashed (or a daemon that was killed)
//! leaves an entry whose lock anyone can take: the next build removes it.
//! Creating entries and sweeping stale ones both happen under the
//! exclusive `builder/tmp.lock`, so a sweep never sees an entry between its
//! `mkdir` and its lock, and a live build's entry (daemon or daemonless, on
//! the same data root) is never touched. The views of `docker cp`/`export`
//! live in such entries too. Entries without a `.lock` (left by older
//! versions) are not ours to judge and are left alone. Mounts a sweep can see under a stale entry
//! are detached first, so removing it never writes through an overlay.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{flock, FlockOperation};

const LOCK: &str = ".lock";

/// A live build's temp directory; removed on drop.
pub struct BuildTmp {
    dir: PathBuf,
    /// Holds the flock that marks the entry as live.
    _lock: File,
}

impl BuildTmp {
    /// Sweeps stale entries, then makes `<prefix>-<random>` and locks it.
    pub fn create(data_root: &Path, prefix: &str) -> io::Result<BuildTmp> {
        BuildTmp::create_in(&data_root.join("builder/tmp"), prefix)
    }

    /// As `create`, given `<data root>/builder/tmp` itself.
    pub fn create_in(tmp: &Path, prefix: &str) -> io::Result<BuildTmp> {
        fs::create_dir_all(tmp)?;
        let guard = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(tmp.with_extension("lock"))?;
        flock(guard.as_fd(), FlockOperation::LockExclusive)?;
        sweep(tmp);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(tmp)?
            .keep();
        let locked = File::create(dir.join(LOCK)).and_then(|lock| {
            flock(lock.as_fd(), FlockOperation::NonBlockingLockExclusive)?;
            Ok(lock)
        });
        let lock = match locked {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        drop(guard);
        Ok(BuildTmp { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// When the oldest live entry (a running build, daemon or daemonless,
    /// or a `docker cp` view) was made, by its `.lock`'s mtime: a build
    /// cache prune keeps whatever was made or used since, so it never
    /// takes what a running build stands on (BuildKit keeps in-use
    /// records). `None` when nothing is live.
    pub fn oldest_live(data_root: &Path) -> Option<SystemTime> {
        let entries = fs::read_dir(data_root.join("builder/tmp")).ok()?;
        entries
            .flatten()
            .filter_map(|entry| {
                let lock = File::open(entry.path().join(LOCK)).ok()?;
                // A lock we can take (and drop at once) is nobody's.
                if flock(lock.as_fd(), FlockOperation::NonBlockingLockShared).is_ok() {
                    return None;
                }
                lock.metadata().and_then(|m| m.modified()).ok()
            })
            .min()
    }
}

impl Drop for BuildTmp {
    fn drop(&mut self) {
        if let Err(e) = remove_entry(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %e, "removing the build's temp directory");
        }
    }
}

/// Removes every entry of `tmp` whose `.lock` nobody holds.
fn sweep(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(lock) = File::open(path.join(LOCK)) else {
            continue;
        };
        if flock(lock.as_fd(), FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        tracing::info!(dir = %path.display(), "removing a dead build's temp directory");
        if let Err(e) = remove_entry(&path) {
            tracing::warn!(dir = %path.display(), %e, "removing a dead build's temp directory");
        }
    }
}

/// Detaches the mounts under `dir` this mount namespace shows (deepest
/// first), then removes it. A mount that will not go keeps the directory.
fn remove_entry(dir: &Path) -> io::Result<()> {
    let mut points = mounts_under(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| io::Error::other(format!("unmounting {}: {e}", p.display())))?;
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    hutch_engine::mountinfo::mount_points(&text)
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_live_entry_is_found_and_dead_ones_ignored() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        assert_eq!(BuildTmp::oldest_live(root.path()), None);
        let first = BuildTmp::create(root.path(), "build")?;
        let when = fs::metadata(first.path().join(LOCK))?.modified()?;
        let _second = BuildTmp::create(root.path(), "build")?;
        // A dead build's entry, made earlier than both: not live.
        let dead = root.path().join("builder/tmp/build-dead");
        fs::create_dir_all(&dead)?;
        File::create(dead.join(LOCK))?.set_modified(when - std::time::Duration::from_secs(60))?;
        assert_eq!(BuildTmp::oldest_live(root.path()), Some(when));
        drop(first);
        assert!(BuildTmp::oldest_live(root.path()).is_some_and(|t| t >= when));
        Ok(())
    }

    #[test]
    fn stale_entries_go_and_live_ones_stay() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let live = BuildTmp::create(root.path(), "build")?;
        fs::write(live.path().join("f"), "x")?;
        // A dead build: its lock file, held by nobody.
        let stale = root.path().join("builder/tmp/build-dead");
        fs::create_dir_all(stale.join("sub"))?;
        fs::write(stale.join(LOCK), "")?;
        // Not ours (no lock): left alone.
        let other = root.path().join("builder/tmp/view-x");
        fs::create_dir_all(&other)?;
        let second = BuildTmp::create(root.path(), "build")?;
        assert!(!stale.exists());
        assert!(live.path().join("f").exists());
        assert!(other.exists());
        let (a, b) = (live.path().to_path_buf(), second.path().to_path_buf());
        drop(live);
        drop(second);
        assert!(!a.exists() && !b.exists());
        Ok(())
    }
}
