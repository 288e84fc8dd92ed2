//! The tree an unpacker must produce from a recipe's layers, computed by
//! replaying the layer entries with OCI layer semantics: whiteouts and
//! opaque markers delete what lower layers put there, an entry replaces
//! whatever was at its path (a non-directory replacing a directory takes
//! the whole subtree with it), a directory over a directory only changes
//! its metadata.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};

use super::entry::{Kind, LayerEntry, OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::layout::sha256_digest;

/// What kind of file an unpacked entry is. Hard links are regular files
/// (see [`ExpectedEntry::hardlink_to`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedKind {
    Dir,
    File,
    Symlink,
}

/// One file of the unpacked image, by its path relative to the rootfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedEntry {
    /// Relative path, no leading or trailing slash.
    pub path: String,
    pub kind: ExpectedKind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky (07777). Symlinks: 0777.
    pub mode: u32,
    /// Modification time in seconds since the epoch.
    pub mtime: u64,
    /// Apparent size of regular files; 0 for directories and symlinks.
    pub size: u64,
    /// Symlink target, verbatim.
    pub link_target: Option<String>,
    /// For a file written as a hard link: the path it shares its inode with.
    pub hardlink_to: Option<String>,
    /// Extended attributes by full name (`security.capability`, `user.*`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// `sha256:<hex>` of a regular file's content; `None` for sparse files,
    /// whose content is described by `sparse_extents` instead.
    pub content_sha256: Option<String>,
    /// A sparse file's data extents as (offset, bytes); the rest reads as
    /// zeros. Empty for everything else.
    pub sparse_extents: Vec<(u64, Vec<u8>)>,
    /// Index of the layer that last wrote this entry.
    pub layer: usize,
}

/// The final tree after applying `layers` in order, and the paths that lower
/// layers created but upper ones removed (by whiteout, opaque marker or
/// replacement of a directory by a non-directory).
pub struct Replayed {
    pub tree: BTreeMap<String, ExpectedEntry>,
    pub absent: BTreeSet<String>,
}

/// Replays `layers` (each a list of entries) into the final tree.
pub fn replay(layers: &[&[LayerEntry]]) -> anyhow::Result<Replayed> {
    let mut tree: BTreeMap<String, ExpectedEntry> = BTreeMap::new();
    let mut removed = BTreeSet::new();
    for (index, layer) in layers.iter().enumerate() {
        // Deletions apply to the layers below only, so they go first.
        for entry in layer.iter() {
            let (dir, name) = split(&entry.path);
            if name == OPAQUE_MARKER {
                let children: Vec<String> = descendants(&tree, dir).collect();
                for child in children {
                    tree.remove(&child);
                    removed.insert(child);
                }
            } else if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                let target = if dir.is_empty() {
                    target.to_owned()
                } else {
                    format!("{dir}/{target}")
                };
                if !tree.contains_key(&target) {
                    bail!("layer {index}: whiteout {} deletes nothing", entry.path);
                }
                remove_subtree(&mut tree, &mut removed, &target);
            }
        }
        let mut sorted: Vec<&LayerEntry> = layer.iter().filter(|e| !is_marker(&e.path)).collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for entry in sorted {
            let (dir, _) = split(&entry.path);
            if !dir.is_empty() && tree.get(dir).map(|p| p.kind) != Some(ExpectedKind::Dir) {
                bail!("layer {index}: {} has no parent directory", entry.path);
            }
            let replaces_dir = tree.get(&entry.path).map(|e| e.kind) == Some(ExpectedKind::Dir);
            if replaces_dir && entry.kind != Kind::Dir {
                remove_subtree(&mut tree, &mut removed, &entry.path);
            }
            let expected = expect(entry, index, &tree)?;
            tree.insert(entry.path.clone(), expected);
        }
    }
    let absent = removed
        .into_iter()
        .filter(|path| !tree.contains_key(path))
        .collect();
    Ok(Replayed { tree, absent })
}

fn expect(
    entry: &LayerEntry,
    layer: usize,
    tree: &BTreeMap<String, ExpectedEntry>,
) -> anyhow::Result<ExpectedEntry> {
    let mut expected = ExpectedEntry {
        path: entry.path.clone(),
        kind: ExpectedKind::File,
        uid: entry.uid,
        gid: entry.gid,
        mode: entry.mode,
        mtime: entry.mtime,
        size: 0,
        link_target: None,
        hardlink_to: None,
        xattrs: entry.xattrs.clone(),
        content_sha256: None,
        sparse_extents: Vec::new(),
        layer,
    };
    match &entry.kind {
        Kind::Dir => expected.kind = ExpectedKind::Dir,
        Kind::File(data) => {
            expected.size = data.len() as u64;
            expected.content_sha256 = Some(sha256_digest(data));
        }
        Kind::Sparse { size, chunks } => {
            expected.size = *size;
            expected.sparse_extents = chunks.clone();
        }
        Kind::Symlink(target) => {
            expected.kind = ExpectedKind::Symlink;
            expected.link_target = Some(target.clone());
        }
        Kind::Hardlink(target) => {
            let original = tree
                .get(target)
                .with_context(|| format!("hard link {} to missing {target}", entry.path))?;
            expected = ExpectedEntry {
                path: entry.path.clone(),
                hardlink_to: Some(target.clone()),
                layer,
                ..original.clone()
            };
        }
    }
    Ok(expected)
}

fn is_marker(path: &str) -> bool {
    split(path).1.starts_with(WHITEOUT_PREFIX)
}

/// (parent directory, file name); the parent of a top-level name is "".
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn descendants<'a>(
    tree: &'a BTreeMap<String, ExpectedEntry>,
    dir: &str,
) -> impl Iterator<Item = String> + 'a {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    tree.keys()
        .filter(move |path| path.starts_with(&prefix))
        .cloned()
}

fn remove_subtree(
    tree: &mut BTreeMap<String, ExpectedEntry>,
    removed: &mut BTreeSet<String>,
    path: &str,
) {
    let doomed: Vec<String> = descendants(tree, path)
        .chain(std::iter::once(path.to_owned()))
        .collect();
    for path in doomed {
        if tree.remove(&path).is_some() {
            removed.insert(path);
        }
    }
}
