//! Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`) in RUN, COPY and ADD, found the
//! way BuildKit finds them (`parser.heredocsFromLine`, `parser.ParseHeredoc`).

use crate::shell::{Lexer, NoEnv};

/// One heredoc: its marker and, once read, its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`).
    pub name: String,
    /// The file descriptor before `<<` (`0` when none was written).
    pub fd: u32,
    /// Variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines and from the delimiter line.
    pub chomp: bool,
    /// The body as written, each line with its newline.
    pub body: String,
}

impl Heredoc {
    /// The body with leading tabs removed from each line when `chomp` is set: what a
    /// COPY writes or a RUN executes.
    pub fn content(&self) -> String {
        if !self.chomp {
            return self.body.clone();
        }
        let mut out = String::with_capacity(self.body.len());
        for line in self.body.split_inclusive('\n') {
            out.push_str(line.trim_start_matches('\t'));
        }
        out
    }
}

/// Parses one word as a heredoc marker (`^(\d*)<<(-?)\s*([^<]*)$`). `None` when the
/// word is not a heredoc marker.
pub fn parse_marker(word: &str) -> Option<Heredoc> {
    let digits = word.chars().take_while(|c| c.is_ascii_digit()).count();
    let (fd, rest) = word.split_at(digits);
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv).ok()?;
    if words.len() != 1 {
        return None;
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv).ok()?;
    if raw.len() != 1 {
        return None;
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let name = words.into_iter().next()?;
    Some(Heredoc {
        expand: quotes(&name) == quotes(&raw[0]),
        name,
        fd: fd.parse().unwrap_or(0),
        chomp,
        body: String::new(),
    })
}

/// All heredoc markers on an instruction line, in order.
pub fn markers_in_line(line: &str) -> Vec<Heredoc> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    words.iter().filter_map(|w| parse_marker(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_with_quotes_fds_and_chomp() {
        let found = markers_in_line("RUN 3<<-'A' cat <<\"B\" > f <<C");
        let summary: Vec<_> = found
            .iter()
            .map(|h| (h.name.as_str(), h.fd, h.expand, h.chomp))
            .collect();
        assert_eq!(
            summary,
            [
                ("A", 3, false, true),
                ("B", 0, false, false),
                ("C", 0, true, false)
            ]
        );
    }

    #[test]
    fn not_markers() {
        assert!(parse_marker("<<<x").is_none());
        assert!(parse_marker("a<<b").is_none());
        assert!(parse_marker("<<").is_none());
        assert!(markers_in_line("RUN echo '<<EOF'").is_empty());
    }

    #[test]
    fn chomped_content_strips_tabs() {
        let h = Heredoc {
            name: "E".into(),
            fd: 0,
            expand: true,
            chomp: true,
            body: "\t\ta\n\tb\n c\n".into(),
        };
        assert_eq!(h.content(), "a\nb\n c\n");
    }
}
