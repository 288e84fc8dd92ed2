//! Errors of the container setup, each naming the step that failed.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The container's command cannot be run; `code` is Docker's exit code.
    #[error("{message}")]
    Exec { code: i32, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl SetupError {
    /// The exit code Docker records when a container fails this way.
    pub fn exit_code(&self) -> i32 {
        match self {
            SetupError::Exec { code, .. } => *code,
            _ => 125,
        }
    }
}

/// Adds "what was being done" to nix and io errors.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SetupError>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SetupError> {
        self.map_err(|source| SetupError::Sys {
            what: what(),
            source,
        })
    }
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SetupError> {
        self.map_err(|source| SetupError::Io {
            what: what(),
            source,
        })
    }
}
