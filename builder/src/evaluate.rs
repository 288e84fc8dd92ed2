//! Walking a stage's instructions with BuildKit's scoping: each instruction's words
//! are expanded with the environment as it was *before* the instruction (so
//! `ENV a=1 b=$a` uses the old `$a`), then ENV and ARG update it. Which instructions
//! expand: FROM/ADD/COPY/ENV/LABEL/EXPOSE/VOLUME/USER/WORKDIR/STOPSIGNAL/ARG values
//! and RUN `--mount` options; never RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands
//! (the shell expands those when they run), ONBUILD (the child build does), nor
//! heredoc bodies with a quoted delimiter.
//!
//! Like BuildKit, arguments are split into words *before* expansion, so a variable
//! holding spaces stays one COPY source; only EXPOSE splits its expanded value.

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::args::BuildArgs;
use crate::dockerfile::{
    ArgDecl, Command, CommandLine, Heredoc, Instruction, KeyValue, Mount, Sources,
};
use crate::error::ParseError;
use crate::shell::{Env, EnvList, Lexer};

/// A stage's build-time state that expansion depends on.
#[derive(Debug, Clone)]
pub struct StageState {
    /// What expansion and RUN see: the base image's Env, ENV values, ARG values.
    pub env: EnvList,
    /// The image config's Env: base image Env and ENV, never ARG.
    pub config_env: EnvList,
    /// ARGs declared in the stage so far, in order (for RUN's history text and
    /// cache key).
    pub args: Vec<(String, Option<String>)>,
    /// SHELL in effect (`/bin/sh -c` unless the base image or a SHELL changed it).
    pub shell: Vec<String>,
    /// WORKDIR in effect, absolute.
    pub workdir: String,
    /// USER in effect (empty: the base image's, i.e. root).
    pub user: String,
}

impl Default for StageState {
    fn default() -> Self {
        Self {
            env: EnvList::new(),
            config_env: EnvList::new(),
            args: Vec::new(),
            shell: vec!["/bin/sh".to_string(), "-c".to_string()],
            workdir: "/".to_string(),
            user: String::new(),
        }
    }
}

/// The result of one step: the instruction with its words expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub command: Command,
    /// RUN `--mount`s, resolved with the step's environment.
    pub mounts: Vec<Mount>,
    /// Variables the instruction's words use that nothing set (no ENV, ARG
    /// or base image variable): BuildKit's `UndefinedVar`.
    pub undefined: Vec<String>,
}

impl StageState {
    /// A stage starting from a base image whose config has `base_env` (`KEY=value`).
    pub fn from_base_env<'a>(base_env: impl IntoIterator<Item = &'a str>) -> Self {
        let env = EnvList::from_key_values(base_env);
        Self {
            config_env: env.clone(),
            env,
            ..Self::default()
        }
    }

    /// The argv a RUN/CMD/ENTRYPOINT command line executes: exec form as is, shell
    /// form through the SHELL (heredocs folded in, see `CommandLine::shell_script`).
    pub fn argv(&self, cmd: &CommandLine) -> Vec<String> {
        match cmd.shell_script() {
            None => cmd.args.clone(),
            Some(script) => {
                let mut argv = self.shell.clone();
                argv.push(script);
                argv
            }
        }
    }

    /// The environment a RUN gets: the stage's plus the proxy build args that the
    /// Dockerfile did not set itself.
    pub fn run_env(&self, build_args: &BuildArgs) -> EnvList {
        let mut env = self.env.clone();
        for (k, v) in build_args.proxy_env() {
            if !env.contains(&k) {
                env.set(&k, &v);
            }
        }
        env
    }

    /// Values of the declared ARGs as RUN's history shows them (`|N k=v ...`).
    pub fn declared_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, default) in &self.args {
            let v = self
                .env
                .get(k)
                .map(str::to_string)
                .unwrap_or_else(|| default.clone().unwrap_or_default());
            match out.iter_mut().find(|(key, _)| key == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k.clone(), v)),
            }
        }
        out
    }

    /// Expands `ins` and applies its effect on the environment (ENV, ARG).
    /// `global` is the global ARG scope, consulted by an ARG without a default.
    pub fn step(
        &mut self,
        file: &str,
        escape: char,
        ins: &Instruction,
        build_args: &BuildArgs,
        global: &EnvList,
    ) -> Result<Expanded, ParseError> {
        let err = |m: String| ParseError::new(file, ins.span.start, m);
        let lex = Lexer::new(escape);
        let env = &self.env;
        let unset: RefCell<BTreeSet<String>> = RefCell::default();
        let word = |w: &str| {
            lex.process_word(w, env)
                .map(|e| {
                    unset.borrow_mut().extend(e.unmatched);
                    e.value
                })
                .map_err(|e| err(e.to_string()))
        };
        // An option that expands to nothing counts as not given, as in BuildKit.
        let opt = |w: &Option<String>| {
            w.as_deref()
                .map(word)
                .transpose()
                .map(|v| v.filter(|v| !v.is_empty()))
        };
        let mut mounts = Vec::new();
        let command = match &ins.command {
            Command::Env(kvs) => Command::Env(expand_kvs(kvs, &word)?),
            Command::Label(kvs) => Command::Label(expand_kvs(kvs, &word)?),
            Command::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    word(p)?;
                    out.extend(lex.process_words(p, env).map_err(|e| err(e.to_string()))?);
                }
                Command::Expose(out)
            }
            Command::Volume(v) => {
                Command::Volume(v.iter().map(|s| word(s)).collect::<Result<_, _>>()?)
            }
            Command::User(v) => Command::User(word(v)?),
            Command::Workdir(v) => Command::Workdir(word(v)?),
            Command::StopSignal(v) => Command::StopSignal(word(v)?),
            Command::Copy(c) => {
                let mut c = c.clone();
                c.sources = expand_sources(&c.sources, &word, env, &err)?;
                c.chown = opt(&c.chown)?;
                c.chmod = opt(&c.chmod)?;
                Command::Copy(c)
            }
            Command::Add(a) => {
                let mut a = a.clone();
                a.sources = expand_sources(&a.sources, &word, env, &err)?;
                a.chown = opt(&a.chown)?;
                a.chmod = opt(&a.chmod)?;
                a.checksum = opt(&a.checksum)?;
                Command::Add(a)
            }
            Command::Run(run) => {
                for spec in &run.mounts {
                    let m = spec
                        .resolve(&mut |v| {
                            lex.process_word(v, env)
                                .map(|e| e.value)
                                .map_err(|e| e.to_string())
                        })
                        .map_err(&err)?;
                    mounts.push(m);
                }
                Command::Run(run.clone())
            }
            Command::Arg(decls) => {
                let declared = self.declare(decls, &lex, build_args, global, &unset);
                Command::Arg(declared.map_err(err)?)
            }
            other => other.clone(),
        };
        // As BuildKit: the stage's declared ARGs count as defined, set or not.
        let mut undefined: Vec<String> = unset.into_inner().into_iter().collect();
        undefined.retain(|name| !self.args.iter().any(|(k, _)| k == name));
        match &command {
            Command::Env(kvs) => {
                for kv in kvs {
                    self.env.set(&kv.key, &kv.value);
                    self.config_env.set(&kv.key, &kv.value);
                }
            }
            Command::Shell(argv) => self.shell = argv.clone(),
            Command::User(u) => self.user = u.clone(),
            Command::Workdir(w) => self.workdir = join_workdir(&self.workdir, w),
            _ => {}
        }
        Ok(Expanded {
            command,
            mounts,
            undefined,
        })
    }

    /// BuildKit's `dispatchArg`: a `--build-arg` wins, then the default (expanded
    /// now), then the global ARG of the same name; the value joins the environment.
    fn declare(
        &mut self,
        decls: &[ArgDecl],
        lex: &Lexer,
        build_args: &BuildArgs,
        global: &EnvList,
        unset: &RefCell<BTreeSet<String>>,
    ) -> Result<Vec<ArgDecl>, String> {
        let mut out = Vec::new();
        for decl in decls {
            let value = if let Some(v) = build_args.get(&decl.key) {
                Some(v.to_string())
            } else if let Some(default) = &decl.default {
                let expanded = lex
                    .process_word(default, &self.env)
                    .map_err(|e| e.to_string())?;
                unset.borrow_mut().extend(expanded.unmatched);
                Some(expanded.value)
            } else {
                global.get(&decl.key).map(str::to_string)
            };
            if let Some(v) = &value {
                self.env.set(&decl.key, v);
            }
            self.args.push((decl.key.clone(), value.clone()));
            out.push(ArgDecl {
                key: decl.key.clone(),
                default: value,
            });
        }
        Ok(out)
    }
}

fn expand_kvs(
    kvs: &[KeyValue],
    word: &dyn Fn(&str) -> Result<String, ParseError>,
) -> Result<Vec<KeyValue>, ParseError> {
    kvs.iter()
        .map(|kv| {
            Ok(KeyValue {
                key: word(&kv.key)?,
                value: word(&kv.value)?,
                legacy: kv.legacy,
            })
        })
        .collect()
}

/// Paths and destination expand; heredoc bodies expand (quotes kept, only `\`
/// escapes) unless their delimiter was quoted.
fn expand_sources(
    s: &Sources,
    word: &dyn Fn(&str) -> Result<String, ParseError>,
    env: &EnvList,
    err: &dyn Fn(String) -> ParseError,
) -> Result<Sources, ParseError> {
    let mut raw = Lexer::new('\\');
    raw.skip_process_quotes = true;
    let inline = s
        .inline
        .iter()
        .map(|h| {
            if !h.expand {
                return Ok(h.clone());
            }
            let body = raw
                .process_word(&h.content(), env)
                .map(|e| e.value)
                .map_err(|e| err(e.to_string()))?;
            Ok(Heredoc {
                body,
                chomp: false,
                ..h.clone()
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(Sources {
        paths: s.paths.iter().map(|p| word(p)).collect::<Result<_, _>>()?,
        inline,
        dest: word(&s.dest)?,
    })
}

/// WORKDIR resolution: absolute paths replace, relative ones join the current
/// directory; the result is cleaned (`..`, `.`, doubled slashes).
pub fn join_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{current}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}
