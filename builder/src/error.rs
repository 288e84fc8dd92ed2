//! Parse errors and warnings, each tied to a place in the Dockerfile.

use std::fmt;

/// A place in a Dockerfile: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The lines an instruction covers: where it starts (line and column of its keyword)
/// and the last line it uses (continuations and heredoc bodies included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Position,
    pub end_line: usize,
}

/// A Dockerfile that cannot be used, with the file name and the place: its Display
/// is `Dockerfile:7:5: unknown instruction: RUNN`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(file: &str, at: Position, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }
}

/// A problem BuildKit reports without failing the build (its "checks").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// BuildKit's rule name, e.g. `MaintainerDeprecated`, `JSONArgsRecommended`.
    pub rule: &'static str,
    pub at: Position,
    pub message: String,
}

impl Warning {
    /// BuildKit's one-line form: `JSONArgsRecommended: JSON arguments
    /// recommended for CMD ... (line 4)`, as buildx lists it after a build.
    pub fn short(&self) -> String {
        format!("{}: {} (line {})", self.rule, self.message, self.at.line)
    }

    /// What the rule is about, in BuildKit's words.
    pub fn description(&self) -> &'static str {
        crate::dockerfile::lint::description(self.rule)
    }

    /// The rule's page on docs.docker.com.
    pub fn url(&self) -> String {
        crate::dockerfile::lint::url(self.rule)
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.rule, self.message)
    }
}
