//! Splitting an instruction's text into keyword, `--flags` and arguments, the ways
//! BuildKit's line parsers do (`parser/split_command.go`, `parser/line_parsers.go`).
//! Nothing here expands variables or removes quotes from arguments: that happens
//! when the instruction runs, with the environment of its stage.

/// Characters BuildKit's `reWhitespace` splits on (`[\t\v\f\r ]+`).
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, at most `limit` pieces (0: no limit).
pub(crate) fn split_spaces(s: &str, limit: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if limit != 0 && out.len() + 1 == limit {
            out.push(rest);
            return out;
        }
        match rest.find(is_split_space) {
            None => {
                out.push(rest);
                return out;
            }
            Some(i) => {
                out.push(&rest[..i]);
                rest = rest[i..].trim_start_matches(is_split_space);
            }
        }
    }
}

/// A `--flag[=value]` taken from the front of an instruction, with its byte offset
/// in the text it was taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFlag {
    pub text: String,
    pub offset: usize,
}

/// Takes leading `--flag` words (with quotes and escapes processed, as BuildKit's
/// `extractBuilderFlags`) and returns them with the byte offset where the
/// arguments start. A lone `--` ends the flags.
pub(crate) fn extract_flags(line: &str, escape: char) -> (Vec<RawFlag>, usize) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return (flags, line.len());
        }
        let start = chars[i].0;
        let is_flag = chars[i].1 == '-' && chars.get(i + 1).map(|c| c.1) == Some('-');
        if !is_flag {
            return (flags, start);
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let ch = chars[i].1;
            match quote {
                None => {
                    if ch.is_whitespace() {
                        break;
                    }
                    if ch == '\'' || ch == '"' {
                        quote = Some(ch);
                        blank_ok = true;
                        i += 1;
                        continue;
                    }
                    if ch == escape {
                        i += 1;
                        if i >= chars.len() {
                            break;
                        }
                    }
                    word.push(chars[i].1);
                    i += 1;
                }
                Some(q) => {
                    if ch == q {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    if ch == escape {
                        i += 1;
                        if i >= chars.len() {
                            break;
                        }
                    }
                    word.push(chars[i].1);
                    i += 1;
                }
            }
        }
        if word == "--" {
            let after = chars.get(i).map_or(line.len(), |c| c.0);
            return (flags, after);
        }
        if blank_ok || !word.is_empty() {
            flags.push(RawFlag {
                text: word,
                offset: start,
            });
        }
    }
}

/// BuildKit's `parseWords`: splits on whitespace outside quotes, keeping quotes and
/// escapes in the words (they are removed later, by expansion).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let mut ch = chars[i];
        if !in_word {
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    in_word = false;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue; // an escape at the very end is dropped
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// The outcome of trying a `[`-line as a JSON array.
pub(crate) enum Json {
    /// A JSON array of strings: exec form.
    Strings(Vec<String>),
    /// Not JSON (or not an array): the line is shell form.
    Shell,
    /// A JSON array with something other than strings in it: an error, as in BuildKit.
    NotStrings,
}

/// BuildKit's rule: a line is exec form when, after leading blanks, it starts with
/// `[` and the whole rest parses as a JSON array; an array holding anything but
/// strings is an error; anything else is shell form.
pub(crate) fn parse_json(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::Shell;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => Json::Shell,
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_first_non_flag_word() {
        let (flags, at) = extract_flags("--from=a --chown=\"1 2\" src dst", '\\');
        let texts: Vec<_> = flags.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["--from=a", "--chown=1 2"]);
        assert_eq!(&"--from=a --chown=\"1 2\" src dst"[at..], "src dst");
        let (flags, at) = extract_flags("-- --notflag x", '\\');
        assert!(flags.is_empty());
        assert_eq!(&"-- --notflag x"[at..], " --notflag x");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d=e\ f g='h i'"#, '\\'),
            [r#"a="b c""#, r"d=e\ f", "g='h i'"]
        );
        assert_eq!(parse_words("x=\"\" y", '\\'), ["x=\"\"", "y"]);
    }

    #[test]
    fn spaces_split_with_limit() {
        assert_eq!(split_spaces("a  b\tc", 0), ["a", "b", "c"]);
        assert_eq!(split_spaces("a  b c", 2), ["a", "b c"]);
    }
}
