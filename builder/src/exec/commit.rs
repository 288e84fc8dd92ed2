//! `docker commit`: a container's changes, read from its overlay upper
//! directory as a RUN's are (whiteouts, opaque directories, hardlinks),
//! become a layer on top of its image. The config is the container's
//! settings, then the request's config, then the `--change` instructions
//! (the config-only ones Docker allows), as moby's commit merges them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hutch_images::{Digest, ImageStore, Reference};
use serde_json::{json, Map, Value};

use super::{config, tarball, upperdiff, view, BuildError, ImageState};
use crate::args::BuildArgs;
use crate::dockerfile::Command;
use crate::evaluate::StageState;
use crate::EnvList;

/// One commit.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The image the container was created from (its ID).
    pub image_id: String,
    /// The container's overlay upper directory.
    pub upper: PathBuf,
    /// The container's resolved settings.
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// What the container ran (the history's `created_by`).
    pub created_by: String,
    /// The request body: a Docker container config whose set fields win.
    pub config: Option<Value>,
    /// `--change` instructions (`CMD ["x"]`, `ENV A=b`, ...).
    pub changes: Vec<String>,
    /// `-m`.
    pub comment: Option<String>,
    /// `-a`.
    pub author: Option<String>,
    pub names: Vec<Reference>,
}

/// Mount points the runtime makes; left out of the layer when they are
/// empty stubs the image does not have.
const RUNTIME_STUBS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// The config fields a request's config may set (Docker's container config).
const CONFIG_FIELDS: &[&str] = &[
    "Cmd",
    "Entrypoint",
    "Env",
    "Labels",
    "User",
    "WorkingDir",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Stores the committed image; returns its ID.
pub fn commit(store: &ImageStore, req: &CommitRequest) -> Result<Digest, BuildError> {
    let mut img = ImageState::load(store, &req.image_id)?;
    apply_container(&mut img, req);
    if let Some(Value::Object(over)) = &req.config {
        apply_overrides(&mut img, over);
    }
    apply_changes(&mut img, &req.changes)?;

    let lower = img.lower_dirs(store);
    let mut skip: BTreeSet<String> = RUNTIME_STUBS.iter().map(|s| s.to_string()).collect();
    skip.retain(|p| view::lookup(&lower, p).is_none());
    let entries = upperdiff::upper_entries(&req.upper, &skip)
        .map_err(|e| BuildError::io("reading the container's changes", e))?;
    let layer = if entries.is_empty() {
        None
    } else {
        let w = store.layer_writer()?;
        let w = tarball::write_tar(w, entries, None)
            .map_err(|e| BuildError::io("writing the layer", e))?;
        Some(
            w.finish()
                .map_err(|e| BuildError::Image(hutch_images::ImageError::Store(e)))?,
        )
    };
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    img.push_history(
        &created,
        &req.created_by,
        layer.as_ref().map(|l| &l.diff_id),
    );
    if let Some(Value::Array(history)) = img.config.get_mut("history") {
        if let Some(Value::Object(last)) = history.last_mut() {
            last.remove("comment");
            if let Some(c) = req.comment.as_ref().filter(|c| !c.is_empty()) {
                last.insert("comment".into(), json!(c));
            }
            if let Some(a) = req.author.as_ref().filter(|a| !a.is_empty()) {
                last.insert("author".into(), json!(a));
            }
        }
    }
    if let Some(a) = req.author.as_ref().filter(|a| !a.is_empty()) {
        img.config["author"] = json!(a);
    }
    // `docker inspect`'s Comment is the config's; a base's does not carry over.
    match req.comment.as_ref().filter(|c| !c.is_empty()) {
        Some(c) => img.config["comment"] = json!(c),
        None => {
            if let Some(o) = img.config.as_object_mut() {
                o.remove("comment");
            }
        }
    }
    img.store(store, layer, req.names.clone(), false)
}

/// The container's own settings over the image's.
fn apply_container(img: &mut ImageState, req: &CommitRequest) {
    let rc = img.run_config();
    rc.insert("Env".into(), json!(req.env));
    if let Some(c) = &req.cmd {
        rc.insert("Cmd".into(), json!(c));
    }
    if let Some(e) = &req.entrypoint {
        rc.insert("Entrypoint".into(), json!(e));
        if req.cmd.is_none() {
            rc.insert("Cmd".into(), Value::Null);
        }
    }
    if let Some(u) = req.user.as_ref().filter(|u| !u.is_empty()) {
        rc.insert("User".into(), json!(u));
    }
    if let Some(w) = req.working_dir.as_ref().filter(|w| !w.is_empty()) {
        rc.insert("WorkingDir".into(), json!(w));
    }
    if !req.labels.is_empty() {
        let labels = rc.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in &req.labels {
            labels[k] = json!(v);
        }
    }
}

/// The request's config: its non-empty fields win; Env merges by name.
fn apply_overrides(img: &mut ImageState, over: &Map<String, Value>) {
    for key in CONFIG_FIELDS {
        let Some(v) = over.get(*key) else { continue };
        let empty = match v {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if empty {
            continue;
        }
        if *key == "Env" {
            let mut env = EnvList::from_key_values(img.strings("Env").iter().map(String::as_str));
            if let Some(list) = v.as_array() {
                for item in list.iter().filter_map(Value::as_str) {
                    let (k, val) = item.split_once('=').unwrap_or((item, ""));
                    env.set(k, val);
                }
            }
            img.run_config()
                .insert("Env".into(), json!(env.to_key_values()));
        } else {
            img.run_config().insert((*key).into(), v.clone());
        }
    }
}

/// `--change` instructions, expanded with the image's environment.
pub(super) fn apply_changes(img: &mut ImageState, changes: &[String]) -> Result<(), BuildError> {
    if changes.is_empty() {
        return Ok(());
    }
    let text = format!("FROM scratch\n{}\n", changes.join("\n"));
    let df = crate::parse("change", text.as_bytes())?;
    let env = img.strings("Env");
    let mut state = StageState::from_base_env(env.iter().map(String::as_str));
    if let Some(w) = img.string("WorkingDir").filter(|w| !w.is_empty()) {
        state.workdir = w;
    }
    let shell = img.strings("Shell");
    if !shell.is_empty() {
        state.shell = shell;
    }
    let mut cmd_set = false;
    let instructions = df
        .stages
        .first()
        .map(|s| s.instructions.clone())
        .unwrap_or_default();
    for ins in &instructions {
        let allowed = matches!(
            ins.command,
            Command::Cmd(_)
                | Command::Entrypoint(_)
                | Command::Env(_)
                | Command::Expose(_)
                | Command::Healthcheck(_)
                | Command::Label(_)
                | Command::Onbuild(_)
                | Command::StopSignal(_)
                | Command::User(_)
                | Command::Volume(_)
                | Command::Workdir(_)
        );
        if !allowed {
            return Err(BuildError::Invalid(format!(
                "{} is not a valid change command",
                ins.keyword.to_lowercase()
            )));
        }
        let before = state.clone();
        let ex = state.step(&df.file, df.escape, ins, &BuildArgs::new(), &EnvList::new())?;
        if let Command::Workdir(_) = ex.command {
            img.run_config()
                .insert("WorkingDir".into(), json!(state.workdir));
            continue;
        }
        config::apply(img, &state, &before, &ex.command, &mut cmd_set)?;
    }
    Ok(())
}
