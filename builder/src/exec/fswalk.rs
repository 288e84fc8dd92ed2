//! Reading files on disk as tar entries: metadata, xattrs (overlay's own
//! stripped), hardlinks detected by (device, inode), sorted walks.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::tarball::{Body, Entry};

/// xattrs a layer carries: not overlay's bookkeeping, not `trusted.*` (which a
/// user namespace cannot set anyway).
pub fn keep_xattr(name: &str) -> bool {
    !(name.starts_with("user.overlay.")
        || name.starts_with("trusted.")
        || name.starts_with("user.fuseoverlayfs.")
        || name == "security.selinux")
}

pub fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(0) => return Ok(Vec::new()),
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = vec![0u8; size];
    let len = rustix::fs::llistxattr(path, &mut names[..])?;
    names.truncate(len);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let size = rustix::fs::lgetxattr_query(path, name)?;
        let mut value = vec![0u8; size];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(len);
        out.push((name.to_string_lossy().to_string(), value));
    }
    out.sort();
    Ok(out)
}

/// Hardlink detection across one layer.
#[derive(Default)]
pub struct Links {
    seen: HashMap<(u64, u64), String>,
}

impl Links {
    /// The earlier path of this inode, or `None` (and remember this one).
    pub fn check(&mut self, meta: &fs::Metadata, path: &str) -> Option<String> {
        if meta.is_dir() || meta.nlink() < 2 {
            return None;
        }
        let key = (meta.dev(), meta.ino());
        match self.seen.get(&key) {
            Some(first) => Some(first.clone()),
            None => {
                self.seen.insert(key, path.to_string());
                None
            }
        }
    }
}

/// What a file on disk is, as a tar entry at `path` (no whiteout handling).
/// `None` for sockets and device nodes, which layers do not carry.
pub fn entry_for(
    src: &Path,
    meta: &fs::Metadata,
    path: &str,
    links: Option<&mut Links>,
) -> io::Result<Option<Entry>> {
    let ft = meta.file_type();
    let mut xattrs: Vec<(String, Vec<u8>)> = if ft.is_symlink() {
        Vec::new()
    } else {
        xattrs(src)?
            .into_iter()
            .filter(|(k, _)| keep_xattr(k))
            .collect()
    };
    let body = if ft.is_dir() {
        Body::Dir
    } else if ft.is_symlink() {
        Body::Symlink(fs::read_link(src)?.to_string_lossy().to_string())
    } else if ft.is_file() {
        match links.and_then(|l| l.check(meta, path)) {
            Some(first) => {
                xattrs.clear();
                Body::Link(first)
            }
            None => Body::File(src.to_path_buf()),
        }
    } else if ft.is_fifo() {
        Body::Fifo
    } else {
        return Ok(None);
    };
    let size = if matches!(body, Body::File(_)) {
        meta.len()
    } else {
        0
    };
    Ok(Some(Entry {
        path: path.to_string(),
        body,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        size,
        xattrs,
    }))
}

/// Names in `dir`, sorted bytewise (tar order is then stable).
pub fn sorted_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// `a/b` joined without doubling slashes; `""` is the root.
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
