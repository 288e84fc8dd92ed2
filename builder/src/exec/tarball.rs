//! Writing a layer tar from a list of entries: directories, files (from disk
//! or in memory), symlinks, hardlinks, FIFOs and OCI whiteouts, with owners
//! taken from the entry (never from the files on disk, so COPY needs no
//! chown) and modification times clamped to `SOURCE_DATE_EPOCH`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use tar::{EntryType, Header};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Dir,
    /// A regular file's content on disk (`size` bytes are read).
    File(PathBuf),
    /// A regular file's content in memory.
    Bytes(Vec<u8>),
    Symlink(String),
    /// A hardlink to an earlier entry's path (relative, as in the tar).
    Link(String),
    Fifo,
}

/// One tar entry. `path` is relative to the layer root, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub body: Body,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn dir(path: &str, mode: u32, uid: u32, gid: u32, mtime: i64) -> Entry {
        Entry {
            path: path.to_string(),
            body: Body::Dir,
            mode,
            uid,
            gid,
            mtime,
            size: 0,
            xattrs: Vec::new(),
        }
    }

    /// An OCI whiteout (`.wh.name`) or opaque marker (`.wh..wh..opq`).
    pub fn whiteout(path: &str, mtime: i64) -> Entry {
        Entry {
            path: path.to_string(),
            body: Body::Bytes(Vec::new()),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Writes `entries` as a tar stream into `out` (the layer writer, which hashes
/// and compresses as it goes). `clamp`: newest modification time allowed.
pub fn write_tar<W: Write>(
    out: W,
    entries: impl IntoIterator<Item = Entry>,
    clamp: Option<i64>,
) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    for e in entries {
        append(&mut tar, &e, clamp)?;
    }
    tar.into_inner()
}

fn append<W: Write>(tar: &mut tar::Builder<W>, e: &Entry, clamp: Option<i64>) -> io::Result<()> {
    if !e.xattrs.is_empty() {
        let mut pax = Vec::new();
        for (k, v) in &e.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_path("././@PaxHeader")?;
        h.set_size(pax.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, pax.as_slice())?;
    }
    let mut h = Header::new_gnu();
    h.set_mode(e.mode & 0o7777);
    h.set_uid(u64::from(e.uid));
    h.set_gid(u64::from(e.gid));
    let mtime = match clamp {
        Some(c) if e.mtime > c => c,
        _ => e.mtime,
    };
    h.set_mtime(u64::try_from(mtime).unwrap_or(0));
    match &e.body {
        Body::Dir => {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            let path = format!("{}/", e.path.trim_end_matches('/'));
            tar.append_data(&mut h, path, io::empty())
        }
        Body::File(src) => {
            h.set_entry_type(EntryType::Regular);
            h.set_size(e.size);
            let file = File::open(src)?;
            // A file that changed size meanwhile must not corrupt the stream.
            let body = file.take(e.size).chain(io::repeat(0)).take(e.size);
            tar.append_data(&mut h, &e.path, body)
        }
        Body::Bytes(b) => {
            h.set_entry_type(EntryType::Regular);
            h.set_size(b.len() as u64);
            tar.append_data(&mut h, &e.path, b.as_slice())
        }
        Body::Symlink(target) => {
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, &e.path, target)
        }
        Body::Link(target) => {
            h.set_entry_type(EntryType::Link);
            h.set_size(0);
            tar.append_link(&mut h, &e.path, target)
        }
        Body::Fifo => {
            h.set_entry_type(EntryType::Fifo);
            h.set_size(0);
            tar.append_data(&mut h, &e.path, io::empty())
        }
    }
}

/// One PAX record: `<len> <key>=<value>\n`, where len counts itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len.to_string().len() + rest > len {
        len += 1;
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut v = Vec::new();
        pax_record(&mut v, "SCHILY.xattr.user.a", b"xyz");
        let text = String::from_utf8_lossy(&v).to_string();
        let (len, _) = text.split_once(' ').unwrap_or_default();
        assert_eq!(len.parse::<usize>().ok(), Some(v.len()));
    }

    #[test]
    fn entries_round_trip_with_owners_and_clamped_times() -> io::Result<()> {
        let entries = vec![
            Entry::dir("app", 0o755, 1000, 1000, 50),
            Entry {
                path: "app/f".into(),
                body: Body::Bytes(b"hi".to_vec()),
                mode: 0o600,
                uid: 7,
                gid: 8,
                mtime: 10_000,
                size: 2,
                xattrs: vec![("user.k".into(), b"v".to_vec())],
            },
            Entry::whiteout("app/.wh.gone", 0),
        ];
        let bytes = write_tar(Vec::new(), entries, Some(100))?;
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            let path = e.path()?.to_string_lossy().to_string();
            let h = e.header().clone();
            let mut xattr = None;
            if let Some(exts) = e.pax_extensions()? {
                for ext in exts {
                    let ext = ext?;
                    xattr = Some(ext.key().unwrap_or_default().to_string());
                }
            }
            seen.push((path, h.uid()?, h.mtime()?, xattr));
        }
        assert_eq!(
            seen,
            vec![
                ("app/".to_string(), 1000, 50, None),
                (
                    "app/f".to_string(),
                    7,
                    100,
                    Some("SCHILY.xattr.user.k".to_string())
                ),
                ("app/.wh.gone".to_string(), 0, 0, None),
            ]
        );
        Ok(())
    }
}
