//! The build context of `POST /build`: the request body (a tar, plain or
//! compressed) unpacked into a private temporary directory by the images
//! crate's layer unpacker, whose every path is resolved inside the
//! directory by the kernel (a `..` or a symlink cannot lead an entry out),
//! with its size and decompression-ratio limits. Then the Dockerfile is
//! located inside it, symlinks resolved, as moby does. A git context
//! (`remote=` a git URL) is cloned instead (`hutch_builder::git_context`).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use hutch_builder::git_context::GitContext;
use hutch_images::unpack::{unpack_layer, UnpackLimits};

use super::super::error::ApiError;

/// The unpacked (or cloned) context; the directory goes when this is
/// dropped.
pub struct Context {
    /// Held for its Drop, which removes the directory.
    _dir: tempfile::TempDir,
    /// The context's root: `dir`, or a directory of a git repository.
    root: PathBuf,
}

/// Magic bytes of the compressions moby accepts that the unpacker does not
/// (gzip and zstd it detects itself).
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// Unpacks `body` under `tmp`. Blocking: run it on a blocking thread.
pub fn unpack(body: impl Read + Send, tmp: &Path) -> Result<Context, ApiError> {
    std::fs::create_dir_all(tmp)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp.display())))?;
    let mut body = body;
    let mut head = Vec::with_capacity(XZ_MAGIC.len());
    (&mut body)
        .take(XZ_MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| ApiError::bad_request(format!("reading the build context: {e}")))?;
    for (magic, name) in [(BZIP2_MAGIC, "bzip2"), (XZ_MAGIC, "xz")] {
        if head.starts_with(magic) {
            return Err(ApiError::bad_request(format!(
                "the build context is {name}-compressed, which hutch does not read: \
                 send a plain, gzip or zstd tar"
            )));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("context-")
        .tempdir_in(tmp)
        .map_err(|e| ApiError::internal(format!("creating the context directory: {e}")))?;
    let reader = Cursor::new(head).chain(body);
    unpack_layer(reader, dir.path(), UnpackLimits::default()).map_err(|e| {
        ApiError::bad_request(format!("the build context is not a valid archive: {e}"))
    })?;
    let root = dir.path().to_path_buf();
    Ok(Context { _dir: dir, root })
}

/// Clones the git context `git` under `tmp`. Blocking: run it on a
/// blocking thread.
pub fn clone(git: &GitContext, tmp: &Path) -> Result<Context, ApiError> {
    std::fs::create_dir_all(tmp)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(tmp)
        .map_err(|e| ApiError::internal(format!("creating the context directory: {e}")))?;
    let root = git
        .fetch(&dir.path().join("repo"))
        .map_err(|e| ApiError::bad_request(format!("the git context {}: {e}", git.url)))?;
    Ok(Context { _dir: dir, root })
}

impl Context {
    /// The context's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The Dockerfile named `name` (relative to the context root; default
    /// `Dockerfile`, then `dockerfile` as moby falls back), which must
    /// resolve to a file inside the context.
    pub fn dockerfile(&self, name: Option<&str>) -> Result<PathBuf, ApiError> {
        let root = self
            .root
            .canonicalize()
            .map_err(|e| ApiError::internal(format!("the context directory: {e}")))?;
        let candidates: Vec<&str> = match name {
            Some(n) => vec![n],
            None => vec!["Dockerfile", "dockerfile"],
        };
        let shown = name.unwrap_or("Dockerfile");
        for candidate in candidates {
            let rel = candidate.trim_start_matches('/');
            let Ok(path) = root.join(rel).canonicalize() else {
                continue;
            };
            if !path.starts_with(&root) {
                return Err(ApiError::bad_request(format!(
                    "The Dockerfile ({shown}) must be within the build context"
                )));
            }
            if path.is_file() {
                return Ok(path);
            }
        }
        Err(ApiError::bad_request(format!(
            "Cannot locate specified Dockerfile: {shown}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("tar entry");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn unpacks_and_finds_the_dockerfile() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let body = tar_of(&[("Dockerfile", b"FROM scratch\n"), ("sub/a", b"a")]);
        let ctx = unpack(Cursor::new(body), tmp.path()).expect("unpacked");
        let df = ctx.dockerfile(None).expect("found");
        assert_eq!(std::fs::read(df).expect("read"), b"FROM scratch\n");
        assert!(ctx.dockerfile(Some("nothere")).is_err());
        let err = ctx
            .dockerfile(Some("../../etc/passwd"))
            .expect_err("outside");
        assert!(
            err.message.contains("must be within the build context")
                || err.message.contains("Cannot locate"),
            "{err}"
        );
    }

    #[test]
    fn refuses_escaping_entries_and_unknown_compression() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // A raw header naming "../escape" (the tar crate refuses to write it).
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        let mut body = h.as_bytes().to_vec();
        body.extend_from_slice(b"x");
        body.resize(512 * 2, 0);
        body.extend_from_slice(&[0; 1024]);
        let err = match unpack(Cursor::new(body), &tmp.path().join("t")) {
            Ok(_) => panic!("an escaping entry was unpacked"),
            Err(e) => e,
        };
        assert!(err.message.contains("outside"), "{err}");
        assert!(!tmp.path().join("t/escape").exists());
        // The half-unpacked context is gone too.
        assert_eq!(
            std::fs::read_dir(tmp.path().join("t"))
                .expect("dir")
                .count(),
            0
        );
        let err = match unpack(Cursor::new(b"BZh91AY&SY".to_vec()), tmp.path()) {
            Ok(_) => panic!("bzip2 accepted"),
            Err(e) => e,
        };
        assert!(err.message.contains("bzip2"), "{err}");
    }
}
