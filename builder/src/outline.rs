//! What a build of a target takes from outside, as BuildKit's
//! `frontend.outline` subrequest (`docker build --call=outline`) lists it:
//! the build arguments its stages use, with their values, and the secrets
//! and SSH agents its RUN steps mount. Decided from the Dockerfile and the
//! build arguments alone, as BuildKit's is.
//!
//! BuildKit's rule for an argument: the stage's own ARGs, the global ARGs
//! its FROM line expands, and the arguments their defaults refer to; for
//! the target stage and every stage it builds on or copies from.

use std::collections::BTreeMap;

use crate::args::BuildArgs;
use crate::dockerfile::{Command, Dockerfile, Instruction, MountType};
use crate::error::ParseError;
use crate::shell::{Env, EnvList, Lexer};
use crate::stages::plan;

/// A target's outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    /// The target stage's name (none for an unnamed last stage).
    pub name: Option<String>,
    /// Its doc comment (see [`doc_comment`]).
    pub description: Option<String>,
    pub args: Vec<OutlineArg>,
    pub secrets: Vec<Needed>,
    pub ssh: Vec<Needed>,
}

/// A build argument: its value (the `--build-arg`, else its default
/// expanded) and where it is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    pub name: String,
    pub value: Option<String>,
    pub description: Option<String>,
    pub line: usize,
}

/// A secret or SSH agent a RUN mounts, and whether the RUN requires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub name: String,
    pub required: bool,
    pub line: usize,
}

/// A stage's or ARG's description, BuildKit's "doc comment": among the
/// comment lines right above line `line` of `source` (no blank line or
/// empty `#` between), the one that starts with `name` and a space; the
/// rest of it.
pub fn doc_comment(source: &[u8], line: usize, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(source);
    let lines: Vec<&str> = text.lines().collect();
    let prefix = format!("{name} ");
    lines
        .get(..line.saturating_sub(1))?
        .iter()
        .rev()
        .map_while(|l| {
            l.trim()
                .strip_prefix('#')
                .map(str::trim)
                .filter(|c| !c.is_empty())
        })
        .find_map(|c| c.strip_prefix(&prefix).map(|d| d.trim().to_owned()))
}

/// The outline of a build of `target` (the last stage when `None`) of the
/// Dockerfile `df` parsed from `source`.
pub fn outline(
    df: &Dockerfile,
    source: &[u8],
    target: Option<&str>,
    build_args: &BuildArgs,
) -> Result<Outline, ParseError> {
    let plan = plan(df, target, build_args, None)?;
    let lex = Lexer::new(df.escape);
    let globals = declared(&df.meta_args);
    let mut args: BTreeMap<String, OutlineArg> = BTreeMap::new();
    let mut secrets: BTreeMap<String, Needed> = BTreeMap::new();
    let mut ssh: BTreeMap<String, Needed> = BTreeMap::new();
    let global = |name: &str| plan.global_args.get(name).map(str::to_owned);
    for &i in &plan.order {
        let stage = &df.stages[i];
        // The global ARGs its FROM expands.
        let from_words = std::iter::once(&stage.from.image).chain(stage.from.platform.iter());
        for word in from_words {
            if let Ok(expansion) = lex.process_word(word, &plan.global_args) {
                for name in expansion.matched.iter().chain(&expansion.unmatched) {
                    if let Some((default, line)) = globals.get(name) {
                        let value = build_args
                            .get(name)
                            .map(str::to_owned)
                            .or_else(|| global(name))
                            .or_else(|| default.clone());
                        args.entry(name.clone()).or_insert(OutlineArg {
                            name: name.clone(),
                            value,
                            description: doc_comment(source, *line, name),
                            line: *line,
                        });
                    }
                }
            }
        }
        // A stage sees only the ARGs it declares (a global one redeclared
        // takes the global value).
        let mut env = EnvList::new();
        for ins in &stage.instructions {
            match &ins.command {
                Command::Arg(decls) => {
                    for decl in decls {
                        let value = build_args.get(&decl.key).map(str::to_owned).or_else(|| {
                            match &decl.default {
                                Some(d) => lex.process_word(d, &env).ok().map(|e| e.value),
                                // A global ARG redeclared takes its value.
                                None => global(&decl.key),
                            }
                        });
                        if let Some(v) = &value {
                            env.set(&decl.key, v);
                        }
                        let line = ins.span.start.line;
                        args.entry(decl.key.clone()).or_insert(OutlineArg {
                            name: decl.key.clone(),
                            value,
                            description: doc_comment(source, line, &decl.key),
                            line,
                        });
                    }
                }
                Command::Run(run) => mounts(ins, run, &mut secrets, &mut ssh),
                _ => {}
            }
        }
    }
    let by_line = |mut v: Vec<Needed>| {
        v.sort_by_key(|n| n.line);
        v
    };
    let mut args: Vec<OutlineArg> = args.into_values().collect();
    args.sort_by_key(|a| a.line);
    let target = &df.stages[plan.target];
    Ok(Outline {
        name: target.name.clone(),
        description: target
            .name
            .as_deref()
            .and_then(|name| doc_comment(source, target.from_instruction.span.start.line, name)),
        args,
        secrets: by_line(secrets.into_values().collect()),
        ssh: by_line(ssh.into_values().collect()),
    })
}

/// The ARGs `instructions` declare: default (as written) and line.
fn declared(instructions: &[Instruction]) -> BTreeMap<String, (Option<String>, usize)> {
    let mut out = BTreeMap::new();
    for ins in instructions {
        if let Command::Arg(decls) = &ins.command {
            for decl in decls {
                out.insert(
                    decl.key.clone(),
                    (decl.default.clone(), ins.span.start.line),
                );
            }
        }
    }
    out
}

/// The secrets and SSH agents a RUN mounts. A secret's name is its `id`,
/// else its target's file name (BuildKit's default); an agent's `id`
/// defaults to `default`. Variables are not expanded (a mount that needs
/// them is listed as written).
fn mounts(
    ins: &Instruction,
    run: &crate::dockerfile::Run,
    secrets: &mut BTreeMap<String, Needed>,
    ssh: &mut BTreeMap<String, Needed>,
) {
    for spec in &run.mounts {
        let Ok(mount) = spec.resolve(&mut |word| Ok(word.to_owned())) else {
            continue;
        };
        let (into, name) = match mount.kind {
            MountType::Secret => {
                let name = mount.id.clone().or_else(|| {
                    mount
                        .target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .map(str::to_owned)
                });
                (&mut *secrets, name)
            }
            MountType::Ssh => (
                &mut *ssh,
                Some(mount.id.clone().unwrap_or_else(|| "default".to_owned())),
            ),
            _ => continue,
        };
        let Some(name) = name else { continue };
        let entry = into.entry(name.clone()).or_insert(Needed {
            name,
            required: false,
            line: ins.span.start.line,
        });
        entry.required |= mount.required;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outline_of(text: &str, target: Option<&str>, args: &[(&str, &str)]) -> Outline {
        let df = crate::parse("Dockerfile", text.as_bytes()).expect("parses");
        let mut build_args = BuildArgs::new();
        for (k, v) in args {
            build_args.set(k, v);
        }
        outline(&df, text.as_bytes(), target, &build_args).expect("outline")
    }

    const FILE: &str = "ARG BASE=alpine\nARG UNUSED=x\nARG VERSION=1\n\
        FROM $BASE AS build\nARG VERSION\nARG MODE=release-$VERSION\n\
        RUN --mount=type=secret,id=token,required echo\n\
        RUN --mount=type=secret,target=/run/secrets/npmrc --mount=type=ssh echo\n\
        FROM scratch AS other\nARG OTHER=1\n\
        FROM build AS final\nARG FINAL\n";

    #[test]
    fn lists_what_the_target_uses() {
        let o = outline_of(FILE, None, &[("FINAL", "f")]);
        assert_eq!(o.name.as_deref(), Some("final"));
        let args: Vec<(&str, Option<&str>)> = o
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref()))
            .collect();
        assert_eq!(
            args,
            [
                ("BASE", Some("alpine")),
                ("VERSION", Some("1")),
                ("MODE", Some("release-1")),
                ("FINAL", Some("f")),
            ]
        );
        let secrets: Vec<(&str, bool)> = o
            .secrets
            .iter()
            .map(|s| (s.name.as_str(), s.required))
            .collect();
        assert_eq!(secrets, [("token", true), ("npmrc", false)]);
        assert_eq!(o.ssh.len(), 1);
        assert_eq!(o.ssh[0].name, "default");
    }

    #[test]
    fn descriptions_come_from_the_comments_above() {
        let text = "# VERSION the release to build\nARG VERSION=1\n\n# unrelated\n\
                    # app the application image\nFROM scratch AS app\n\
                    # MODE stale, an empty comment is between\n#\n# MODE how to build\nARG MODE\n\
                    ARG VERSION\n";
        let o = outline_of(text, None, &[]);
        assert_eq!(o.description.as_deref(), Some("the application image"));
        let described: Vec<(&str, Option<&str>)> = o
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.description.as_deref()))
            .collect();
        assert_eq!(
            described,
            [("MODE", Some("how to build")), ("VERSION", None)]
        );
    }

    #[test]
    fn a_target_leaves_out_the_stages_it_does_not_need() {
        let o = outline_of(FILE, Some("other"), &[]);
        assert_eq!(o.name.as_deref(), Some("other"));
        let names: Vec<&str> = o.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["OTHER"]);
        assert!(o.secrets.is_empty() && o.ssh.is_empty());
    }
}
