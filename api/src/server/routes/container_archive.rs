//! `GET`, `HEAD` and `PUT /containers/{id}/archive` (`docker cp`): each
//! request runs `hutch __archive` (see `commands::archive`), which works
//! from inside the container's root: a running container's own, or, for a
//! container that is not running, its filesystem mounted for the request
//! (read-only to copy out, writable through its upper directory to copy
//! in, as Docker mounts it). The path's stat goes in
//! `X-Docker-Container-Path-Stat` (base64 JSON).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};

use hutch_builder::exec::rootfs::ContainerView;
use hutch_builder::exec::BuildError;
use hutch_engine::containers::config::UsernsMode;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};

type Reply = Result<Response<Body>, ApiError>;

/// Bytes of tar per chunk sent to the client.
const CHUNK: usize = 64 << 10;

/// Where the helper finds the container's files.
enum Source {
    /// A running container's init process.
    Running(i32),
    /// A stopped container's filesystem, mounted until this is dropped.
    Stopped(ContainerView),
}

fn helper(sub: &str, source: &Source, path: &str) -> Result<Command, ApiError> {
    let exe = std::env::current_exe()
        .map_err(|e| ApiError::internal(format!("cannot find the hutch binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args(["__archive", sub]);
    match source {
        Source::Running(pid) => cmd.args(["--pid", &pid.to_string()]),
        Source::Stopped(view) => cmd.arg("--root").arg(view.path()),
    };
    cmd.args(["--path", path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

/// The helper's failure as Docker's answer.
fn failure(mut child: Child, path: &str, id: &str) -> ApiError {
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    match child.wait().ok().and_then(|s| s.code()) {
        Some(2) => ApiError::not_found(format!("Could not find the file {path} in container {id}")),
        Some(3) => ApiError::bad_request(format!("extraction point is not a directory: {path}")),
        _ => ApiError::internal(format!("copying {path}: {}", stderr.trim())),
    }
}

/// The container's files (a view mounted when it is not running, writable
/// for `PUT`) and its full ID.
async fn source(req: &ApiRequest, writable: bool) -> Result<(Source, String), ApiError> {
    let query = req.param("id").to_string();
    let daemon = req.daemon.clone();
    let d = daemon
        .with_engine(move |e| e.inspect_at_rest(&query))
        .await?;
    if d.state.running && d.state.pid > 0 {
        return Ok((Source::Running(d.state.pid), d.config.id));
    }
    if d.config.options.userns_mode == UsernsMode::Private {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "copying files of a private-mode (--userns-mode private) container that is not \
                 running is not supported by hutch yet ({})",
                d.config.id
            ),
        ));
    }
    let store = daemon.images.clone();
    let tmp = daemon.data_root.join("builder/tmp");
    let work = writable.then_some(d.rootfs_work);
    let (image, upper) = (d.config.image_id, d.rootfs_upper);
    let view = tokio::task::spawn_blocking(move || {
        ContainerView::mount(&store, &image, &upper, work.as_deref(), &tmp)
    })
    .await
    .map_err(|e| ApiError::internal(format!("mounting the container's filesystem: {e}")))?
    .map_err(|e| match e {
        BuildError::Image(e) => ApiError::from(e),
        other => ApiError::internal(other.to_string()),
    })?;
    Ok((Source::Stopped(view), d.config.id))
}

fn path_param(req: &ApiRequest) -> Result<String, ApiError> {
    req.query
        .non_empty("path")
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

fn with_stat(mut resp: Response<Body>, stat_line: &str) -> Result<Response<Body>, ApiError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(stat_line.trim().as_bytes());
    let value = HeaderValue::from_str(&encoded)
        .map_err(|e| ApiError::internal(format!("encoding the path stat: {e}")))?;
    resp.headers_mut()
        .insert("X-Docker-Container-Path-Stat", value);
    Ok(resp)
}

/// `GET` (a tar of the path) and `HEAD` (its stat only).
pub async fn get(req: ApiRequest) -> Reply {
    let path = path_param(&req)?;
    let (source, id) = source(&req, false).await?;
    let head = req.method == Method::HEAD;
    let sub = if head { "stat" } else { "get" };
    let mut cmd = helper(sub, &source, &path)?;
    let started = tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting the copy helper: {e}")))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(ApiError::internal("the copy helper has no stdout"));
        };
        let mut reader = BufReader::new(stdout);
        let mut stat = String::new();
        if reader.read_line(&mut stat).unwrap_or(0) == 0 {
            return Err(failure(child, &path, &id));
        }
        Ok((stat, reader, child))
    })
    .await??;
    let (stat, reader, child) = started;
    if head {
        let mut child = child;
        let _ = child.wait();
        drop(source);
        return with_stat(response::empty(StatusCode::OK), &stat);
    }
    let (resp, tx) = response::stream("application/x-tar");
    tokio::task::spawn_blocking(move || {
        pump(reader, child, tx);
        // A stopped container's view stays mounted until the tar is sent.
        drop(source);
    });
    with_stat(resp, &stat)
}

/// The helper's tar to the client; a client gone ends the helper.
fn pump(
    mut reader: BufReader<ChildStdout>,
    mut child: Child,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    let _ = child.wait();
}

/// `PUT`: the request body (a tar) extracted into the path.
pub async fn put(req: ApiRequest) -> Reply {
    let path = path_param(&req)?;
    let (source, id) = source(&req, true).await?;
    let mut cmd = helper("put", &source, &path)?;
    let mut body = req.body_reader();
    tokio::task::spawn_blocking(move || {
        // A stopped container's view stays mounted until the helper is done.
        let _source = source;
        let mut child = cmd
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting the copy helper: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that refused early closes its stdin: its exit says why.
            let _ = std::io::copy(&mut body, &mut stdin);
            let _ = stdin.flush();
        }
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child
            .wait()
            .map_err(|e| ApiError::internal(format!("waiting for the copy helper: {e}")))?;
        match status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(ApiError::not_found(format!(
                "Could not find the file {path} in container {id}"
            ))),
            Some(3) => Err(ApiError::bad_request(format!(
                "extraction point is not a directory: {path}"
            ))),
            _ => Err(ApiError::internal(format!(
                "copying into {path}: {}",
                err.trim()
            ))),
        }
    })
    .await??;
    Ok(response::empty(StatusCode::OK))
}
