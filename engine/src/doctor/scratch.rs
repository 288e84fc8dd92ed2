//! A scratch directory on the data root for the storage probes, removed again
//! when the doctor is done with it.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::child::{At, Failure};

pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `.hutch-doctor-<pid>` in `dir` (the data root, or the existing
    /// directory it would be created in).
    pub fn create(dir: &Path) -> Result<Self, Failure> {
        let path = dir.join(format!(".hutch-doctor-{}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .at(&format!("create {}", path.display()))?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh subdirectory for one probe (with parents).
    pub fn dir(&self, name: &str) -> Result<PathBuf, Failure> {
        let path = self.path.join(name);
        fs::create_dir_all(&path).at(&format!("create {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = remove_tree(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove the doctor's scratch directory");
        }
    }
}

/// Removes a tree, first making directories writable: overlayfs leaves its
/// `work/work` directory with mode 000, which only CAP_DAC_OVERRIDE could
/// otherwise enter.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(path)? {
            remove_tree(&entry?.path())?;
        }
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}
