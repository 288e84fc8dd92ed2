//! The container's root filesystem: the overlay mount, extra mounts, and the
//! switch into it (pivot_root, or MS_MOVE + chroot where seccomp forbids
//! pivot_root, as containerd's default profile does).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, pivot_root};

use super::error::{Context, SetupError};
use super::mounts::{bind, mount_fs, remount_readonly};
use super::safe_path::{fd_path, open_in_root, Kind};
use super::spec::{MountKind, MountSpec, RootfsSpec};
use super::user_mounts;

/// Stops mount events of the container from reaching the engine (and lets
/// the engine's unmounts reach the container), as Docker's `rslave` root.
pub fn isolate_propagation() -> Result<(), SetupError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .ctx(|| "making / a slave mount".to_string())
}

/// The overlay's mount data over `lower` (topmost first). Layer paths must
/// not contain `,` or `:`, which overlayfs would read as separators.
pub fn overlay_options(spec: &RootfsSpec, lower: &[PathBuf]) -> Result<String, SetupError> {
    let all = lower
        .iter()
        .chain([&spec.upper, &spec.work])
        .map(|p| p.to_str().map(str::to_string));
    for p in all {
        match p {
            Some(s) if !s.contains([',', ':']) => {}
            _ => {
                return Err(SetupError::Invalid(format!(
                    "rootfs paths must be UTF-8 without ',' or ':' (layers {:?})",
                    spec.lower
                )))
            }
        }
    }
    if lower.is_empty() {
        return Err(SetupError::Invalid("the rootfs has no layers".into()));
    }
    let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        spec.upper.display(),
        spec.work.display()
    ))
}

/// Mounts the overlay of `lower` (the spec's layers, or their idmapped
/// mounts) on the target and returns an O_PATH fd of its root.
pub fn mount_overlay(spec: &RootfsSpec, lower: &[PathBuf]) -> Result<OwnedFd, SetupError> {
    let data = overlay_options(spec, lower)?;
    mount_fs(
        "overlay",
        &spec.target,
        "overlay",
        MsFlags::empty(),
        Some(&data),
    )?;
    open(
        &spec.target,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening the rootfs {}", spec.target.display()))
}

/// Applies the user's mounts (volumes, binds, tmpfs) in order.
pub fn apply_mounts(root: &OwnedFd, mounts: &[MountSpec]) -> Result<(), SetupError> {
    for m in mounts {
        match &m.kind {
            MountKind::Bind {
                source,
                readonly,
                recursive,
            } => {
                let kind = if source.is_dir() {
                    Kind::Dir
                } else {
                    Kind::File
                };
                if !source.exists() {
                    return Err(SetupError::Invalid(format!(
                        "bind source path does not exist: {}",
                        source.display()
                    )));
                }
                let target = open_in_root(root, &m.destination, kind)?;
                bind(source, &fd_path(&target), *recursive)?;
                if *readonly {
                    // Reopen: the first fd still points under the new mount.
                    let mounted = open_in_root(root, &m.destination, kind)?;
                    remount_readonly(&fd_path(&mounted))?;
                }
            }
            MountKind::Tmpfs { options, readonly } => {
                user_mounts::tmpfs(root, &m.destination, options, *readonly)?;
            }
            MountKind::UserBind(b) => user_mounts::user_bind(root, &m.destination, b)?,
        }
    }
    Ok(())
}

/// Makes `new_root` the process's `/`. pivot_root detaches the engine's
/// tree from the container entirely; where seccomp refuses it (EPERM), the
/// rootfs is moved over `/` and chrooted into: the engine's tree stays in the
/// container's mount namespace but covered by the rootfs, so even a chroot
/// escape to the namespace's root lands back on the rootfs.
pub fn enter(new_root: &Path) -> Result<(), SetupError> {
    chdir(new_root).ctx(|| format!("entering {}", new_root.display()))?;
    match pivot_root(".", ".") {
        Ok(()) => {
            // The old root is now stacked under the new one at "/": detach it.
            umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".to_string())?;
            chdir("/").ctx(|| "entering /".to_string())
        }
        Err(Errno::EPERM) | Err(Errno::ENOSYS) => {
            tracing::debug!("pivot_root refused; falling back to MS_MOVE and chroot");
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .ctx(|| "moving the rootfs over /".to_string())?;
            chroot(".").ctx(|| "chroot into the rootfs".to_string())?;
            chdir("/").ctx(|| "entering /".to_string())
        }
        Err(e) => Err(e).ctx(|| "pivot_root into the rootfs".to_string()),
    }
}

/// `--read-only`: remounts the rootfs itself read-only, after every submount
/// is in place (submounts such as /dev and volumes stay writable).
pub fn make_readonly() -> Result<(), SetupError> {
    remount_readonly(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RootfsSpec {
        RootfsSpec {
            lower: Vec::new(),
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            target: "/c/rootfs".into(),
            readonly: false,
            lowers_shifted: false,
        }
    }

    #[test]
    fn overlay_options_list_layers_topmost_first_with_userxattr() -> Result<(), SetupError> {
        assert_eq!(
            overlay_options(&spec(), &["/l/top".into(), "/l/base".into()])?,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work,userxattr"
        );
        Ok(())
    }

    #[test]
    fn overlay_options_refuse_separators_and_empty_chains() {
        let s = spec();
        assert!(overlay_options(&s, &["/l/a,b".into()]).is_err());
        assert!(overlay_options(&s, &["/l/a:b".into()]).is_err());
        assert!(overlay_options(&s, &[]).is_err());
    }
}
