//! Exec endpoints: create, start (hijacked as attach is, or detached),
//! inspect and resize. The engine records an exec's exit code before its
//! stream ends, so a client that inspects right after sees it.

use std::collections::VecDeque;
use std::io;

use bollard_stubs::models::{ExecInspectResponse, ExecStartConfig, ProcessConfig};
use hutch_engine::containers::client::{Input, Output};
use hutch_engine::containers::protocol::ExitInfo;
use hutch_engine::containers::{EngineError, ExecOptions};
use hyper::{Response, StatusCode};
use serde::Deserialize;

use super::super::error::ApiError;
use super::super::hijack::{self, SessionOptions, Source};
use super::super::request::ApiRequest;
use super::super::response::{self, Body};
use super::super::router::{route, Route};
use super::containers::tty_size;

pub fn routes() -> Vec<Route> {
    vec![
        route!(POST "/containers/{id}/exec" => create),
        route!(POST "/exec/{id}/start" => start),
        route!(POST "/exec/{id}/resize" => resize),
        route!(GET "/exec/{id}/json" => inspect),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

/// moby's exec body; `Cmd` may be a string (its `StrSlice`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecBody {
    attach_stdin: bool,
    tty: bool,
    env: Option<Vec<String>>,
    cmd: Option<StrSlice>,
    privileged: bool,
    user: Option<String>,
    working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

async fn create(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let container = req.param("id").to_string();
    let body: ExecBody = req.json().await?;
    let cmd = match body.cmd {
        Some(StrSlice::One(c)) => vec![c],
        Some(StrSlice::Many(c)) => c,
        None => Vec::new(),
    };
    let opts = ExecOptions {
        cmd,
        env: body.env.unwrap_or_default(),
        user: body.user,
        working_dir: body.working_dir,
        tty: body.tty,
        attach_stdin: body.attach_stdin,
        privileged: body.privileged,
    };
    let id = daemon
        .with_engine(move |e| e.exec_create(&container, opts))
        .await?;
    // bollard's IdResponse serializes as `id`; moby sends `Id`.
    Ok(response::json(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id }),
    ))
}

/// A start that failed before the process ran: the message on stderr,
/// then the end (the client reads the exit code from inspect).
struct Refused {
    out: VecDeque<Output>,
}

impl Source for Refused {
    fn next_output(&mut self) -> io::Result<Option<Output>> {
        Ok(self.out.pop_front())
    }
    fn input(&self) -> io::Result<Input> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no process"))
    }
}

async fn start(mut req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let exec_id = req.param("id").to_string();
    let upgrade = req.upgrade.take();
    let headers = std::mem::take(&mut req.headers);
    let version = req.version;
    // The body is optional for clients that send none.
    let body: ExecStartConfig = match req.json::<ExecStartConfig>().await {
        Ok(b) => b,
        Err(e) if e.message.contains("EOF") => ExecStartConfig::default(),
        Err(e) => return Err(e),
    };
    let size = body.console_size.clone().filter(|s| s.len() == 2);
    let id = exec_id.clone();
    let exec = daemon.with_engine(move |e| e.exec_inspect(&id)).await?;
    if exec.running || exec.exit_code.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("exec {} has already run", exec.id),
        ));
    }
    let engine = daemon.engine.clone();
    let start = move || -> Box<dyn Source> {
        match engine.exec_start(&exec_id) {
            Ok(stream) => {
                if let Some(s) = size {
                    // Best effort: a size for a tty exec.
                    let _ = engine.exec_resize(&exec_id, s[0] as u16, s[1] as u16);
                }
                Box::new(stream)
            }
            // The client sees why on the stream (moby's text for a command
            // that cannot run) and the code the engine recorded in the
            // exec's inspect.
            Err(err) => {
                let message = match err {
                    EngineError::Failed { message, .. } => format!(
                        "OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
                    ),
                    other => other.to_string(),
                };
                Box::new(Refused {
                    out: VecDeque::from([
                        Output::Stdout(format!("{message}\r\n").into_bytes()),
                        Output::Exit(ExitInfo {
                            code: -1,
                            detached: false,
                        }),
                    ]),
                })
            }
        }
    };
    if body.detach == Some(true) {
        // Nobody reads the output; the engine still records the exit.
        drop(tokio::task::spawn_blocking(start).await?);
        return Ok(response::empty(StatusCode::OK));
    }
    let tty = exec.options.tty;
    let opts = SessionOptions {
        tty,
        stdin: exec.options.attach_stdin,
        content_type: hijack::content_type(tty, version),
    };
    // As moby does, the process starts once the answer's head is out: a
    // client reading the head through a buffer (docker-py) would otherwise
    // swallow the first output with it.
    Ok(hijack::respond(upgrade, &headers, opts, async move {
        tokio::task::spawn_blocking(start).await.ok()
    }))
}

async fn resize(req: ApiRequest) -> Reply {
    let (h, w) = tty_size(&req)?;
    let id = req.param("id").to_string();
    req.daemon
        .with_engine(move |e| e.exec_resize(&id, h, w))
        .await?;
    Ok(response::empty(StatusCode::OK))
}

async fn inspect(req: ApiRequest) -> Reply {
    let id = req.param("id").to_string();
    let x = req.daemon.with_engine(move |e| e.exec_inspect(&id)).await?;
    let (entrypoint, arguments) = match x.options.cmd.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    Ok(response::json(
        StatusCode::OK,
        &ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(String::new()),
            id: Some(x.id.clone()),
            running: Some(x.running),
            exit_code: x.exit_code.map(i64::from),
            process_config: Some(ProcessConfig {
                privileged: Some(x.options.privileged),
                user: Some(x.options.user.clone().unwrap_or_default()),
                tty: Some(x.options.tty),
                entrypoint: Some(entrypoint),
                arguments: Some(arguments),
            }),
            open_stdin: Some(x.options.attach_stdin),
            open_stderr: Some(true),
            open_stdout: Some(true),
            container_id: Some(x.container_id.clone()),
            pid: Some(i64::from(x.pid)),
        },
    ))
}
