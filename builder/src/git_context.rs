//! Git repositories as build contexts: `docker build
//! https://host/repo.git#ref:subdir`, `POST /build?remote=`, buildx with a
//! git URL for its context, `hutch build URL`. What counts as a git URL
//! and what `#ref:subdir` means follow moby (`urlutil.IsGitURL`,
//! `gitutil.ParseGitRef`); the clone follows moby's too: an empty
//! repository, a shallow fetch of the ref (a full fetch when the server
//! refuses a shallow one), a checkout, the submodules, then `.git` goes,
//! as BuildKit leaves it out of a git context.
//!
//! The `git` program does the network work (its transports, proxies and
//! TLS settings are what users know); it runs without the system's or the
//! user's config, without prompts, with the `file` and `ext` transports
//! off (a repository's submodule cannot point the clone at the daemon's
//! own files), and only for URLs of the network transports.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// A git context: where from, which ref (the remote's HEAD when none),
/// and which directory of it is the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitContext {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

/// Whether `s` names a git repository rather than a directory or another
/// URL: a `git://`, `git@`, `ssh://` or `github.com/` prefix, or an http(s)
/// URL whose path ends in `.git` (before any `#fragment`).
pub fn is_git_url(s: &str) -> bool {
    if ["git://", "git@", "github.com/", "ssh://"]
        .iter()
        .any(|p| s.starts_with(p))
    {
        return true;
    }
    let is_http = s.starts_with("http://") || s.starts_with("https://");
    let path = s.split('#').next().unwrap_or(s);
    is_http && path.ends_with(".git")
}

impl GitContext {
    /// Reads `URL[#REF[:SUBDIR]]`.
    pub fn parse(s: &str) -> Result<GitContext, String> {
        if !is_git_url(s) {
            return Err(format!("{s} is not a git URL"));
        }
        let (url, fragment) = match s.split_once('#') {
            Some((u, f)) => (u, Some(f)),
            None => (s, None),
        };
        let url = match url.strip_prefix("github.com/") {
            Some(rest) => format!("https://github.com/{rest}"),
            None => url.to_owned(),
        };
        let (reference, subdir) = match fragment {
            None => ("", None),
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (f, None),
            },
        };
        let reference = Some(reference).filter(|r| !r.is_empty()).map(str::to_owned);
        if let Some(r) = &reference {
            if r.starts_with('-') {
                return Err(format!("invalid git ref {r:?}"));
            }
        }
        let subdir = match subdir
            .map(|d| d.trim_matches('/'))
            .filter(|d| !d.is_empty())
        {
            None => None,
            Some(d) => {
                let escapes = Path::new(d)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
                if escapes {
                    return Err(format!(
                        "the context directory {d:?} of {url} must be a path inside the repository"
                    ));
                }
                Some(d.to_owned())
            }
        };
        Ok(GitContext {
            url,
            reference,
            subdir,
        })
    }

    /// What the remote names for the ref, asked without fetching
    /// anything (`git ls-remote`): the object of each ref that `git fetch`
    /// could take for it (a tag's own object, not the commit it peels to,
    /// which needs the objects), as `sha ref` lines. A full commit ID as
    /// the ref is its own answer. This is what a cache key can hold before
    /// a clone, as BuildKit resolves the ref first. `None` when the remote
    /// names nothing for it (an abbreviated commit, which only a fetch
    /// resolves) or cannot be asked: the clone then says what is wrong.
    pub fn remote_revision(&self) -> Option<String> {
        let wanted = self.reference.as_deref().unwrap_or("HEAD");
        let is_id =
            matches!(wanted.len(), 40 | 64) && wanted.bytes().all(|b| b.is_ascii_hexdigit());
        if is_id {
            return Some(wanted.to_ascii_lowercase());
        }
        let listed = Git {
            dir: Path::new("/"),
        }
        .run(&["ls-remote", "--", &self.url, wanted])
        .ok()?;
        let names = [
            wanted.to_owned(),
            format!("refs/heads/{wanted}"),
            format!("refs/tags/{wanted}"),
        ];
        let mut lines: Vec<&str> = listed
            .lines()
            .filter(|l| {
                l.split_once('\t')
                    .is_some_and(|(_, name)| names.iter().any(|n| n == name))
            })
            .collect();
        lines.sort_unstable();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Clones the repository into `repo` (a directory that does not exist
    /// yet) and returns the context directory: `repo` or its subdirectory,
    /// which must resolve inside it. Errors do not repeat the URL.
    pub fn fetch(&self, repo: &Path) -> Result<PathBuf, String> {
        self.fetch_with(repo, false)
    }

    /// [`GitContext::fetch`], keeping `.git` when `keep_git_dir` (ADD
    /// `--keep-git-dir=true`).
    pub fn fetch_with(&self, repo: &Path, keep_git_dir: bool) -> Result<PathBuf, String> {
        std::fs::create_dir_all(repo).map_err(|e| format!("{}: {e}", repo.display()))?;
        let git = Git { dir: repo };
        git.run(&["init", "-q"])?;
        git.run(&["remote", "add", "origin", &self.url])?;
        let wanted = self.reference.as_deref().unwrap_or("HEAD");
        let shallow = ["fetch", "-q", "--depth=1", "--no-tags", "origin", wanted];
        let target = if git.run(&shallow).is_ok() {
            "FETCH_HEAD"
        } else {
            // A server that refuses shallow fetches, or a commit it will
            // not hand out by itself: all of it, then the ref by name or
            // the commit among what came.
            git.run(&["fetch", "-q", "--tags", "origin"])
                .map_err(|e| format!("fetching {wanted}: {e}"))?;
            if git.run(&["fetch", "-q", "origin", wanted]).is_ok() {
                "FETCH_HEAD"
            } else {
                wanted
            }
        };
        git.run(&["checkout", "-q", target]).map_err(|e| {
            if target == wanted {
                format!("the repository has no branch, tag or commit {wanted:?}")
            } else {
                format!("checking {wanted} out: {e}")
            }
        })?;
        if repo.join(".gitmodules").is_file() {
            git.run(&[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth=1",
            ])
            .map_err(|e| format!("its submodules: {e}"))?;
        }
        if !keep_git_dir {
            std::fs::remove_dir_all(repo.join(".git"))
                .map_err(|e| format!("removing {}/.git: {e}", repo.display()))?;
        }
        let Some(subdir) = &self.subdir else {
            return Ok(repo.to_path_buf());
        };
        let root = repo
            .canonicalize()
            .map_err(|e| format!("{}: {e}", repo.display()))?;
        let dir = root
            .join(subdir)
            .canonicalize()
            .map_err(|_| format!("the repository has no directory {subdir}"))?;
        if !dir.starts_with(&root) || !dir.is_dir() {
            return Err(format!("{subdir} is not a directory inside the repository"));
        }
        Ok(dir)
    }
}

struct Git<'a> {
    dir: &'a Path,
}

impl Git<'_> {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("git")
            .args([
                "-c",
                "protocol.file.allow=never",
                "-c",
                "protocol.ext.allow=never",
            ])
            .args(args)
            .current_dir(self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ASKPASS", "true")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "building from a git URL needs the git program, which is not on the PATH"
                        .to_owned()
                }
                _ => format!("running git: {e}"),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!("git {}: {}", args[0], err.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_as_moby_tells_them() {
        for yes in [
            "git://host/repo",
            "git@github.com:o/r.git",
            "github.com/o/r",
            "https://host/o/r.git",
            "https://host/o/r.git#main:sub",
            "http://127.0.0.1:8080/r.git#v1",
        ] {
            assert!(is_git_url(yes), "{yes}");
        }
        for no in [
            "https://host/ctx.tar.gz",
            "https://host/o/r.git.tar",
            "/srv/repo.git",
            "file:///srv/repo.git",
            ".",
            "ext::sh -c touch% /tmp/x",
        ] {
            assert!(!is_git_url(no), "{no}");
        }
    }

    #[test]
    fn a_full_commit_id_is_its_own_revision() {
        let id = "0123456789ABCDEF0123456789abcdef01234567";
        // An unresolvable host: answered without asking it.
        let g = GitContext::parse(&format!("git://host.invalid/r.git#{id}")).expect("parses");
        assert_eq!(g.remote_revision(), Some(id.to_ascii_lowercase()));
        let g = GitContext::parse("git://host.invalid/r.git#main").expect("parses");
        assert_eq!(g.remote_revision(), None);
    }

    #[test]
    fn fragments_give_ref_and_dir() {
        let g = GitContext::parse("github.com/o/r#v1.2:docker/app/").expect("parses");
        assert_eq!(g.url, "https://github.com/o/r");
        assert_eq!(g.reference.as_deref(), Some("v1.2"));
        assert_eq!(g.subdir.as_deref(), Some("docker/app"));
        let g = GitContext::parse("git://h/r.git#:sub").expect("parses");
        assert_eq!((g.reference, g.subdir.as_deref()), (None, Some("sub")));
        let g = GitContext::parse("git://h/r.git").expect("parses");
        assert_eq!((g.reference, g.subdir), (None, None));
        assert!(GitContext::parse("git://h/r.git#main:../../etc").is_err());
        assert!(GitContext::parse("git://h/r.git#main:/abs/../..").is_err());
        assert!(GitContext::parse("git://h/r.git#--upload-pack=x").is_err());
        assert!(GitContext::parse("/local/dir").is_err());
    }
}
