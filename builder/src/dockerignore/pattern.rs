//! One `.dockerignore` pattern with moby/patternmatcher semantics: `*` and `?` stay
//! within a path segment, `**` spans segments, `[...]` classes, `\` escapes; a
//! pattern matching a directory also covers everything below it.

use regex::Regex;

#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// `!pattern`: re-includes what earlier patterns excluded.
    pub exclusion: bool,
    pub text: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    Regex(Regex),
}

impl Pattern {
    /// Compiles a cleaned pattern (see `clean`), `!` already removed.
    pub fn new(text: &str, exclusion: bool) -> Result<Pattern, String> {
        let matcher = compile(text)?;
        Ok(Pattern {
            exclusion,
            text: text.to_string(),
            matcher,
        })
    }

    /// Whether the pattern matches exactly this `/`-separated relative path.
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Regex(re) => re.is_match(path),
        }
    }

    /// Whether something strictly below directory `dir` could match: used to
    /// decide if an excluded directory must still be walked for `!` exceptions.
    pub fn could_match_below(&self, dir: &str) -> bool {
        let pat_segments: Vec<&str> = self.text.split('/').collect();
        let dir_segments: Vec<&str> = dir.split('/').collect();
        for (i, d) in dir_segments.iter().enumerate() {
            let Some(p) = pat_segments.get(i) else {
                // The pattern is shorter than the directory: it matches an ancestor
                // (or the directory itself) and so everything below.
                return true;
            };
            if p.contains("**") {
                return true;
            }
            match Pattern::new(p, false) {
                Ok(seg) if seg.matches(d) => {}
                _ => return false,
            }
        }
        true
    }
}

fn compile(pattern: &str) -> Result<Matcher, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut exact = true;
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                exact = false;
                if i >= chars.len() {
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => {
                exact = false;
                re.push_str("[^/]*");
            }
            '?' => {
                exact = false;
                re.push_str("[^/]");
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    exact = false;
                    re.push_str(&regex::escape(&next.to_string()));
                }
                None => return Err(format!("bad pattern {pattern:?}: trailing backslash")),
            },
            '[' | ']' => {
                exact = false;
                in_class = ch == '[';
                re.push(ch);
            }
            // Inside a class, ranges and `^` keep their meaning.
            c if in_class && !".+()|{}$&~".contains(c) => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if exact {
        return Ok(Matcher::Exact);
    }
    re.push('$');
    // Go's filepath.Match syntax negates classes with `^`; `!` is only literal there.
    Regex::new(&re)
        .map(Matcher::Regex)
        .map_err(|e| format!("bad pattern {pattern:?}: {e}"))
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Pattern::new(p, false).expect("valid").matches(path)
    }

    #[test]
    fn globs() {
        assert!(m("*.md", "README.md"));
        assert!(!m("*.md", "docs/README.md"));
        assert!(m("**/*.md", "docs/a/README.md"));
        assert!(m("**/*.md", "README.md"));
        assert!(m("docs/**", "docs/a/b"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(m("file?.txt", "file1.txt"));
        assert!(!m("file?.txt", "file/.txt"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("x.y", "x.y") && !m("x.y", "xzy"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean("/../a"), "/a");
    }

    #[test]
    fn below() {
        let p = Pattern::new("vendor/keep/*.go", true).expect("valid");
        assert!(p.could_match_below("vendor"));
        assert!(p.could_match_below("vendor/keep"));
        assert!(!p.could_match_below("node_modules"));
        assert!(Pattern::new("**/x", true)
            .expect("v")
            .could_match_below("any"));
    }
}
