//! The UIDs and GIDs an image uses, which size a private-mode container's
//! ID range: every file owner in its unpacked layers, and every ID named in
//! its /etc/passwd and /etc/group (the topmost layer that has them wins, as
//! in the container's merged view).

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::idmap::{IdMapError, PrivateRequest};

/// IDs found in unpacked layers (topmost first).
pub fn scan_layers(layers: &[PathBuf]) -> io::Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    for layer in layers {
        walk(layer, &mut ids)?;
    }
    ids.extend(db_ids(layers));
    Ok(ids)
}

/// The private-mode request from what the image store recorded when it
/// unpacked the layers (their highest file owner, not counting 65534, and
/// whether 65534 owns anything), plus the IDs in the image's /etc/passwd
/// and /etc/group: no walk over the layers.
pub fn private_request_from_meta(
    highest_uid: u32,
    highest_gid: u32,
    uses_overflow_id: bool,
    layers: &[PathBuf],
) -> Result<PrivateRequest, ImageIdsError> {
    let mut ids = db_ids(layers);
    ids.extend([0, highest_uid, highest_gid]);
    if uses_overflow_id {
        ids.insert(65534);
    }
    PrivateRequest::from_image_ids(ids).map_err(ImageIdsError::Ids)
}

/// The IDs in the topmost /etc/passwd and /etc/group of `layers` (topmost
/// first).
fn db_ids(layers: &[PathBuf]) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for file in ["etc/passwd", "etc/group"] {
        let Some(text) = layers.iter().find_map(|l| read_db(l, file)) else {
            continue;
        };
        ids.extend(ids_in_db(&text));
    }
    ids
}

/// Reads `file` (`etc/passwd`) of a layer if it is a regular file reached
/// through no symlink (a layer's symlinks point into the container, not the
/// engine), up to 16 MiB.
fn read_db(layer: &Path, file: &str) -> Option<String> {
    use std::io::Read;
    let mut path = layer.to_path_buf();
    for part in Path::new(file).components() {
        path.push(part);
        let md = std::fs::symlink_metadata(&path).ok()?;
        if md.file_type().is_symlink() {
            return None;
        }
    }
    if !std::fs::symlink_metadata(&path).ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(&path)
        .ok()?
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The private-mode request for an image's layers.
pub fn private_request(layers: &[PathBuf]) -> Result<PrivateRequest, ImageIdsError> {
    let ids = scan_layers(layers).map_err(ImageIdsError::Scan)?;
    PrivateRequest::from_image_ids(ids).map_err(ImageIdsError::Ids)
}

#[derive(Debug, thiserror::Error)]
pub enum ImageIdsError {
    #[error("reading the image's layers for their IDs: {0}")]
    Scan(#[source] io::Error),
    #[error(transparent)]
    Ids(IdMapError),
}

fn walk(dir: &Path, ids: &mut BTreeSet<u32>) -> io::Result<()> {
    let md = std::fs::symlink_metadata(dir)?;
    ids.insert(md.uid());
    ids.insert(md.gid());
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let md = entry.metadata()?;
        if md.is_dir() {
            walk(&entry.path(), ids)?;
        } else {
            ids.insert(md.uid());
            ids.insert(md.gid());
        }
    }
    Ok(())
}

/// The numeric IDs of passwd (fields 3 and 4) and group (field 3) lines.
fn ids_in_db(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split(':').skip(2).take(2))
        .filter_map(|f| f.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_and_group_ids_are_read() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
        let group = "root:x:0:\nstaff:x:2000:app\n# 7:7\n";
        let ids: Vec<u32> = ids_in_db(passwd).chain(ids_in_db(group)).collect();
        assert_eq!(ids, vec![0, 0, 1000, 1001, 0, 2000]);
    }

    #[test]
    fn layers_are_scanned_for_owners_and_the_topmost_passwd(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let (top, base) = (dir.path().join("top"), dir.path().join("base"));
        std::fs::create_dir_all(top.join("etc"))?;
        std::fs::create_dir_all(base.join("etc/deep"))?;
        std::fs::write(top.join("etc/passwd"), "u:x:1500:1500::/:/bin/sh\n")?;
        std::fs::write(base.join("etc/passwd"), "v:x:3000:3000::/:/bin/sh\n")?;
        std::fs::write(base.join("etc/group"), "nogroup:x:65534:\n")?;
        std::fs::write(base.join("etc/deep/f"), "x")?;
        let ids = scan_layers(&[top.clone(), base.clone()])?;
        assert!(ids.contains(&1500) && ids.contains(&65534));
        assert!(
            !ids.contains(&3000),
            "a lower passwd is hidden by the top one"
        );
        let req = private_request(&[top, base])?;
        // The test runs as some user; its IDs are in the block or sparse.
        assert!(req.block >= 2048);
        assert!(req.sparse.contains(&65534));
        Ok(())
    }
}
