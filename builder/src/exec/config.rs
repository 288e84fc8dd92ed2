//! Config instructions (ENV, LABEL, EXPOSE, VOLUME, USER, CMD, ENTRYPOINT,
//! STOPSIGNAL, SHELL, ARG, MAINTAINER, ONBUILD, HEALTHCHECK) applied to an
//! image config: shared by the build steps and `docker commit --change`.

use serde_json::{json, Value};

use super::{health_json, BuildError, ImageState};
use crate::dockerfile::Command;
use crate::evaluate::StageState;
use crate::history;

/// Applies `command` to `img`; returns its history text, or `None` for the
/// instructions that are not config-only (WORKDIR, RUN, COPY, ADD).
/// `before` is the state before the step (CMD/ENTRYPOINT's shell form uses
/// its SHELL), `state` after it (ENV's values).
pub fn apply(
    img: &mut ImageState,
    state: &StageState,
    before: &StageState,
    command: &Command,
    cmd_set: &mut bool,
) -> Result<Option<String>, BuildError> {
    let text = match command {
        Command::Env(kvs) => {
            img.run_config()
                .insert("Env".into(), json!(state.config_env.to_key_values()));
            Some(history::env(kvs))
        }
        Command::Label(kvs) => {
            let labels = img
                .run_config()
                .entry("Labels")
                .or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for kv in kvs {
                labels[&kv.key] = json!(kv.value);
            }
            Some(history::label(kvs))
        }
        Command::Expose(ports) => {
            let ports: Vec<String> = ports
                .iter()
                .map(|p| {
                    if p.contains('/') {
                        p.clone()
                    } else {
                        format!("{p}/tcp")
                    }
                })
                .collect();
            let map = img
                .run_config()
                .entry("ExposedPorts")
                .or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            for p in &ports {
                map[p] = json!({});
            }
            Some(history::expose(&ports))
        }
        Command::Volume(vols) => {
            let map = img
                .run_config()
                .entry("Volumes")
                .or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            for v in vols {
                map[v] = json!({});
            }
            Some(history::volume(vols))
        }
        Command::User(u) => {
            img.run_config().insert("User".into(), json!(u));
            Some(history::user(u))
        }
        Command::Cmd(c) => {
            let argv = before.argv(c);
            img.run_config().insert("Cmd".into(), json!(argv));
            *cmd_set = true;
            Some(history::cmd(&argv))
        }
        Command::Entrypoint(c) => {
            let argv = before.argv(c);
            img.run_config().insert("Entrypoint".into(), json!(argv));
            if !*cmd_set {
                img.run_config().insert("Cmd".into(), Value::Null);
            }
            Some(history::entrypoint(&argv))
        }
        Command::StopSignal(s) => {
            img.run_config().insert("StopSignal".into(), json!(s));
            Some(history::stopsignal(s))
        }
        Command::Shell(argv) => {
            img.run_config().insert("Shell".into(), json!(argv));
            Some(history::shell(argv))
        }
        Command::Arg(decls) => Some(history::arg(decls)),
        Command::Maintainer(m) => {
            img.config["author"] = json!(m);
            Some(history::maintainer(m))
        }
        Command::Onbuild(o) => {
            let mut list = img.strings("OnBuild");
            list.push(o.expression.clone());
            img.run_config().insert("OnBuild".into(), json!(list));
            Some(format!("ONBUILD {}", o.expression))
        }
        Command::Healthcheck(h) => {
            img.run_config()
                .insert("Healthcheck".into(), health_json(h));
            Some(history::healthcheck(h))
        }
        Command::From(_) => {
            return Err(BuildError::Invalid("FROM inside a stage".into()));
        }
        Command::Workdir(_) | Command::Run(_) | Command::Copy(_) | Command::Add(_) => None,
    };
    Ok(text)
}
