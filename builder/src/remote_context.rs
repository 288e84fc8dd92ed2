//! A build context named by URL rather than sent: `docker build URL`,
//! `POST /build?remote=`, buildx's context attribute, `hutch build URL`.
//! A git repository is cloned (`git_context`). An http(s) URL is read as
//! moby and BuildKit read one: the body is downloaded (streamed to a file,
//! as ADD downloads); a tar, plain or compressed, is the context, and
//! anything else is the Dockerfile of a context that holds nothing else.
//!
//! Archives, sent or downloaded, go through the images crate's layer
//! unpacker: every path is resolved inside the directory by the kernel (a
//! `..` or a symlink cannot lead an entry out), with its size and
//! decompression-ratio limits.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hutch_images::unpack::{unpack_layer, UnpackLimits};

use crate::exec::remote;
use crate::git_context::{is_git_url, GitContext};

/// Where a context named by URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteContext {
    Git(GitContext),
    /// An http(s) URL that is not a git repository: a tarball or a
    /// Dockerfile.
    Http(String),
}

/// Magic bytes of the compressions moby accepts that the unpacker does not
/// (gzip and zstd it detects itself).
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Where a tar header says `ustar` (POSIX and GNU formats alike).
const TAR_MAGIC_AT: usize = 257;

impl RemoteContext {
    /// A git or http(s) URL as a context; `None` for anything else (a
    /// directory, `-`).
    pub fn parse(s: &str) -> Option<Result<RemoteContext, String>> {
        if is_git_url(s) {
            return Some(GitContext::parse(s).map(RemoteContext::Git));
        }
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        (lower.starts_with("http://") || lower.starts_with("https://"))
            .then(|| Ok(RemoteContext::Http(s.to_owned())))
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        match self {
            RemoteContext::Git(g) => &g.url,
            RemoteContext::Http(u) => u,
        }
    }

    /// What BuildKit calls the step that loads it.
    pub fn label(&self) -> String {
        match self {
            RemoteContext::Git(g) => format!("[internal] load git source {}", g.url),
            RemoteContext::Http(u) => format!("[internal] load remote build context {u}"),
        }
    }

    /// Fetches the context into `dir` (a directory of its own, which the
    /// caller removes) and returns the context's root inside it. A git
    /// context's `#ref:dir` is honoured; an http download is revalidated
    /// against the last one (`data_root`'s HTTP cache, as ADD's).
    /// Blocking. A clone's errors do not name the URL; a download's do.
    pub fn fetch(&self, dir: &Path, data_root: &Path) -> Result<PathBuf, String> {
        let http = match self {
            RemoteContext::Git(g) => return g.fetch(&dir.join("repo")),
            RemoteContext::Http(url) => url,
        };
        let downloaded = download(http, dir, data_root)?;
        let root = dir.join("context");
        let mut file = std::fs::File::open(&downloaded)
            .map_err(|e| format!("{}: {e}", downloaded.display()))?;
        let mut head = Vec::with_capacity(TAR_MAGIC_AT + 5);
        (&mut file)
            .take((TAR_MAGIC_AT + 5) as u64)
            .read_to_end(&mut head)
            .map_err(|e| format!("reading the download: {e}"))?;
        if is_archive(&head) {
            unpack_archive(Cursor::new(head).chain(file), &root)?;
        } else {
            // Moby turns a plain-text body into a context holding it as
            // `Dockerfile`; BuildKit reads a non-archive the same way.
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            std::fs::rename(&downloaded, root.join("Dockerfile"))
                .map_err(|e| format!("keeping the Dockerfile: {e}"))?;
        }
        Ok(root)
    }

    /// Fetches it as a named context (`--build-context NAME=URL`) into
    /// `dir`: a git repository as [`RemoteContext::fetch`] clones it; an
    /// http(s) download is one file named `context`, not unpacked, as
    /// BuildKit's named http context (`COPY --from=NAME context /dest`).
    pub fn fetch_named(&self, dir: &Path, data_root: &Path) -> Result<PathBuf, String> {
        let RemoteContext::Http(url) = self else {
            return self.fetch(dir, data_root);
        };
        let downloaded = download(url, dir, data_root)?;
        let root = dir.join("context");
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        std::fs::rename(&downloaded, root.join("context"))
            .map_err(|e| format!("keeping the download: {e}"))?;
        Ok(root)
    }
}

/// Downloads `url` under `dir` (as ADD downloads: streamed to a file,
/// revalidated through `data_root`'s HTTP cache); returns the file. Also
/// `docker import URL`'s download.
pub fn download(url: &str, dir: &Path, data_root: &Path) -> Result<PathBuf, String> {
    let into = dir.join("download");
    std::fs::create_dir_all(&into).map_err(|e| format!("{}: {e}", into.display()))?;
    let cache = crate::exec::httpcache::HttpCache::open(data_root);
    remote::fetch(url, &into, None, &AtomicBool::new(false), &cache)
        .map(|f| f.path)
        .map_err(|e| e.to_string())
}

fn is_archive(head: &[u8]) -> bool {
    [GZIP_MAGIC, ZSTD_MAGIC, BZIP2_MAGIC, XZ_MAGIC]
        .iter()
        .any(|m| head.starts_with(m))
        || head.get(TAR_MAGIC_AT..TAR_MAGIC_AT + 5) == Some(b"ustar")
}

/// Unpacks a context archive (plain, gzip or zstd tar) into `dest`, which
/// it creates. bzip2 and xz, which moby also reads, are refused by name.
/// Blocking.
pub fn unpack_archive(reader: impl Read + Send, dest: &Path) -> Result<(), String> {
    let mut reader = reader;
    let mut head = Vec::with_capacity(XZ_MAGIC.len());
    (&mut reader)
        .take(XZ_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("reading the build context: {e}"))?;
    for (magic, name) in [(BZIP2_MAGIC, "bzip2"), (XZ_MAGIC, "xz")] {
        if head.starts_with(magic) {
            return Err(format!(
                "the build context is {name}-compressed, which hutch does not read: \
                 send a plain, gzip or zstd tar"
            ));
        }
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    unpack_layer(
        Cursor::new(head).chain(reader),
        dest,
        UnpackLimits::default(),
    )
    .map(drop)
    .map_err(|e| format!("the build context is not a valid archive: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_apart() {
        assert!(matches!(
            RemoteContext::parse("https://h/r.git#main"),
            Some(Ok(RemoteContext::Git(_)))
        ));
        assert_eq!(
            RemoteContext::parse("HTTPS://h/ctx.tar.gz"),
            Some(Ok(RemoteContext::Http("HTTPS://h/ctx.tar.gz".into())))
        );
        assert!(RemoteContext::parse(".").is_none());
        assert!(RemoteContext::parse("-").is_none());
        assert!(RemoteContext::parse("file:///etc").is_none());
    }

    #[test]
    fn archives_are_told_by_their_bytes() {
        assert!(is_archive(&[0x1f, 0x8b, 8, 0]));
        assert!(is_archive(b"BZh91AY&SY"));
        let mut tar = vec![0u8; 512];
        tar[TAR_MAGIC_AT..TAR_MAGIC_AT + 5].copy_from_slice(b"ustar");
        assert!(is_archive(&tar));
        assert!(!is_archive(b"FROM busybox\nRUN true\n"));
        assert!(!is_archive(b""));
    }
}
