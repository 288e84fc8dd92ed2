//! BuildKit's Dockerfile checks that can be decided from the text alone. They are
//! warnings: collected on the [`Dockerfile`], never fatal (unless the caller honours
//! `# check=error=true`, see [`Dockerfile::check_failure`]).

use std::collections::HashSet;

use crate::error::{Position, Warning};
use crate::shell::{Lexer, NoEnv};

use super::instruction::{Command, Instruction};
use super::Dockerfile;

pub(crate) fn check(df: &mut Dockerfile) {
    let mut out = std::mem::take(&mut df.warnings);
    casing(df, &mut out);
    let mut names = HashSet::new();
    let mut workdir_stages: HashSet<String> = HashSet::new();
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
            if RESERVED_STAGE_NAMES.contains(&name.as_str()) {
                warn(
                    &mut out,
                    "ReservedStageName",
                    from.span.start,
                    format!("Stage name should not use the same name as reserved stage {name:?}"),
                );
            }
            if !names.insert(name.clone()) {
                warn(
                    &mut out,
                    "DuplicateStageName",
                    from.span.start,
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                );
            }
        }
        if let Some(platform) = &stage.from.platform {
            platform_check(platform, stage.name.as_deref(), from.span.start, &mut out);
        }
        from_args_check(df, stage, &mut out);
        // A stage built on another one of the file has its WORKDIR.
        let mut workdir_set = workdir_stages.contains(&stage.from.image.to_ascii_lowercase());
        let mut shell_set = false;
        let mut seen: Vec<(&'static str, Position)> = Vec::new();
        for ins in &stage.instructions {
            stage_checks(ins, &mut shell_set, &mut seen, &mut out);
            content_checks(ins, &mut workdir_set, &mut out);
        }
        if workdir_set {
            workdir_stages.insert(stage.display_name());
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

/// Stage names BuildKit keeps for itself.
const RESERVED_STAGE_NAMES: &[&str] = &["context", "scratch"];

/// `FROM --platform=`: a constant (unless the stage's name says which
/// platform it is for), or `$TARGETPLATFORM`, which is the default anyway.
fn platform_check(platform: &str, stage: Option<&str>, at: Position, out: &mut Vec<Warning>) {
    if matches!(platform, "$TARGETPLATFORM" | "${TARGETPLATFORM}") {
        warn(
            out,
            "RedundantTargetPlatform",
            at,
            format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"),
        );
        return;
    }
    if platform.contains('$') {
        return;
    }
    let mut parts = platform.split('/');
    let (Some(os), Some(arch)) = (parts.next(), parts.next()) else {
        return;
    };
    let stage = stage.unwrap_or_default();
    if os.is_empty() || arch.is_empty() || stage.contains(os) || stage.contains(arch) {
        return;
    }
    warn(
        out,
        "FromPlatformFlagConstDisallowed",
        at,
        format!("FROM --platform flag should not use constant value {platform:?}"),
    );
}

/// A FROM line's variables: each must be a global ARG (or a platform
/// one), and the image must not be empty with the ARGs' defaults.
fn from_args_check(df: &Dockerfile, stage: &super::Stage, out: &mut Vec<Warning>) {
    let at = stage.from_instruction.span.start;
    // The global scope with no --build-arg: the platform ARGs (what
    // platform does not matter), then each global ARG at its default.
    let host = crate::Platform::host();
    let no_args = crate::BuildArgs::new();
    let platform = crate::args::platform_args(&host, &host, "", &no_args);
    let mut declared: Vec<&str> = platform.iter().map(|(k, _)| k).collect();
    for ins in &df.meta_args {
        if let Command::Arg(decls) = &ins.command {
            declared.extend(decls.iter().map(|d| d.key.as_str()));
        }
    }
    let lex = Lexer::new(df.escape);
    let words = std::iter::once(&stage.from.image).chain(stage.from.platform.iter());
    for word in words {
        let Ok(expansion) = lex.process_word(word, &NoEnv) else {
            continue;
        };
        for name in expansion
            .unmatched
            .iter()
            .filter(|n| !declared.contains(&n.as_str()))
        {
            let mut message = format!("FROM argument '{name}' is not declared");
            if let Some(similar) = suggest(name, &declared) {
                message.push_str(&format!(" (did you mean {similar}?)"));
            }
            warn(out, "UndefinedArgInFrom", at, message);
        }
    }
    if !stage.from.image.contains('$') {
        return;
    }
    let Ok(defaults) = crate::args::global_args(df, platform.clone(), &no_args) else {
        return;
    };
    if let Ok(e) = lex.process_word(&stage.from.image, &defaults) {
        if e.value.is_empty() || e.value.starts_with(':') || e.value.ends_with(':') {
            warn(
                out,
                "InvalidDefaultArgInFrom",
                at,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    stage.from.image
                ),
            );
        }
    }
}

/// BuildKit's `UndefinedVar` for `name`, used by the instruction at `at`
/// when the environment had `defined` (the closest one is suggested).
pub fn undefined_var(name: &str, at: Position, defined: &[&str]) -> Warning {
    let mut message = format!("Usage of undefined variable '${name}'");
    if let Some(similar) = suggest(name, defined) {
        message.push_str(&format!(" (did you mean ${similar}?)"));
    }
    Warning {
        rule: "UndefinedVar",
        at,
        message,
    }
}

/// BuildKit's "did you mean": the closest name within two edits.
fn suggest<'a>(name: &str, options: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for &option in options {
        if option == name {
            return None;
        }
        let distance = strsim::levenshtein(name, option);
        if distance < best.map_or(3, |(d, _)| d) {
            best = Some((distance, option));
        }
    }
    best.map(|(_, option)| option)
}

/// What an instruction's own words break: secrets in ARG or ENV names,
/// EXPOSE specs, a first WORKDIR that is relative.
fn content_checks(ins: &Instruction, workdir_set: &mut bool, out: &mut Vec<Warning>) {
    let at = ins.span.start;
    match &ins.command {
        Command::Env(kvs) => {
            for kv in kvs.iter().filter(|kv| looks_secret(&kv.key)) {
                warn(
                    out,
                    "SecretsUsedInArgOrEnv",
                    at,
                    secret_message("ENV", &kv.key),
                );
            }
        }
        Command::Arg(decls) => {
            for decl in decls.iter().filter(|d| looks_secret(&d.key)) {
                warn(
                    out,
                    "SecretsUsedInArgOrEnv",
                    at,
                    secret_message("ARG", &decl.key),
                );
            }
        }
        Command::Expose(ports) => {
            for port in ports.iter().filter(|p| !p.contains('$')) {
                let (spec, proto) = port.split_once('/').unwrap_or((port, ""));
                if proto != proto.to_lowercase() {
                    warn(
                        out,
                        "ExposeProtoCasing",
                        at,
                        format!(
                            "Defined protocol '{port}' in EXPOSE instruction should be lowercase"
                        ),
                    );
                }
                if spec.contains(':') {
                    warn(out, "ExposeInvalidFormat", at, format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"));
                }
            }
        }
        Command::Workdir(path) => {
            if !*workdir_set && !path.starts_with('/') && !path.starts_with('$') {
                warn(out, "WorkdirRelativePath", at, format!("Relative workdir {path:?} can have unexpected results if the base image changes"));
            }
            *workdir_set = true;
        }
        _ => {}
    }
}

/// BuildKit's test for a secret's name: one of its `_`-separated words is
/// a secret's (`DB_PASSWORD`, `api_key`), none says it is not one
/// (`PUBLIC_KEY`, `KEY_FILE`).
fn looks_secret(key: &str) -> bool {
    const SECRET: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const NOT_SECRET: &[&str] = &["public", "file", "version"];
    let words: Vec<String> = key.split('_').map(str::to_ascii_lowercase).collect();
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    has(SECRET) && !has(NOT_SECRET)
}

fn secret_message(instruction: &str, key: &str) -> String {
    format!("Do not use ARG or ENV instructions for sensitive data ({instruction} {key:?})")
}

/// The rules this linter knows, with BuildKit's description of each and
/// the slug of its page under docs.docker.com/go/dockerfile/rule/.
const RULES: &[(&str, &str, &str)] = &[
    ("StageNameCasing", "Stage names should be lowercase", "stage-name-casing"),
    ("FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword", "from-as-casing"),
    ("NoEmptyContinuation", "Empty continuation lines will become errors in a future release", "no-empty-continuation"),
    ("ConsistentInstructionCasing", "All commands within the Dockerfile should use the same casing (either upper or lower)", "consistent-instruction-casing"),
    ("DuplicateStageName", "Stage names should be unique", "duplicate-stage-name"),
    ("ReservedStageName", "Reserved words should not be used as stage names", "reserved-stage-name"),
    ("JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals", "json-args-recommended"),
    ("MaintainerDeprecated", "The MAINTAINER instruction is deprecated, use a label instead to define an image author", "maintainer-deprecated"),
    ("WorkdirRelativePath", "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes", "workdir-relative-path"),
    ("MultipleInstructionsDisallowed", "Multiple instructions of the same type should not be used in the same stage", "multiple-instructions-disallowed"),
    ("LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used", "legacy-key-value-format"),
    ("RedundantTargetPlatform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior", "redundant-target-platform"),
    ("SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands", "secrets-used-in-arg-or-env"),
    ("FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value", "from-platform-flag-const-disallowed"),
    ("ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase", "expose-proto-casing"),
    ("UndefinedArgInFrom", "FROM command must use declared ARGs", "undefined-arg-in-from"),
    ("UndefinedVar", "Variables should be defined before their use", "undefined-var"),
    ("CopyIgnoredFile", "Attempting to Copy file that is excluded by .dockerignore", "copy-ignored-file"),
    ("InvalidDefaultArgInFrom", "Default value for global ARG results in an empty or invalid base image name", "invalid-default-arg-in-from"),
    ("ExposeInvalidFormat", "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release", "expose-invalid-format"),
];

/// BuildKit's description of `rule` (empty for one it does not have).
pub fn description(rule: &str) -> &'static str {
    RULES
        .iter()
        .find(|(name, _, _)| *name == rule)
        .map_or("", |(_, description, _)| description)
}

/// The page docs.docker.com has on `rule`.
pub fn url(rule: &str) -> String {
    RULES
        .iter()
        .find(|(name, _, _)| *name == rule)
        .map_or_else(String::new, |(_, _, slug)| {
            format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
        })
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

#[cfg(test)]
mod tests {
    fn warnings(text: &str) -> Vec<String> {
        let df = crate::parse("Dockerfile", text.as_bytes()).expect("parses");
        df.warnings.iter().map(|w| w.short()).collect()
    }

    #[test]
    fn from_arguments_must_be_declared_and_have_usable_defaults() {
        let got = warnings(
            "ARG TAG\nARG BASE_IMAGE=alpine\nFROM $BASE_IMGE AS a\nFROM alpine:$TAG AS b\n\
             FROM ${BASE_IMAGE} AS c\nFROM --platform=$BUILDPLATFORM $UNDECLARED AS d\n",
        );
        assert_eq!(
            got,
            [
                "UndefinedArgInFrom: FROM argument 'BASE_IMGE' is not declared (did you mean BASE_IMAGE?) (line 3)",
                "InvalidDefaultArgInFrom: Default value for ARG $BASE_IMGE results in empty or invalid base image name (line 3)",
                "InvalidDefaultArgInFrom: Default value for ARG alpine:$TAG results in empty or invalid base image name (line 4)",
                "UndefinedArgInFrom: FROM argument 'UNDECLARED' is not declared (line 6)",
                "InvalidDefaultArgInFrom: Default value for ARG $UNDECLARED results in empty or invalid base image name (line 6)",
            ]
        );
    }
}
