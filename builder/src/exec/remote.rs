//! ADD of an http(s) URL, as BuildKit's http source does it: the body is
//! streamed to a file in the build's temp directory (hashed on the way,
//! bounded memory), checked against `--checksum`, named after the URL path's
//! last segment and dated by `Last-Modified`. The file is never extracted
//! (unless `--unpack=true`). A rebuild revalidates the last download
//! (`httpcache`). A git URL is cloned (`git_context`) and copied as a
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::httpcache::{Cached, HttpCache};
use super::BuildError;
use hutch_images::registry::client::describe;

/// A downloaded source.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    /// The file on disk.
    pub path: PathBuf,
    /// The file's name in the image when the destination is a directory.
    pub name: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    pub size: u64,
    /// From `Last-Modified`, in seconds since the epoch.
    pub mtime: Option<i64>,
}

/// The URL sources of one ADD, and its `--checksum`.
pub struct Downloads<'a> {
    urls: Vec<&'a str>,
    checksum: Option<String>,
    /// `Dockerfile:LINE`, prefixed to errors.
    at: &'a str,
}

impl<'a> Downloads<'a> {
    /// `add`: ADD (COPY takes no URL).
    pub fn plan(
        sources: &'a [String],
        add: bool,
        checksum: Option<&str>,
        at: &'a str,
    ) -> Result<Downloads<'a>, BuildError> {
        if let Some(url) = sources.iter().find(|s| !add && (is_url(s) || is_git(s))) {
            return Err(BuildError::Copy(format!(
                "{at}: source can't be a URL for COPY ({}): use ADD",
                redacted(url)
            )));
        }
        let urls: Vec<&str> = sources
            .iter()
            .map(String::as_str)
            .filter(|s| is_url(s) && !is_git(s))
            .collect();
        let checksum = checksum
            .map(parse_checksum)
            .transpose()
            .map_err(|e| BuildError::Invalid(format!("{at}: {e}")))?;
        if checksum.is_some() && (urls.len() != 1 || sources.len() != 1) {
            return Err(BuildError::Invalid(format!(
                "{at}: --checksum needs exactly one source, an http(s) URL"
            )));
        }
        Ok(Downloads { urls, checksum, at })
    }

    /// With `--checksum` the step's cache key needs no download: the
    /// checksum is in the instruction, and the content will match it.
    pub fn key_complete(&self) -> bool {
        self.checksum.is_some()
    }

    /// Downloads every URL into a directory of its own under `tmp` (gone
    /// when the result is dropped).
    pub fn run(
        &self,
        tmp: &Path,
        data_root: &Path,
        cancel: &AtomicBool,
    ) -> Result<Downloaded, BuildError> {
        if self.urls.is_empty() {
            return Ok(Downloaded {
                _dir: None,
                files: Vec::new(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("add-")
            .tempdir_in(tmp)
            .map_err(|e| BuildError::io("creating the download directory", e))?;
        let cache = HttpCache::open(data_root);
        let mut files = Vec::new();
        for (i, url) in self.urls.iter().enumerate() {
            let sub = dir.path().join(i.to_string());
            std::fs::create_dir(&sub)
                .map_err(|e| BuildError::io("creating the download directory", e))?;
            let f = fetch(url, &sub, self.checksum.as_deref(), cancel, &cache).map_err(
                |e| match e {
                    BuildError::Copy(m) => BuildError::Copy(format!("{}: {m}", self.at)),
                    e => e,
                },
            )?;
            files.push(f);
        }
        Ok(Downloaded {
            _dir: Some(dir),
            files,
        })
    }
}

/// Downloaded files, removed on drop.
pub struct Downloaded {
    _dir: Option<tempfile::TempDir>,
    files: Vec<Fetched>,
}

impl Downloaded {
    pub fn files(&self) -> &[Fetched] {
        &self.files
    }
}

/// ADD's git source, when its one source is a git repository (BuildKit
/// takes no other source beside one).
pub fn git_source(
    sources: &[String],
    add: bool,
    at: &str,
) -> Result<Option<crate::git_context::GitContext>, BuildError> {
    if !add || !sources.iter().any(|s| is_git(s)) {
        return Ok(None);
    }
    if sources.len() != 1 {
        return Err(BuildError::Copy(format!(
            "{at}: ADD of a git repository takes it as its only source"
        )));
    }
    crate::git_context::GitContext::parse(&sources[0])
        .map(Some)
        .map_err(|e| BuildError::Copy(format!("{at}: {e}")))
}

/// Clones `git` under `tmp` (removed with the returned directory) and
/// returns the directory to copy from.
pub fn clone_git(
    git: Option<&crate::git_context::GitContext>,
    tmp: &Path,
    keep_git_dir: bool,
    at: &str,
) -> Result<(tempfile::TempDir, PathBuf), BuildError> {
    let git = git.ok_or_else(|| BuildError::Invalid("no git source".into()))?;
    let dir = tempfile::Builder::new()
        .prefix("add-git-")
        .tempdir_in(tmp)
        .map_err(|e| BuildError::io("creating the clone's directory", e))?;
    let root = git
        .fetch_with(&dir.path().join("repo"), keep_git_dir)
        .map_err(|e| BuildError::Copy(format!("{at}: {}: {e}", redacted(&git.url))))?;
    Ok((dir, root))
}

/// `http://` or `https://` (what ADD downloads).
pub fn is_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// A git repository as BuildKit recognises one in ADD: `git@host:...`,
/// `git://`, `ssh://`, or an http(s) URL whose path ends in `.git`
/// (optionally with a `#ref` fragment). Not `git_context::is_git_url`,
/// which follows moby for contexts: there `github.com/x` is a repository,
/// in ADD a path.
pub fn is_git(s: &str) -> bool {
    if s.starts_with("git@") || s.starts_with("git://") || s.starts_with("ssh://") {
        return true;
    }
    if !is_url(s) {
        return false;
    }
    let no_fragment = s.split('#').next().unwrap_or(s);
    let path = no_fragment.split('?').next().unwrap_or(no_fragment);
    path.trim_end_matches('/').ends_with(".git")
}

/// BuildKit's name for a downloaded file: the URL path's last segment, or
/// `__unnamed__` when it has none.
pub fn file_name(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return "__unnamed__".into();
    };
    let base = u.path().rsplit('/').next().unwrap_or_default();
    let decoded = percent_decode(base);
    if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains('/') {
        "__unnamed__".into()
    } else {
        decoded
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(Ok(b)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `--checksum=sha256:<hex>`, checked before anything is downloaded.
pub fn parse_checksum(spec: &str) -> Result<String, BuildError> {
    let (algo, hex) = spec.split_once(':').unwrap_or(("sha256", spec));
    if algo != "sha256" {
        return Err(BuildError::Invalid(format!(
            "invalid --checksum {spec}: unsupported digest algorithm {algo} (use sha256:<hex>)"
        )));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BuildError::Invalid(format!(
            "invalid --checksum {spec}: expected sha256: and 64 hex digits"
        )));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// Downloads `url` into `dir` (which must exist). `expected` is a parsed
/// checksum; a mismatch keeps nothing. `cancel` stops the download.
pub fn fetch(
    url: &str,
    dir: &Path,
    expected: Option<&str>,
    cancel: &AtomicBool,
    cache: &HttpCache,
) -> Result<Fetched, BuildError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BuildError::io("starting the download runtime", e))?;
    let path = dir.join("download");
    let fetched = rt.block_on(async {
        tokio::select! {
            r = download(url, &path, cache) => r,
            () = cancelled(cancel) => Err(BuildError::Cancelled),
        }
    });
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    if let Some(want) = expected {
        if fetched.digest != want {
            let _ = std::fs::remove_file(&path);
            return Err(BuildError::Copy(format!(
                "checksum mismatch for {}: expected {want}, got {}",
                redacted(url),
                fetched.digest
            )));
        }
    }
    Ok(fetched)
}

/// Resolves once `cancel` is set (polled: the flag is a plain atomic).
pub async fn cancelled(cancel: &AtomicBool) {
    while !cancel.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("xxxxx"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

async fn download(url: &str, path: &Path, cache: &HttpCache) -> Result<Fetched, BuildError> {
    let shown = redacted(url);
    let fail = |what: String| BuildError::Copy(format!("failed to download {shown}: {what}"));
    let client = reqwest::Client::builder()
        .user_agent(concat!("hutch-builder/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // A server that stops sending is an error, not a hang.
        .read_timeout(Duration::from_secs(120))
        // The system's CA store as the registry clients hold it, read once
        // per process rather than once per download.
        .tls_certs_only(hutch_images::registry::roots::reqwest_roots())
        .build()
        .map_err(|e| fail(describe(&e.without_url())))?;
    // Asked with the last download's validators: a 304 is that content.
    let prior = cache.lookup(url);
    let mut request = client.get(url);
    if let Some(p) = &prior {
        if let Some(etag) = &p.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = &p.last_modified {
            request = request.header(reqwest::header::IF_MODIFIED_SINCE, date);
        }
    }
    let mut resp = request
        .send()
        .await
        .map_err(|e| fail(describe(&e.without_url())))?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        if let Some(p) = prior {
            match cache.link_into(&p, path) {
                Ok(()) => {
                    return Ok(Fetched {
                        url: url.to_string(),
                        path: path.to_path_buf(),
                        name: file_name(url),
                        mtime: p.last_modified.as_deref().and_then(http_date),
                        digest: p.digest,
                        size: p.size,
                    })
                }
                Err(e) => tracing::info!(%e, "HTTP cache: downloading again"),
            }
        }
        resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(describe(&e.without_url())))?;
    }
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("server answered {status}")));
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let mtime = last_modified.as_deref().and_then(http_date);
    // Read before the body: afterwards reqwest reports what is left.
    let promised = resp.content_length();
    let mut file = std::fs::File::create(path)
        .map_err(|e| BuildError::io(&format!("writing the download of {shown}"), e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| fail(describe(&e.without_url())))?;
        let Some(chunk) = chunk else { break };
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .map_err(|e| BuildError::io(&format!("writing the download of {shown}"), e))?;
    }
    if let Some(len) = promised {
        if len != size {
            return Err(fail(format!("the body ended after {size} of {len} bytes")));
        }
    }
    file.flush()
        .map_err(|e| BuildError::io(&format!("writing the download of {shown}"), e))?;
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("sha256:{hex}");
    let remembered = Cached {
        etag,
        last_modified,
        digest: digest.clone(),
        size,
    };
    if let Err(e) = cache.store(url, &remembered, path) {
        tracing::info!(%e, "HTTP cache: not kept");
    }
    Ok(Fetched {
        url: url.to_string(),
        path: path.to_path_buf(),
        name: file_name(url),
        digest,
        size,
        mtime,
    })
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) in seconds.
fn http_date(v: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(v)
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url_path() {
        assert_eq!(file_name("https://h/a/b/file.tar.gz"), "file.tar.gz");
        assert_eq!(file_name("https://h/a/b/file.txt?x=1#y"), "file.txt");
        assert_eq!(file_name("https://h/"), "__unnamed__");
        assert_eq!(file_name("https://h"), "__unnamed__");
        assert_eq!(file_name("http://h/a%20b"), "a b");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redacted("https://u:p@h/f"), "https://u:xxxxx@h/f");
        assert_eq!(redacted("https://h/f"), "https://h/f");
    }

    #[test]
    fn git_urls_are_recognised() {
        assert!(is_git("git@github.com:moby/moby.git"));
        assert!(is_git("https://github.com/moby/moby.git#v1"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert!(is_url("HTTPS://example.com/x"));
    }

    #[test]
    fn checksums_are_validated() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_checksum(&format!("sha256:{hex}")).ok(),
            Some(format!("sha256:{hex}"))
        );
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("md5:{hex}")).is_err());
    }
}
