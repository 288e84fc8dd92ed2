//! Container endpoints: the route table, and the lifecycle handlers (create,
//! start, stop, restart, kill, wait, delete, rename, resize, update, prune).
//! Views are in `container_views`, streams (logs, attach) in `container_io`,
//! top and stats in `container_stats`, `docker diff` in `container_changes`. Every engine call blocks and runs on
//! a blocking thread.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    ContainerCreateResponse, ContainerPruneResponse, ContainerUpdateBody, ContainerUpdateResponse,
    RestartPolicyNameEnum,
};
use bytes::Bytes;
use hutch_builder::Platform;
use hutch_engine::containers::config::{RestartPolicy, RestartPolicyName};
use hutch_engine::containers::{EngineError, WaitCondition};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::super::error::ApiError;
use super::super::query::timestamp;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};
use super::super::router::{route, Route};
use super::super::version::ApiVersion;
use super::super::Daemon;
use super::container_create::{self, LIMITS_WARNING};
use super::{container_archive, container_changes, container_io, container_stats, container_views};

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/containers/json" => list),
        route!(POST "/containers/create" => create),
        route!(POST "/containers/prune" => prune),
        route!(GET "/containers/{id}/json" => inspect),
        route!(GET "/containers/{id}/top" => container_stats::top),
        route!(GET "/containers/{id}/logs" => container_io::logs),
        route!(GET "/containers/{id}/changes" => container_changes::handler),
        route!(GET "/containers/{id}/export" => super::container_export::export),
        route!(GET "/containers/{id}/stats" => container_stats::stats),
        route!(GET "/containers/{id}/attach/ws" => container_io::attach_ws),
        route!(GET "/containers/{id}/archive" => container_archive::get),
        route!(HEAD "/containers/{id}/archive" => container_archive::get),
        route!(PUT "/containers/{id}/archive" => container_archive::put),
        route!(POST "/containers/{id}/resize" => resize),
        route!(POST "/containers/{id}/start" => start),
        route!(POST "/containers/{id}/stop" => stop),
        route!(POST "/containers/{id}/restart" => restart),
        route!(POST "/containers/{id}/kill" => kill),
        route!(POST "/containers/{id}/update" => update),
        route!(POST "/containers/{id}/rename" => rename),
        route!(POST "/containers/{id}/pause" => pause),
        route!(POST "/containers/{id}/unpause" => unpause),
        route!(POST "/containers/{id}/attach" => container_io::attach),
        route!(POST "/containers/{id}/wait" => wait),
        // `{id:.*}`: `docker rm --link /PARENT/ALIAS` names a link by its
        // path (`DELETE /containers//web/db?link=1`).
        route!(DELETE "/containers/{id:.*}" => delete),
        route!(POST "/commit" => super::container_commit::commit),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

/// Pausing needs the cgroup freezer, which a pod delegates only with a
/// writable cgroup hierarchy.
async fn pause(req: ApiRequest) -> Reply {
    set_paused(req, true).await
}

async fn unpause(req: ApiRequest) -> Reply {
    set_paused(req, false).await
}

async fn set_paused(req: ApiRequest, paused: bool) -> Reply {
    let id = req.param("id").to_string();
    let daemon = req.daemon.clone();
    let freezer = daemon
        .with_engine(|e| Ok(e.cgroups().is_some_and(|c| c.has("freezer"))))
        .await?;
    if !freezer {
        return Err(ApiError::unsupported(
            "pausing containers (the cgroup freezer is not writable in a pod)",
        ));
    }
    daemon
        .with_engine(move |e| e.set_paused(&id, paused))
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// An optional integer query parameter, or moby's 400.
fn int_param(req: &ApiRequest, key: &str) -> Result<Option<i64>, ApiError> {
    req.query
        .non_empty(key)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}")))
        })
        .transpose()
}

async fn list(req: ApiRequest) -> Reply {
    let all = req.query.bool("all");
    let limit = int_param(&req, "limit")?.unwrap_or(-1);
    let filters = req.query.filters()?;
    let containers = req.daemon.with_engine(|e| Ok(e.list(true))).await?;
    let filter = container_views::ListFilter::new(filters, &containers)?;
    let show_stopped = all || filter.wants_stopped() || limit > 0;
    let now = chrono::Utc::now();
    let mut rows: Vec<_> = containers
        .iter()
        .filter(|d| show_stopped || d.state.is_active())
        .filter(|d| filter.matches(d))
        .map(|d| container_views::summary(d, now))
        .collect();
    if limit > 0 {
        rows.truncate(limit as usize);
    }
    if req.query.bool("size") {
        let image_sizes = req.daemon.with_images(image_sizes).await?;
        rows = tokio::task::spawn_blocking(move || {
            for row in &mut rows {
                if let Some(d) = containers
                    .iter()
                    .find(|d| Some(&d.config.id) == row.id.as_ref())
                {
                    let (rw, root_fs) = container_views::sizes(d, &image_sizes);
                    row.size_rw = Some(rw);
                    row.size_root_fs = Some(root_fs);
                }
            }
            rows
        })
        .await?;
    }
    Ok(response::json(StatusCode::OK, &rows))
}

/// Each image's size (its layers' content), by ID, for `size=1`.
pub(crate) fn image_sizes(
    store: &hutch_images::ImageStore,
) -> Result<HashMap<String, u64>, hutch_images::ImageError> {
    Ok(store
        .list(&hutch_images::ListFilters::default())?
        .into_iter()
        .map(|image| (image.id.to_string(), image.size))
        .collect())
}

async fn create(req: ApiRequest) -> Reply {
    let name = req.query.get("name").map(str::to_string);
    let wanted_platform = req.query.non_empty("platform").map(str::to_string);
    let daemon = req.daemon.clone();
    let body: serde_json::Value = req.json().await?;
    let parsed = container_create::parse(body, name.as_deref())?;
    if let Some(spec) = &wanted_platform {
        let want = Platform::parse(spec).map_err(ApiError::bad_request)?;
        let image = parsed.opts.image.clone();
        daemon
            .with_images(move |store| Ok(local_platform_mismatch(store, &image, &want)))
            .await?
            .map_or(Ok(()), Err)?;
    }
    let mut warnings = parsed.warnings;
    let created = daemon
        .with_engine(move |e| {
            if e.cgroups().is_some() {
                // Applied to the container's own cgroup.
                warnings.retain(|w| w != LIMITS_WARNING);
            }
            e.create(parsed.opts).map(|c| (c, warnings))
        })
        .await;
    let (created, mut warnings) = created?;
    warnings.extend(created.warnings);
    // Docker's warning for an image of another platform that create did
    // not ask for (it runs under emulation, or fails to start).
    if let (None, Some(have)) = (&wanted_platform, &created.foreign_platform) {
        warnings.push(format!(
            "The requested image's platform ({have}) does not match the detected host \
             platform ({}) and no specific platform was requested",
            Platform::host()
        ));
    }
    Ok(response::json(
        StatusCode::CREATED,
        &ContainerCreateResponse {
            id: created.id,
            warnings,
        },
    ))
}

/// `--platform` on create names the platform the local image must be,
/// checked as the builder checks a stored base image for a stage (an image
/// naming no platform fits), with Docker's words: a 404, on which the CLI
/// pulls that platform's image and creates again. An image that is not
/// there is create's own 404 to report.
fn local_platform_mismatch(
    store: &hutch_images::ImageStore,
    image: &str,
    want: &Platform,
) -> Option<ApiError> {
    let have = Platform::of_config(&store.inspect(image).ok()?.config)?;
    (!want.accepts(&have)).then(|| {
        ApiError::not_found(format!(
            "image with reference {image} was found but does not match the specified \
             platform: wanted {want}, actual: {have}"
        ))
    })
}

async fn inspect(req: ApiRequest) -> Reply {
    let id = req.param("id").to_string();
    let details = req.daemon.with_engine(move |e| e.inspect(&id)).await?;
    let mut body = container_views::inspect(&details, Vec::new());
    if req.query.bool("size") {
        let image_sizes = req.daemon.with_images(image_sizes).await?;
        let (rw, root_fs) =
            tokio::task::spawn_blocking(move || container_views::sizes(&details, &image_sizes))
                .await?;
        body.size_rw = Some(rw);
        body.size_root_fs = Some(root_fs);
    }
    if req.version < ApiVersion(1, 45) {
        container_views::legacy_aliases(&mut body);
    }
    Ok(response::json(StatusCode::OK, &body))
}

/// `POST /containers/{id}/start`; attach requests waiting for this start
/// get their streams, connected before the process runs.
async fn start(req: ApiRequest) -> Reply {
    if req.query.non_empty("checkpoint").is_some() {
        return Err(ApiError::unsupported("checkpoints"));
    }
    let daemon = req.daemon.clone();
    let query = req.param("id").to_string();
    let id = daemon.with_engine(move |e| e.resolve(&query)).await?;
    let pending = daemon.pending_attaches.take(&id);
    let specs: Vec<_> = pending.iter().map(|p| p.spec.clone()).collect();
    let streams = daemon
        .with_engine(move |e| e.start_attached(&id, &specs))
        .await;
    match streams {
        Ok(streams) => {
            for (p, stream) in pending.into_iter().zip(streams) {
                // A client that left meanwhile drops its stream here.
                let _ = p.tx.send(stream);
            }
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        Err(ApiError { status, .. }) if status == StatusCode::NOT_MODIFIED => {
            Ok(response::empty(StatusCode::NOT_MODIFIED))
        }
        Err(e) => Err(e),
    }
}

async fn stop(req: ApiRequest) -> Reply {
    let timeout = match int_param(&req, "t")? {
        Some(t) => Some(t),
        None => int_param(&req, "timeout")?,
    };
    let signal = req.query.non_empty("signal").map(str::to_string);
    let id = req.param("id").to_string();
    let stopped = req
        .daemon
        .with_engine(move |e| {
            if let Some(signal) = &signal {
                // The asked-for signal first; the stop then waits and
                // escalates to SIGKILL as usual.
                match e.kill(&id, Some(signal)) {
                    Ok(()) | Err(EngineError::NotRunning(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            e.stop(&id, timeout)
        })
        .await;
    not_modified_or(stopped)
}

fn not_modified_or(r: Result<(), ApiError>) -> Reply {
    match r {
        Ok(()) => Ok(response::empty(StatusCode::NO_CONTENT)),
        Err(e) if e.status == StatusCode::NOT_MODIFIED => {
            Ok(response::empty(StatusCode::NOT_MODIFIED))
        }
        Err(e) => Err(e),
    }
}

async fn restart(req: ApiRequest) -> Reply {
    let timeout = match int_param(&req, "t")? {
        Some(t) => Some(t),
        None => int_param(&req, "timeout")?,
    };
    let id = req.param("id").to_string();
    req.daemon
        .with_engine(move |e| e.restart(&id, timeout))
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

async fn kill(req: ApiRequest) -> Reply {
    let signal = req.query.non_empty("signal").map(str::to_string);
    let id = req.param("id").to_string();
    req.daemon
        .with_engine(move |e| e.kill(&id, signal.as_deref()))
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// The wait body, with `"Error": null` as moby sends it.
#[derive(Serialize)]
struct WaitBody {
    #[serde(rename = "StatusCode")]
    status_code: i64,
    #[serde(rename = "Error")]
    error: Option<WaitError>,
}

#[derive(Serialize)]
struct WaitError {
    #[serde(rename = "Message")]
    message: String,
}

/// `POST /containers/{id}/wait`: the 200 headers go out at once (the docker
/// CLI waits for them before it starts the container), the body at the end.
async fn wait(req: ApiRequest) -> Reply {
    let condition = match req.query.non_empty("condition") {
        None | Some("not-running") => WaitCondition::NotRunning,
        Some("next-exit") => WaitCondition::NextExit,
        Some("removed") => WaitCondition::Removed,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid condition: \"{other}\""
            )))
        }
    };
    let daemon = req.daemon.clone();
    let query = req.param("id").to_string();
    // `next-exit` counts from now, before the client has the headers: the
    // docker CLI (`start -a`, `run`) starts the container as soon as it
    // has them, and a container quick to exit would otherwise have exited
    // before the wait began counting, which then waited for ever.
    let (id, exits) = daemon
        .with_engine(move |e| {
            let id = e.resolve(&query)?;
            let exits = e.exit_count(&id)?;
            Ok::<_, EngineError>((id, exits))
        })
        .await?;
    let (resp, tx) = response::stream("application/json");
    tokio::spawn(async move {
        let watcher = tx.clone();
        // The engine's wait ends as soon as nobody waits for the answer.
        let waited = daemon
            .with_engine(move |e| e.wait_since(&id, condition, exits, &|| !watcher.is_closed()));
        let body = tokio::select! {
            // Nobody waits any more: the answer has no reader.
            _ = tx.closed() => return,
            r = waited => match r {
                Ok(code) => WaitBody { status_code: i64::from(code), error: None },
                Err(e) => WaitBody {
                    status_code: -1,
                    error: Some(WaitError { message: e.message }),
                },
            },
        };
        let _ = tx.send(json_line_plain(&body)).await;
    });
    Ok(resp)
}

/// A JSON document ending in `\n` (moby's encoder), not a progress line.
fn json_line_plain<T: Serialize>(v: &T) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

async fn delete(req: ApiRequest) -> Reply {
    let force = req.query.bool("force");
    let volumes = req.query.bool("v");
    let daemon = req.daemon.clone();
    let query = req.param("id").to_string();
    if req.query.bool("link") {
        daemon.with_engine(move |e| e.remove_link(&query)).await?;
        return Ok(response::empty(StatusCode::NO_CONTENT));
    }
    if query.contains('/') {
        return Err(ApiError::not_found(format!("No such container: {query}")));
    }
    let removed = daemon
        .with_engine(move |e| {
            let id = e.resolve(&query)?;
            e.remove_with_volumes(&id, force, volumes).map(|()| id)
        })
        .await?;
    daemon.pending_attaches.drop_container(&removed);
    Ok(response::empty(StatusCode::NO_CONTENT))
}

async fn rename(req: ApiRequest) -> Reply {
    let Some(name) = req.query.non_empty("name").map(str::to_string) else {
        return Err(ApiError::bad_request("name is required"));
    };
    let id = req.param("id").to_string();
    req.daemon
        .with_engine(move |e| e.rename(&id, &name))
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `h` and `w` as moby reads them.
pub fn tty_size(req: &ApiRequest) -> Result<(u16, u16), ApiError> {
    let dim = |key: &str| -> Result<u16, ApiError> {
        let v = req.query.get(key).unwrap_or("0");
        v.parse::<u16>()
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}")))
    };
    Ok((dim("h")?, dim("w")?))
}

async fn resize(req: ApiRequest) -> Reply {
    let (h, w) = tty_size(&req)?;
    let id = req.param("id").to_string();
    req.daemon.with_engine(move |e| e.resize(&id, h, w)).await?;
    Ok(response::empty(StatusCode::OK))
}

/// `POST /containers/{id}/update`: the restart policy is kept (from the
/// next start); resource limits cannot be applied in a pod and say so.
async fn update(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let id = req.param("id").to_string();
    let body: ContainerUpdateBody = req.json().await?;
    let mut warnings = Vec::new();
    let limited = body.memory.is_some_and(|v| v > 0)
        || body.nano_cpus.is_some_and(|v| v > 0)
        || body.cpu_shares.is_some_and(|v| v > 0)
        || body.cpu_quota.is_some_and(|v| v > 0)
        || body.pids_limit.is_some_and(|v| v > 0)
        || body.memory_swap.is_some_and(|v| v > 0)
        || body.cpuset_cpus.as_ref().is_some_and(|v| !v.is_empty());
    let limits = hutch_engine::cgroups::Limits {
        memory: body.memory.unwrap_or(0),
        memory_swap: body.memory_swap.unwrap_or(0),
        nano_cpus: body.nano_cpus.unwrap_or(0),
        cpu_shares: body.cpu_shares.unwrap_or(0),
        cpu_quota: body.cpu_quota.unwrap_or(0),
        cpu_period: body.cpu_period.unwrap_or(0),
        pids_limit: body.pids_limit.unwrap_or(0),
    };
    let applied = if limited {
        let id = id.clone();
        daemon
            .with_engine(move |e| e.update_limits(&id, &limits))
            .await?
    } else {
        None
    };
    match applied {
        // Applied, but for the controllers the hierarchy lacks.
        Some(unapplied) => warnings.extend(unapplied),
        None if limited => warnings.push(LIMITS_WARNING.to_string()),
        None => {}
    }
    let policy = body.restart_policy.as_ref().map(|p| {
        let name = match p.name {
            None | Some(RestartPolicyNameEnum::EMPTY) | Some(RestartPolicyNameEnum::NO) => {
                RestartPolicyName::No
            }
            Some(RestartPolicyNameEnum::ALWAYS) => RestartPolicyName::Always,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED) => RestartPolicyName::UnlessStopped,
            Some(RestartPolicyNameEnum::ON_FAILURE) => RestartPolicyName::OnFailure,
        };
        RestartPolicy {
            name,
            maximum_retry_count: p
                .maximum_retry_count
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        }
    });
    daemon
        .with_engine(move |e| match policy {
            Some(p) => e.set_restart_policy(&id, p),
            None => e.resolve(&id).map(drop),
        })
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &ContainerUpdateResponse {
            warnings: Some(warnings),
        },
    ))
}

/// `POST /containers/prune`: every stopped container, or those the
/// `until` and `label` filters pick.
async fn prune(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["until", "label", "label!"])?;
    let now = super::super::events::now_nanos();
    let until = filters
        .single("until")?
        .map(|v| timestamp(v, now))
        .transpose()?;
    let labels: Vec<String> = filters.values("label").map(str::to_string).collect();
    let not_labels: Vec<String> = filters.values("label!").map(str::to_string).collect();
    let daemon: Arc<Daemon> = req.daemon.clone();
    let (deleted, reclaimed) = daemon
        .with_engine(move |e| {
            let has =
                |d: &hutch_engine::containers::ContainerDetails, l: &str| match l.split_once('=') {
                    Some((k, v)) => d.config.options.labels.get(k).is_some_and(|x| x == v),
                    None => d.config.options.labels.contains_key(l),
                };
            let mut deleted = Vec::new();
            let mut reclaimed = 0u64;
            for d in e.list(true) {
                let created = timestamp(&d.config.created, 0).unwrap_or(0);
                if d.state.is_active()
                    || until.is_some_and(|u| created >= u)
                    || !labels.iter().all(|l| has(&d, l))
                    || not_labels.iter().any(|l| has(&d, l))
                {
                    continue;
                }
                let size = hutch_engine::du::dir_size(&d.rootfs_upper);
                match e.remove(&d.config.id, false) {
                    Ok(()) => {
                        reclaimed += size;
                        deleted.push(d.config.id.clone());
                    }
                    Err(EngineError::NotFound(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok((deleted, reclaimed))
        })
        .await?;
    Ok(response::json(
        StatusCode::OK,
        &ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(i64::try_from(reclaimed).unwrap_or(i64::MAX)),
        },
    ))
}
