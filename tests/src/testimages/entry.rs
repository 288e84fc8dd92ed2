//! The declarative description of one tar entry in a test image layer.
//!
//! Recipes (busybox, torture) list `LayerEntry` values; `tarball` turns them
//! into bytes and `expected` replays them with overlay semantics. Keeping one
//! description for both means the expected tree cannot drift from the layers.

use std::collections::BTreeMap;

/// The fixed modification time of every entry unless a recipe says otherwise
/// (2023-11-14T22:13:20Z). Fixed so layer digests are stable across builds.
pub const MTIME: u64 = 1_700_000_000;

/// What a tar entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    /// A GNU sparse file: `size` is the apparent size, `chunks` the data
    /// extents as (offset, bytes); everything else is a hole.
    Sparse {
        size: u64,
        chunks: Vec<(u64, Vec<u8>)>,
    },
    Symlink(String),
    /// A hard link to an earlier entry of the same layer (its path).
    Hardlink(String),
}

/// Which tar header a recipe wants for an entry. GNU headers spill long
/// names into `././@LongLink` entries; ustar headers split them into
/// prefix + name, a second encoding an unpacker has to understand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderFormat {
    #[default]
    Gnu,
    Ustar,
}

/// One entry of a layer, by its path relative to the image root (no leading
/// or trailing slash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: String,
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid, setgid and sticky (07777).
    pub mode: u32,
    pub mtime: u64,
    /// Extended attributes, written as PAX `SCHILY.xattr.<name>` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub format: HeaderFormat,
}

impl LayerEntry {
    fn new(path: impl Into<String>, kind: Kind, mode: u32) -> Self {
        LayerEntry {
            path: path.into(),
            kind,
            uid: 0,
            gid: 0,
            mode,
            mtime: MTIME,
            xattrs: BTreeMap::new(),
            format: HeaderFormat::Gnu,
        }
    }

    pub fn dir(path: impl Into<String>, mode: u32) -> Self {
        Self::new(path, Kind::Dir, mode)
    }

    pub fn file(path: impl Into<String>, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        Self::new(path, Kind::File(data.into()), mode)
    }

    pub fn sparse(
        path: impl Into<String>,
        mode: u32,
        size: u64,
        chunks: Vec<(u64, Vec<u8>)>,
    ) -> Self {
        Self::new(path, Kind::Sparse { size, chunks }, mode)
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(path, Kind::Symlink(target.into()), 0o777)
    }

    /// A hard link; its header repeats the target's metadata the way GNU tar
    /// does, but unpackers must take the metadata from the target.
    pub fn hardlink(path: impl Into<String>, target: &LayerEntry) -> Self {
        LayerEntry {
            path: path.into(),
            kind: Kind::Hardlink(target.path.clone()),
            ..target.clone()
        }
    }

    /// The OCI whiteout that deletes `dir/name` (or `name` at the root when
    /// `dir` is empty) from the layers below.
    pub fn whiteout(dir: &str, name: &str) -> Self {
        Self::file(
            join(dir, &format!("{WHITEOUT_PREFIX}{name}")),
            0o600,
            Vec::new(),
        )
    }

    /// The OCI marker that hides everything the layers below put in `dir`.
    pub fn opaque(dir: &str) -> Self {
        Self::file(join(dir, OPAQUE_MARKER), 0o600, Vec::new())
    }

    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    pub fn xattr(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.xattrs.insert(name.to_owned(), value.into());
        self
    }

    pub fn ustar(mut self) -> Self {
        self.format = HeaderFormat::Ustar;
        self
    }
}

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}
