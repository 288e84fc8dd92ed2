//! Parser directives (`# syntax=`, `# escape=`, `# check=`): comments at the very top
//! of the file, before anything else, each at most once (`parser/directives.go`).

/// The directives a Dockerfile declared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directives {
    /// `# syntax=` (a frontend image reference). hutch always uses its own parser;
    /// the value is kept for reporting.
    pub syntax: Option<String>,
    /// `# escape=` (`\` or `` ` ``).
    pub escape: Option<char>,
    /// `# check=` (`skip=Rule1,Rule2;error=true`).
    pub check: Option<Check>,
}

/// The `check` directive: which warnings to drop, and whether warnings fail the build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Check {
    /// Rule names to skip; `["all"]` skips every rule.
    pub skip: Vec<String>,
    pub error: bool,
}

impl Check {
    pub fn skips(&self, rule: &str) -> bool {
        self.skip
            .iter()
            .any(|s| s == "all" || s.eq_ignore_ascii_case(rule))
    }

    fn parse(value: &str) -> Result<Check, String> {
        let mut check = Check::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("invalid check directive part {part:?}"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "skip" => {
                    check.skip = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "error" => {
                    check.error = match v.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(format!("invalid error value {other:?} in check directive"))
                        }
                    }
                }
                other => return Err(format!("unknown key {other:?} in check directive")),
            }
        }
        Ok(check)
    }
}

/// Tracks whether directives are still allowed and records them.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    pub found: Directives,
}

impl DirectiveParser {
    /// Looks at one physical line (newline and leading blanks removed). Returns
    /// whether it was a directive. The first line that is not one ends the
    /// directive section for good.
    pub fn line(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some(body) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(false);
        };
        let Some((key, value)) = split_directive(body.trim_start()) else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_ascii_lowercase();
        let seen = match key.as_str() {
            "syntax" => self.found.syntax.is_some(),
            "escape" => self.found.escape.is_some(),
            "check" => self.found.check.is_some(),
            _ => {
                self.done = true;
                return Ok(false);
            }
        };
        if seen {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "syntax" => self.found.syntax = Some(value.to_string()),
            "escape" => {
                let c = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(format!(
                            "invalid escape token '{other}' does not match ` or \\"
                        ))
                    }
                };
                self.found.escape = Some(c);
            }
            _ => self.found.check = Some(Check::parse(value)?),
        }
        Ok(true)
    }
}

/// `key = value` where the key is `[a-zA-Z][a-zA-Z0-9]*` and the value is non-empty
/// (surrounding blanks trimmed).
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let key_len = s
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if key_len == 0 {
        return None;
    }
    let (key, rest) = s.split_at(key_len);
    let rest = rest.trim_start().strip_prefix('=')?;
    let value = rest.trim();
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_stop_at_first_other_line() {
        let mut p = DirectiveParser::default();
        assert_eq!(p.line("# syntax=docker/dockerfile:1"), Ok(true));
        assert_eq!(p.line("#escape = `"), Ok(true));
        assert_eq!(p.line("# a comment"), Ok(false));
        assert_eq!(p.line("# check=skip=all"), Ok(false));
        assert_eq!(p.found.escape, Some('`'));
        assert_eq!(p.found.check, None);
    }

    #[test]
    fn duplicate_and_bad_escape_are_errors() {
        let mut p = DirectiveParser::default();
        assert_eq!(p.line("# escape=\\"), Ok(true));
        assert!(p.line("# ESCAPE=`").is_err());
        let mut p = DirectiveParser::default();
        assert!(p.line("# escape=x").is_err());
    }

    #[test]
    fn check_directive_parses_skip_and_error() {
        let c = Check::parse("skip=JSONArgsRecommended,StageNameCasing;error=true").expect("valid");
        assert!(c.error);
        assert!(c.skips("jsonargsrecommended"));
        assert!(!c.skips("MaintainerDeprecated"));
    }
}
