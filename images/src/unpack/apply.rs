//! Applies tar entries to the layer directory, one at a time.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;

use rustix::fs::{
    chmodat, chownat, fsetxattr, futimens, linkat, makedev, mknodat, symlinkat, utimensat, AtFlags,
    FileType, Gid, Mode, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use super::attrs::{complete_new_file, set_owner_mode_xattrs};
use super::finisher::{FileQueue, QueueError, Stopped};
use super::meta::{read_meta, EntryMeta, OVERFLOW_ID};
use super::root::{clean, create_file, join, open_child_dir, remove_at, Components, LayerRoot};
use super::{errno_err, fs_err, UnpackError};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "user.overlay.opaque";
const COPY_BUF: usize = 256 * 1024;

/// How an entry's final name is to be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout.
    None,
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted.
    Remove(&'a [u8]),
    /// Other `.wh..wh.*` names are aufs bookkeeping; ignored.
    AufsMeta,
}

pub fn classify_whiteout(name: &[u8]) -> Whiteout<'_> {
    if name == OPAQUE_MARKER {
        return Whiteout::Opaque;
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Whiteout::None,
        Some(rest) if rest.starts_with(WHITEOUT_PREFIX) => Whiteout::AufsMeta,
        Some(rest) => Whiteout::Remove(rest),
    }
}

/// Counters for things the layer asked for that cannot be honoured, logged
/// once per layer rather than per entry.
#[derive(Debug, Default)]
pub struct Notes {
    pub clamped_ids: u64,
    pub devices_skipped: u64,
    pub xattrs_skipped: u64,
    pub other_skipped: u64,
}

impl Notes {
    pub fn add(&mut self, other: &Notes) {
        self.clamped_ids += other.clamped_ids;
        self.devices_skipped += other.devices_skipped;
        self.xattrs_skipped += other.xattrs_skipped;
        self.other_skipped += other.other_skipped;
    }
}

#[derive(Debug, Default)]
pub struct Tally {
    pub content_size: u64,
    pub highest_uid: u32,
    pub highest_gid: u32,
    pub uses_overflow_id: bool,
    pub entries: u64,
}

pub struct Applier {
    root: LayerRoot,
    /// Where created regular files go to be written and completed.
    files: FileQueue,
    /// For sparse files, which are written here.
    buf: Vec<u8>,
    /// Directory mtimes are set last, after their contents stopped changing.
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    pub notes: Notes,
    pub tally: Tally,
}

impl Applier {
    pub fn new(root: LayerRoot, files: FileQueue) -> Applier {
        Applier {
            root,
            files,
            buf: Vec::new(),
            dir_times: Vec::new(),
            notes: Notes::default(),
            tally: Tally::default(),
        }
    }

    pub fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_path = entry.path_bytes().into_owned();
        let comps = clean(&raw_path).ok_or_else(|| UnpackError::Escape {
            path: String::from_utf8_lossy(&raw_path).into_owned(),
        })?;
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let meta = read_meta(entry).map_err(UnpackError::Tar)?;
        self.tally.entries += 1;

        if let Some(name) = comps.last() {
            match classify_whiteout(name) {
                Whiteout::None => {}
                Whiteout::Opaque => return self.opaque(&comps[..comps.len() - 1], &raw_path),
                Whiteout::Remove(target) => {
                    return self.whiteout(&comps[..comps.len() - 1], target, &raw_path, &meta)
                }
                Whiteout::AufsMeta => return Ok(()),
            }
        }
        if comps.is_empty() {
            // The layer root itself ("./"): only its metadata applies.
            if kind.is_dir() {
                let fd = self.root.open_dir(&[]).map_err(fs_err(&raw_path, "open"))?;
                set_owner_mode_xattrs(&fd, &raw_path, &meta, &mut self.notes)?;
                self.dir_times.push((Vec::new(), meta.timestamps()));
            }
            return Ok(());
        }

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let sparse = kind == EntryType::GNUSparse;
                self.file(entry, &comps, &raw_path, meta, sparse)
            }
            EntryType::Directory => self.directory(&comps, &raw_path, &meta),
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Malformed {
                        path: String::from_utf8_lossy(&raw_path).into_owned(),
                        reason: "symlink without a target",
                    })?
                    .into_owned();
                self.symlink(&comps, &raw_path, &target, &meta)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Malformed {
                        path: String::from_utf8_lossy(&raw_path).into_owned(),
                        reason: "hardlink without a target",
                    })?
                    .into_owned();
                self.hardlink(&comps, &raw_path, &target)
            }
            EntryType::Char | EntryType::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(1);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(1);
                if kind == EntryType::Char && major == 0 && minor == 0 {
                    // Already an overlay whiteout: keep it as such.
                    let name = comps[comps.len() - 1];
                    return self.whiteout(&comps[..comps.len() - 1], name, &raw_path, &meta);
                }
                self.notes.devices_skipped += 1;
                tracing::info!(
                    path = %String::from_utf8_lossy(&raw_path),
                    major, minor,
                    "skipping device node: devices cannot be created in a user namespace"
                );
                Ok(())
            }
            EntryType::Fifo => self.fifo(&comps, &raw_path, &meta),
            other => {
                self.notes.other_skipped += 1;
                tracing::info!(
                    path = %String::from_utf8_lossy(&raw_path),
                    kind = ?other,
                    "skipping tar entry of an unsupported type"
                );
                Ok(())
            }
        }
    }

    fn count_ids(&mut self, meta: &EntryMeta, path: &[u8]) {
        if meta.clamped {
            self.notes.clamped_ids += 1;
            if self.notes.clamped_ids == 1 {
                tracing::info!(
                    path = %String::from_utf8_lossy(path),
                    "owner outside 0-65535 in layer: using 65534 (nobody) instead"
                );
            }
        }
        for (id, highest) in [
            (meta.uid, &mut self.tally.highest_uid),
            (meta.gid, &mut self.tally.highest_gid),
        ] {
            if id == OVERFLOW_ID {
                self.tally.uses_overflow_id = true;
            } else if id > *highest {
                *highest = id;
            }
        }
    }

    /// The parent directory of `comps` (created if missing) and the final name.
    fn parent<'c>(
        &mut self,
        comps: &Components<'c>,
        raw: &[u8],
    ) -> Result<(std::rc::Rc<OwnedFd>, &'c [u8]), UnpackError> {
        let (name, parent) = comps.split_last().ok_or_else(|| UnpackError::Malformed {
            path: String::from_utf8_lossy(raw).into_owned(),
            reason: "empty path",
        })?;
        let dir = self
            .root
            .dir(parent)
            .map_err(fs_err(raw, "resolve parent directory"))?;
        Ok((dir, name))
    }

    /// Clears the way for a new non-directory at `name`.
    fn make_room(&mut self, dir: &OwnedFd, name: &[u8], raw: &[u8]) -> Result<(), UnpackError> {
        let removed_dir = remove_at(dir, name).map_err(fs_err(raw, "replace existing entry"))?;
        if removed_dir {
            self.root.invalidate();
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &Components<'_>,
        raw: &[u8],
        meta: EntryMeta,
        sparse: bool,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.parent(comps, raw)?;
        // Created with its final permission bits (setuid/setgid/sticky come
        // after the chown), so most files need no chmod.
        let mut file = match create_file(&*dir, name, meta.mode) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.make_room(&dir, name, raw)?;
                create_file(&*dir, name, meta.mode).map_err(fs_err(raw, "create file"))?
            }
            Err(e) => return Err(fs_err(raw, "create file")(e)),
        };
        self.count_ids(&meta, raw);
        if sparse {
            // Rare enough to be written here, holes and all.
            self.tally.content_size += self.copy_sparse(entry, &mut file, raw)?;
            return complete_new_file(&file, raw, &meta, &mut self.notes);
        }
        self.tally.content_size +=
            self.files
                .push(file, raw, entry, meta)
                .map_err(|e| match e {
                    QueueError::Read(e) => UnpackError::Tar(e),
                    QueueError::Stopped(Stopped) => finisher_stopped(),
                })?;
        Ok(())
    }

    /// Copies a GNU sparse entry's data: runs of zeros become holes
    /// (seeked over) so the file stays sparse on disk.
    fn copy_sparse<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        raw: &[u8],
    ) -> Result<u64, UnpackError> {
        self.buf.resize(COPY_BUF, 0);
        let mut total = 0u64;
        let mut pending_hole = false;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Tar(e)),
            };
            let chunk = &self.buf[..n];
            if chunk.iter().all(|&b| b == 0) {
                file.seek(SeekFrom::Current(n as i64))
                    .map_err(fs_err(raw, "write file"))?;
                pending_hole = true;
            } else {
                file.write_all(chunk).map_err(fs_err(raw, "write file"))?;
                pending_hole = false;
            }
            total += n as u64;
        }
        if pending_hole {
            file.set_len(total).map_err(fs_err(raw, "write file"))?;
        }
        Ok(total)
    }

    fn directory(
        &mut self,
        comps: &Components<'_>,
        raw: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.parent(comps, raw)?;
        match rustix::fs::mkdirat(&*dir, name, Mode::from_bits_retain(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let existing = super::root::file_type_at(&*dir, name)
                    .map_err(fs_err(raw, "inspect existing entry"))?;
                if existing != Some(FileType::Directory) {
                    self.make_room(&dir, name, raw)?;
                    rustix::fs::mkdirat(&*dir, name, Mode::from_bits_retain(0o700))
                        .map_err(errno_err(raw, "create directory"))?;
                }
            }
            Err(e) => return Err(errno_err(raw, "create directory")(e)),
        }
        let fd = open_child_dir(&*dir, name).map_err(fs_err(raw, "open directory"))?;
        set_owner_mode_xattrs(&fd, raw, meta, &mut self.notes)?;
        self.dir_times.push((join(comps), meta.timestamps()));
        self.count_ids(meta, raw);
        Ok(())
    }

    fn symlink(
        &mut self,
        comps: &Components<'_>,
        raw: &[u8],
        target: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.parent(comps, raw)?;
        match symlinkat(target, &*dir, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.make_room(&dir, name, raw)?;
                symlinkat(target, &*dir, name).map_err(errno_err(raw, "create symlink"))?;
            }
            Err(e) => return Err(errno_err(raw, "create symlink")(e)),
        }
        chownat(
            &*dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno_err(raw, "chown symlink"))?;
        if !meta.xattrs.is_empty() {
            // user.* xattrs are not permitted on symlinks.
            self.notes.xattrs_skipped += meta.xattrs.len() as u64;
        }
        utimensat(&*dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno_err(raw, "set symlink mtime"))?;
        self.count_ids(meta, raw);
        Ok(())
    }

    fn hardlink(
        &mut self,
        comps: &Components<'_>,
        raw: &[u8],
        target_raw: &[u8],
    ) -> Result<(), UnpackError> {
        let target = clean(target_raw).ok_or_else(|| UnpackError::Escape {
            path: String::from_utf8_lossy(target_raw).into_owned(),
        })?;
        if target == *comps {
            return Ok(());
        }
        let link_error = |reason: String| UnpackError::Hardlink {
            path: String::from_utf8_lossy(raw).into_owned(),
            target: String::from_utf8_lossy(target_raw).into_owned(),
            reason,
        };
        let (target_name, target_parent) = target
            .split_last()
            .ok_or_else(|| link_error("the target is the layer root".into()))?;
        // The target must already be in this layer: resolve its directory
        // without creating anything.
        let target_dir = self
            .root
            .open_dir(target_parent)
            .map_err(|e| link_error(format!("no such file in this layer ({e})")))?;
        let (dir, name) = self.parent(comps, raw)?;
        // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never
        // what it points to.
        let link = || linkat(&target_dir, *target_name, &*dir, name, AtFlags::empty());
        match link() {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                self.make_room(&dir, name, raw)?;
                link().map_err(|e| link_error(io::Error::from(e).to_string()))
            }
            Err(Errno::NOENT) => Err(link_error("no such file in this layer".into())),
            Err(Errno::PERM) => Err(link_error("the target is a directory".into())),
            Err(e) => Err(link_error(io::Error::from(e).to_string())),
        }
    }

    fn fifo(
        &mut self,
        comps: &Components<'_>,
        raw: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.parent(comps, raw)?;
        let mk = || {
            mknodat(
                &*dir,
                name,
                FileType::Fifo,
                Mode::from_bits_retain(0o600),
                0,
            )
        };
        match mk() {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                self.make_room(&dir, name, raw)?;
                mk().map_err(errno_err(raw, "create fifo"))?;
            }
            Err(e) => return Err(errno_err(raw, "create fifo")(e)),
        }
        chownat(
            &*dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno_err(raw, "chown fifo"))?;
        // Just created by us as a fifo, so chmodat cannot hit a symlink.
        chmodat(
            &*dir,
            name,
            Mode::from_bits_retain(meta.mode),
            AtFlags::empty(),
        )
        .map_err(errno_err(raw, "chmod fifo"))?;
        utimensat(&*dir, name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno_err(raw, "set fifo mtime"))?;
        self.count_ids(meta, raw);
        Ok(())
    }

    /// `.wh.<name>` becomes an overlay whiteout: a 0:0 char device, which an
    /// unprivileged user namespace may create.
    fn whiteout(
        &mut self,
        parent: &[&[u8]],
        target: &[u8],
        raw: &[u8],
        meta: &EntryMeta,
    ) -> Result<(), UnpackError> {
        if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
            self.notes.other_skipped += 1;
            tracing::info!(path = %String::from_utf8_lossy(raw), "ignoring whiteout with an invalid name");
            return Ok(());
        }
        let dir = self
            .root
            .dir(parent)
            .map_err(fs_err(raw, "resolve parent directory"))?;
        match mknodat(
            &*dir,
            target,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        ) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                // Whiteouts only hide lower layers; an entry of this same
                // layer stays (OCI image spec, "Whiteouts").
                tracing::debug!(path = %String::from_utf8_lossy(raw), "whiteout for an entry of the same layer ignored");
                return Ok(());
            }
            Err(e) => return Err(errno_err(raw, "create whiteout")(e)),
        }
        chownat(
            &*dir,
            target,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno_err(raw, "chown whiteout"))?;
        Ok(())
    }

    /// `.wh..wh..opq` marks its directory opaque for overlay (mounted with
    /// `userxattr` in a user namespace, hence the user.* name).
    fn opaque(&mut self, dir_comps: &[&[u8]], raw: &[u8]) -> Result<(), UnpackError> {
        let dir = self
            .root
            .dir(dir_comps)
            .map_err(fs_err(raw, "resolve opaque directory"))?;
        fsetxattr(&*dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
            .map_err(errno_err(raw, "mark directory opaque"))?;
        Ok(())
    }

    /// Hands over the last files and lets the finisher end once they are
    /// done; called whether applying succeeded or not.
    pub fn close_files(&mut self) -> Result<(), UnpackError> {
        self.files.close().map_err(|Stopped| finisher_stopped())
    }

    /// Sets the deferred directory mtimes, deepest first (after the
    /// finisher is done: nothing may create in them any more).
    pub fn finish(&mut self) -> Result<(), UnpackError> {
        for (path, times) in self.dir_times.drain(..).rev() {
            let comps = clean(&path).unwrap_or_default();
            // The directory may have been replaced by a later entry.
            if let Ok(fd) = self.root.open_dir(&comps) {
                futimens(&fd, &times).map_err(errno_err(&path, "set directory mtime"))?;
            }
        }
        Ok(())
    }
}

/// What the applier reports when the finisher is gone; the finisher's own
/// error is the one the unpack returns.
fn finisher_stopped() -> UnpackError {
    UnpackError::Read(io::Error::other("the file finisher stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert_eq!(classify_whiteout(b"file"), Whiteout::None);
        assert_eq!(classify_whiteout(b".wh.file"), Whiteout::Remove(b"file"));
        assert_eq!(classify_whiteout(b".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(classify_whiteout(b".wh..wh.plnk"), Whiteout::AufsMeta);
        assert_eq!(classify_whiteout(b".whx"), Whiteout::None);
    }
}
