//! The torture image: three layers of the things an unpacker gets wrong.
//!
//! Layer 1 lays out ownership, special modes, xattrs (including a file
//! capability), hard and symbolic links, long names, a sparse file and odd
//! mtimes. Layer 2 deletes with whiteouts and swaps files and directories.
//! Layer 3 makes a directory opaque.

use super::entry::{LayerEntry, MTIME};
use super::layout::{Recipe, RecipeLayer};

/// Apparent size of `sparse/big`.
pub const SPARSE_SIZE: u64 = 1 << 30;
/// NAME_MAX: the longest file name Linux accepts.
pub const LONG_NAME_LEN: usize = 255;
/// Length of the long path; over ustar's 100-byte name field, so it must be
/// split into prefix and name.
pub const LONG_PATH_LEN: usize = 200;

/// The torture image recipe.
pub fn recipe() -> Recipe {
    Recipe {
        tag: super::TAG.to_owned(),
        layers: vec![
            RecipeLayer {
                created_by:
                    "hutch-tests torture layer 1: owners, modes, xattrs, links, long names, sparse"
                        .to_owned(),
                entries: layer1(),
            },
            RecipeLayer {
                created_by: "hutch-tests torture layer 2: whiteouts, file and directory swaps"
                    .to_owned(),
                entries: layer2(),
            },
            RecipeLayer {
                created_by: "hutch-tests torture layer 3: opaque directory".to_owned(),
                entries: layer3(),
            },
        ],
        cmd: None,
        volumes: Vec::new(),
    }
}

fn layer1() -> Vec<LayerEntry> {
    let original = LayerEntry::file("links/a/original", 0o640, "the original\n").owner(1000, 1000);
    let long_name = LayerEntry::file(format!("names/{}", long_name()), 0o644, "a 255-byte name\n");
    let mut entries = vec![
        LayerEntry::file("empty", 0o644, Vec::new()),
        LayerEntry::dir("big", 0o755),
        LayerEntry::file("big/blob", 0o644, pseudo_random(256 * 1024)),
        // Ownership: two non-root users, and a file of one user in the other's group.
        LayerEntry::dir("owners", 0o755),
        LayerEntry::file("owners/user1000", 0o644, "owned by 1000\n").owner(1000, 1000),
        LayerEntry::file("owners/nobody", 0o600, "owned by nobody\n").owner(65534, 65534),
        LayerEntry::file("owners/mixed", 0o640, "1000 in group 65534\n").owner(1000, 65534),
        LayerEntry::dir("owners/dir1000", 0o750).owner(1000, 1000),
        LayerEntry::dir("owners/dir65534", 0o700).owner(65534, 65534),
        LayerEntry::file("owners/dir65534/inside", 0o600, "inside nobody's dir\n")
            .owner(65534, 65534),
        // Special modes. `locked` is read-only, yet has to receive `inside`.
        LayerEntry::dir("modes", 0o755),
        LayerEntry::file("modes/setuid", 0o4755, "setuid root\n"),
        LayerEntry::file("modes/setgid", 0o2755, "setgid 1000\n").owner(0, 1000),
        LayerEntry::file("modes/setuid-setgid", 0o6755, "both\n").owner(1000, 1000),
        LayerEntry::dir("modes/sticky", 0o1777),
        LayerEntry::file("modes/sticky/file", 0o666, "in a sticky dir\n").owner(1000, 1000),
        LayerEntry::file("modes/readonly", 0o444, "read only\n"),
        LayerEntry::file("modes/none", 0o000, "no permissions\n"),
        LayerEntry::dir("modes/locked", 0o500),
        LayerEntry::file("modes/locked/inside", 0o400, "in a read-only dir\n"),
        // Extended attributes: a file capability and user xattrs.
        LayerEntry::dir("xattrs", 0o755).xattr("user.torture.dir", "on a directory"),
        LayerEntry::file("xattrs/ping", 0o755, "cap_net_raw+ep\n")
            .xattr("security.capability", capability_net_raw_ep()),
        LayerEntry::file("xattrs/user", 0o644, "user xattrs\n")
            .xattr("user.torture", "hello")
            .xattr("user.binary", vec![0u8, 1, 2, 255]),
        // Links: hard links within and across directories, symlinks of every shape.
        LayerEntry::dir("links", 0o755),
        LayerEntry::dir("links/a", 0o755),
        LayerEntry::dir("links/b", 0o755),
        LayerEntry::hardlink("links/a/same-dir-hardlink", &original),
        LayerEntry::hardlink("links/b/hardlink", &original),
        original,
        LayerEntry::symlink("links/abs", "/links/a/original"),
        LayerEntry::symlink("links/b/rel", "../a/original"),
        LayerEntry::symlink("links/dirlink", "a"),
        LayerEntry::symlink("links/dangling", "/does/not/exist"),
        LayerEntry::symlink("links/escape", "../../../../../../etc/passwd"),
        LayerEntry::symlink("links/owned", "a/original").owner(1000, 1000),
        // Long names: a 255-byte name (GNU long name record), a hard link
        // to it (GNU long link record), a 200-byte path (ustar prefix).
        LayerEntry::dir("names", 0o755),
        LayerEntry::hardlink("names/z-hardlink-to-long-name", &long_name),
        long_name,
        LayerEntry::dir("sparse", 0o755),
        LayerEntry::sparse("sparse/big", 0o644, SPARSE_SIZE, sparse_chunks()),
        // Timestamps at the epoch and past 2038.
        LayerEntry::dir("times", 0o755),
        LayerEntry::file("times/epoch", 0o644, "1970\n").mtime(0),
        LayerEntry::file("times/y2100", 0o644, "2100\n").mtime(4_102_444_800),
        // What layer 2 deletes or replaces.
        LayerEntry::dir("doomed", 0o755),
        LayerEntry::file("doomed/file", 0o644, "deleted in layer 2\n"),
        LayerEntry::dir("doomed/sub", 0o755).owner(1000, 1000),
        LayerEntry::file("doomed/sub/deeper", 0o644, "deleted in layer 2\n").owner(1000, 1000),
        LayerEntry::file("gone-file", 0o644, "deleted in layer 2\n"),
        LayerEntry::file(
            "replaced",
            0o644,
            "a file in layer 1, a directory in layer 2\n",
        ),
        LayerEntry::dir("dir-to-file", 0o755),
        LayerEntry::file("dir-to-file/child", 0o644, "vanishes with its directory\n"),
        // What layer 3 hides behind an opaque marker.
        LayerEntry::dir("opaque", 0o755),
        LayerEntry::file("opaque/old", 0o644, "hidden by layer 3\n"),
        LayerEntry::dir("opaque/olddir", 0o755),
        LayerEntry::file("opaque/olddir/x", 0o644, "hidden by layer 3\n"),
        LayerEntry::file("opaque/kept-name", 0o644, "layer 1 version\n"),
    ];
    entries.extend(long_path_entries());
    entries
}

fn layer2() -> Vec<LayerEntry> {
    vec![
        LayerEntry::whiteout("", "doomed"),
        LayerEntry::whiteout("", "gone-file"),
        LayerEntry::dir("links", 0o755),
        LayerEntry::whiteout("links", "dangling"),
        // A file becomes a directory, a directory becomes a file.
        LayerEntry::dir("replaced", 0o755),
        LayerEntry::file("replaced/inside", 0o644, "a directory replaced a file\n"),
        LayerEntry::file("dir-to-file", 0o644, "a file replaced a directory\n"),
        // A file rewritten with new content and owner.
        LayerEntry::dir("owners", 0o755),
        LayerEntry::file("owners/user1000", 0o600, "rewritten in layer 2\n").owner(65534, 65534),
    ]
}

fn layer3() -> Vec<LayerEntry> {
    vec![
        LayerEntry::dir("opaque", 0o750).owner(1000, 1000),
        LayerEntry::opaque("opaque"),
        LayerEntry::file("opaque/new", 0o644, "added with the opaque marker\n"),
        LayerEntry::file("opaque/kept-name", 0o644, "layer 3 version\n"),
    ]
}

/// `vfs_cap_data` revision 2 granting CAP_NET_RAW permitted and effective
/// (`setcap cap_net_raw+ep`): magic_etc, then permitted/inheritable pairs.
pub fn capability_net_raw_ep() -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;
    const CAP_NET_RAW: u32 = 13;
    let words = [
        VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
        1 << CAP_NET_RAW,
        0,
        0,
        0,
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A 255-byte file name.
fn long_name() -> String {
    fill("name-of-255-bytes-", LONG_NAME_LEN)
}

/// `paths/<60>/<60>/<72>`: exactly 200 bytes, with its parent directories.
fn long_path_entries() -> Vec<LayerEntry> {
    let d1 = format!("paths/{}", fill("first-level-directory-", 60));
    let d2 = format!("{d1}/{}", fill("second-level-directory-", 60));
    let file = format!(
        "{d2}/{}",
        fill("file-at-200-", LONG_PATH_LEN - d2.len() - 1)
    );
    vec![
        LayerEntry::dir("paths", 0o755),
        LayerEntry::dir(d1, 0o755).ustar(),
        LayerEntry::dir(d2, 0o755).ustar(),
        LayerEntry::file(file, 0o644, "at the end of a 200-byte path\n").ustar(),
    ]
}

/// The data extents of `sparse/big`: six, so two spill into a GNU sparse
/// extension block; the last one ends the file, so there is no trailing hole.
fn sparse_chunks() -> Vec<(u64, Vec<u8>)> {
    const MIB: u64 = 1 << 20;
    [
        (0, 4096),
        (4 * MIB, 4096),
        (256 * MIB, 512),
        (512 * MIB, 4096),
        (768 * MIB, 1024),
        (SPARSE_SIZE - 4096, 4096),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (offset, len))| {
        let line = format!("sparse extent {i} at offset {offset}\n");
        let data = line.bytes().cycle().take(len).collect();
        (offset, data)
    })
    .collect()
}

/// `prefix` padded with digits to exactly `len` bytes.
fn fill(prefix: &str, len: usize) -> String {
    prefix
        .chars()
        .chain("0123456789".chars().cycle())
        .take(len)
        .collect()
}

/// Incompressible, reproducible bytes (xorshift64), so `big/blob` spans
/// many gzip blocks.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = MTIME;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
