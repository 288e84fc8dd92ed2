//! Shell glob patterns (`*`, `?`, `\` escapes) of `${v#pat}`, `${v%pat}` and
//! `${v/pat/repl}`, compiled to regular expressions the way BuildKit does, so that
//! greedy and non-greedy matches pick the same text.

use regex::Regex;

/// Compiles `pattern` to a regex. `greedy` selects `*` as `.*` rather than `.*?`;
/// `anchored` ties the match to the start of the value.
pub(crate) fn to_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let tok = chars[i];
        i += 1;
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `\}` and `\/` only protected the delimiter from the word scanner.
                if matches!(chars.get(i), Some('}') | Some('/')) {
                    continue;
                }
                match chars.get(i) {
                    Some(&c @ ('*' | '?' | '\\')) => {
                        i += 1;
                        out.push_str(&regex::escape(&c.to_string()));
                    }
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape '\\' at end of pattern".to_string()),
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    Regex::new(&out).map_err(|e| e.to_string())
}

/// `${value#pattern}` (shortest) or `${value##pattern}` (greedy).
pub(crate) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = to_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// `${value%pattern}` / `${value%%pattern}`: a prefix trim of the reversed value with
/// the reversed pattern, which keeps "shortest" and "longest" meaning the same.
pub(crate) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern while keeping each `\x` escape pair in its order.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = vec![' '; chars.len()];
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        let out_idx = last - i;
        if chars[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = chars[i + 1];
            i += 2;
        } else {
            out[out_idx] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_suffix_trims_pick_shortest_or_longest() {
        assert_eq!(trim_prefix("*/", "a/b/c", false).as_deref(), Ok("b/c"));
        assert_eq!(trim_prefix("*/", "a/b/c", true).as_deref(), Ok("c"));
        assert_eq!(trim_suffix("/*", "a/b/c", false).as_deref(), Ok("a/b"));
        assert_eq!(trim_suffix("/*", "a/b/c", true).as_deref(), Ok("a"));
        assert_eq!(
            trim_suffix(".tar.?z", "x.tar.gz", false).as_deref(),
            Ok("x")
        );
        assert_eq!(trim_prefix("nomatch", "abc", false).as_deref(), Ok("abc"));
    }

    #[test]
    fn escapes_in_patterns() {
        assert_eq!(trim_prefix("\\*", "*x", false).as_deref(), Ok("x"));
        assert_eq!(trim_suffix("\\*", "x*", false).as_deref(), Ok("x"));
        assert!(trim_prefix("\\a", "a", false).is_err());
        assert_eq!(reverse_pattern("a\\*b"), "b\\*a");
    }
}
