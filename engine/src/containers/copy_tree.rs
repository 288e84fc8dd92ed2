//! A faithful copy of an unpacked layer: every file type a layer holds
//! (overlay whiteouts are character devices 0:0), owners, modes, times,
//! extended attributes (`user.overlay.opaque`, file capabilities) and hard
//! links. Symlinks are copied, never followed. Used for private-mode
//! containers: to put layers on the engine's tmpfs as they are (idmapped
//! mounts shift them), or, on a disk store, as a copy whose owners are
//! already shifted into one container's ID range (`copy_tree_shifted`).

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

/// Copies the tree at `src` to `dst`, which must not exist.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    copy_tree_shifted(src, dst, &|id| id)
}

/// Copies the tree at `src` to `dst` (which must not exist), giving each
/// entry the owner `shift(uid)`, `shift(gid)`: the copy is to a container
/// whose root is `shift(0)` what the original is to the engine's root.
pub fn copy_tree_shifted(src: &Path, dst: &Path, shift: &dyn Fn(u32) -> u32) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    if !md.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", src.display()),
        ));
    }
    let mut copy = Copy {
        links: HashMap::new(),
        shift,
    };
    copy.dir(src, dst, &md)
}

struct Copy<'a> {
    /// Files with more than one link already copied: (dev, ino) → copy.
    links: HashMap<(u64, u64), std::path::PathBuf>,
    shift: &'a dyn Fn(u32) -> u32,
}

impl Copy<'_> {
    fn dir(&mut self, src: &Path, dst: &Path, md: &Metadata) -> io::Result<()> {
        fs::create_dir(dst).map_err(|e| at(e, dst))?;
        for entry in fs::read_dir(src).map_err(|e| at(e, src))? {
            let entry = entry?;
            let (from, to) = (entry.path(), dst.join(entry.file_name()));
            let md = fs::symlink_metadata(&from).map_err(|e| at(e, &from))?;
            self.entry(&from, &to, &md)?;
        }
        // Attributes last: a read-only directory must be filled first, and its
        // times would move with every entry made in it.
        finish(src, dst, md, self.shift)
    }

    fn entry(&mut self, src: &Path, dst: &Path, md: &Metadata) -> io::Result<()> {
        let ft = md.file_type();
        if ft.is_dir() {
            return self.dir(src, dst, md);
        }
        if !ft.is_symlink() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                return fs::hard_link(first, dst).map_err(|e| at(e, dst));
            }
            self.links.insert((md.dev(), md.ino()), dst.to_path_buf());
        }
        if !copy_node(src, dst, md)? {
            return Ok(());
        }
        finish(src, dst, md, self.shift)
    }
}

/// Makes `dst` as the non-directory `src` is, without its attributes;
/// false for what is not copied. Regular files go by `fs::copy`
/// (copy_file_range, which XFS and btrfs turn into a reflink).
fn copy_node(src: &Path, dst: &Path, md: &Metadata) -> io::Result<bool> {
    let ft = md.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(|e| at(e, src))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| at(e, dst))?;
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(|e| at(e, dst))?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            FileType::CharacterDevice
        } else if ft.is_block_device() {
            FileType::BlockDevice
        } else {
            FileType::Fifo
        };
        rustix::fs::mknodat(CWD, dst, kind, Mode::from_raw_mode(0o600), md.rdev())
            .map_err(|e| at(e.into(), dst))?;
    } else {
        // Sockets: a layer has none that means anything.
        tracing::debug!(path = %src.display(), "not copying a socket");
        return Ok(false);
    }
    Ok(true)
}

/// Owner, then mode (a chown clears set-ID bits), xattrs and times.
fn finish(src: &Path, dst: &Path, md: &Metadata, shift: &dyn Fn(u32) -> u32) -> io::Result<()> {
    lchown(dst, Some(shift(md.uid())), Some(shift(md.gid()))).map_err(|e| at(e, dst))?;
    let symlink = md.file_type().is_symlink();
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| at(e, dst))?;
    }
    copy_xattrs(src, dst)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| at(e.into(), dst))
}

/// Copies every xattr as it is. File capabilities need no rewriting for a
/// shifted copy: read and written by the engine's root they hold for the
/// engine's root, and the kernel honours them in every user namespace
/// below the engine's (a private container's included).
fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let size = match rustix::fs::llistxattr_query(src) {
        Ok(0) => return Ok(()),
        Ok(n) => n,
        // Symlinks and some filesystems have none to list.
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(at(e.into(), src)),
    };
    let mut names = vec![0u8; size];
    let len = rustix::fs::llistxattr(src, &mut names[..]).map_err(|e| at(e.into(), src))?;
    names.truncate(len);
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let size = rustix::fs::lgetxattr_query(src, name).map_err(|e| at(e.into(), src))?;
        let mut value = vec![0u8; size];
        let len =
            rustix::fs::lgetxattr(src, name, &mut value[..]).map_err(|e| at(e.into(), src))?;
        value.truncate(len);
        rustix::fs::lsetxattr(dst, name, &value, XattrFlags::empty())
            .map_err(|e| at(e.into(), dst))?;
    }
    Ok(())
}

fn at(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_links_modes_and_times_are_copied() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        fs::create_dir_all(src.join("sub"))?;
        fs::write(src.join("sub/file"), "data")?;
        fs::set_permissions(src.join("sub/file"), fs::Permissions::from_mode(0o640))?;
        fs::hard_link(src.join("sub/file"), src.join("link"))?;
        std::os::unix::fs::symlink("sub/file", src.join("sym"))?;
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o500))?;
        copy_tree(&src, &dst)?;
        assert_eq!(fs::read_to_string(dst.join("sub/file"))?, "data");
        let file = fs::metadata(dst.join("sub/file"))?;
        assert_eq!(file.mode() & 0o7777, 0o640);
        assert_eq!(file.ino(), fs::metadata(dst.join("link"))?.ino());
        assert_eq!(
            fs::read_link(dst.join("sym"))?,
            std::path::PathBuf::from("sub/file")
        );
        let (a, b) = (
            fs::metadata(src.join("sub"))?,
            fs::metadata(dst.join("sub"))?,
        );
        assert_eq!(b.mode() & 0o7777, 0o500);
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
        fs::set_permissions(dst.join("sub"), fs::Permissions::from_mode(0o700))?;
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o700))?;
        Ok(())
    }
}
