//! The data root and overlayfs on it: the storage every container rootfs and
//! every build step stands on.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statfs::{self, FsType};

use super::child::{At, Failure, Sandbox};
use super::report::{Check, Status};
use super::scratch::Scratch;

/// The data root if it exists, else the nearest existing directory above it
/// (where the daemon would create it, and whose filesystem it would get).
pub fn existing_dir(data_root: &Path) -> PathBuf {
    data_root
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

/// A readable name for a filesystem magic number.
pub fn fs_name(fs: FsType) -> String {
    let known = [
        (statfs::EXT4_SUPER_MAGIC, "ext4"),
        (statfs::XFS_SUPER_MAGIC, "xfs"),
        (statfs::BTRFS_SUPER_MAGIC, "btrfs"),
        (statfs::TMPFS_MAGIC, "tmpfs"),
        (statfs::OVERLAYFS_SUPER_MAGIC, "overlayfs"),
        (statfs::NFS_SUPER_MAGIC, "nfs"),
        (statfs::FUSE_SUPER_MAGIC, "fuse"),
        (statfs::CGROUP2_SUPER_MAGIC, "cgroup2"),
        (statfs::CGROUP_SUPER_MAGIC, "cgroup"),
        (statfs::SYSFS_MAGIC, "sysfs"),
        (statfs::PROC_SUPER_MAGIC, "proc"),
    ];
    known
        .iter()
        .find(|(magic, _)| *magic == fs)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| format!("{:#x}", fs.0))
}

pub fn fs_of(path: &Path) -> String {
    statfs::statfs(path)
        .map(|s| fs_name(s.filesystem_type()))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

const FIX_VOLUME: &str = "\
spec:
  containers:
  - name: hutch
    volumeMounts: [{name: hutch-data, mountPath: /var/lib/hutch}]
  volumes:
  - name: hutch-data
    emptyDir: {}          # or a PVC on ext4/xfs; not NFS, not the container's own rootfs";

/// `storage.data_root`: where the data root lives and whether we can write there.
pub fn check_data_root(data_root: &Path, scratch: &Result<Scratch, Failure>) -> Check {
    let dir = existing_dir(data_root);
    let fs = fs_of(&dir);
    let place = if dir == data_root {
        format!("{} on {fs}", data_root.display())
    } else {
        format!(
            "{} does not exist yet; it would be created in {} on {fs}",
            data_root.display(),
            dir.display()
        )
    };
    let (status, detail) = match scratch {
        Err(failure) => (Status::Missing, format!("{place}; not writable: {failure}")),
        Ok(_) if fs == "overlayfs" => (
            Status::Missing,
            format!("{place}: overlayfs cannot be an overlay upper layer"),
        ),
        Ok(_) if fs == "nfs" => (
            Status::Degraded,
            format!("{place}: NFS cannot hold overlay upper layers in a user namespace"),
        ),
        Ok(_) => (Status::Ok, format!("{place}, writable")),
    };
    Check::new("storage.data_root", "data root", status, detail)
        .blocks("storing images, layers and containers")
        .fix(FIX_VOLUME)
}

/// `overlay.userxattr`: a hard requirement. A trial overlay mount from a child
/// user namespace, with a file written and one deleted (a whiteout).
pub fn check_overlay(data_root: &Path, scratch: &Result<Scratch, Failure>) -> Check {
    let fs = fs_of(&existing_dir(data_root));
    let outcome = scratch
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|s| s.dir("overlay"))
        .and_then(|dir| overlay_trial(&dir));
    let (status, detail) = match outcome {
        Ok(()) => (
            Status::Ok,
            format!(
                "overlay with userxattr over {fs} mounts in a child user namespace; whiteouts work"
            ),
        ),
        Err(failure) => (Status::Missing, format!("on {fs}: {failure}")),
    };
    Check::new(
        "overlay.userxattr",
        "overlayfs (userxattr) on the data root",
        status,
        detail,
    )
    .hard()
    .blocks(
        "container root filesystems and build steps; planned fallback: a FUSE overlay \
         when /dev/fuse exists, else a full copy of the layers per container (neither \
         is implemented yet)",
    )
    .fix(format!(
        "{FIX_VOLUME}\n# node: kernel >= 5.11 (overlayfs in user namespaces)"
    ))
}

fn overlay_trial(dir: &Path) -> Result<(), Failure> {
    for sub in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(dir.join(sub)).at(&format!("create {sub}"))?;
    }
    fs::write(dir.join("lower/kept"), "kept").at("write a lower file")?;
    fs::write(dir.join("lower/deleted"), "deleted").at("write a lower file")?;
    let dir = dir.to_owned();
    Sandbox::user().mount().run(move || {
        // Relative paths: the data root's path may hold commas or colons,
        // which the overlay option string cannot carry unescaped.
        nix::unistd::chdir(&dir).at("chdir")?;
        mount(
            Some("overlay"),
            "merged",
            Some("overlay"),
            MsFlags::empty(),
            Some("lowerdir=lower,upperdir=upper,workdir=work,userxattr"),
        )
        .at("mount overlay (userxattr)")?;
        fs::write("merged/new", "new").at("write through the overlay")?;
        fs::remove_file("merged/deleted").at("delete a lower file through the overlay")?;
        let whiteout = fs::symlink_metadata("upper/deleted").at("stat the whiteout")?;
        if !(whiteout.file_type().is_char_device() && whiteout.rdev() == 0) {
            return Err(Failure::other(
                "check the whiteout",
                "deleting a lower file did not leave a 0:0 character device",
            ));
        }
        if fs::read_to_string("merged/kept").at("read a lower file")? != "kept" {
            return Err(Failure::other("read a lower file", "wrong content"));
        }
        Ok(())
    })
}
