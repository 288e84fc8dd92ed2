//! Dockerfiles as BuildKit reads them: parser directives, continuations, comments,
//! heredocs, exec and shell forms, every instruction with its flags.
//!
//! Layers, each a module: `lexer` (bytes → logical lines, directives, heredoc
//! bodies), `words` and `node` (keyword/flags/arguments of a line), `heredoc`,
//! `flags`, `mount`, `typed` (→ [`Command`]), `parse` (the driver, stages), `lint`
//! (warnings), `dump` (a compact text form for tests and debugging).

mod directives;
mod dump;
mod duration;
mod flags;
mod heredoc;
mod instruction;
mod lexer;
pub(crate) mod lint;
mod mount;
mod node;
mod parse;
mod typed;
mod words;

pub use directives::{Check, Directives};
pub use heredoc::{markers_in_line, parse_marker};
pub use instruction::*;
pub use parse::parse;

use crate::error::Warning;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The file name errors and warnings are reported against.
    pub file: String,
    pub directives: Directives,
    /// The escape character in effect (`\` unless `# escape=` said otherwise).
    pub escape: char,
    /// ARG instructions before the first FROM (usable in FROM lines).
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<Warning>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    pub from: From,
    pub from_instruction: Instruction,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name BuildKit shows for the stage: its name, or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

impl Dockerfile {
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage called `name` (case-insensitive). With duplicate names the last
    /// definition wins, as in BuildKit.
    pub fn stage_by_name(&self, name: &str) -> Option<&Stage> {
        let name = name.to_ascii_lowercase();
        self.stages
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// With `# check=error=true`, the message that fails the build when warnings
    /// remain (BuildKit: "lint violation found for rules: ...").
    pub fn check_failure(&self) -> Option<String> {
        let check = self.directives.check.as_ref()?;
        if !check.error || self.warnings.is_empty() {
            return None;
        }
        let mut rules: Vec<&str> = self.warnings.iter().map(|w| w.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        Some(format!(
            "lint violation found for rules: {}",
            rules.join(", ")
        ))
    }
}
