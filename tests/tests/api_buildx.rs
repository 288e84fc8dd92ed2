//! The buildx tests (`buildx/cases.rs`) with the current buildx (Debian testing's, what docker-ce users have).

use hutch_tests::daemon::Buildx;

const BUILDX: Buildx = Buildx::Current;

#[path = "buildx/cases.rs"]
mod cases;

// What only current buildx asks for (0.15 and later).

use anyhow::{ensure, Result};
use hutch_tests::build_context::BuildContext as Ctx;
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};

/// BuildKit's Dockerfile checks: the warnings listed after a build (and
/// under the vertex that loaded the Dockerfile), `docker build --check`
/// (exit 1 with warnings, the source lines shown; a Dockerfile that does
/// not parse, its error and line), `--call=targets`, `--call=outline`, and
/// the same warnings
/// after a daemonless `hutch build`.
#[test]
fn buildx_checks_and_calls() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let linted = Ctx::new(&[
        (
            "Dockerfile",
            "FROM scratch as Build\nCOPY a.txt /\nCMD echo hi\nFROM scratch AS final\n\
             COPY --from=build /a.txt /b\n",
        ),
        ("a.txt", "a\n"),
    ])?;
    let buildx = |args: &[&str]| -> Result<std::process::Output> {
        Ok(daemon.docker_buildx_of(BUILDX)?.args(args).output()?)
    };
    let out = buildx(&["build", "--progress=plain", "-t", "linted", &linted.arg()])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    for line in [
        "3 warnings found",
        " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)",
        " - StageNameCasing: Stage name 'Build' should be lowercase (line 1)",
        " - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended \
         behavior related to OS signals (line 3)",
        // Plain progress shows them under the Dockerfile's vertex.
        "WARN: JSONArgsRecommended",
    ] {
        ensure!(t.contains(line), "no {line:?} in:\n{t}");
    }

    // A variable nothing set (BuildKit's UndefinedVar, found as the build
    // expands the step), with the closest defined one; a declared ARG
    // counts as defined.
    let undefined = Ctx::new(&[(
        "Dockerfile",
        "FROM scratch\nENV APP=1\nENV B=$APPP\nARG C\nENV D=$C\n",
    )])?;
    let out = buildx(&["build", "--progress=plain", &undefined.arg()])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains("1 warning found")
            && t.contains(" - UndefinedVar: Usage of undefined variable '$APPP' (did you mean $APP?) (line 3)"),
        "{t}"
    );

    // With `# check=error=true` such a warning fails the build.
    let strict = Ctx::new(&[(
        "Dockerfile",
        "# check=error=true\nFROM scratch\nENV B=$NOPE\n",
    )])?;
    let out = buildx(&["build", "--progress=plain", &strict.arg()])?;
    let t = text(&out);
    ensure!(
        !out.status.success() && t.contains("lint violation found for rules: UndefinedVar"),
        "{t}"
    );

    // A COPY of a file .dockerignore excludes (the client filtered the
    // context; its patterns still say why the file is missing), through
    // buildx and through hutch build.
    let ignoring = Ctx::new(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY keep.txt /\nCOPY notes/secret.txt /\n",
        ),
        (".dockerignore", "notes/\n"),
        ("keep.txt", "k\n"),
        ("notes/secret.txt", "s\n"),
    ])?;
    let warned = "CopyIgnoredFile: Attempting to Copy file \"notes/secret.txt\" that is excluded by .dockerignore (line 3)";
    let out = buildx(&["build", "--progress=plain", &ignoring.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success() && t.contains(warned), "{t}");
    let out = pod
        .exec(hutch_bin())
        .args(["build", "--progress=plain", &ignoring.arg()])
        .output()?;
    let t = text(&out);
    ensure!(!out.status.success() && t.contains(warned), "{t}");

    // --check builds nothing, prints each warning with its lines, exits 1.
    let images = daemon.docker_ok(&["images", "-q"])?;
    let out = buildx(&["build", "--check", &linted.arg()])?;
    let t = text(&out);
    ensure!(out.status.code() == Some(1), "{t}");
    for line in [
        "Check complete, 3 warnings have been found!",
        "WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
        ">>> CMD echo hi",
    ] {
        ensure!(t.contains(line), "no {line:?} in:\n{t}");
    }
    ensure!(
        daemon.docker_ok(&["images", "-q"])? == images,
        "--check built"
    );
    // As JSON, BuildKit's shape.
    let out = buildx(&["build", "--call=check,format=json", &linted.arg()])?;
    let json: serde_json::Value = serde_json::from_str(&text_stdout(&out))?;
    let rules: Vec<&str> = json["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["ruleName"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        rules.len() == 3 && rules.contains(&"StageNameCasing"),
        "{json}"
    );

    let clean = Ctx::new(&[("Dockerfile", "FROM scratch\nCMD [\"/x\"]\n")])?;
    let out = buildx(&["build", "--check", &clean.arg()])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(t.contains("Check complete, no warnings found."), "{t}");

    let broken = Ctx::new(&[("Dockerfile", "FROM scratch\nFORM x\n")])?;
    let out = buildx(&["build", "--check", &broken.arg()])?;
    let t = text(&out);
    ensure!(!out.status.success(), "{t}");
    ensure!(t.contains("FORM") && t.contains("Dockerfile:2"), "{t}");

    // --call=targets: the stages, the last the default.
    let out = buildx(&["build", "--call=targets", &linted.arg()])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains("TARGET") && t.contains("build") && t.contains("final (default)"),
        "{t}"
    );
    // --call=outline: the build arguments the target uses (with their
    // values) and the secrets its RUNs mount.
    let outlined = Ctx::new(&[(
        "Dockerfile",
        "ARG BASE=scratch\nARG UNUSED=x\n# build compiles it\nFROM $BASE AS build\n\
         # VERSION the release to build\nARG VERSION=1.0\n\
         RUN --mount=type=secret,id=token,required true\nFROM scratch AS other\nARG OTHER\n\
         FROM build\n",
    )])?;
    let out = buildx(&[
        "build",
        "--call=outline",
        "--build-arg",
        "VERSION=2.0",
        &outlined.arg(),
    ])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    let stdout = text_stdout(&out);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for row in [
        vec!["BUILD", "ARG", "VALUE", "DESCRIPTION"],
        vec!["BASE", "scratch"],
        vec!["VERSION", "2.0", "the", "release", "to", "build"],
        vec!["SECRET", "REQUIRED"],
        vec!["token", "true"],
    ] {
        ensure!(rows.contains(&row), "no row {row:?} in:\n{stdout}");
    }
    ensure!(
        !stdout.contains("UNUSED") && !stdout.contains("OTHER"),
        "{stdout}"
    );
    // Descriptions are the doc comments (`# NAME text` right above).
    let out = buildx(&["build", "--call=targets", &outlined.arg()])?;
    let stdout = text_stdout(&out);
    ensure!(
        out.status.success()
            && stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["build", "compiles", "it"]),
        "{}",
        text(&out)
    );

    // hutch build lists them too.
    let out = pod
        .exec(hutch_bin())
        .args(["build", "--progress=plain", "-t", "linted2", &linted.arg()])
        .output()?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains("3 warnings found")
            && t.contains(
                " - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"
            ),
        "{t}"
    );
    daemon.stop()?;
    pod.stop()
}

/// `--output type=registry` (an image exporter that pushes) reaches the
/// registry from the daemon; `docker buildx history` is refused by name.
#[test]
fn buildx_registry_output_and_history() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    let daemon = Daemon::start(&pod)?;
    let ctx = Ctx::new(&[("Dockerfile", "FROM scratch\nCOPY Dockerfile /\n")])?;
    let name = registry.image_ref("out/registry:1");
    let output = format!("type=registry,name={name}");
    let buildx = |args: &[&str]| -> Result<std::process::Output> {
        Ok(daemon.docker_buildx_of(BUILDX)?.args(args).output()?)
    };
    let out = buildx(&["build", "--progress=plain", "--output", &output, &ctx.arg()])?;
    let t = text(&out);
    ensure!(out.status.success(), "{t}");
    ensure!(
        t.contains(&format!("pushing manifest for {name}@sha256:")),
        "{t}"
    );
    let out = buildx(&["buildx", "imagetools", "inspect", &name])?;
    let t = text(&out);
    ensure!(out.status.success() && t.contains("Digest:"), "{t}");

    let out = buildx(&["buildx", "history", "ls"])?;
    let t = text(&out);
    ensure!(
        !out.status.success()
            && t.contains("build history (docker buildx history) is not supported"),
        "{t}"
    );
    daemon.stop()?;
    pod.stop()
}

fn text_stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
