//! A fresh ext4 filesystem for a benchmark's data root. On a disk shared
//! with earlier work (here, a journal-less ext4), ext4 creates files
//! several times slower for a while after many recent deletions (its inode
//! allocator skips inodes deleted in the last half minute or so), so a
//! benchmark on it measures what ran before it as much as itself.

use std::process::{Command, Stdio};

use anyhow::ensure;

use crate::podsim::Pod;

/// A sparse loop image under /var/tmp (which the pod sees), mounted at
/// `<dir>/d`; unmounted and deleted on drop. Make it before the pod
/// starts, so the pod's mount namespace has it.
pub struct LoopDisk {
    dir: tempfile::TempDir,
}

impl LoopDisk {
    const SIZE: &'static str = "1G";

    pub fn make() -> anyhow::Result<LoopDisk> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            // Short: supervisor socket paths under it must fit sun_path.
            .prefix("hrb-")
            .tempdir_in("/var/tmp")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let image = dir.path().join("disk.img");
        let mount_point = dir.path().join("d");
        std::fs::create_dir(&mount_point)?;
        run(Command::new("truncate")
            .args(["-s", Self::SIZE])
            .arg(&image))?;
        // Initialized in full now: lazy initialization would zero the
        // inode tables in the background while we measure.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(&image))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount_point))?;
        Ok(LoopDisk { dir })
    }

    fn mount_point(&self) -> std::path::PathBuf {
        self.dir.path().join("d")
    }

    /// Hands the filesystem to `pod`'s root; returns the data root to use.
    pub fn data_root_for(&self, pod: &Pod) -> anyhow::Result<String> {
        let base = pod.base();
        let root = self.mount_point();
        std::os::unix::fs::chown(&root, Some(base), Some(base))?;
        Ok(root.join("h").display().to_string())
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // The loop device goes with its last mount (mount -o loop sets
        // autoclear); the image with the directory.
        if let Err(e) = run(Command::new("umount").arg(self.mount_point())) {
            eprintln!("unmounting the benchmark's disk: {e:#}");
        }
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
