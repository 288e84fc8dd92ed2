//! COPY and ADD: the new layer is written straight from the sources (the
//! build context or another stage's files), with no container: Docker's
//! source and destination rules, wildcards, `--chown`/`--chmod`, heredoc
//! files, ADD's extraction of local tar archives and its downloads
//! (fetched beforehand by `remote`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fswalk::{entry_for, join, sorted_names, Links};
use super::remote::{self, Fetched};
use super::tarball::{Body, Entry};
use super::view::lookup;
use super::BuildError;
use crate::chmod::Chmod;
use crate::dockerfile::Heredoc;
use crate::dockerignore::DockerIgnore;

/// Where COPY reads from.
pub struct SourceRoot<'a> {
    pub root: &'a Path,
    /// The context's included paths (after `.dockerignore`); `None` for a
    /// stage or image, where everything is visible.
    pub included: Option<&'a BTreeMap<String, PathBuf>>,
    /// Context files are owned by root in the image; stage files keep owners.
    pub keep_owner: bool,
}

pub struct CopyRequest<'a> {
    pub sources: &'a [String],
    pub inline: &'a [Heredoc],
    /// Destination as written (expanded), relative to `workdir` unless absolute.
    pub dest: &'a str,
    pub workdir: &'a str,
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    /// ADD: local tar archives are extracted.
    pub add: bool,
    /// ADD `--unpack`: `None` extracts local archives and not downloads.
    pub unpack: Option<bool>,
    /// ADD's URL sources, downloaded.
    pub remote: &'a [Fetched],
    pub now: i64,
    /// The mtime of a download without `Last-Modified`.
    pub download_time: i64,
    /// `--exclude` patterns (`.dockerignore` syntax): a top-level source
    /// is matched by its path in the context, what is under a directory
    /// source by its path below that directory.
    pub exclude: &'a DockerIgnore,
    /// `--parents`: each source keeps its path (from the context's root)
    /// under the destination, which is then a directory.
    pub parents: bool,
}

/// The entries of the layer, sorted, parents included.
pub fn copy_entries(
    src: &SourceRoot<'_>,
    req: &CopyRequest<'_>,
    lower: &[PathBuf],
) -> Result<Vec<Entry>, BuildError> {
    let dest_abs = if req.dest.starts_with('/') {
        req.dest.to_string()
    } else {
        format!("{}/{}", req.workdir.trim_end_matches('/'), req.dest)
    };
    let dest_hint_dir =
        req.dest.ends_with('/') || req.dest.ends_with("/.") || req.dest == "." || req.dest == "..";
    let dest = clean(&dest_abs)
        .ok_or_else(|| BuildError::Copy(format!("invalid destination {}", req.dest)))?;

    let mut matched: Vec<String> = Vec::new();
    let mut urls: Vec<&Fetched> = Vec::new();
    let mut wildcard = false;
    for s in req.sources {
        // (ADD's git source was cloned and stands here as `.`.)
        if remote::is_git(s) {
            return Err(BuildError::Copy(format!(
                "a git repository ({s}) is copied by ADD as its only source"
            )));
        }
        if remote::is_url(s) {
            if !req.add {
                return Err(BuildError::Copy(format!(
                    "COPY cannot copy from a URL ({s}): use ADD"
                )));
            }
            let f = req
                .remote
                .iter()
                .find(|f| f.url == *s)
                .ok_or_else(|| BuildError::Copy(format!("{s} was not downloaded")))?;
            urls.push(f);
            continue;
        }
        let rel = clean(s).ok_or_else(|| {
            BuildError::Copy(format!("forbidden path outside the build context: {s}"))
        })?;
        if has_glob(&rel) {
            wildcard = true;
            let re = glob_regex(&rel);
            let found = list_all(src)?
                .into_iter()
                .filter(|p| re.is_match(p))
                .collect::<Vec<_>>();
            if found.is_empty() {
                return Err(BuildError::Copy(format!(
                    "failed to compute cache key: no source files were specified ({s})"
                )));
            }
            matched.extend(found);
        } else {
            if !exists(src, &rel) {
                return Err(BuildError::Copy(format!(
                    "failed to compute cache key: \"/{rel}\": not found"
                )));
            }
            matched.push(rel);
        }
    }
    matched.retain(|rel| !req.exclude.is_ignored(rel));
    let multi = matched.len() + urls.len() + req.inline.len() > 1 || wildcard;
    let dest_is_dir = req.parents
        || dest_hint_dir
        || multi
        || lookup(lower, &dest).is_some_and(|(_, m)| m.is_dir())
        || (matched.len() == 1 && is_dir(src, &matched[0]));

    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let mut links = Links::default();
    for rel in &matched {
        let full = src.root.join(rel);
        let meta = fs::symlink_metadata(&full)
            .map_err(|e| BuildError::io(&format!("reading {rel}"), e))?;
        if meta.is_dir() {
            // With --parents the directory itself goes under its path.
            let into = if req.parents {
                join(&dest, rel)
            } else {
                dest.clone()
            };
            copy_tree(src, rel, &into, req, &mut links, &mut out)?;
            if !into.is_empty() {
                let e = Entry::dir(&into, 0o755, owner(req).0, owner(req).1, meta.mtime());
                out.entry(into.clone()).or_insert(e);
            }
            continue;
        }
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let target = if req.parents {
            join(&dest, rel)
        } else if dest_is_dir {
            join(&dest, name)
        } else {
            dest.clone()
        };
        if req.add && req.unpack != Some(false) && is_archive(&full) {
            extract(&full, &dest, req, &mut out)?;
            continue;
        }
        if let Some(mut e) = entry_for(&full, &meta, &target, None)
            .map_err(|e| BuildError::io(&format!("reading {rel}"), e))?
        {
            apply_owner_mode(&mut e, src, req);
            out.insert(target, e);
        }
    }
    for f in urls {
        let target = if dest_is_dir {
            join(&dest, &f.name)
        } else {
            dest.clone()
        };
        if req.unpack == Some(true) && is_archive(&f.path) {
            extract(&f.path, &dest, req, &mut out)?;
            continue;
        }
        let (uid, gid) = owner(req);
        // BuildKit's http source writes the file 0600, dated by
        // Last-Modified (else now).
        let mut e = Entry {
            path: target.clone(),
            size: f.size,
            body: Body::File(f.path.clone()),
            mode: 0o600,
            uid,
            gid,
            mtime: f.mtime.unwrap_or(req.download_time),
            xattrs: Vec::new(),
        };
        if let Some(c) = &req.chmod {
            e.mode = c.apply(e.mode, false);
        }
        out.insert(target, e);
    }
    for doc in req.inline {
        let target = if dest_is_dir || req.dest.ends_with('/') {
            join(&dest, &doc.name)
        } else {
            dest.clone()
        };
        let body = doc.content().into_bytes();
        let (uid, gid) = owner(req);
        let mut e = Entry {
            path: target.clone(),
            size: body.len() as u64,
            body: Body::Bytes(body),
            mode: 0o644,
            uid,
            gid,
            mtime: req.now,
            xattrs: Vec::new(),
        };
        if let Some(c) = &req.chmod {
            e.mode = c.apply(e.mode, false);
        }
        out.insert(target, e);
    }
    add_parents(&mut out, lower, req.now);
    Ok(out.into_values().collect())
}

fn owner(req: &CopyRequest<'_>) -> (u32, u32) {
    req.chown.unwrap_or((0, 0))
}

fn apply_owner_mode(e: &mut Entry, src: &SourceRoot<'_>, req: &CopyRequest<'_>) {
    match req.chown {
        Some((u, g)) => (e.uid, e.gid) = (u, g),
        None if !src.keep_owner => (e.uid, e.gid) = (0, 0),
        None => {}
    }
    if let Some(c) = &req.chmod {
        e.mode = c.apply(e.mode, matches!(e.body, Body::Dir));
    }
}

/// A directory's contents (not the directory itself) into `dest`.
fn copy_tree(
    src: &SourceRoot<'_>,
    rel: &str,
    dest: &str,
    req: &CopyRequest<'_>,
    links: &mut Links,
    out: &mut BTreeMap<String, Entry>,
) -> Result<(), BuildError> {
    let mut stack = vec![(rel.to_string(), dest.to_string())];
    let below = |path: &str| -> String {
        path.strip_prefix(rel)
            .map(|p| p.trim_start_matches('/').to_string())
            .unwrap_or_else(|| path.to_string())
    };
    while let Some((from, to)) = stack.pop() {
        let dir = src.root.join(&from);
        let names =
            sorted_names(&dir).map_err(|e| BuildError::io(&format!("reading {from}"), e))?;
        for name in names {
            let name = name.to_string_lossy().to_string();
            let from_child = join(&from, &name);
            if let Some(inc) = src.included {
                if !inc.contains_key(&from_child) {
                    continue;
                }
            }
            if !req.exclude.is_empty() && req.exclude.is_ignored(&below(&from_child)) {
                continue;
            }
            let full = dir.join(&name);
            let meta = fs::symlink_metadata(&full)
                .map_err(|e| BuildError::io(&format!("reading {from_child}"), e))?;
            let to_child = join(&to, &name);
            if let Some(mut e) = entry_for(&full, &meta, &to_child, Some(links))
                .map_err(|e| BuildError::io(&format!("reading {from_child}"), e))?
            {
                apply_owner_mode(&mut e, src, req);
                out.insert(to_child.clone(), e);
            }
            if meta.is_dir() {
                stack.push((from_child, to_child));
            }
        }
    }
    Ok(())
}

/// Parent directories of every entry: as the image has them (so COPY into
/// /tmp keeps its mode), else created root-owned 0755.
fn add_parents(out: &mut BTreeMap<String, Entry>, lower: &[PathBuf], now: i64) {
    let paths: Vec<String> = out.keys().cloned().collect();
    for p in paths {
        let mut cur = Path::new(&p).parent();
        while let Some(dir) = cur {
            let d = dir.to_string_lossy().to_string();
            if d.is_empty() || out.contains_key(&d) {
                break;
            }
            let e = match lookup(lower, &d) {
                Some((path, meta)) if meta.is_dir() => Entry {
                    path: d.clone(),
                    body: Body::Dir,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: meta.mtime(),
                    size: 0,
                    xattrs: super::fswalk::xattrs(&path)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(k, _)| super::fswalk::keep_xattr(k))
                        .collect(),
                },
                _ => Entry::dir(&d, 0o755, 0, 0, now),
            };
            out.insert(d, e);
            cur = dir.parent();
        }
    }
}

/// `a/./b/../c` → `a/c` without a leading `/`; `None` if it climbs out.
pub fn clean(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

fn has_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Go's `filepath.Match` per path: `*` and `?` never match `/`.
fn glob_regex(p: &str) -> regex::Regex {
    let mut re = String::from("^");
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') || chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' {
                        re.push_str("\\\\");
                    } else {
                        re.push(c);
                    }
                }
                re.push(']');
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap_or_else(|_| {
        regex::Regex::new(&format!("^{}$", regex::escape(p))).unwrap_or_else(|_| never())
    })
}

fn never() -> regex::Regex {
    // `[^\s\S]` matches nothing and always compiles.
    regex::Regex::new(r"[^\s\S]").unwrap_or_else(|_| unreachable!())
}

fn list_all(src: &SourceRoot<'_>) -> Result<Vec<String>, BuildError> {
    if let Some(inc) = src.included {
        return Ok(inc.keys().cloned().collect());
    }
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = src.root.join(&rel);
        for name in sorted_names(&dir).map_err(|e| BuildError::io("listing sources", e))? {
            let child = join(&rel, &name.to_string_lossy());
            if src
                .root
                .join(&child)
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir())
            {
                stack.push(child.clone());
            }
            out.push(child);
        }
    }
    out.sort();
    Ok(out)
}

fn exists(src: &SourceRoot<'_>, rel: &str) -> bool {
    if rel.is_empty() {
        return true;
    }
    match src.included {
        Some(inc) => inc.contains_key(rel),
        None => src.root.join(rel).symlink_metadata().is_ok(),
    }
}

fn is_dir(src: &SourceRoot<'_>, rel: &str) -> bool {
    fs::symlink_metadata(src.root.join(rel)).is_ok_and(|m| m.is_dir())
}

/// A plain or gzip tar, by magic bytes (ADD extracts these).
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let n = read_full(&mut f, &mut head);
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

fn open_archive(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = read_full(&mut f, &mut magic);
    let f = fs::File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// ADD of a local archive: its entries under `dest`, in memory (the layer
/// writer re-emits them). Paths climbing out of `dest` are refused.
fn extract(
    path: &Path,
    dest: &str,
    req: &CopyRequest<'_>,
    out: &mut BTreeMap<String, Entry>,
) -> Result<(), BuildError> {
    let err = |e: io::Error| BuildError::io(&format!("extracting {}", path.display()), e);
    let mut ar = tar::Archive::new(open_archive(path).map_err(err)?);
    for entry in ar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let name = entry.path().map_err(err)?.to_string_lossy().to_string();
        let Some(rel) = clean(&name) else {
            return Err(BuildError::Copy(format!(
                "archive {} has an entry outside its root: {name}",
                path.display()
            )));
        };
        if rel.is_empty() {
            continue;
        }
        let h = entry.header().clone();
        let target = join(dest, &rel);
        let (uid, gid) = match req.chown {
            Some(o) => o,
            None => (
                u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0),
                u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0),
            ),
        };
        let body = match h.entry_type() {
            tar::EntryType::Directory => Body::Dir,
            tar::EntryType::Symlink => Body::Symlink(
                entry
                    .link_name()
                    .map_err(err)?
                    .map(|l| l.to_string_lossy().to_string())
                    .unwrap_or_default(),
            ),
            tar::EntryType::Link => {
                let l = entry
                    .link_name()
                    .map_err(err)?
                    .map(|l| l.to_string_lossy().to_string())
                    .unwrap_or_default();
                Body::Link(join(dest, &clean(&l).unwrap_or_default()))
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(err)?;
                Body::Bytes(data)
            }
            tar::EntryType::Fifo => Body::Fifo,
            _ => continue,
        };
        let size = match &body {
            Body::Bytes(b) => b.len() as u64,
            _ => 0,
        };
        let mut e = Entry {
            path: target.clone(),
            body,
            mode: h.mode().unwrap_or(0o644) & 0o7777,
            uid,
            gid,
            mtime: i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(0),
            size,
            xattrs: Vec::new(),
        };
        if let Some(c) = &req.chmod {
            e.mode = c.apply(e.mode, matches!(e.body, Body::Dir));
        }
        out.insert(target, e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_refuses_climbing_out() {
        assert_eq!(clean("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean("/x/").as_deref(), Some("x"));
        assert_eq!(clean("../x"), None);
        assert_eq!(clean("a/../../x"), None);
    }

    #[test]
    fn globs_do_not_cross_slashes() {
        let re = glob_regex("src/*.txt");
        assert!(re.is_match("src/a.txt"));
        assert!(!re.is_match("src/d/a.txt"));
        assert!(glob_regex("f?[0-9]").is_match("fa1"));
    }
}
