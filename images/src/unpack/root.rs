//! The layer directory as a resolution root.
//!
//! Every path from a tar entry is resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the layer
//! dir's fd: `..`, absolute symlinks and symlinked parents all stay inside
//! the layer, as if the process were chrooted there, whatever earlier entries
//! created. Only the parent directory is resolved that way; the final
//! component is then created or changed with `*at` calls on that parent
//! that never follow a symlink, so nothing outside the layer can be reached.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{
    mkdirat, openat, openat2, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags,
};
use rustix::io::Errno;

/// A path inside the layer after lexical cleaning: no empty, `.` or `..`
/// components. Empty means the layer root.
pub type Components<'a> = Vec<&'a [u8]>;

/// Cleans a tar path lexically. Absolute paths are taken relative to the
/// root (as tar and Docker do); a `..` that would climb above the root makes
/// the path invalid (`None`), as Docker treats it as a breakout attempt.
pub fn clean(raw: &[u8]) -> Option<Components<'_>> {
    let mut out: Components<'_> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            _ => out.push(comp),
        }
    }
    Some(out)
}

pub fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

pub struct LayerRoot {
    fd: OwnedFd,
    /// The last parent directory resolved, by its cleaned path: tar entries
    /// come grouped by directory, so this saves most resolutions. Cleared
    /// whenever a directory is removed.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl LayerRoot {
    pub fn open(path: &Path) -> io::Result<LayerRoot> {
        let fd = rustix::fs::open(path, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
        Ok(LayerRoot { fd, cache: None })
    }

    /// Forgets cached directory fds (after a directory was removed).
    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    /// Opens an existing directory inside the layer.
    pub fn open_dir(&self, comps: &[&[u8]]) -> io::Result<OwnedFd> {
        let path = if comps.is_empty() {
            b".".to_vec()
        } else {
            join(comps)
        };
        // EAGAIN means a concurrent rename raced the lookup; nothing else
        // writes into a layer being unpacked, so a retry settles it.
        let mut tries = 0;
        loop {
            match openat2(
                &self.fd,
                &path[..],
                DIR_FLAGS,
                Mode::empty(),
                resolve_flags(),
            ) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// The directory `comps` names, creating missing directories (mode
    /// 0755, owned by the caller) as tar does.
    pub fn dir(&mut self, comps: &[&[u8]]) -> io::Result<Rc<OwnedFd>> {
        let key = join(comps);
        if let Some((cached, fd)) = &self.cache {
            if *cached == key {
                return Ok(fd.clone());
            }
        }
        let fd = match self.open_dir(comps) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.create_dirs(comps)?,
            Err(e) => return Err(e),
        };
        let fd = Rc::new(fd);
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    fn create_dirs(&self, comps: &[&[u8]]) -> io::Result<OwnedFd> {
        let mut parent = self.open_dir(&[])?;
        for i in 1..=comps.len() {
            let fd = match self.open_dir(&comps[..i]) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // `parent` was itself resolved inside the root, and
                    // mkdirat never follows a symlink in the final component.
                    match mkdirat(&parent, comps[i - 1], Mode::from_bits_retain(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    self.open_dir(&comps[..i])?
                }
                Err(e) => return Err(e),
            };
            parent = fd;
        }
        Ok(parent)
    }
}

/// What is at `name` in `dir`, without following a symlink.
pub fn file_type_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<FileType>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes whatever is at `name` in `dir` (a whole tree for a directory),
/// never following symlinks. Returns whether a directory was removed.
pub fn remove_at(dir: impl AsFd, name: &[u8]) -> io::Result<bool> {
    let dir = dir.as_fd();
    match file_type_at(dir, name)? {
        None => Ok(false),
        Some(FileType::Directory) => {
            remove_tree_at(dir, name)?;
            Ok(true)
        }
        Some(_) => {
            unlinkat(dir, name, AtFlags::empty())?;
            Ok(false)
        }
    }
}

fn remove_tree_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let fd = openat(parent, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
    let mut children: Vec<(Vec<u8>, bool)> = Vec::new();
    for entry in Dir::read_from(&fd)? {
        let entry = entry?;
        let child = entry.file_name().to_bytes();
        if child == b"." || child == b".." {
            continue;
        }
        let is_dir = match entry.file_type() {
            FileType::Unknown => file_type_at(&fd, child)? == Some(FileType::Directory),
            t => t == FileType::Directory,
        };
        children.push((child.to_vec(), is_dir));
    }
    for (child, is_dir) in children {
        if is_dir {
            remove_tree_at(fd.as_fd(), &child)?;
        } else {
            unlinkat(&fd, &child[..], AtFlags::empty())?;
        }
    }
    unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Creates a regular file `name` in `dir` for writing, with permission
/// bits `perms` (less the umask); it must not exist (O_EXCL also refuses to
/// follow a symlink there).
pub fn create_file(dir: impl AsFd, name: &[u8], perms: u32) -> io::Result<File> {
    let fd = openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_bits_retain(perms & 0o777),
    )?;
    Ok(File::from(fd))
}

/// Opens the directory `name` in `dir`, refusing a symlink.
pub fn open_child_dir(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        DIR_FLAGS | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(comps: Option<Components<'_>>) -> Option<Vec<String>> {
        comps.map(|c| {
            c.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        })
    }

    #[test]
    fn clean_paths() {
        assert_eq!(
            s(clean(b"./etc/passwd")),
            Some(vec!["etc".into(), "passwd".into()])
        );
        assert_eq!(s(clean(b"/abs//x/")), Some(vec!["abs".into(), "x".into()]));
        assert_eq!(s(clean(b"a/../b")), Some(vec!["b".into()]));
        assert_eq!(s(clean(b"./")), Some(vec![]));
        assert_eq!(s(clean(b"")), Some(vec![]));
        assert_eq!(s(clean(b"../x")), None);
        assert_eq!(s(clean(b"a/../../x")), None);
        assert_eq!(s(clean(b"/../x")), None);
    }
}
