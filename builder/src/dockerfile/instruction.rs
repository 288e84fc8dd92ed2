//! Typed instructions as parsed: arguments are kept as written (quotes, `$vars`),
//! because their expansion depends on the stage's environment at build time (see
//! `crate::evaluate`). Flags are validated; option values that may hold variables
//! are kept as strings.

use std::time::Duration;

use crate::error::Span;

pub use super::heredoc::Heredoc;
pub use super::mount::{Mount, MountSpec, MountType, Sharing};

/// One instruction with where it is and how it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// The keyword as written (`run`, `RUN`).
    pub keyword: String,
    pub span: Span,
    /// The instruction line with continuations joined, trimmed (BuildKit's `code`,
    /// the base of history text).
    pub original: String,
    pub command: Command,
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Label(Vec<KeyValue>),
    /// Port specs as written, sorted (expanded and split into words at build time).
    Expose(Vec<String>),
    Env(Vec<KeyValue>),
    Add(Add),
    Copy(Copy),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    Onbuild(Onbuild),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// Always exec form.
    Shell(Vec<String>),
    Maintainer(String),
}

impl Command {
    /// The canonical upper-case instruction name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Label(_) => "LABEL",
            Command::Expose(_) => "EXPOSE",
            Command::Env(_) => "ENV",
            Command::Add(_) => "ADD",
            Command::Copy(_) => "COPY",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Shell(_) => "SHELL",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base as written (may use global ARGs).
    pub image: String,
    /// The stage name, lower-cased as BuildKit stores it.
    pub name: Option<String>,
    /// `--platform` as written (may use global ARGs, e.g. `$BUILDPLATFORM`).
    pub platform: Option<String>,
}

/// The command of RUN, CMD and ENTRYPOINT (and HEALTHCHECK CMD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string, the command text as written.
    pub args: Vec<String>,
    /// Written as a JSON array (exec form): no shell, no heredocs.
    pub json: bool,
    /// Heredoc bodies attached to a shell-form RUN.
    pub heredocs: Vec<Heredoc>,
}

impl CommandLine {
    /// Shell form runs through the stage's SHELL.
    pub fn prepends_shell(&self) -> bool {
        !self.json
    }

    /// What a shell-form RUN hands to the shell: for `RUN <<EOF` alone, the
    /// heredoc's content; with heredocs used inside a command, the command with the
    /// bodies and terminators put back so the shell reads them as heredocs. `None`
    /// for exec form. (A single heredoc starting with `#!` is run as a script file
    /// by BuildKit; see [`CommandLine::script_heredoc`].)
    pub fn shell_script(&self) -> Option<String> {
        if self.json {
            return None;
        }
        let cmd = self.args.first().cloned().unwrap_or_default();
        if self.heredocs.is_empty() {
            return Some(cmd);
        }
        if let Some(doc) = self.script_heredoc() {
            return Some(doc.content());
        }
        let mut out = cmd;
        for doc in &self.heredocs {
            out.push('\n');
            out.push_str(&doc.body);
            out.push_str(&doc.name);
        }
        Some(out)
    }

    /// The heredoc when the whole command is one heredoc marker (`RUN <<EOF`): its
    /// content is the script.
    pub fn script_heredoc(&self) -> Option<&Heredoc> {
        if self.json || self.args.len() != 1 {
            return None;
        }
        super::heredoc::parse_marker(&self.args[0])?;
        self.heredocs.first()
    }
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub cmd: CommandLine,
    pub mounts: Vec<MountSpec>,
    pub network: Network,
    pub security: Security,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    #[default]
    Sandbox,
    Insecure,
}

/// `key=value` of ENV and LABEL (both sides are expanded at build time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One `name[=default]` of ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub key: String,
    pub default: Option<String>,
}

/// Sources and destination of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Paths, globs or URLs as written.
    pub paths: Vec<String>,
    /// Heredocs used as inline files (`COPY <<EOF /dst`).
    pub inline: Vec<Heredoc>,
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Sources,
    /// `--from`: a stage name, a stage index or an image reference.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Sources,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: Option<bool>,
    pub checksum: Option<String>,
    pub unpack: Option<bool>,
    pub excludes: Vec<String>,
}

/// `ONBUILD <instruction>`: the trigger, parsed, and its text as stored in the image
/// config (`OnBuild` entries).
#[derive(Debug, Clone, PartialEq)]
pub struct Onbuild {
    pub expression: String,
    pub trigger: Box<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable an inherited check.
    None,
    Cmd(HealthConfig),
}

/// Docker's health check config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthConfig {
    /// `["CMD", argv...]` (exec form) or `["CMD-SHELL", "command"]`.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}
