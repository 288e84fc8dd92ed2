//! The on-disk cache of built test images, shared by every test process.
//!
//! Each image lives in `<cache>/<name>-<key>/`, where the key hashes the
//! recipe version and the recipe's inputs (the busybox binary). An flock on
//! `<name>-<key>.lock` makes parallel test processes build it once; the
//! build happens in a temporary sibling directory that is renamed into
//! place only when complete, so a crashed build never leaves a half image.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

/// Bump whenever a recipe or the layout writer changes what it produces:
/// old cache entries are then ignored. (2: gzip is zlib-rs for every build of
/// the workspace; before, the backend depended on which packages cargo built,
/// so the same layer could compress to different bytes.)
pub const RECIPE_VERSION: u32 = 2;

/// The cache directory: `$HUTCH_TEST_CACHE`, else `<workspace>/target/test-images`.
pub fn cache_root() -> PathBuf {
    match std::env::var_os("HUTCH_TEST_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::workspace::target_dir().join("test-images"),
    }
}

/// Returns the cached directory of image `name` for these key inputs,
/// calling `build` on an empty directory first if it is not cached yet.
pub fn cached_build(
    name: &str,
    key_inputs: &[&[u8]],
    build: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let root = cache_root();
    fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;

    let mut hasher = Sha256::new();
    hasher.update(RECIPE_VERSION.to_le_bytes());
    hasher.update(name.as_bytes());
    for input in key_inputs {
        hasher.update((input.len() as u64).to_le_bytes());
        hasher.update(input);
    }
    let key = format!("{:x}", hasher.finalize());
    let final_dir = root.join(format!("{name}-{}", &key[..16]));

    let lock_path = root.join(format!("{name}-{}.lock", &key[..16]));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _lock: Flock<File> = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("locking {}", lock_path.display()))?;

    if final_dir.exists() {
        return Ok(final_dir);
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}-building-"))
        .tempdir_in(&root)
        .context("creating a staging directory")?;
    build(staging.path()).with_context(|| format!("building test image {name}"))?;
    // The pod's root (an unprivileged host uid) reads these images too.
    make_world_readable(staging.path())?;
    fs::rename(staging.path(), &final_dir)
        .with_context(|| format!("moving the built image to {}", final_dir.display()))?;
    // The rename moved the directory away; nothing is left for the guard to delete.
    let _ = staging.keep();
    Ok(final_dir)
}

fn make_world_readable(path: &Path) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let mode = if meta.is_dir() { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    if meta.is_dir() {
        for child in fs::read_dir(path)? {
            make_world_readable(&child?.path())?;
        }
    }
    Ok(())
}
