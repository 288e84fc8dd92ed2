//! An entry's metadata applied to what was created for it: owner, mode,
//! xattrs and times. Shared by the applier and the file finisher.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{fchmod, fchown, fsetxattr, fstat, futimens, Gid, Mode, Uid, XattrFlags};

use super::apply::Notes;
use super::meta::{xattr_policy, EntryMeta, XattrPolicy};
use super::{errno_err, UnpackError};

/// Ownership first (chown clears setuid/setgid and file capabilities),
/// then the mode, then xattrs.
pub fn set_owner_mode_xattrs(
    fd: impl AsFd,
    raw: &[u8],
    meta: &EntryMeta,
    notes: &mut Notes,
) -> Result<(), UnpackError> {
    let fd = fd.as_fd();
    chown(fd, raw, meta)?;
    fchmod(fd, Mode::from_bits_retain(meta.mode)).map_err(errno_err(raw, "chmod"))?;
    set_xattrs(fd, raw, meta, notes);
    Ok(())
}

/// The rest of a regular file this unpack has just created and written:
/// as [`set_owner_mode_xattrs`], skipping the chown and chmod it does not
/// need (a base image's files are mostly owned by root with plain modes, as
/// created, and each skipped call is an inode update less, thousands of
/// files), then its times. fstat only reads the inode.
pub fn complete_new_file(
    file: impl AsFd,
    raw: &[u8],
    meta: &EntryMeta,
    notes: &mut Notes,
) -> Result<(), UnpackError> {
    let file = file.as_fd();
    let st = fstat(file).map_err(errno_err(raw, "inspect file"))?;
    if st.st_uid != meta.uid || st.st_gid != meta.gid {
        chown(file, raw, meta)?;
    }
    // After a chown the kernel may have dropped bits: compare with what
    // was created only when there was none.
    if st.st_mode & 0o7777 != meta.mode || st.st_uid != meta.uid || st.st_gid != meta.gid {
        fchmod(file, Mode::from_bits_retain(meta.mode)).map_err(errno_err(raw, "chmod"))?;
    }
    set_xattrs(file, raw, meta, notes);
    futimens(file, &meta.timestamps()).map_err(errno_err(raw, "set mtime"))?;
    Ok(())
}

/// Gives the entry's owner to what was created for it.
fn chown(fd: BorrowedFd<'_>, raw: &[u8], meta: &EntryMeta) -> Result<(), UnpackError> {
    fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .map_err(errno_err(raw, "chown"))
}

/// Sets the entry's xattrs; those that cannot be set are noted, not fatal.
pub fn set_xattrs(fd: BorrowedFd<'_>, raw: &[u8], meta: &EntryMeta, notes: &mut Notes) {
    for (name, value) in &meta.xattrs {
        let shown = String::from_utf8_lossy(name);
        match xattr_policy(name) {
            XattrPolicy::Skip(why) => {
                notes.xattrs_skipped += 1;
                tracing::info!(path = %String::from_utf8_lossy(raw), xattr = %shown, "skipping xattr: {why}");
            }
            policy => {
                if let Err(e) = fsetxattr(fd, &name[..], value, XattrFlags::empty()) {
                    notes.xattrs_skipped += 1;
                    if policy == XattrPolicy::Set {
                        tracing::warn!(path = %String::from_utf8_lossy(raw), xattr = %shown, error = %e, "could not set xattr");
                    } else {
                        tracing::info!(path = %String::from_utf8_lossy(raw), xattr = %shown, error = %e, "could not set xattr");
                    }
                }
            }
        }
    }
}
