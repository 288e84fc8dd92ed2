//! The Dockerfile corpus: every `corpus/NAME.Dockerfile` is parsed, planned and its
//! needed stages evaluated (expansion with ARG/ENV scoping, empty base image
//! environment); the dump must equal `corpus/NAME.expected`. Files under
//! `corpus/errors/` must fail with the `file:line:col: message` in their
//! `.expected`.
//!
//! Lines of an `.expected` file that start with `> ` are inputs, not output:
//! `> build-arg K=V`, `> target NAME`, `> platform linux/arm64`.
//! `UPDATE_EXPECT=1 cargo test -p hutch-builder --test corpus` rewrites the
//! expectations (review the diff before committing).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hutch_builder::dockerfile::Command;
use hutch_builder::{history, parse, plan_on, BuildArgs, Platform, StageState};

struct Inputs {
    build_args: BuildArgs,
    target: Option<String>,
    platform: Option<Platform>,
    lines: Vec<String>,
}

fn inputs(expected: &str) -> Inputs {
    let mut inp = Inputs {
        build_args: BuildArgs::new(),
        target: None,
        platform: None,
        lines: Vec::new(),
    };
    for line in expected.lines().filter(|l| l.starts_with("> ")) {
        inp.lines.push(line.to_string());
        let body = &line[2..];
        if let Some(kv) = body.strip_prefix("build-arg ") {
            inp.build_args.add_cli(kv, |_| None);
        } else if let Some(t) = body.strip_prefix("target ") {
            inp.target = Some(t.to_string());
        } else if let Some(p) = body.strip_prefix("platform ") {
            inp.platform = Some(Platform::parse(p).expect("platform in test input"));
        }
    }
    inp
}

fn render(name: &str, bytes: &[u8], inp: &Inputs) -> String {
    let mut out = String::new();
    for l in &inp.lines {
        writeln!(out, "{l}").expect("write");
    }
    let df = match parse(name, bytes) {
        Ok(df) => df,
        Err(e) => {
            writeln!(out, "error: {e}").expect("write");
            return out;
        }
    };
    write!(out, "{df}").expect("write");
    let build = Platform::parse("linux/amd64").expect("platform");
    let plan = match plan_on(
        &df,
        inp.target.as_deref(),
        &inp.build_args,
        inp.platform.as_ref(),
        &build,
    ) {
        Ok(p) => p,
        Err(e) => {
            writeln!(out, "error: {e}").expect("write");
            return out;
        }
    };
    writeln!(
        out,
        "--- plan target={} order={:?} waves={:?}",
        plan.target,
        plan.order,
        plan.waves()
    )
    .expect("write");
    for s in &plan.stages {
        let deps: Vec<usize> = s.deps.iter().map(|d| d.stage).collect();
        writeln!(
            out,
            "stage {} base={:?} platform={} deps={deps:?} needed={}",
            s.index, s.base, s.platform, s.needed
        )
        .expect("write");
    }
    for &i in &plan.order {
        writeln!(out, "--- evaluate stage {i}").expect("write");
        let mut state = StageState::default();
        for ins in &df.stages[i].instructions {
            match state.step(&df.file, df.escape, ins, &inp.build_args, &plan.global_args) {
                Err(e) => {
                    writeln!(out, "error: {e}").expect("write");
                    break;
                }
                Ok(x) => {
                    write!(out, "  {}: {}", ins.span.start, x.command).expect("write");
                    for m in &x.mounts {
                        write!(out, " [{m}]").expect("write");
                    }
                    if let Command::Run(run) = &x.command {
                        let argv = state.argv(&run.cmd);
                        write!(
                            out,
                            "\n    history: {}",
                            history::run(&argv, &state.declared_args())
                        )
                        .expect("write");
                    }
                    writeln!(out).expect("write");
                }
            }
        }
        writeln!(out, "  env: {:?}", state.env.to_key_values()).expect("write");
        writeln!(
            out,
            "  workdir: {} user: {:?} shell: {:?}",
            state.workdir, state.user, state.shell
        )
        .expect("write");
        writeln!(out, "  config env: {:?}", state.config_env.to_key_values()).expect("write");
    }
    out
}

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    v.sort();
    v
}

fn run_dir(dir: &Path, errors: bool) -> usize {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let files = cases(dir);
    for path in &files {
        let expected_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let inp = inputs(&expected);
        let bytes = std::fs::read(path).expect("read Dockerfile");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        let got = render(name, &bytes, &inp);
        if errors != got.lines().any(|l| l.starts_with("error: ")) {
            failures.push(format!(
                "{name}: expected {} but got:\n{got}",
                if errors { "an error" } else { "success" }
            ));
        }
        if update {
            std::fs::write(&expected_path, &got).expect("write expectation");
        } else if got != expected {
            failures.push(format!(
                "{name}: output differs\n--- expected\n{expected}\n--- got\n{got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    files.len()
}

#[test]
fn corpus_parses_as_expected() {
    let n = run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"),
        false,
    );
    assert!(n >= 60, "corpus has only {n} Dockerfiles");
}

#[test]
fn corpus_errors_name_file_line_and_column() {
    let n = run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/errors"),
        true,
    );
    assert!(n >= 20, "error corpus has only {n} cases");
}
