//! Shell-like word processing as BuildKit's `frontend/dockerfile/shell` does it:
//! variable expansion (`$v`, `${v:-w}`, `${v#pat}`, `${v/pat/repl}`, ...), quote
//! removal, escapes with the Dockerfile's escape character, and word splitting.
//!
//! This is not a shell: there is no command substitution, arithmetic or globbing of
//! file names. It is the small language Dockerfile instructions are written in.

mod env;
mod lex;
mod pattern;

pub use env::{Env, EnvList, NoEnv};
pub use lex::{ExpandError, Expansion, Lexer};

/// Expands `word` with the default escape character (`\`), quotes removed, as BuildKit
/// expands an instruction argument; unset variables expand to the empty string.
pub fn expand(word: &str, env: &dyn Env) -> Result<String, ExpandError> {
    Lexer::new('\\').process_word(word, env).map(|e| e.value)
}
