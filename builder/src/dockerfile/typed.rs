//! From a split instruction to a typed [`Command`], with BuildKit's argument checks
//! and messages (`instructions/parse.go`).

use std::time::Duration;

use super::duration::parse_go_duration;
use super::flags::{Flags, Kind};
use super::heredoc::{self, Heredoc};
use super::instruction::*;
use super::node::{At, Node};
use super::words;

/// Builds the command of `node`; `heredocs` are the bodies read after its line.
pub(crate) fn build(node: &Node, heredocs: Vec<Heredoc>, escape: char) -> Result<Command, At> {
    let at_keyword = |m: String| At::new(node.keyword_offset, m);
    let flags = |allowed: &[(&'static str, Kind)]| {
        Flags::parse(&node.flags, allowed).map_err(|e| At::new(e.offset, e.message))
    };
    let args = &node.args;
    Ok(match node.lower().as_str() {
        "from" => {
            let f = flags(&[("platform", Kind::String)])?;
            let name = match args.len() {
                1 => None,
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(at_keyword(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            args[2]
                        )));
                    }
                    Some(name)
                }
                _ => {
                    return Err(at_keyword(
                        "FROM requires either one or three arguments".into(),
                    ))
                }
            };
            Command::From(From {
                image: args[0].clone(),
                name,
                platform: f.string("platform"),
            })
        }
        "run" => {
            let f = flags(&[
                ("mount", Kind::Strings),
                ("network", Kind::String),
                ("security", Kind::String),
            ])?;
            let mut mounts = Vec::new();
            for spec in f.strings("mount") {
                let flag_at = flag_offset(node, "mount");
                let m = MountSpec::parse(&spec).map_err(|e| At::new(flag_at, e))?;
                // Values without variables can be checked now; the rest when the
                // RUN executes with its environment.
                if !spec.contains('$') {
                    m.resolve(&mut |v| Ok(v.to_string()))
                        .map_err(|e| At::new(flag_at, e))?;
                }
                mounts.push(m);
            }
            let network = match f.string("network").as_deref() {
                None | Some("default") => Network::Default,
                Some("none") => Network::None,
                Some("host") => Network::Host,
                Some(other) => {
                    return Err(At::new(
                        flag_offset(node, "network"),
                        format!("invalid network mode {other:?}"),
                    ))
                }
            };
            let security = match f.string("security").as_deref() {
                None | Some("sandbox") => Security::Sandbox,
                Some("insecure") => Security::Insecure,
                Some(other) => {
                    return Err(At::new(
                        flag_offset(node, "security"),
                        format!("security {other:?} is not valid"),
                    ))
                }
            };
            Command::Run(Run {
                cmd: command_line(node, heredocs),
                mounts,
                network,
                security,
            })
        }
        "cmd" => {
            flags(&[])?;
            Command::Cmd(command_line(node, heredocs))
        }
        "entrypoint" => {
            flags(&[])?;
            Command::Entrypoint(command_line(node, heredocs))
        }
        "shell" => {
            flags(&[])?;
            if node.args.is_empty() {
                return Err(at_keyword("SHELL requires at least one argument".into()));
            }
            if !node.json {
                return Err(At::new(
                    node.rest_offset,
                    format!(
                        "SHELL requires the arguments to be in JSON form: {}",
                        node.rest
                    ),
                ));
            }
            Command::Shell(node.args.clone())
        }
        "env" | "label" => {
            flags(&[])?;
            let name = node.lower().to_ascii_uppercase();
            Command::Env(name_values(node, &name, escape)?).relabel(&name)
        }
        "arg" => {
            flags(&[])?;
            if args.is_empty() {
                return Err(at_keyword("ARG requires at least one argument".into()));
            }
            let mut decls = Vec::new();
            for a in args {
                let decl = match a.split_once('=') {
                    Some(("", _)) => return Err(at_keyword("ARG names can not be blank".into())),
                    Some((k, v)) => ArgDecl {
                        key: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        key: a.clone(),
                        default: None,
                    },
                };
                decls.push(decl);
            }
            Command::Arg(decls)
        }
        "expose" => {
            flags(&[])?;
            if args.is_empty() {
                return Err(at_keyword("EXPOSE requires at least one argument".into()));
            }
            let mut ports = args.clone();
            ports.sort();
            Command::Expose(ports)
        }
        "volume" => {
            flags(&[])?;
            if args.is_empty() {
                return Err(at_keyword("VOLUME requires at least one argument".into()));
            }
            let mut vols = Vec::new();
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(at_keyword(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                vols.push(v.to_string());
            }
            Command::Volume(vols)
        }
        "user" | "workdir" | "stopsignal" | "maintainer" => {
            flags(&[])?;
            let upper = node.lower().to_ascii_uppercase();
            if args.len() != 1 {
                return Err(at_keyword(format!("{upper} requires exactly one argument")));
            }
            let v = args[0].clone();
            match upper.as_str() {
                "USER" => Command::User(v),
                "WORKDIR" => Command::Workdir(v),
                "STOPSIGNAL" => Command::StopSignal(v),
                _ => Command::Maintainer(v),
            }
        }
        "add" => {
            if args.len() < 2 {
                return Err(at_keyword(no_destination("ADD")));
            }
            let f = flags(&[
                ("chown", Kind::String),
                ("chmod", Kind::String),
                ("link", Kind::Bool),
                ("keep-git-dir", Kind::Bool),
                ("checksum", Kind::String),
                ("unpack", Kind::Bool),
                ("exclude", Kind::Strings),
            ])?;
            check_chmod(node, &f)?;
            Command::Add(Add {
                sources: sources(node, "ADD", heredocs)?,
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link"),
                keep_git_dir: f.opt_bool("keep-git-dir"),
                checksum: f.string("checksum"),
                unpack: f.opt_bool("unpack"),
                excludes: f.strings("exclude"),
            })
        }
        "copy" => {
            if args.len() < 2 {
                return Err(at_keyword(no_destination("COPY")));
            }
            let f = flags(&[
                ("chown", Kind::String),
                ("from", Kind::String),
                ("chmod", Kind::String),
                ("link", Kind::Bool),
                ("exclude", Kind::Strings),
                ("parents", Kind::Bool),
            ])?;
            check_chmod(node, &f)?;
            if let Some(from) = f.string("from") {
                if from.contains('$') {
                    return Err(At::new(
                        flag_offset(node, "from"),
                        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                    ));
                }
            }
            Command::Copy(Copy {
                sources: sources(node, "COPY", heredocs)?,
                from: f.string("from"),
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link"),
                parents: f.bool("parents"),
                excludes: f.strings("exclude"),
            })
        }
        "healthcheck" => healthcheck(node, &flags)?,
        // ONBUILD is assembled by the caller, which parses the trigger recursively.
        other => return Err(at_keyword(format!("unknown instruction: {other}"))),
    })
}

impl Command {
    /// ENV and LABEL share their parsing; this sorts out which one it was.
    fn relabel(self, name: &str) -> Command {
        match (self, name) {
            (Command::Env(kv), "LABEL") => Command::Label(kv),
            (c, _) => c,
        }
    }
}

fn no_destination(cmd: &str) -> String {
    format!("{cmd} requires at least two arguments, but only one was provided. Destination could not be determined")
}

fn flag_offset(node: &Node, name: &str) -> usize {
    let prefix = format!("--{name}");
    node.flags
        .iter()
        .find(|f| f.text == prefix || f.text.starts_with(&format!("{prefix}=")))
        .map_or(node.keyword_offset, |f| f.offset)
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn check_chmod(node: &Node, f: &Flags) -> Result<(), At> {
    if let Some(chmod) = f.string("chmod") {
        if !chmod.contains('$') {
            crate::chmod::Chmod::parse(&chmod)
                .map_err(|e| At::new(flag_offset(node, "chmod"), e))?;
        }
    }
    Ok(())
}

fn command_line(node: &Node, heredocs: Vec<Heredoc>) -> CommandLine {
    let args = if node.json || node.args.is_empty() {
        node.args.clone()
    } else {
        vec![node.args.join(" ")]
    };
    CommandLine {
        args,
        json: node.json,
        heredocs,
    }
}

/// ENV/LABEL arguments: `k=v k2=v2` or the legacy `k v` (rest of line is the value).
fn name_values(node: &Node, cmd: &str, escape: char) -> Result<Vec<KeyValue>, At> {
    let err = |m: String| At::new(node.keyword_offset, m);
    let ws = words::parse_words(&node.rest, escape);
    if ws.is_empty() {
        return Err(err(format!("{cmd} requires at least one argument")));
    }
    if !ws[0].contains('=') {
        let parts = words::split_spaces(&node.rest, 2);
        if parts.len() < 2 {
            return Err(err(format!("{cmd} must have two arguments")));
        }
        return Ok(vec![KeyValue {
            key: parts[0].to_string(),
            value: parts[1].to_string(),
            legacy: true,
        }]);
    }
    let mut out = Vec::new();
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            )));
        };
        if k.is_empty() {
            return Err(err(format!("{cmd} names can not be blank")));
        }
        out.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
            legacy: false,
        });
    }
    Ok(out)
}

fn sources(node: &Node, cmd: &str, heredocs: Vec<Heredoc>) -> Result<Sources, At> {
    let (dest, srcs) = node
        .args
        .split_last()
        .ok_or_else(|| At::new(node.keyword_offset, no_destination(cmd)))?;
    if heredoc::parse_marker(dest).is_some() {
        return Err(At::new(
            node.keyword_offset,
            format!("{cmd} cannot accept a heredoc as a destination"),
        ));
    }
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for src in srcs {
        match heredoc::parse_marker(src) {
            Some(marker) => {
                let body = heredocs
                    .iter()
                    .find(|h| h.name == marker.name)
                    .map(|h| h.body.clone())
                    .unwrap_or_default();
                inline.push(Heredoc { body, ..marker });
            }
            None => paths.push(src.clone()),
        }
    }
    Ok(Sources {
        paths,
        inline,
        dest: dest.clone(),
    })
}

/// Validates an instruction's flags against what it accepts.
type FlagCheck<'a> = dyn Fn(&[(&'static str, Kind)]) -> Result<Flags, At> + 'a;

fn healthcheck(node: &Node, flags: &FlagCheck<'_>) -> Result<Command, At> {
    let err = |m: String| At::new(node.keyword_offset, m);
    let Some(typ) = node.args.first() else {
        return Err(err("HEALTHCHECK requires at least one argument".into()));
    };
    let typ = typ.to_ascii_uppercase();
    let rest = &node.args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(err("HEALTHCHECK NONE takes no arguments".into()));
        }
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    let f = flags(&[
        ("interval", Kind::String),
        ("timeout", Kind::String),
        ("start-period", Kind::String),
        ("start-interval", Kind::String),
        ("retries", Kind::String),
    ])?;
    if typ != "CMD" {
        return Err(err(format!(
            "Unknown type {typ:?} in HEALTHCHECK (try CMD)"
        )));
    }
    if rest.is_empty() {
        return Err(err("Missing command after HEALTHCHECK CMD".into()));
    }
    let mut test = vec![if node.json { "CMD" } else { "CMD-SHELL" }.to_string()];
    if node.json {
        test.extend(rest.iter().cloned());
    } else {
        test.push(rest.join(" "));
    }
    let interval = |name: &str| -> Result<Option<Duration>, At> {
        let Some(v) = f.string(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let at = flag_offset(node, name);
        let (negative, d) = parse_go_duration(&v).map_err(|e| At::new(at, e))?;
        if d.is_zero() {
            return Ok(None);
        }
        if negative || d < Duration::from_millis(1) {
            return Err(At::new(
                at,
                format!("Interval {name:?} cannot be less than 1ms"),
            ));
        }
        Ok(Some(d))
    };
    let retries = match f.string("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let at = flag_offset(node, "retries");
            let n: i64 = v.parse().map_err(|_| {
                At::new(
                    at,
                    format!("strconv.ParseInt: parsing {v:?}: invalid syntax"),
                )
            })?;
            if n < 0 {
                return Err(At::new(at, format!("--retries cannot be negative ({n})")));
            }
            Some(
                u32::try_from(n)
                    .map_err(|_| At::new(at, format!("--retries out of range ({n})")))?,
            )
        }
    };
    Ok(Command::Healthcheck(Healthcheck::Cmd(HealthConfig {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    })))
}
