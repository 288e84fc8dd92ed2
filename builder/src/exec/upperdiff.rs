//! The layer a RUN made, read from its overlay upper directory only (so the
//! cost grows with what changed, not with the image): overlay whiteouts (char
//! 0:0 devices) become OCI `.wh.<name>` entries, opaque directories
//! (`user.overlay.opaque`) get a `.wh..wh..opq` marker, overlay xattrs are
//! stripped and hardlinks kept.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::fswalk::{entry_for, join, keep_xattr, sorted_names, Links};
use super::tarball::{Body, Entry};

/// Entries of the upper dir in tar order. `skip`: paths (relative, no leading
/// `/`) the runtime created as mount points, left out when they are empty.
pub fn upper_entries(upper: &Path, skip: &BTreeSet<String>) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut links = Links::default();
    walk(upper, "", skip, &mut links, &mut out)?;
    Ok(out)
}

fn walk(
    dir: &Path,
    rel: &str,
    skip: &BTreeSet<String>,
    links: &mut Links,
    out: &mut Vec<Entry>,
) -> io::Result<()> {
    for name in sorted_names(dir)? {
        let name_s = name.to_string_lossy().to_string();
        let src = dir.join(&name);
        let path = join(rel, &name_s);
        let meta = fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            out.push(Entry::whiteout(&join(rel, &format!(".wh.{name_s}")), 0));
            continue;
        }
        if skip.contains(&path) && is_empty_stub(&src, &meta)? {
            continue;
        }
        let Some(entry) = entry_for(&src, &meta, &path, Some(links))? else {
            continue;
        };
        out.push(entry);
        if ft.is_dir() {
            if opaque(&src) {
                out.push(Entry::whiteout(&join(&path, ".wh..wh..opq"), 0));
            }
            walk(&src, &path, skip, links, out)?;
        }
    }
    Ok(())
}

/// What the layer store records about a layer with these entries (as the
/// unpacker would count them).
pub struct TreeStats {
    pub content_size: u64,
    pub highest_uid: u32,
    pub highest_gid: u32,
    pub uses_overflow_id: bool,
}

const OVERFLOW_ID: u32 = 65534;

pub fn tree_stats(entries: &[Entry]) -> TreeStats {
    let mut t = TreeStats {
        content_size: 0,
        highest_uid: 0,
        highest_gid: 0,
        uses_overflow_id: false,
    };
    for e in entries {
        if matches!(e.body, Body::File(_) | Body::Bytes(_)) {
            t.content_size += e.size;
        }
        for (id, highest) in [(e.uid, &mut t.highest_uid), (e.gid, &mut t.highest_gid)] {
            if id == OVERFLOW_ID {
                t.uses_overflow_id = true;
            } else if id > *highest {
                *highest = id;
            }
        }
    }
    t
}

/// Turns a RUN's upper directory (the container gone, its stubs removed)
/// into the tree its layer unpacks to, in place: whiteouts (char 0:0) and
/// `user.overlay.opaque` stay, as the layer store keeps them; other overlay
/// bookkeeping xattrs and what a layer does not carry (sockets, device
/// nodes) go, and the root keeps no xattrs (the tar has no entry for it).
/// The runtime's stubs must be removed first.
pub fn make_layer_tree(upper: &Path) -> io::Result<()> {
    // The tar has no entry for the root, so none of its xattrs either.
    for (name, _) in super::fswalk::xattrs(upper)? {
        remove_xattr(upper, &name)?;
    }
    tidy(upper)
}

fn remove_xattr(path: &Path, name: &str) -> io::Result<()> {
    match rustix::fs::lremovexattr(path, name) {
        // A name the kernel lists but will not let us remove (trusted.*,
        // security.selinux) is one a user namespace cannot act on either.
        Ok(()) | Err(rustix::io::Errno::PERM | rustix::io::Errno::NODATA) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn tidy(dir: &Path) -> io::Result<()> {
    let before = fs::symlink_metadata(dir)?;
    let mut removed = false;
    for name in sorted_names(dir)? {
        let src = dir.join(&name);
        let meta = fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            continue;
        }
        if ft.is_socket() || ft.is_char_device() || ft.is_block_device() {
            fs::remove_file(&src)?;
            removed = true;
            continue;
        }
        if ft.is_symlink() {
            continue;
        }
        strip_xattrs(&src, ft.is_dir())?;
        if ft.is_dir() {
            tidy(&src)?;
        }
    }
    if removed {
        // The layer's tar has the directory's time from before.
        let time = |secs: i64, nanos: i64| rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: nanos as _,
        };
        let times = rustix::fs::Timestamps {
            last_access: time(before.atime(), before.atime_nsec()),
            last_modification: time(before.mtime(), before.mtime_nsec()),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            dir,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

fn strip_xattrs(path: &Path, is_dir: bool) -> io::Result<()> {
    for (name, _) in super::fswalk::xattrs(path)? {
        let opaque = is_dir && name == "user.overlay.opaque";
        if !opaque && !keep_xattr(&name) {
            remove_xattr(path, &name)?;
        }
    }
    Ok(())
}

fn opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 8];
    for name in ["user.overlay.opaque", "trusted.overlay.opaque"] {
        if let Ok(n) = rustix::fs::lgetxattr(dir, name, &mut buf[..]) {
            if buf[..n] == *b"y" {
                return true;
            }
        }
    }
    false
}

fn is_empty_stub(path: &Path, meta: &fs::Metadata) -> io::Result<bool> {
    if meta.is_dir() {
        Ok(fs::read_dir(path)?.next().is_none())
    } else {
        Ok(meta.is_file() && meta.len() == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::tarball::Body;

    #[test]
    fn layer_tree_keeps_whiteout_markers_and_drops_sockets() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        fs::create_dir_all(d.path().join("a"))?;
        fs::write(d.path().join("a/f"), b"x")?;
        rustix::fs::lsetxattr(
            d.path().join("a"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )?;
        rustix::fs::lsetxattr(
            d.path().join("a/f"),
            "user.overlay.impure",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )?;
        rustix::fs::lsetxattr(
            d.path().join("a/f"),
            "user.keep",
            b"v",
            rustix::fs::XattrFlags::empty(),
        )?;
        rustix::fs::lsetxattr(
            d.path(),
            "user.on-root",
            b"v",
            rustix::fs::XattrFlags::empty(),
        )?;
        let sock = d.path().join("a/sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock)?;
        let entries = upper_entries(d.path(), &BTreeSet::new())?;
        let stats = tree_stats(&entries);
        assert_eq!(stats.content_size, 1);
        make_layer_tree(d.path())?;
        assert!(opaque(&d.path().join("a")));
        let kept: Vec<String> = crate::exec::fswalk::xattrs(&d.path().join("a/f"))?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, ["user.keep"]);
        assert!(!sock.exists());
        assert!(crate::exec::fswalk::xattrs(d.path())?.is_empty());
        // The tree now reads back as the same entries.
        assert_eq!(upper_entries(d.path(), &BTreeSet::new())?, entries);
        Ok(())
    }

    #[test]
    fn hardlinks_and_stubs() -> io::Result<()> {
        let d = tempfile::tempdir()?;
        fs::create_dir_all(d.path().join("a/b"))?;
        fs::write(d.path().join("a/one"), b"x")?;
        fs::hard_link(d.path().join("a/one"), d.path().join("a/two"))?;
        fs::create_dir(d.path().join("proc"))?;
        let skip: BTreeSet<String> = ["proc".to_string()].into();
        let entries = upper_entries(d.path(), &skip)?;
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a/b", "a/one", "a/two"]);
        assert_eq!(entries[3].body, Body::Link("a/one".into()));
        Ok(())
    }
}
