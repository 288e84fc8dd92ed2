//! The build context of `POST /build`: the request body (a tar, plain or
//! compressed) unpacked into a private temporary directory by the images
//! crate's layer unpacker, whose every path is resolved inside the
//! directory by the kernel (a `..` or a symlink cannot lead an entry out),
//! with its size and decompression-ratio limits. Then the Dockerfile is
//! located inside it, symlinks resolved, as moby does. A remote context
//! (`remote=` a git or http(s) URL) is fetched instead
//! (`hutch_builder::remote_context`).

use std::io::Read;
use std::path::{Path, PathBuf};

use hutch_builder::remote_context::{unpack_archive, RemoteContext};

use super::super::error::ApiError;

/// The unpacked (or cloned) context; the directory goes when this is
/// dropped.
pub struct Context {
    /// Held for its Drop, which removes the directory.
    _dir: tempfile::TempDir,
    /// The context's root: `dir`, or a directory of a git repository.
    root: PathBuf,
}

/// Unpacks `body` under `tmp`. Blocking: run it on a blocking thread.
pub fn unpack(body: impl Read + Send, tmp: &Path) -> Result<Context, ApiError> {
    let dir = scratch_dir(tmp, "context-")?;
    unpack_archive(body, dir.path()).map_err(ApiError::bad_request)?;
    let root = dir.path().to_path_buf();
    Ok(Context { _dir: dir, root })
}

/// Fetches the context `remote` names (a git clone, or an http(s) tarball
/// or Dockerfile) under `tmp`. Blocking: run it on a blocking thread.
pub fn fetch(remote: &RemoteContext, tmp: &Path, data_root: &Path) -> Result<Context, ApiError> {
    let dir = scratch_dir(tmp, "remote-")?;
    let root = remote
        .fetch(dir.path(), data_root)
        .map_err(|e| ApiError::bad_request(format!("the remote context {}: {e}", remote.url())))?;
    Ok(Context { _dir: dir, root })
}

fn scratch_dir(tmp: &Path, prefix: &str) -> Result<tempfile::TempDir, ApiError> {
    std::fs::create_dir_all(tmp)
        .map_err(|e| ApiError::internal(format!("creating {}: {e}", tmp.display())))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(tmp)
        .map_err(|e| ApiError::internal(format!("creating the context directory: {e}")))
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
    use std::io::Cursor;

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
