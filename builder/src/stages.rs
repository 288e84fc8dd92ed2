//! The build plan: which stage each FROM, `COPY --from` and `RUN --mount from=`
//! refers to, the dependency graph of stages, cycle detection, and the stages a
//! `--target` needs, in an order that builds dependencies first.

use std::collections::{BTreeMap, BTreeSet};

use crate::args::{self, BuildArgs};
use crate::dockerfile::{Command, Dockerfile, Instruction};
use crate::error::{ParseError, Position};
use crate::platform::Platform;
use crate::shell::{EnvList, Lexer};

/// Where a stage, a `COPY --from` or a mount takes its files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An earlier stage (FROM) or any stage (`--from`), by index.
    Stage(usize),
    /// An image reference to pull.
    Image(String),
    /// A directory given as a named build context (`--build-context
    /// NAME=DIR`).
    Local(std::path::PathBuf),
}

/// What `--build-context NAME=...` puts in place of the image `NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `docker-image://REF`: another image.
    Image(String),
    /// A directory (a path, or buildx's `local:` context).
    Dir(std::path::PathBuf),
    /// A git repository or an http(s) URL: the caller fetches it
    /// ([`crate::remote_context::RemoteContext::fetch_named`]) and passes
    /// a `Dir`.
    Remote(crate::remote_context::RemoteContext),
    /// An image in an OCI layout: the caller loads it and passes an
    /// `Image` by ID.
    OciLayout(crate::oci_context::OciLayoutRef),
}

impl NamedContext {
    /// `docker-image://REF`, `oci-layout://`, a git or http(s) URL or a
    /// directory path, as `--build-context` takes them; other kinds are
    /// refused.
    pub fn parse(value: &str) -> Result<NamedContext, String> {
        if let Some(r) = value.strip_prefix("docker-image://") {
            if r.is_empty() {
                return Err("docker-image:// needs an image reference".into());
            }
            return Ok(NamedContext::Image(r.to_owned()));
        }
        if let Some(layout) = value.strip_prefix("oci-layout://") {
            return crate::oci_context::OciLayoutRef::parse(layout).map(NamedContext::OciLayout);
        }
        if let Some(remote) = crate::remote_context::RemoteContext::parse(value) {
            return remote.map(NamedContext::Remote);
        }
        let scheme = value.split_once("://").map(|(s, _)| s);
        if let Some(scheme) = scheme {
            return Err(format!(
                "{scheme}:// build contexts are not supported by hutch (a directory, a git \
                 repository, an http(s) URL, oci-layout://PATH or docker-image://REF)"
            ));
        }
        Ok(NamedContext::Dir(std::path::PathBuf::from(value)))
    }
}

impl BuildPlan {
    /// Puts the named contexts in place of the images they name (a stage
    /// of that name wins, as in BuildKit). A name matches as written, or
    /// as the normalized reference (`alpine` and
    /// `docker.io/library/alpine:latest` are one). Returns an error for a
    /// FROM of a directory, which hutch does not build on.
    pub fn use_named_contexts(
        &mut self,
        named: &BTreeMap<String, NamedContext>,
    ) -> Result<(), String> {
        if named.is_empty() {
            return Ok(());
        }
        let unresolved =
            |c: &NamedContext| matches!(c, NamedContext::Remote(_) | NamedContext::OciLayout(_));
        if let Some((name, _)) = named.iter().find(|(_, c)| unresolved(c)) {
            return Err(format!("the build context {name} was not fetched"));
        }
        let normalize = |n: &str| {
            hutch_images::Reference::parse(n)
                .map(|r| r.to_string())
                .unwrap_or_else(|_| n.to_owned())
        };
        let lookup = |name: &str| {
            named.get(name).or_else(|| {
                let wanted = normalize(name);
                named
                    .iter()
                    .find(|(k, _)| normalize(k) == wanted)
                    .map(|(_, v)| v)
            })
        };
        let replace = |source: &mut Source| {
            if let Source::Image(name) = source {
                match lookup(name) {
                    Some(NamedContext::Image(r)) => *source = Source::Image(r.clone()),
                    Some(NamedContext::Dir(d)) => *source = Source::Local(d.clone()),
                    Some(NamedContext::Remote(_) | NamedContext::OciLayout(_)) | None => {}
                }
            }
        };
        for stage in &mut self.stages {
            replace(&mut stage.base);
            if let (true, Source::Local(dir)) = (stage.needed, &stage.base) {
                return Err(format!(
                    "FROM a directory build context ({}) is not supported by hutch; \
                     use COPY --from or RUN --mount from= with it",
                    dir.display()
                ));
            }
            for source in stage.sources.iter_mut().flatten() {
                replace(source);
            }
        }
        Ok(())
    }
}

/// A dependency of a stage on another, and the instruction that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub stage: usize,
    pub at: Position,
}

/// One stage as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    /// The FROM base after expansion with the global ARGs.
    pub base: Source,
    /// `FROM --platform` expanded, else the build's target platform.
    pub platform: Platform,
    /// For each instruction of the stage (same indices), the source of its
    /// `COPY --from` / `RUN --mount from=`s, in order.
    pub sources: Vec<Vec<Source>>,
    /// Stages this one needs, without repeats.
    pub deps: Vec<Dependency>,
    pub needed: bool,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The global ARG scope (platform ARGs and ARGs before the first FROM).
    pub global_args: EnvList,
    pub build_platform: Platform,
    pub target_platform: Platform,
    pub stages: Vec<PlannedStage>,
    pub target: usize,
    /// Needed stages, each after the stages it depends on.
    pub order: Vec<usize>,
}

impl BuildPlan {
    /// Needed stages grouped in waves: every stage of a wave depends only on
    /// earlier waves, so a wave's stages can be built in parallel.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut waves = Vec::new();
        let mut left: Vec<usize> = self.order.clone();
        while !left.is_empty() {
            let (ready, rest): (Vec<usize>, Vec<usize>) = left
                .iter()
                .partition(|&&i| self.stages[i].deps.iter().all(|d| done.contains(&d.stage)));
            if ready.is_empty() {
                break; // cannot happen: cycles are rejected by `plan`
            }
            done.extend(ready.iter().copied());
            waves.push(ready);
            left = rest;
        }
        waves
    }
}

/// Plans a build of `target` (the last stage when `None`) for `platform` (the
/// machine's when `None`).
pub fn plan(
    df: &Dockerfile,
    target: Option<&str>,
    build_args: &BuildArgs,
    platform: Option<&Platform>,
) -> Result<BuildPlan, ParseError> {
    plan_on(df, target, build_args, platform, &Platform::host())
}

/// [`plan`] with an explicit build platform (the machine running the build).
pub fn plan_on(
    df: &Dockerfile,
    target: Option<&str>,
    build_args: &BuildArgs,
    platform: Option<&Platform>,
    build_platform: &Platform,
) -> Result<BuildPlan, ParseError> {
    let build_platform = build_platform.clone();
    let target_platform = platform.cloned().unwrap_or_else(|| build_platform.clone());
    let err = |at: Position, m: String| ParseError::new(&df.file, at, m);
    let target_index = match target {
        None => df.stages.len() - 1,
        Some(t) => df.stage_by_name(t).map(|s| s.index).ok_or_else(|| {
            let names: Vec<String> = df.stages.iter().map(|s| s.display_name()).collect();
            err(
                Position { line: 1, column: 1 },
                format!(
                    "target stage {t:?} could not be found (stages: {})",
                    names.join(", ")
                ),
            )
        })?,
    };
    let target_name = df.stages[target_index].name.clone().unwrap_or_default();
    let base_args =
        args::platform_args(&build_platform, &target_platform, &target_name, build_args);
    let global = args::global_args(df, base_args, build_args)?;
    let lex = Lexer::new(df.escape);

    let mut stages: Vec<PlannedStage> = Vec::new();
    for stage in &df.stages {
        let at = stage.from_instruction.span.start;
        let image = lex
            .process_word(&stage.from.image, &global)
            .map_err(|e| err(at, e.to_string()))?
            .value;
        if image.is_empty() {
            return Err(err(
                at,
                format!("base name ({}) should not be blank", stage.from.image),
            ));
        }
        let platform = match &stage.from.platform {
            None => target_platform.clone(),
            Some(p) => {
                let v = lex
                    .process_word(p, &global)
                    .map_err(|e| err(at, e.to_string()))?
                    .value;
                if v.is_empty() {
                    return Err(err(at, format!("empty platform value from expression {p}")));
                }
                Platform::parse(&v)
                    .map_err(|e| err(at, format!("failed to parse platform {p}: {e}")))?
            }
        };
        // FROM sees only stages defined above it.
        let base = if image.eq_ignore_ascii_case("scratch") {
            Source::Scratch
        } else {
            match stages
                .iter()
                .rev()
                .find(|s| s.name.as_deref() == Some(image.as_str()))
            {
                Some(s) => Source::Stage(s.index),
                None => Source::Image(image),
            }
        };
        stages.push(PlannedStage {
            index: stage.index,
            name: stage.name.clone(),
            base,
            platform,
            sources: Vec::new(),
            deps: Vec::new(),
            needed: false,
        });
    }

    // `--from` and mounts may name any stage, earlier or later.
    for stage in &df.stages {
        let mut per_ins = Vec::new();
        let mut deps: Vec<Dependency> = Vec::new();
        if let Source::Stage(i) = stages[stage.index].base {
            deps.push(Dependency {
                stage: i,
                at: stage.from_instruction.span.start,
            });
        }
        for ins in &stage.instructions {
            let refs = references(df, ins)?;
            for r in &refs {
                if let Source::Stage(i) = r {
                    if !deps.iter().any(|d| d.stage == *i) {
                        deps.push(Dependency {
                            stage: *i,
                            at: ins.span.start,
                        });
                    }
                }
            }
            per_ins.push(refs);
        }
        stages[stage.index].sources = per_ins;
        stages[stage.index].deps = deps;
    }

    check_cycles(df, &stages)?;
    let mut order = Vec::new();
    visit(&stages, target_index, &mut order);
    for &i in &order {
        stages[i].needed = true;
    }
    Ok(BuildPlan {
        global_args: global,
        build_platform,
        target_platform,
        stages,
        target: target_index,
        order,
    })
}

/// The sources an instruction reads from: `COPY --from` and `RUN --mount from=`.
fn references(df: &Dockerfile, ins: &Instruction) -> Result<Vec<Source>, ParseError> {
    let resolve_name = |name: &str| match df.stage_by_name(name) {
        Some(s) => Source::Stage(s.index),
        None => Source::Image(name.to_string()),
    };
    Ok(match &ins.command {
        Command::Copy(c) => match &c.from {
            None => Vec::new(),
            Some(from) => match from.parse::<i64>() {
                Ok(n) => {
                    let idx = usize::try_from(n).ok().filter(|&i| i < df.stages.len());
                    match idx {
                        Some(i) => vec![Source::Stage(i)],
                        None => {
                            return Err(ParseError::new(
                                &df.file,
                                ins.span.start,
                                format!("invalid stage index {n}"),
                            ))
                        }
                    }
                }
                Err(_) => vec![resolve_name(from)],
            },
        },
        Command::Run(run) => run
            .mounts
            .iter()
            .filter_map(|m| m.from())
            .filter(|f| !f.is_empty())
            .map(resolve_name)
            .collect(),
        _ => Vec::new(),
    })
}

/// Rejects dependency cycles, naming the stage and pointing at the instruction
/// that closes the cycle.
fn check_cycles(df: &Dockerfile, stages: &[PlannedStage]) -> Result<(), ParseError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn dfs(i: usize, stages: &[PlannedStage], marks: &mut [Mark]) -> Option<(usize, Position)> {
        marks[i] = Mark::Open;
        for d in &stages[i].deps {
            match marks[d.stage] {
                Mark::Open => return Some((i, d.at)),
                Mark::New => {
                    if let Some(found) = dfs(d.stage, stages, marks) {
                        return Some(found);
                    }
                }
                Mark::Done => {}
            }
        }
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; stages.len()];
    for i in 0..stages.len() {
        if marks[i] == Mark::New {
            if let Some((stage, at)) = dfs(i, stages, &mut marks) {
                let name = df.stages[stage].display_name();
                return Err(ParseError::new(
                    &df.file,
                    at,
                    format!("circular dependency detected on stage: {name}"),
                ));
            }
        }
    }
    Ok(())
}

/// Post-order walk: dependencies before the stage.
fn visit(stages: &[PlannedStage], i: usize, order: &mut Vec<usize>) {
    if order.contains(&i) {
        return;
    }
    for d in &stages[i].deps {
        visit(stages, d.stage, order);
    }
    order.push(i);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(text: &str, named: &[(&str, NamedContext)]) -> Result<BuildPlan, String> {
        let df = crate::parse("Dockerfile", text.as_bytes()).map_err(|e| e.to_string())?;
        let mut plan = plan(&df, None, &BuildArgs::new(), None).map_err(|e| e.to_string())?;
        let named = named
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        plan.use_named_contexts(&named)?;
        Ok(plan)
    }

    #[test]
    fn named_contexts_stand_in_for_images_but_not_for_stages() {
        let dir = || NamedContext::Dir("/ctx/shared".into());
        let text = "FROM alpine AS tools\nRUN true\nFROM docker.io/library/alpine:latest\n\
                    COPY --from=shared /a /a\nCOPY --from=tools /t /t\n";
        let plan = planned(
            text,
            &[
                ("alpine", NamedContext::Image("reg/alpine:pinned".into())),
                ("shared", dir()),
                ("tools", dir()),
            ],
        )
        .expect("plans");
        // Both spellings of alpine are the context's image.
        for stage in &plan.stages {
            assert_eq!(stage.base, Source::Image("reg/alpine:pinned".into()));
        }
        let copies = &plan.stages[1].sources;
        assert_eq!(copies[0], vec![Source::Local("/ctx/shared".into())]);
        // A stage of the name wins over the context.
        assert_eq!(copies[1], vec![Source::Stage(0)]);

        let from_dir = planned("FROM shared\n", &[("shared", dir())]);
        assert!(from_dir
            .expect_err("refused")
            .contains("FROM a directory build context"));
        // Not needed for the target: not refused.
        let unused = planned("FROM shared AS x\nFROM scratch\n", &[("shared", dir())]);
        assert!(unused.is_ok());
    }

    #[test]
    fn named_context_values() {
        assert_eq!(
            NamedContext::parse("docker-image://busybox:1"),
            Ok(NamedContext::Image("busybox:1".into()))
        );
        assert_eq!(
            NamedContext::parse("../shared"),
            Ok(NamedContext::Dir("../shared".into()))
        );
        use crate::remote_context::RemoteContext;
        assert!(matches!(
            NamedContext::parse("https://example.com/r.git#v1:sub"),
            Ok(NamedContext::Remote(RemoteContext::Git(g))) if g.subdir.as_deref() == Some("sub")
        ));
        assert!(matches!(
            NamedContext::parse("git@example.com:r.git"),
            Ok(NamedContext::Remote(RemoteContext::Git(_)))
        ));
        assert_eq!(
            NamedContext::parse("https://example.com/tool.bin"),
            Ok(NamedContext::Remote(RemoteContext::Http(
                "https://example.com/tool.bin".into()
            )))
        );
        for bad in [
            "docker-image://",
            "oci-layout://",
            "ftp://example.com/ctx.tar",
            "https://example.com/r.git#main:../..",
        ] {
            assert!(NamedContext::parse(bad).is_err(), "{bad}");
        }
    }
}
