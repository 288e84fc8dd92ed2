//! BuildKit's Dockerfile checks that can be decided from the text alone. They are
//! warnings: collected on the [`Dockerfile`], never fatal (unless the caller honours
//! `# check=error=true`, see [`Dockerfile::check_failure`]).

use std::collections::HashSet;

use crate::error::{Position, Warning};

use super::instruction::{Command, Instruction};
use super::Dockerfile;

pub(crate) fn check(df: &mut Dockerfile) {
    let mut out = std::mem::take(&mut df.warnings);
    casing(df, &mut out);
    let mut names = HashSet::new();
    for stage in &df.stages {
        let from = &stage.from_instruction;
        let words: Vec<&str> = from.original.split_whitespace().collect();
        if let Some(pos) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
            let as_word = words[pos];
            let kw = &from.keyword;
            let mismatch =
                (is_lower(kw) && !is_lower(as_word)) || (is_upper(kw) && !is_upper(as_word));
            if (is_lower(kw) || is_upper(kw)) && mismatch {
                warn(
                    &mut out,
                    "FromAsCasing",
                    from.span.start,
                    format!("'{as_word}' and '{kw}' keywords' casing do not match"),
                );
            }
            if let Some(written) = words.get(pos + 1) {
                if !is_lower(written) {
                    warn(
                        &mut out,
                        "StageNameCasing",
                        from.span.start,
                        format!("Stage name '{written}' should be lowercase"),
                    );
                }
            }
        }
        if let Some(name) = &stage.name {
            if !names.insert(name.clone()) {
                warn(
                    &mut out,
                    "DuplicateStageName",
                    from.span.start,
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                );
            }
        }
        let mut shell_set = false;
        let mut seen: Vec<(&'static str, Position)> = Vec::new();
        for ins in &stage.instructions {
            stage_checks(ins, &mut shell_set, &mut seen, &mut out);
        }
    }
    if let Some(check) = &df.directives.check {
        out.retain(|w| !check.skips(w.rule));
    }
    out.sort_by_key(|w| w.at);
    df.warnings = out;
}

fn stage_checks(
    ins: &Instruction,
    shell_set: &mut bool,
    seen: &mut Vec<(&'static str, Position)>,
    out: &mut Vec<Warning>,
) {
    let at = ins.span.start;
    match &ins.command {
        Command::Shell(_) => *shell_set = true,
        Command::Maintainer(_) => warn(
            out,
            "MaintainerDeprecated",
            at,
            "Maintainer instruction is deprecated in favor of using label".into(),
        ),
        Command::Env(kvs) | Command::Label(kvs) if kvs.iter().any(|kv| kv.legacy) => {
            let name = ins.command.name();
            warn(out, "LegacyKeyValueFormat", at, format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"));
        }
        _ => {}
    }
    if let Command::Cmd(c) | Command::Entrypoint(c) = &ins.command {
        if !c.json && !*shell_set {
            let name = ins.command.name();
            warn(out, "JSONArgsRecommended", at, format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"));
        }
    }
    if let Command::Cmd(_) | Command::Entrypoint(_) | Command::Healthcheck(_) = &ins.command {
        let name = ins.command.name();
        if let Some((_, prev)) = seen.iter().find(|(n, _)| *n == name) {
            warn(out, "MultipleInstructionsDisallowed", *prev, format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"));
        }
        seen.retain(|(n, _)| *n != name);
        seen.push((name, at));
    }
}

/// Keywords should all be upper case or all lower case, following the majority.
fn casing(df: &Dockerfile, out: &mut Vec<Warning>) {
    let all: Vec<&Instruction> = df
        .stages
        .iter()
        .flat_map(|s| std::iter::once(&s.from_instruction).chain(s.instructions.iter()))
        .collect();
    let lower = all.iter().filter(|i| is_lower(&i.keyword)).count();
    let upper = all.iter().filter(|i| is_upper(&i.keyword)).count();
    let majority_lower = lower > upper;
    for ins in all {
        let kw = &ins.keyword;
        let (ok, want) = if majority_lower {
            (is_lower(kw), "lowercase")
        } else {
            (is_upper(kw), "uppercase")
        };
        if !ok {
            warn(
                out,
                "ConsistentInstructionCasing",
                ins.span.start,
                format!("Command '{kw}' should match the case of the command majority ({want})"),
            );
        }
    }
}

fn is_lower(s: &str) -> bool {
    s == s.to_lowercase()
}

fn is_upper(s: &str) -> bool {
    s == s.to_uppercase()
}

fn warn(out: &mut Vec<Warning>, rule: &'static str, at: Position, message: String) {
    out.push(Warning { rule, at, message });
}
