//! `.dockerignore`: which files of the build context a build may see, with
//! moby/patternmatcher semantics (`!` exceptions, the last matching pattern wins,
//! `**`, leading `/` and `./` cleaned, `#` comments), and the per-Dockerfile
//! `<Dockerfile>.dockerignore` that takes precedence over the context's.

mod pattern;
mod walk;

use std::io;
use std::path::{Path, PathBuf};

use pattern::Pattern;
pub use walk::{walk_context, ContextEntry, EntryKind};

/// A compiled ignore file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    /// The file the patterns came from, if any.
    pub source: Option<PathBuf>,
}

impl DockerIgnore {
    /// Reads the ignore file for a build: `<dockerfile>.dockerignore` next to the
    /// Dockerfile when it exists, else `<context>/.dockerignore`, else nothing.
    pub fn load(context: &Path, dockerfile: Option<&Path>) -> io::Result<DockerIgnore> {
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(context.join(".dockerignore"));
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let mut ignore = DockerIgnore::parse(&text).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                    ignore.source = Some(path);
                    return Ok(ignore);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(DockerIgnore::default())
    }

    /// Parses ignore-file text (moby's `ignorefile.ReadAll` + `patternmatcher.New`).
    pub fn parse(text: &str) -> Result<DockerIgnore, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.lines() {
            // Only a `#` in the very first column starts a comment.
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err("illegal exclusion pattern: \"!\"".to_string());
                }
            }
            let mut cleaned = pattern::clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            patterns.push(Pattern::new(&cleaned, exclusion)?);
        }
        Ok(DockerIgnore {
            patterns,
            source: None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context, `/`-separated) is ignored: the last
    /// pattern that matches it or one of its parent directories decides.
    pub fn is_ignored(&self, path: &str) -> bool {
        let path = pattern::clean(path);
        if path == "." {
            return false;
        }
        let mut prefixes = Vec::new();
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            prefixes.push(&path[..at + i]);
            at += i + 1;
        }
        prefixes.push(&path);
        let per_pattern: Vec<bool> = self
            .patterns
            .iter()
            .map(|p| prefixes.iter().any(|pre| p.matches(pre)))
            .collect();
        self.decide(&per_pattern)
    }

    /// Last match wins, given which patterns match the path or a parent.
    fn decide(&self, matched_by: &[bool]) -> bool {
        let mut ignored = false;
        for (p, &m) in self.patterns.iter().zip(matched_by) {
            if m {
                ignored = !p.exclusion;
            }
        }
        ignored
    }

    /// Per-pattern matches for `path`, given its parent directory's.
    fn matches_with_parent(&self, path: &str, parent: &[bool]) -> Vec<bool> {
        self.patterns
            .iter()
            .enumerate()
            .map(|(i, p)| parent.get(i).copied().unwrap_or(false) || p.matches(path))
            .collect()
    }

    /// For an ignored directory: could a `!` exception re-include something below?
    fn may_reinclude_below(&self, dir: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| p.exclusion && p.could_match_below(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_match_wins_with_exceptions() {
        let ig = DockerIgnore::parse(
            "# comment\n*.md\n!README.md\n/build\n./tmp/\n docs/** \n!docs/keep.txt\n",
        )
        .expect("valid");
        assert!(ig.is_ignored("CHANGES.md"));
        assert!(!ig.is_ignored("README.md"));
        assert!(ig.is_ignored("build"));
        assert!(ig.is_ignored("build/out/x.o"));
        assert!(ig.is_ignored("tmp/a"));
        assert!(ig.is_ignored("docs/a.txt"));
        assert!(!ig.is_ignored("docs/keep.txt"));
        assert!(!ig.is_ignored("src/main.rs"));
        assert!(
            !ig.is_ignored("src/notes.md"),
            "*.md does not cross directories"
        );
    }

    #[test]
    fn comment_only_in_first_column_and_bad_exclusion() {
        let ig = DockerIgnore::parse(" #notacomment\n").expect("valid");
        assert!(ig.is_ignored("#notacomment"));
        assert!(DockerIgnore::parse("!\n").is_err());
    }
}
