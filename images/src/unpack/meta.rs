//! Metadata of a tar entry: ownership (clamped to what a pod can map),
//! mode, mtime and xattrs, from the header and its PAX records.

use std::io::{self, Read};

use rustix::fs::{Timespec, Timestamps};

/// The highest ID the engine's user namespace maps (0-65535).
pub const MAX_ID: u64 = 65535;
/// Where IDs beyond the map go: the overflow ID, `nobody`.
pub const OVERFLOW_ID: u32 = 65534;

#[derive(Debug, Clone)]
pub struct EntryMeta {
    pub uid: u32,
    pub gid: u32,
    /// Whether `uid`/`gid` had to be clamped to the overflow ID.
    pub clamped: bool,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    pub mtime: Timespec,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    pub fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

/// Maps an ID from a layer into the 0-65535 range: anything above becomes
/// the overflow ID (the second value says so).
pub fn clamp_id(id: u64) -> (u32, bool) {
    if id > MAX_ID {
        (OVERFLOW_ID, true)
    } else {
        (id as u32, false)
    }
}

/// Parses a PAX time such as `1700000000` or `1700000000.123456789`.
pub fn parse_pax_time(value: &str) -> Option<Timespec> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    let tv_sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut tv_nsec: i64 = digits.parse().ok()?;
    // "-1.5" means 1.5 s before the epoch.
    let (tv_sec, tv_nsec) = if secs.starts_with('-') && tv_nsec > 0 {
        tv_nsec = 1_000_000_000 - tv_nsec;
        (tv_sec - 1, tv_nsec)
    } else {
        (tv_sec, tv_nsec)
    };
    Some(Timespec { tv_sec, tv_nsec })
}

/// A numeric header field as Go's archive/tar (Docker's) reads it: one of
/// only NULs and spaces is 0. The tar crate rejects such a field, but
/// writers that fill in only path, size and mode (bollard's tests, the
/// `tar` crate's `Header::new_gnu` used naively) leave the others empty.
fn lenient<T: Default>(value: io::Result<T>, raw: &[u8]) -> io::Result<T> {
    match value {
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        other => other,
    }
}

/// The header's uid (an empty field is 0, as Docker reads it).
pub fn header_uid(header: &tar::Header) -> io::Result<u64> {
    lenient(header.uid(), &header.as_old().uid)
}

/// The header's gid (an empty field is 0).
pub fn header_gid(header: &tar::Header) -> io::Result<u64> {
    lenient(header.gid(), &header.as_old().gid)
}

/// The header's mode (an empty field is 0).
pub fn header_mode(header: &tar::Header) -> io::Result<u32> {
    lenient(header.mode(), &header.as_old().mode)
}

/// The header's mtime (an empty field is the epoch).
pub fn header_mtime(header: &tar::Header) -> io::Result<u64> {
    lenient(header.mtime(), &header.as_old().mtime)
}

pub fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<EntryMeta> {
    let header = entry.header();
    let mut uid = header_uid(header)?;
    let mut gid = header_gid(header)?;
    let mode = header_mode(header)? & 0o7777;
    let mut mtime = Timespec {
        tv_sec: header_mtime(header)? as i64,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                continue;
            }
            let value = std::str::from_utf8(ext.value_bytes()).ok();
            match (key, value) {
                (b"uid", Some(v)) => uid = v.trim().parse().unwrap_or(uid),
                (b"gid", Some(v)) => gid = v.trim().parse().unwrap_or(gid),
                (b"mtime", Some(v)) => mtime = parse_pax_time(v.trim()).unwrap_or(mtime),
                _ => {}
            }
        }
    }
    let (uid, uid_clamped) = clamp_id(uid);
    let (gid, gid_clamped) = clamp_id(gid);
    Ok(EntryMeta {
        uid,
        gid,
        clamped: uid_clamped || gid_clamped,
        mode,
        mtime,
        xattrs,
    })
}

/// What to do with an xattr from a layer.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrPolicy {
    Set,
    /// Never taken from a layer; the reason is logged.
    Skip(&'static str),
    /// Tried; failure is logged, not fatal (e.g. security.selinux).
    BestEffort,
}

pub fn xattr_policy(name: &[u8]) -> XattrPolicy {
    if name.starts_with(b"user.overlay.") || name.starts_with(b"trusted.overlay.") {
        XattrPolicy::Skip("overlay's own attributes must not come from a layer")
    } else if name.starts_with(b"trusted.") {
        XattrPolicy::Skip("trusted.* xattrs cannot be set in a user namespace")
    } else if name.starts_with(b"user.") || name == b"security.capability" {
        XattrPolicy::Set
    } else {
        XattrPolicy::BestEffort
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_ids_beyond_the_map() {
        assert_eq!(clamp_id(0), (0, false));
        assert_eq!(clamp_id(65535), (65535, false));
        assert_eq!(clamp_id(65536), (OVERFLOW_ID, true));
        assert_eq!(clamp_id(1_000_000), (OVERFLOW_ID, true));
    }

    #[test]
    fn empty_numeric_fields_read_as_zero() {
        // What `Header::new_gnu` with only a path, size and checksum gives.
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        assert!(header.uid().is_err(), "the tar crate itself rejects it");
        assert_eq!(header_uid(&header).expect("empty uid"), 0);
        assert_eq!(header_gid(&header).expect("empty gid"), 0);
        assert_eq!(header_mode(&header).expect("empty mode"), 0);
        assert_eq!(header_mtime(&header).expect("empty mtime"), 0);
        header.set_uid(1000);
        header.set_mode(0o744);
        assert_eq!(header_uid(&header).expect("set uid"), 1000);
        assert_eq!(header_mode(&header).expect("set mode"), 0o744);
        // A field with garbage is still an error.
        header.as_old_mut().gid = *b"12x4567\0";
        assert!(header_gid(&header).is_err());
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time("1700000000.5").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time("12").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time("1.1234567891").expect("valid");
        assert_eq!(t.tv_nsec, 123_456_789);
        let t = parse_pax_time("-1.5").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 500_000_000));
        assert!(parse_pax_time("x").is_none());
        assert!(parse_pax_time("1.x").is_none());
    }

    #[test]
    fn xattr_policies() {
        assert_eq!(xattr_policy(b"user.foo"), XattrPolicy::Set);
        assert_eq!(xattr_policy(b"security.capability"), XattrPolicy::Set);
        assert!(matches!(
            xattr_policy(b"user.overlay.opaque"),
            XattrPolicy::Skip(_)
        ));
        assert!(matches!(xattr_policy(b"trusted.foo"), XattrPolicy::Skip(_)));
        assert_eq!(xattr_policy(b"security.selinux"), XattrPolicy::BestEffort);
    }
}
