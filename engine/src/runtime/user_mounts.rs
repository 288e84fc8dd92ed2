//! The mounts a container asks for (`-v`, `--mount`, `--tmpfs`, volumes),
//! made in the container's mount namespace before the switch into the
//! rootfs. Every target is resolved inside the rootfs (`safe_path`), so an
//! image's symlink at a mount point cannot send the mount outside it.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use super::error::{Context, SetupError};
use super::mounts::{mount_fs, remount_readonly};
use super::safe_path::{fd_path, open_in_root, Kind};
use super::spec::{BindMount, SubmountsReadonly};

/// Binds `b.source` on `dest` inside the rootfs, with its options.
pub fn user_bind(root: &OwnedFd, dest: &Path, b: &BindMount) -> Result<(), SetupError> {
    // A subpath resolves inside the volume: a symlink a container left
    // there cannot lead the bind out of it. The fd stays open until the
    // bind is made.
    let sub = if b.subpath.is_empty() {
        None
    } else {
        Some(open_subpath(&b.source, &b.subpath)?)
    };
    let source = match &sub {
        Some(fd) => fd_path(fd),
        None => b.source.clone(),
    };
    let md = match fs::metadata(&source) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SetupError::Invalid(format!(
                "bind source path does not exist: {}",
                b.source.display()
            )))
        }
        Err(e) => {
            return Err(SetupError::Invalid(format!(
                "bind source path {}: {e}",
                b.source.display()
            )))
        }
    };
    let kind = if md.is_dir() { Kind::Dir } else { Kind::File };
    let target = open_in_root(root, dest, kind)?;
    if b.populate && kind == Kind::Dir {
        populate(&target, &b.source)?;
    }
    let flags = if b.recursive {
        MsFlags::MS_BIND | MsFlags::MS_REC
    } else {
        MsFlags::MS_BIND
    };
    match mount(
        Some(&source),
        &fd_path(&target),
        None::<&str>,
        flags,
        None::<&str>,
    ) {
        Ok(()) => {}
        // In a user namespace the kernel refuses to bind a mount without
        // the submounts an outer namespace mounted on it (they are locked:
        // a bind without them would reveal what they cover).
        Err(Errno::EINVAL) if !b.recursive => {
            return Err(SetupError::Invalid(format!(
                "bind-recursive=disabled cannot be honoured for {}: it has submounts that \
                 the kernel keeps locked in a user namespace; bind it recursively",
                b.source.display()
            )))
        }
        Err(e) => {
            return Err(e)
                .ctx(|| format!("bind-mounting {} on {}", b.source.display(), dest.display()))
        }
    }
    drop(target);
    // Reopen: the first fd still points under the new mount.
    let mounted = open_in_root(root, dest, kind)?;
    let mounted_path = fd_path(&mounted);
    let propagation = propagation_flags(&b.propagation)?;
    mount(
        None::<&str>,
        &mounted_path,
        None::<&str>,
        propagation,
        None::<&str>,
    )
    .ctx(|| format!("setting the propagation of {}", dest.display()))?;
    if b.readonly {
        let recursive_ro = b.recursive && b.submounts != SubmountsReadonly::Writable;
        if recursive_ro {
            match readonly_recursive(&mounted) {
                Ok(()) => return Ok(()),
                Err(e) if b.submounts == SubmountsReadonly::Required => {
                    return Err(SetupError::Invalid(format!(
                        "making {} recursively read-only: {e} (use bind-recursive=writable or \
                         bind-recursive=disabled)",
                        dest.display()
                    )))
                }
                Err(e) => {
                    tracing::debug!(%e, "recursive read-only refused; the top mount only")
                }
            }
        }
        remount_readonly(&mounted_path)?;
    }
    Ok(())
}

/// An O_PATH fd of `subpath` inside the directory `volume`, resolved as if
/// `volume` were `/`.
fn open_subpath(volume: &Path, subpath: &str) -> Result<OwnedFd, SetupError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsFd;
    let dir = open(
        volume,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening the volume {}", volume.display()))?;
    let rel = subpath.trim_start_matches('/');
    super::safe_path::openat2_in_root(
        dir.as_fd(),
        Path::new(if rel.is_empty() { "." } else { rel }),
    )
    .map_err(|e| {
        SetupError::Invalid(format!(
            "cannot access the volume subpath {subpath} in {}: {}",
            volume.display(),
            e.desc()
        ))
    })
}

/// A fresh tmpfs on `dest`; `options` mixes flag words and mount data.
pub fn tmpfs(root: &OwnedFd, dest: &Path, options: &str, readonly: bool) -> Result<(), SetupError> {
    let target = open_in_root(root, dest, Kind::Dir)?;
    let (mut flags, data) = tmpfs_flags(options);
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    mount_fs("tmpfs", &fd_path(&target), "tmpfs", flags, Some(&data))
}

/// Splits a tmpfs option list into mount flags and data; `nosuid` and
/// `nodev` unless the list says otherwise.
pub fn tmpfs_flags(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut data = Vec::new();
    for word in options.split(',').filter(|w| !w.is_empty()) {
        let (set, clear) = match word {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            _ => {
                data.push(word);
                continue;
            }
        };
        flags |= set;
        flags &= !clear;
    }
    (flags, data.join(","))
}

fn propagation_flags(text: &str) -> Result<MsFlags, SetupError> {
    Ok(match text {
        "" | "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        other => {
            return Err(SetupError::Invalid(format!(
                "invalid propagation mode: {other}"
            )))
        }
    })
}

/// Docker's copy of an image's content into an empty volume: the entries
/// under the mount point (owners, modes, times, xattrs; symlinks copied,
/// never followed) and the mount point's own owner and mode. `target` was
/// resolved inside the rootfs; the walk below it follows no symlink.
///
/// Another running container may share the volume and plant symlinks in
/// it meanwhile, and this runs with the container root's rights over the
/// engine's tree: so the copy goes to a staging directory beside `_data`
/// that no container sees (`stage/`, made by the engine), and its entries
/// are renamed in without replacing anything (a rename never follows a
/// symlink at the destination).
fn populate(target: &OwnedFd, volume: &Path) -> Result<(), SetupError> {
    let empty = fs::read_dir(volume)
        .ctx(|| format!("reading the volume {}", volume.display()))?
        .next()
        .is_none();
    if !empty {
        return Ok(());
    }
    let Some(stage_root) = volume.parent().map(|p| p.join("stage")) else {
        return Err(SetupError::Invalid(format!(
            "the volume {} has no parent directory",
            volume.display()
        )));
    };
    let suffix = crate::containers::ids::new_id().ctx(|| "a staging name".to_string())?;
    let stage = stage_root.join(&suffix[..16]);
    // `/.`: the directory the magic link leads to, not the link.
    crate::containers::copy_tree::copy_tree(&fd_path(target).join("."), &stage)
        .ctx(|| format!("copying the image's content for {}", volume.display()))?;
    let moved = move_entries(&stage, volume);
    let cleaned = fs::remove_dir_all(&stage);
    moved?;
    if let Err(e) = cleaned {
        tracing::debug!(%e, "removing a volume's staging directory");
    }
    Ok(())
}

/// Renames every entry of `stage` into `volume` (never over an existing
/// one), then gives `volume` the owner and mode of `stage`.
fn move_entries(stage: &Path, volume: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::MetadataExt;
    for entry in fs::read_dir(stage).ctx(|| format!("reading {}", stage.display()))? {
        let entry = entry.ctx(|| format!("reading {}", stage.display()))?;
        let to = volume.join(entry.file_name());
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            entry.path(),
            rustix::fs::CWD,
            &to,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {}
            // Someone filled the volume meanwhile: theirs stays.
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io::Error::from(e)).ctx(|| format!("moving {}", to.display())),
        }
    }
    let md = fs::metadata(stage).ctx(|| format!("reading {}", stage.display()))?;
    let dir = rustix::fs::open(
        volume,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(io::Error::from)
    .ctx(|| format!("opening {}", volume.display()))?;
    rustix::fs::fchown(
        &dir,
        Some(rustix::fs::Uid::from_raw(md.uid())),
        Some(rustix::fs::Gid::from_raw(md.gid())),
    )
    .map_err(io::Error::from)
    .ctx(|| format!("giving {} the image's owner", volume.display()))?;
    rustix::fs::fchmod(&dir, rustix::fs::Mode::from_raw_mode(md.mode() & 0o7777))
        .map_err(io::Error::from)
        .ctx(|| format!("giving {} the image's mode", volume.display()))
}

/// mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY) on the mount at `fd`.
fn readonly_recursive(fd: &OwnedFd) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (size given) and an empty path,
    // both alive across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_words_become_flags_and_the_rest_data() {
        let (flags, data) = tmpfs_flags("nodev,exec,nosuid,size=64m,mode=1777,ro");
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV));
        assert!(!flags.contains(MsFlags::MS_NOEXEC));
        assert_eq!(data, "size=64m,mode=1777");
        let (flags, _) = tmpfs_flags("suid,dev,noexec");
        assert!(!flags.contains(MsFlags::MS_NOSUID) && flags.contains(MsFlags::MS_NOEXEC));
    }
}
