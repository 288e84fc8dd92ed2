//! hutch's image builder, front half: Dockerfile parsing with BuildKit's semantics,
//! word expansion, the stage model and build plan, `.dockerignore` and the build
//! context walk. The executor (running stages, layers, cache) builds on this API.
//!
//! ```
//! let df = hutch_builder::parse("Dockerfile", b"FROM alpine AS base\nRUN echo hi\n")?;
//! assert_eq!(df.stages().len(), 1);
//! # Ok::<(), hutch_builder::ParseError>(())
//! ```

pub mod chmod;
pub mod dockerfile;
pub mod dockerignore;
pub mod error;
pub mod shell;

pub use dockerfile::{parse, Command, Dockerfile, Instruction, Stage};
pub use error::{ParseError, Position, Span, Warning};
pub use shell::{expand, Env, EnvList};
pub mod args;
pub mod evaluate;
pub mod exec;
pub mod git_context;
pub mod history;
pub mod oci_context;
pub mod outline;
pub mod platform;
pub mod remote_context;
pub mod stages;

pub use args::BuildArgs;
pub use dockerignore::{walk_context, DockerIgnore};
pub use evaluate::{Expanded, StageState};
pub use platform::Platform;
pub use stages::{plan, plan_on, BuildPlan, NamedContext, PlannedStage, Source};
