//! Disk usage of directory trees (writable layers, volumes, build caches),
//! counted as Docker's `system df` counts it: the sizes of the files,
//! not of the directories holding them.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of the files under `path` (or of `path` itself, a file), each
/// inode once (hardlinks), symlinks not followed; what cannot be read
/// counts as nothing.
pub fn dir_size(path: &Path) -> u64 {
    match path.symlink_metadata() {
        Ok(meta) if !meta.is_dir() => return meta.len(),
        _ => {}
    }
    let mut total = 0;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.len();
            }
        }
    }
    total
}
