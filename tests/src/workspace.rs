//! Where the workspace keeps build output, for caches and fixtures that
//! outlive one test process.

use std::path::{Path, PathBuf};

/// The cargo target directory this test was built into. Derived from the
/// running executable (`<target>/<profile>/deps/<test>`), so it follows
/// `CARGO_TARGET_DIR`: `tests/run` moves the target dir out of places the
/// pod cannot see (see `tests/target-dir`), and the fixtures must follow it.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let mut dir = exe.parent()?.to_path_buf();
        if dir.file_name() == Some(std::ffi::OsStr::new("deps")) {
            dir.pop();
        }
        // <target>/<profile>
        dir.parent().map(Path::to_path_buf)
    });
    from_exe.unwrap_or_else(|| {
        let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        manifest_dir
            .parent()
            .map_or(manifest_dir.clone(), PathBuf::from)
            .join("target")
    })
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or(manifest_dir.clone(), PathBuf::from)
}
