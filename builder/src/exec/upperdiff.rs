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

use super::fswalk::{entry_for, join, sorted_names, Links};
use super::tarball::Entry;

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
