//! The build plan: which stage each FROM, `COPY --from` and `RUN --mount from=`
//! refers to, the dependency graph of stages, cycle detection, and the stages a
//! `--target` needs, in an order that builds dependencies first.

use std::collections::BTreeSet;

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
