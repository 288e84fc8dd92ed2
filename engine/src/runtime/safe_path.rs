//! Resolving mount targets inside the container's rootfs without letting the
//! image's symlinks point them outside it.
//!
//! Mounts are set up before the pivot into the rootfs, so a naive
//! `rootfs.join("/proc")` would follow an image's `/proc -> /etc` symlink on
//! the engine's side. Every target is instead opened with openat2
//! `RESOLVE_IN_ROOT` (symlinks resolve as if the rootfs were `/`), missing
//! components are created the same way, and the mount goes to the opened fd
//! through `/proc/self/fd/N`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

use super::error::{Context, SetupError};

/// What to create when the target is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// An O_PATH fd of `path` (absolute, container view) inside `root`, created
/// as `kind` (with missing parents as directories) if it does not exist.
pub fn open_in_root(root: &OwnedFd, path: &Path, kind: Kind) -> Result<OwnedFd, SetupError> {
    open_or_create(root, path, kind, 0)
}

/// Symlinks followed while creating one target before giving up (ELOOP).
const MAX_LINKS: u32 = 40;

fn open_or_create(
    root: &OwnedFd,
    path: &Path,
    kind: Kind,
    links: u32,
) -> Result<OwnedFd, SetupError> {
    if links > MAX_LINKS {
        return Err(Errno::ELOOP).ctx(|| format!("resolving {} in the rootfs", path.display()));
    }
    // Lexical normalisation; `..` never climbs above the root.
    let mut comps: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => comps.push(n),
            Component::ParentDir => {
                comps.pop();
            }
            _ => {}
        }
    }
    let path: PathBuf = Path::new("/").join(comps.iter().collect::<PathBuf>());
    let path = path.as_path();
    if comps.is_empty() {
        return resolve(root, Path::new(".")).ctx(|| "opening the rootfs".to_string());
    }
    if let Ok(fd) = resolve(root, path) {
        return Ok(fd);
    }
    let mut prefix = PathBuf::new();
    for (i, name) in comps.iter().enumerate() {
        let parent = prefix.clone();
        prefix.push(name);
        match resolve(root, &prefix) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).ctx(|| format!("resolving {} in the rootfs", path.display())),
        }
        let parent_fd = if parent.as_os_str().is_empty() {
            resolve(root, Path::new("."))
        } else {
            resolve(root, &parent)
        }
        .ctx(|| format!("resolving {} in the rootfs", parent.display()))?;
        let last = i + 1 == comps.len();
        let created = if last && kind == Kind::File {
            openat(
                parent_fd.as_fd(),
                *name,
                OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            mkdirat(parent_fd.as_fd(), *name, Mode::from_bits_truncate(0o755))
        };
        match created {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                // A dangling symlink: create what it points to, inside the
                // root, and continue from there.
                let link = readlinkat(parent_fd.as_fd(), *name)
                    .ctx(|| format!("reading the symlink {}", prefix.display()))?;
                let mut next = Path::new("/").join(&parent).join(link);
                next.extend(&comps[i + 1..]);
                return open_or_create(root, &next, kind, links + 1);
            }
            Err(e) => return Err(e).ctx(|| format!("creating {} in the rootfs", prefix.display())),
        }
    }
    resolve(root, path).ctx(|| format!("resolving {} in the rootfs", path.display()))
}

/// The path through which the kernel reaches an fd's file; used as a mount
/// target so the mount lands exactly on what was resolved.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn resolve(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2_in_root(root.as_fd(), rel)
}

/// How often a lookup raced by a mount or rename elsewhere is tried again.
const RACED_TRIES: usize = 64;

/// An O_PATH fd of `rel` under `dir`, resolved as if `dir` were `/`
/// (RESOLVE_IN_ROOT). The kernel answers EAGAIN when a lookup that went
/// through `..` saw a mount or a rename anywhere in the system meanwhile,
/// for the caller to retry (openat2(2)); with containers starting
/// alongside (mounting their rootfs, tearing namespaces down) that happens,
/// so it is retried a bounded number of times.
pub fn openat2_in_root(dir: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let mut tries = 0;
    loop {
        match openat2(
            dir,
            rel,
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT),
        ) {
            Err(Errno::EAGAIN) if tries < RACED_TRIES => tries += 1,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use nix::fcntl::open;

    use super::*;

    fn open_dir(p: &Path) -> nix::Result<OwnedFd> {
        open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    }

    #[test]
    fn creates_missing_targets_inside_the_root() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = open_dir(dir.path())?;
        open_in_root(&root, Path::new("/a/b/c"), Kind::Dir)?;
        assert!(dir.path().join("a/b/c").is_dir());
        open_in_root(&root, Path::new("/etc/hostname"), Kind::File)?;
        assert!(dir.path().join("etc/hostname").is_file());
        Ok(())
    }

    #[test]
    fn symlinks_resolve_inside_the_root_not_the_host() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        // An absolute symlink that would escape if followed on the host...
        symlink(outside.path(), dir.path().join("proc"))?;
        let root = open_dir(dir.path())?;
        open_in_root(&root, Path::new("/proc"), Kind::Dir)?;
        // ...is created as a directory inside the root instead.
        let escaped = outside.path().strip_prefix("/")?;
        assert!(dir.path().join(escaped).is_dir());
        assert_eq!(std::fs::read_dir(outside.path())?.count(), 0);
        // A relative dangling symlink is created where it points, too.
        symlink("../var/run", dir.path().join("etc/run")).or_else(|_| {
            std::fs::create_dir(dir.path().join("etc"))
                .and_then(|_| symlink("../var/run", dir.path().join("etc/run")))
        })?;
        open_in_root(&root, Path::new("/etc/run/x"), Kind::File)?;
        assert!(dir.path().join("var/run/x").is_file());
        // And a dotdot walk cannot leave the root either.
        open_in_root(&root, Path::new("/../../x"), Kind::Dir)?;
        assert!(dir.path().join("x").is_dir());
        Ok(())
    }
}
