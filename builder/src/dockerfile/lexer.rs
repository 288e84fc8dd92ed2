//! From bytes to logical lines: physical lines, parser directives at the top,
//! comments, blank lines and line continuations with the current escape character
//! (`parser/parser.go`). Heredoc bodies are read on request, right after the line
//! that opened them.

use crate::error::Position;

use super::directives::{DirectiveParser, Directives};

/// One instruction's text with continuations joined, and a map back to the file.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    pub text: String,
    pub start_line: usize,
    pub end_line: usize,
    /// (offset in `text`, line, column of that offset), one per joined piece.
    segments: Vec<(usize, usize, usize)>,
    /// An empty line sat inside the continuation (BuildKit warns about it).
    pub had_empty_continuation: bool,
}

impl LogicalLine {
    /// The file position of a byte offset in `text`.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let idx = self
            .segments
            .iter()
            .rposition(|s| s.0 <= offset)
            .unwrap_or(0);
        let (seg_off, line, col) =
            self.segments
                .get(idx)
                .copied()
                .unwrap_or((0, self.start_line, 1));
        let chars = self
            .text
            .get(seg_off..offset)
            .map_or(0, |s| s.chars().count());
        Position {
            line,
            column: col + chars,
        }
    }

    pub fn start(&self) -> Position {
        self.position(0)
    }
}

/// A lexing failure at a place (file name added by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub at: Position,
    pub message: String,
}

pub(crate) struct Lexer<'a> {
    lines: Vec<&'a str>,
    next: usize,
    escape: char,
    directives: DirectiveParser,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self {
            lines: text.split_inclusive('\n').collect(),
            next: 0,
            escape: '\\',
            directives: DirectiveParser::default(),
        }
    }

    pub fn escape(&self) -> char {
        self.escape
    }

    pub fn directives(&self) -> &Directives {
        &self.directives.found
    }

    /// Number of the last line consumed (1-based).
    pub fn line_number(&self) -> usize {
        self.next
    }

    fn take(&mut self) -> Option<&'a str> {
        let l = self.lines.get(self.next).copied();
        if l.is_some() {
            self.next += 1;
        }
        l
    }

    /// Directive check for every physical line, as BuildKit does; an `escape`
    /// directive takes effect at once.
    fn directive(&mut self, line: &str) -> Result<(), LexError> {
        let at = Position {
            line: self.next,
            column: 1,
        };
        self.directives
            .line(line)
            .map_err(|message| LexError { at, message })?;
        if let Some(e) = self.directives.found.escape {
            self.escape = e;
        }
        Ok(())
    }

    /// Removes a trailing continuation (escape followed only by blanks) and says
    /// whether there was one. A doubled escape is not a continuation.
    fn strip_continuation<'s>(&self, line: &'s str) -> (&'s str, bool) {
        let body = line.trim_end_matches([' ', '\t']);
        let Some(before) = body.strip_suffix(self.escape) else {
            return (line, false);
        };
        if before.ends_with(self.escape) {
            return (line, false);
        }
        (before, true)
    }

    /// The next instruction line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<LogicalLine>, LexError> {
        loop {
            let Some(raw) = self.take() else {
                return Ok(None);
            };
            let line_no = self.next;
            let content = trim_newline(raw);
            let trimmed = content.trim_start();
            self.directive(trimmed)?;
            let lead = content[..content.len() - trimmed.len()].chars().count();
            if trimmed.starts_with('#') {
                continue;
            }
            let (first, continued) = self.strip_continuation(trimmed);
            if !continued && first.is_empty() {
                continue;
            }
            let mut logical = LogicalLine {
                text: first.to_string(),
                start_line: line_no,
                end_line: line_no,
                segments: vec![(0, line_no, lead + 1)],
                had_empty_continuation: false,
            };
            let mut continued = continued;
            while continued {
                let Some(raw) = self.take() else { break };
                let line_no = self.next;
                let content = trim_newline(raw);
                self.directive(content)?;
                logical.end_line = line_no;
                // Comment lines inside a continuation are dropped whole; empty ones
                // are skipped too (BuildKit warns that they will become errors).
                if content.trim_start().starts_with('#') {
                    continue;
                }
                if content.trim_start().is_empty() {
                    logical.had_empty_continuation = true;
                    continue;
                }
                let (piece, more) = self.strip_continuation(content);
                logical.segments.push((logical.text.len(), line_no, 1));
                logical.text.push_str(piece);
                continued = more;
            }
            return Ok(Some(logical));
        }
    }

    /// Reads a heredoc body up to the line that is exactly `terminator` (after
    /// leading tabs are removed when `chomp`), which is consumed but not included.
    /// Lines keep their newlines. `None` when the file ends first.
    pub fn heredoc_body(&mut self, terminator: &str, chomp: bool) -> Option<String> {
        let mut body = String::new();
        while let Some(raw) = self.take() {
            let mut candidate = trim_newline(raw);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == terminator {
                return Some(body);
            }
            body.push_str(raw);
        }
        None
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(String, usize, usize)> {
        let mut lx = Lexer::new(text);
        let mut out = Vec::new();
        while let Some(l) = lx.next_line().expect("lexes") {
            out.push((l.text.clone(), l.start_line, l.end_line));
        }
        out
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let got = lines("FROM a\n\n# c\nRUN a \\\n  # inner\n\n  b\\\\\nRUN c\n");
        assert_eq!(
            got,
            [
                ("FROM a".to_string(), 1, 1),
                ("RUN a   b\\\\".to_string(), 4, 7),
                ("RUN c".to_string(), 8, 8)
            ]
        );
    }

    #[test]
    fn backtick_escape_after_directive() {
        let got = lines("# escape=`\nRUN a `\n b \\\n");
        assert_eq!(got, [("RUN a  b \\".to_string(), 2, 3)]);
    }

    #[test]
    fn positions_map_back_through_continuations() {
        let mut lx = Lexer::new("  RUN a \\\n   b\n");
        let l = lx.next_line().expect("lexes").expect("a line");
        assert_eq!(l.start(), Position { line: 1, column: 3 });
        let b = l.text.find('b').expect("b");
        assert_eq!(l.position(b), Position { line: 2, column: 4 });
    }
}
