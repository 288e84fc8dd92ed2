//! BuildKit's frontend subrequests: a gateway solve whose frontend options
//! carry `requestid` asks the Dockerfile frontend a question instead of
//! building. buildx asks them for `--check` (`frontend.lint`) and `--call`
//! (`outline`, `targets`, `subrequests.describe`). The
//! answers come from the Dockerfile alone, as BuildKit's do, in its result
//! metadata: `result.json` (what buildx prints from, in BuildKit's JSON
//! shapes), `result.txt`, `version`, and lint's `result.statuscode` (1 with
//! warnings, which is `docker build --check`'s exit code).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use hutch_builder::outline::{doc_comment, Needed, Outline};
use hutch_builder::{Dockerfile, ParseError, Warning};
use serde::Serialize;
use tonic::Status;

use super::super::Daemon;
use super::frontend;
use super::solves::Solve;

const LINT: &str = "frontend.lint";
const TARGETS: &str = "frontend.targets";
const OUTLINE: &str = "frontend.outline";
const DESCRIBE: &str = "frontend.subrequests.describe";
/// Each answer's shape version, BuildKit's (buildx prints `result.txt`
/// instead of reading `result.json` when it is newer than it knows).
const VERSION: &str = "1.0.0";

/// The metadata answering the subrequest `request`.
pub async fn answer(
    daemon: &Arc<Daemon>,
    solve: &Arc<Solve>,
    request: &str,
    frontend_opt: &HashMap<String, String>,
) -> Result<HashMap<String, Vec<u8>>, Status> {
    match request {
        DESCRIBE => Ok(describe()),
        LINT | TARGETS | OUTLINE => {
            let def = frontend::definition(daemon, solve, frontend_opt).await?;
            let (name, bytes) = (&def.filename, &def.bytes);
            let parsed = hutch_builder::parse(name, bytes);
            if request == LINT {
                return Ok(lint(name, bytes, parsed.as_ref()));
            }
            let df = parsed.map_err(|e| Status::invalid_argument(e.to_string()))?;
            if request == TARGETS {
                return Ok(targets(bytes, &df));
            }
            let outline =
                hutch_builder::outline::outline(&df, bytes, def.target.as_deref(), &def.build_args)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
            Ok(outline_answer(bytes, &outline))
        }
        other => Err(Status::unimplemented(format!(
            "unsupported request {other}: hutch's Dockerfile frontend answers {LINT}, \
             {OUTLINE}, {TARGETS} and {DESCRIBE}"
        ))),
    }
}

/// pb.SourceInfo as Go's encoding/json writes it (`data` in base64).
#[derive(Serialize)]
struct SourceInfo<'a> {
    filename: &'a str,
    data: String,
    language: &'static str,
}

/// pb.Location: lines of the source `sourceIndex`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(skip_serializing_if = "is_zero")]
    source_index: i32,
    ranges: Vec<Range>,
}

#[derive(Serialize)]
struct Range {
    start: Position,
    end: Position,
}

#[derive(Serialize)]
struct Position {
    line: usize,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn lines(start: usize, end: usize) -> Location {
    Location {
        source_index: 0,
        ranges: vec![Range {
            start: Position { line: start },
            end: Position { line: end },
        }],
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LintWarning<'a> {
    rule_name: &'a str,
    description: &'static str,
    url: String,
    detail: &'a str,
    location: Location,
}

#[derive(Serialize)]
struct LintError {
    message: String,
    location: Location,
}

#[derive(Serialize)]
struct LintResults<'a> {
    warnings: Vec<LintWarning<'a>>,
    sources: Vec<SourceInfo<'a>>,
    #[serde(rename = "buildError", skip_serializing_if = "Option::is_none")]
    error: Option<LintError>,
}

/// `frontend.lint`: the checks' warnings, or the parse error as the
/// result's `buildError` (BuildKit's lint reports a Dockerfile that does
/// not parse that way rather than failing the request).
fn lint(
    name: &str,
    bytes: &[u8],
    parsed: Result<&Dockerfile, &ParseError>,
) -> HashMap<String, Vec<u8>> {
    let (warnings, error): (&[Warning], _) = match parsed {
        Ok(df) => (&df.warnings, None),
        Err(e) => (
            &[],
            Some(LintError {
                message: e.message.clone(),
                location: lines(e.line, e.line),
            }),
        ),
    };
    let results = LintResults {
        warnings: warnings
            .iter()
            .map(|w| LintWarning {
                rule_name: w.rule,
                description: w.description(),
                url: w.url(),
                detail: &w.message,
                location: lines(w.at.line, w.at.line),
            })
            .collect(),
        sources: vec![SourceInfo {
            filename: name,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
            language: "Dockerfile",
        }],
        error,
    };
    let mut text = String::new();
    for w in warnings {
        text.push_str(&format!(
            "\nWARNING: {} - {}\n{}\n{name}:{}\n",
            w.rule,
            w.url(),
            w.message,
            w.at.line
        ));
    }
    if let Some(e) = &results.error {
        text.push_str(&format!("{}\n", e.message));
    }
    let failed = !warnings.is_empty() || results.error.is_some();
    let mut out = metadata(&results, text);
    out.insert(
        "result.statuscode".to_owned(),
        if failed { b"1".to_vec() } else { b"0".to_vec() },
    );
    out
}

#[derive(Serialize)]
struct Target<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    base: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a str>,
    location: Location,
}

#[derive(Serialize)]
struct TargetList<'a> {
    targets: Vec<Target<'a>>,
    sources: Vec<String>,
}

/// `frontend.targets`: the stages, the last one the default.
fn targets(bytes: &[u8], df: &Dockerfile) -> HashMap<String, Vec<u8>> {
    let stages = df.stages();
    let list = TargetList {
        targets: stages
            .iter()
            .enumerate()
            .map(|(i, stage)| Target {
                name: stage.name.as_deref(),
                default: i + 1 == stages.len(),
                description: stage.name.as_deref().and_then(|name| {
                    doc_comment(bytes, stage.from_instruction.span.start.line, name)
                }),
                base: &stage.from.image,
                platform: stage.from.platform.as_deref(),
                location: lines(
                    stage.from_instruction.span.start.line,
                    stage.from_instruction.span.end_line,
                ),
            })
            .collect(),
        sources: vec![base64::engine::general_purpose::STANDARD.encode(bytes)],
    };
    let rows = list.targets.iter().map(|t| {
        let name = match (t.name, t.default) {
            (None, true) => "(default)".to_owned(),
            (None, false) => String::new(),
            (Some(n), true) => format!("{n} (default)"),
            (Some(n), false) => n.to_owned(),
        };
        [name, t.description.clone().unwrap_or_default()]
    });
    let text = table(["TARGET", "DESCRIPTION"], rows);
    metadata(&list, text)
}

#[derive(Serialize)]
struct OutlineJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<OutlineArg<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<OutlineNeeded<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ssh: Vec<OutlineNeeded<'a>>,
    sources: Vec<String>,
}

#[derive(Serialize)]
struct OutlineArg<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    location: Location,
}

#[derive(Serialize)]
struct OutlineNeeded<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    required: bool,
    location: Location,
}

fn outline_needed(needed: &[Needed]) -> Vec<OutlineNeeded<'_>> {
    needed
        .iter()
        .map(|n| OutlineNeeded {
            name: &n.name,
            required: n.required,
            location: lines(n.line, n.line),
        })
        .collect()
}

/// `frontend.outline`: what the target takes from outside.
fn outline_answer(bytes: &[u8], o: &Outline) -> HashMap<String, Vec<u8>> {
    let json = OutlineJson {
        name: o.name.as_deref(),
        description: o.description.as_deref(),
        args: o
            .args
            .iter()
            .map(|a| OutlineArg {
                name: &a.name,
                description: a.description.as_deref(),
                value: a.value.as_deref(),
                location: lines(a.line, a.line),
            })
            .collect(),
        secrets: outline_needed(&o.secrets),
        ssh: outline_needed(&o.ssh),
        sources: vec![base64::engine::general_purpose::STANDARD.encode(bytes)],
    };
    let mut text = String::new();
    if o.name.is_some() || o.description.is_some() {
        let name = o.name.as_deref().unwrap_or("(default)");
        text.push_str(&format!("TARGET: {name}\n"));
        if let Some(d) = &o.description {
            text.push_str(&format!("DESCRIPTION: {d}\n"));
        }
        text.push('\n');
    }
    if !o.args.is_empty() {
        let rows = o.args.iter().map(|a| {
            [
                a.name.clone(),
                a.value.clone().unwrap_or_default(),
                a.description.clone().unwrap_or_default(),
            ]
        });
        text.push_str(&table(["BUILD ARG", "VALUE", "DESCRIPTION"], rows));
        text.push('\n');
    }
    for (title, list) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
        if !list.is_empty() {
            let rows = list.iter().map(|n| {
                let required = if n.required { "true" } else { "" };
                [n.name.clone(), required.to_owned()]
            });
            text.push_str(&table([title, "REQUIRED"], rows));
            text.push('\n');
        }
    }
    metadata(&json, text)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    name: &'static str,
    version: &'static str,
    r#type: &'static str,
    description: &'static str,
    metadata: Vec<Named>,
}

#[derive(Serialize)]
struct Named {
    name: &'static str,
}

/// `frontend.subrequests.describe`: the subrequests answered here.
fn describe() -> HashMap<String, Vec<u8>> {
    let request = |name, description, metadata: &[&'static str]| Request {
        name,
        version: VERSION,
        r#type: "rpc",
        description,
        metadata: metadata.iter().map(|&name| Named { name }).collect(),
    };
    let text_and_json = ["result.json", "result.txt"];
    let requests = vec![
        request(DESCRIBE, "List available subrequest types", &text_and_json),
        request(
            OUTLINE,
            "List all parameters current build target supports",
            &text_and_json,
        ),
        request(
            TARGETS,
            "List all targets current build supports",
            &text_and_json,
        ),
        request(
            LINT,
            "Lint a Dockerfile",
            &["result.json", "result.txt", "result.statuscode"],
        ),
    ];
    let rows = requests.iter().map(|r| {
        [
            r.name.to_owned(),
            r.version.to_owned(),
            r.description.to_owned(),
        ]
    });
    let text = table(["NAME", "VERSION", "DESCRIPTION"], rows);
    metadata(&requests, text)
}

/// `result.json` (indented, as BuildKit writes it), `result.txt` and
/// `version`.
fn metadata<T: Serialize>(value: &T, text: String) -> HashMap<String, Vec<u8>> {
    let json = serde_json::to_vec_pretty(value).unwrap_or_default();
    HashMap::from([
        ("result.json".to_owned(), json),
        ("result.txt".to_owned(), text.into_bytes()),
        ("version".to_owned(), VERSION.as_bytes().to_vec()),
    ])
}

/// A header and rows in columns one space apart, as BuildKit's text
/// answers.
fn table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> String {
    let mut all: Vec<[String; N]> = vec![header.map(str::to_owned)];
    all.extend(rows);
    crate::columns::columns(&all, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(out: &HashMap<String, Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(&out["result.json"]).expect("result.json parses")
    }

    #[test]
    fn lint_reports_warnings_in_buildkits_shape() {
        let text = b"FROM busybox as Build\nCMD echo hi\n";
        let df = hutch_builder::parse("Dockerfile", text).expect("parses");
        let out = lint("Dockerfile", text, Ok(&df));
        let v = json(&out);
        let rules: Vec<&str> = v["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .filter_map(|w| w["ruleName"].as_str())
            .collect();
        assert!(rules.contains(&"FromAsCasing"), "{v}");
        assert!(rules.contains(&"JSONArgsRecommended"), "{v}");
        let cmd = v["warnings"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["ruleName"] == "JSONArgsRecommended"))
            .expect("the CMD warning");
        assert_eq!(cmd["location"]["ranges"][0]["start"]["line"], 2);
        assert_eq!(
            cmd["url"],
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(v["sources"][0]["filename"], "Dockerfile");
        assert_eq!(out["result.statuscode"], b"1");
        assert!(v.get("buildError").is_none());
    }

    #[test]
    fn lint_of_a_broken_dockerfile_is_a_build_error() {
        let text = b"FROM busybox\nFORM x\n";
        let err = hutch_builder::parse("Dockerfile", text).expect_err("does not parse");
        let out = lint("Dockerfile", text, Err(&err));
        let v = json(&out);
        assert_eq!(v["buildError"]["location"]["ranges"][0]["start"]["line"], 2);
        assert_eq!(out["result.statuscode"], b"1");
    }

    #[test]
    fn outline_in_buildkits_shape() {
        let text = b"ARG V=1\nFROM scratch AS app\nARG V\nRUN --mount=type=ssh true\n";
        let df = hutch_builder::parse("Dockerfile", text).expect("parses");
        let o = hutch_builder::outline::outline(&df, text, None, &hutch_builder::BuildArgs::new())
            .expect("outline");
        let out = outline_answer(text, &o);
        let v = json(&out);
        assert_eq!(v["name"], "app");
        assert_eq!(v["args"][0]["name"], "V");
        assert_eq!(v["args"][0]["value"], "1");
        assert_eq!(v["args"][0]["location"]["ranges"][0]["start"]["line"], 3);
        assert_eq!(v["ssh"][0]["name"], "default");
        assert!(v.get("secrets").is_none(), "{v}");
        let txt = String::from_utf8_lossy(&out["result.txt"]);
        assert!(
            txt.starts_with("TARGET: app\n\nBUILD ARG VALUE DESCRIPTION\nV         1\n"),
            "{txt}"
        );
    }

    #[test]
    fn targets_lists_stages_with_the_last_as_default() {
        let text = b"FROM busybox AS build\nRUN true\nFROM --platform=$BUILDPLATFORM alpine AS test\nFROM scratch\n";
        let df = hutch_builder::parse("Dockerfile", text).expect("parses");
        let out = targets(text, &df);
        let v = json(&out);
        let t = v["targets"].as_array().expect("targets");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0]["name"], "build");
        assert_eq!(t[1]["platform"], "$BUILDPLATFORM");
        assert_eq!(t[2]["default"], true);
        assert!(t[0].get("default").is_none());
        let txt = String::from_utf8_lossy(&out["result.txt"]);
        assert!(txt.starts_with("TARGET    DESCRIPTION\n"), "{txt}");
        assert!(txt.contains("(default)"), "{txt}");
    }
}
