//! Read-only views of an image's filesystem for COPY `--from` and RUN bind
//! mounts: an overlay of its layer directories mounted in the engine's mount
//! namespace, unmounted when dropped; and single-path lookups through the
//! layer directories without a mount.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// A merged view of layers (read-only, or writable for `docker cp` into a
/// stopped container).
pub struct MergedView {
    dir: tempfile::TempDir,
    root: PathBuf,
    mounted: bool,
}

impl MergedView {
    /// `lower`: layer directories, topmost first. Scratch (no layers) is an
    /// empty directory.
    pub fn mount(lower: &[PathBuf], tmp: &Path) -> io::Result<MergedView> {
        let dir = tempfile::Builder::new().prefix("view-").tempdir_in(tmp)?;
        let root = dir.path().join("root");
        let empty = dir.path().join("empty");
        fs::create_dir(&root)?;
        fs::create_dir(&empty)?;
        if lower.is_empty() {
            return Ok(MergedView {
                dir,
                root,
                mounted: false,
            });
        }
        // An overlay without an upper dir needs two lower dirs on older kernels.
        let mut dirs: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        dirs.push(empty.display().to_string());
        let data = format!("lowerdir={},userxattr", dirs.join(":"));
        mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            Some(data.as_str()),
        )
        .map_err(|e| io::Error::other(format!("mounting a view of the image layers: {e}")))?;
        Ok(MergedView {
            dir,
            root,
            mounted: true,
        })
    }

    /// A writable overlay of `lower` under `upper` (with its `work`
    /// directory), as a container's root is mounted when it runs.
    pub fn mount_writable(
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        tmp: &Path,
    ) -> io::Result<MergedView> {
        let dir = tempfile::Builder::new().prefix("view-").tempdir_in(tmp)?;
        let root = dir.path().join("root");
        let empty = dir.path().join("empty");
        fs::create_dir(&root)?;
        fs::create_dir(&empty)?;
        let mut dirs: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        if dirs.is_empty() {
            dirs.push(empty.display().to_string());
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            dirs.join(":"),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
            Some(data.as_str()),
        )
        .map_err(|e| io::Error::other(format!("mounting a container's filesystem: {e}")))?;
        Ok(MergedView {
            dir,
            root,
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for MergedView {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = umount2(&self.root, MntFlags::MNT_DETACH) {
                tracing::warn!(%e, path = %self.root.display(), "unmounting a build view");
            }
        }
        let _ = self.dir.path();
    }
}

/// The metadata of `rel` (no leading `/`) as the image shows it, looking
/// through `lower` (topmost first) without following symlinks; `None` when
/// absent or whited out.
pub fn lookup(lower: &[PathBuf], rel: &str) -> Option<(PathBuf, fs::Metadata)> {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return lower
            .first()
            .and_then(|l| fs::symlink_metadata(l).ok().map(|m| (l.clone(), m)));
    }
    for layer in lower {
        let p = layer.join(rel);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return None;
            }
            return Some((p, m));
        }
        // A whiteout of a parent in this layer hides everything below it.
        let mut parent = Path::new(rel).parent();
        while let Some(dir) = parent {
            if dir.as_os_str().is_empty() {
                break;
            }
            if let Ok(m) = fs::symlink_metadata(layer.join(dir)) {
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    return None;
                }
                break;
            }
            parent = dir.parent();
        }
    }
    None
}
