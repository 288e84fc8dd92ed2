//! Build endpoints: `POST /build` serves Docker's legacy builder API (the
//! one the docker CLI uses without buildx, and docker-py's `images.build`)
//! with hutch's builder behind it, so heredocs and `RUN --mount` work there
//! too. `docker build` without the buildx plugin (or with
//! `DOCKER_BUILDKIT=0`) uses this API; buildx uses BuildKit's
//! (`server::buildkit`), which shares `executor`, `LiveBuild` and
//! `prune_cache` with it.
//!
//! The build runs on a plain thread of its own, not a tokio blocking
//! thread: a base-image pull inside it starts a runtime of its own, which
//! tokio refuses inside one of its threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hutch_builder::exec::{BuildError, BuildOptions, BuildTmp, Built, Executor};
use hutch_builder::remote_context::RemoteContext;
use hutch_builder::BuildArgs;
use hutch_engine::runtime::Runtime;
use hutch_images::registry::AuthConfig;
use hutch_images::{Reference, RegistryRequest};
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::super::error::ApiError;
use super::super::events::{now_nanos, Event};
use super::super::query;
use super::super::request::ApiRequest;
use super::super::response::{self, json_line, Body};
use super::super::router::{route, Route};
use super::super::Daemon;
use super::build_cache;
use super::build_context;
use super::build_progress::{error_line, error_text, Lines, Msg};
use hutch_engine::du::dir_size;

pub fn routes() -> Vec<Route> {
    vec![
        route!(POST "/build" => build),
        route!(POST "/build/prune" => prune),
        route!(POST "/build/cancel" => cancel),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

/// Builds in flight that a client named (`buildid`), for `/build/cancel`.
fn running() -> &'static Mutex<HashMap<String, Arc<AtomicBool>>> {
    static RUNNING: OnceLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

/// Every build thread in flight, by a number of its own: a daemon shutting
/// down cancels them and waits for their cleanup.
struct Live {
    builds: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    gone: Condvar,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| Live {
        builds: Mutex::new(HashMap::new()),
        gone: Condvar::new(),
    })
}

/// A build's place in `live()`, left when dropped (its thread's end).
pub(in crate::server) struct LiveBuild(u64);

impl LiveBuild {
    pub(in crate::server) fn enter(cancel: Arc<AtomicBool>) -> LiveBuild {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut b) = live().builds.lock() {
            b.insert(id, cancel);
        }
        LiveBuild(id)
    }
}

impl Drop for LiveBuild {
    fn drop(&mut self) {
        if let Ok(mut b) = live().builds.lock() {
            b.remove(&self.0);
        }
        live().gone.notify_all();
    }
}

/// Cancels every build in flight and waits (at most `limit`) until they
/// have cleaned up.
pub fn cancel_all(limit: Duration) {
    let Ok(mut builds) = live().builds.lock() else {
        return;
    };
    if builds.is_empty() {
        return;
    }
    tracing::info!(builds = builds.len(), "cancelling the builds in flight");
    for c in builds.values() {
        c.store(true, Ordering::SeqCst);
    }
    let deadline = Instant::now() + limit;
    while !builds.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(builds = builds.len(), "builds still running at shutdown");
            return;
        }
        builds = match live().gone.wait_timeout(builds, left) {
            Ok((b, _)) => b,
            Err(_) => return,
        };
    }
}

/// The query of `POST /build`, checked before the context is read.
struct Request {
    opts: BuildOptions,
    /// `remote=` a git or http(s) URL: the context is fetched, the body
    /// ignored.
    remote: Option<RemoteContext>,
    dockerfile: Option<String>,
    quiet: bool,
    rm: bool,
    build_id: Option<String>,
}

fn parse_request(req: &ApiRequest) -> Result<Request, ApiError> {
    let q = &req.query;
    let remote = match q.non_empty("remote") {
        None => None,
        Some(remote) => match RemoteContext::parse(remote) {
            Some(parsed) => Some(parsed.map_err(ApiError::bad_request)?),
            None => {
                return Err(ApiError::bad_request(format!(
                    "the remote context {remote:?} is neither a git repository nor an \
                     http(s) URL"
                )))
            }
        },
    };
    if q.non_empty("version") == Some("2") {
        return Err(ApiError::bad_request(
            "BuildKit sessions (version=2) are not supported by hutch: it serves the \
             legacy builder API (DOCKER_BUILDKIT=0) with its own builder behind it",
        ));
    }
    if q.bool("squash") {
        return Err(ApiError::bad_request(
            "squash is only supported with experimental mode",
        ));
    }
    let dockerfile = q.non_empty("dockerfile").map(str::to_owned);
    if let Some(d) = &dockerfile {
        if d.starts_with("http://") || d.starts_with("https://") {
            return Err(ApiError::bad_request(format!(
                "a remote Dockerfile ({d}) is not supported by hutch: put it in the context"
            )));
        }
    }
    let mut tags = Vec::new();
    for t in q.all("t") {
        if t.is_empty() {
            continue;
        }
        let r = Reference::parse(t).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if r.digest().is_some() {
            return Err(ApiError::bad_request(format!(
                "invalid reference format: {t}: a tag cannot have a digest"
            )));
        }
        tags.push(t.to_owned());
    }
    let mut build_args = BuildArgs::new();
    if let Some(raw) = q.non_empty("buildargs") {
        let map: BTreeMap<String, Option<String>> = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid buildargs: {e}")))?;
        // A null value is an argument the client named but could not
        // resolve: it stays unset, as in moby.
        for (k, v) in map {
            if let Some(v) = v {
                build_args.set(&k, &v);
            }
        }
    }
    let mut labels = Vec::new();
    if let Some(raw) = q.non_empty("labels") {
        let map: BTreeMap<String, String> = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid labels: {e}")))?;
        labels.extend(map);
    }
    let mut cache_from = Vec::new();
    if let Some(raw) = q.non_empty("cachefrom") {
        let list: Vec<String> = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid cachefrom: {e}")))?;
        // Each is a registry cache ref (hutch's cache format), or
        // buildx's `type=registry,ref=...` spelling.
        for item in list.iter().filter(|i| !i.trim().is_empty()) {
            use hutch_builder::exec::remote_cache::{parse_cache_from, CacheImport};
            let import = parse_cache_from(item)
                .map_err(|e| ApiError::bad_request(format!("invalid cachefrom: {e}")))?;
            if let CacheImport::Local { .. } = import {
                // The directory is the client's: only a BuildKit session
                // (buildx) serves it.
                return Err(ApiError::bad_request(format!(
                    "invalid cachefrom: {item}: a type=local cache is read through \
                     buildx's session, which the classic build API does not have"
                )));
            }
            cache_from.push(import);
        }
    }
    let platform = q
        .non_empty("platform")
        .map(hutch_builder::Platform::parse_target)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let network_none = match q.non_empty("networkmode") {
        None | Some("default" | "bridge" | "host") => false,
        Some("none") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "network mode {other:?} is not supported for builds by hutch \
                 (default, host, none)"
            )))
        }
    };
    let opts = BuildOptions {
        tags,
        build_args,
        target: q.non_empty("target").map(str::to_owned),
        labels,
        no_cache: q.bool("nocache"),
        pull: q.bool("pull"),
        registry_auths: registry_config(&req.headers)?,
        network_none,
        shm_size: match q.non_empty("shmsize") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid shmsize {v:?}: a number of bytes"))
            })?),
        },
        ulimits: match q.non_empty("ulimits") {
            None => Vec::new(),
            Some(json) => serde_json::from_str(json)
                .map_err(|e| ApiError::bad_request(format!("invalid ulimits: {e}")))?,
        },
        // Repeated (docker-py) or comma-joined (the docker CLI).
        extra_hosts: q
            .all("extrahosts")
            .into_iter()
            .flat_map(|h| h.split(','))
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        platform,
        cache_from,
        ..BuildOptions::default()
    };
    Ok(Request {
        opts,
        remote,
        dockerfile,
        quiet: q.bool("q"),
        // moby's default is rm=true; the CLI always sends it.
        rm: q.get("rm").is_none_or(|_| q.bool("rm")) || q.bool("forcerm"),
        build_id: q.non_empty("buildid").map(str::to_owned),
    })
}

/// `X-Registry-Config`: base64url JSON of `{registry: AuthConfig}`.
fn registry_config(headers: &HeaderMap) -> Result<BTreeMap<String, AuthConfig>, ApiError> {
    let Some(value) = headers.get("X-Registry-Config") else {
        return Ok(BTreeMap::new());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid X-Registry-Config header"))?
        .trim();
    if text.is_empty() {
        return Ok(BTreeMap::new());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Config: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Config: {e}")))
}

/// How a build error that happened before anything was streamed is
/// answered (moby answers those with a status, not a stream).
fn status_of(err: &BuildError) -> ApiError {
    let message = error_text(err);
    match err {
        BuildError::Parse(_) | BuildError::Invalid(_) | BuildError::Copy(_) => {
            ApiError::bad_request(message)
        }
        BuildError::Image(hutch_images::ImageError::NotFound(_)) => ApiError::not_found(message),
        BuildError::Image(hutch_images::ImageError::Reference(_)) => ApiError::bad_request(message),
        _ => ApiError::internal(message),
    }
}

async fn build(req: ApiRequest) -> Reply {
    let parsed = match parse_request(&req) {
        Ok(p) => p,
        Err(e) => {
            // As Go's net/http does: read up to 256 KiB of the context the
            // client is still sending, so that it reads the 400 rather than
            // failing with a broken pipe.
            let body = req.body_reader();
            let _ = tokio::task::spawn_blocking(move || {
                use std::io::Read as _;
                std::io::copy(&mut body.take(256 << 10), &mut std::io::sink())
            })
            .await;
            return Err(e);
        }
    };
    let daemon = req.daemon.clone();
    let data_root = daemon.data_root.clone();
    let body = req.body_reader();
    let remote = parsed.remote.clone();
    // The context goes into a locked entry of builder/tmp, so a daemon that
    // dies mid-build leaves nothing the next build does not sweep.
    let (scratch, context) = tokio::task::spawn_blocking(move || {
        let scratch = BuildTmp::create(&data_root, "context")
            .map_err(|e| ApiError::internal(format!("creating the context directory: {e}")))?;
        let context = match &remote {
            // (The CLI sends no body with a remote context.)
            Some(remote) => build_context::fetch(remote, scratch.path(), &data_root)?,
            None => build_context::unpack(body, scratch.path())?,
        };
        Ok::<_, ApiError>((scratch, context))
    })
    .await
    .map_err(|e| ApiError::internal(format!("unpacking the build context: {e}")))??;
    let mut opts = parsed.opts;
    opts.dockerfile = Some(context.dockerfile(parsed.dockerfile.as_deref())?);
    opts.context = context.root().to_path_buf();

    let cancel = Arc::new(AtomicBool::new(false));
    // A client gone before the response task takes over drops this future:
    // the guard cancels the build then.
    let mut guard = CancelOnDrop(Some(cancel.clone()));
    if let Some(id) = &parsed.build_id {
        if let Ok(mut r) = running().lock() {
            r.insert(id.clone(), cancel.clone());
        }
    }
    let executor = executor(&daemon, cancel.clone());
    let (tx, mut rx) = mpsc::channel(64);
    let lines = Lines::new(tx.clone(), cancel.clone(), parsed.quiet, parsed.rm);
    let build_id = parsed.build_id.clone();
    let quiet = parsed.quiet;
    let live_build = LiveBuild::enter(cancel.clone());
    std::thread::Builder::new()
        .name("build".into())
        .spawn(move || {
            let _live = live_build;
            let result = executor.build(&opts, &lines);
            let held = lines.held_back();
            if quiet && result.is_err() && !held.is_empty() {
                let _ = tx.blocking_send(Msg::Line(held.into()));
            }
            // The context directory goes once the build has finished with
            // it, before the client hears the build is over.
            drop(context);
            drop(scratch);
            let _ = tx.blocking_send(Msg::Done(result));
            if let Some(id) = build_id {
                if let Ok(mut r) = running().lock() {
                    r.remove(&id);
                }
            }
        })
        .map_err(|e| ApiError::internal(format!("starting the build thread: {e}")))?;

    let first = rx.recv().await;
    let first = match first {
        Some(Msg::Done(Err(e))) => return Err(status_of(&e)),
        Some(m) => m,
        None => return Err(ApiError::internal("the build stopped unexpectedly")),
    };
    let (resp, out) = response::stream("application/json");
    guard.0 = None;
    tokio::spawn(async move {
        let mut next = Some(first);
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => {
                            let _ = out.send(error_line("the build stopped unexpectedly")).await;
                            return;
                        }
                    },
                    _ = out.closed() => {
                        // The client hung up: cancel; the build thread
                        // cleans up (container, mounts, context) as it stops.
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                },
            };
            match msg {
                Msg::Line(line) => {
                    if out.send(line).await.is_err() {
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                }
                Msg::Done(result) => {
                    for line in finish(&daemon, result, quiet) {
                        if out.send(line).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
            }
        }
    });
    Ok(resp)
}

/// The builder on the daemon's stores, cancelled by `cancel`.
pub(in crate::server) fn executor(daemon: &Daemon, cancel: Arc<AtomicBool>) -> Executor {
    Executor {
        store: daemon.images.clone(),
        data_root: daemon.data_root.clone(),
        runtime: Runtime::new(daemon.engine.exe().to_path_buf()),
        proc_mode: daemon.engine.proc_mode(),
        registry: RegistryRequest {
            settings: daemon.registry.clone(),
            auth: None,
        },
        cancel,
    }
}

/// Sets the build's cancel flag when dropped while still armed.
struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.store(true, Ordering::SeqCst);
        }
    }
}

/// The last lines: the image ID (aux), `Successfully built/tagged`, or the
/// error.
fn finish(daemon: &Daemon, result: Result<Built, BuildError>, quiet: bool) -> Vec<bytes::Bytes> {
    let built = match result {
        Ok(b) => b,
        Err(e) => return vec![error_line(&error_text(&e))],
    };
    let id = built.id.to_string();
    for name in &built.names {
        daemon
            .events
            .publish(Event::image("tag", &id, &name.familiar()));
    }
    let mut lines = vec![json_line(&json!({"aux": {"ID": id}}))];
    if quiet {
        lines.push(json_line(&json!({ "stream": format!("{id}\n") })));
        return lines;
    }
    lines.push(json_line(
        &json!({ "stream": format!("Successfully built {}\n", built.id.short()) }),
    ));
    for name in &built.names {
        lines.push(json_line(
            &json!({ "stream": format!("Successfully tagged {}\n", name.familiar()) }),
        ));
    }
    lines
}

/// `POST /build/prune`: the builder's cache, i.e. the step records (untagged
/// intermediate images), the key → step index, and the RUN cache mounts.
/// Filter `until` (or BuildKit's `unused-for`): only step records neither
/// stored nor used by a build since then, and cache mounts not used or
/// changed since then; the index keeps its entries
/// (one whose step is gone is a miss). `all` and `keep-storage` are accepted
/// and change nothing: every record here is unused by containers. While a
/// build runs, what was made or used since it began stays (and the builder's
/// other caches with it).
async fn prune(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["until", "unused-for"])?;
    let until = match (filters.single("until")?, filters.single("unused-for")?) {
        (Some(v), _) | (None, Some(v)) => Some(query::timestamp(v, now_nanos())?),
        (None, None) => None,
    };
    let cutoff = until.map(chrono::DateTime::<chrono::Utc>::from_timestamp_nanos);
    let pruned = prune_cache(&req.daemon, cutoff).await?;
    let ids: Vec<String> = pruned.steps.iter().map(|d| d.to_string()).collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({"CachesDeleted": ids, "SpaceReclaimed": pruned.reclaimed}),
    ))
}

/// What a prune of the build cache removed.
pub(in crate::server) struct Pruned {
    /// The cached steps (intermediate images) deleted.
    pub steps: Vec<hutch_images::Digest>,
    /// Bytes freed in all.
    pub reclaimed: u64,
    /// The removed records as `/system/df` listed them (sizes included).
    pub records: Vec<bollard_stubs::models::BuildCache>,
}

/// Removes the build cache not used since `cutoff` (all of it without
/// one), as `POST /build/prune` and BuildKit's `Control.Prune` do.
pub(in crate::server) async fn prune_cache(
    daemon: &Daemon,
    cutoff: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Pruned, ApiError> {
    let data_root = daemon.data_root.clone();
    daemon
        .with_images(move |store| {
            // What a running build stands on was made or used since it
            // began: keep that, as BuildKit keeps in-use records.
            let live = BuildTmp::oldest_live(&data_root).map(chrono::DateTime::<chrono::Utc>::from);
            let cutoff = match (cutoff, live) {
                (Some(asked), Some(live)) => Some(asked.min(live)),
                (asked, live) => asked.or(live),
            };
            let usage = super::image_models::LayerUsage::of(store)?;
            let before = usage.total();
            let mut listed = usage.build_cache_steps();
            let dirs_before = build_cache::dir_records(&data_root);
            let last_used = build_cache::step_uses(&data_root)
                .into_iter()
                .map(|(id, (last, _))| (id, last))
                .collect();
            let deleted = store.prune_intermediate(cutoff, &last_used)?;
            let after = super::image_models::LayerUsage::of(store)?.total();
            let mut reclaimed = before.saturating_sub(after);
            match cutoff {
                None => {
                    let dirs = build_cache::OTHER_CACHES.iter().map(|(dir, _)| *dir);
                    for dir in dirs.chain([build_cache::CACHE_MOUNTS]) {
                        reclaimed += remove(&data_root.join(dir));
                    }
                }
                Some(t) => {
                    let mounts = data_root.join(build_cache::CACHE_MOUNTS);
                    for entry in std::fs::read_dir(&mounts).into_iter().flatten().flatten() {
                        let changed = entry.metadata().and_then(|m| m.modified());
                        if changed.is_ok_and(|m| chrono::DateTime::<chrono::Utc>::from(m) < t) {
                            reclaimed += remove(&entry.path());
                        }
                    }
                }
            }
            let removed: std::collections::HashSet<String> =
                deleted.iter().map(|d| d.hex().to_string()).collect();
            listed.retain(|r| r.id.as_ref().is_some_and(|id| removed.contains(id)));
            let dirs_after: std::collections::HashSet<Option<String>> =
                build_cache::dir_records(&data_root)
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
            listed.extend(
                dirs_before
                    .into_iter()
                    .filter(|r| !dirs_after.contains(&r.id)),
            );
            Ok(Pruned {
                steps: deleted,
                reclaimed,
                records: listed,
            })
        })
        .await
}

/// Removes a cache directory (or file); returns the bytes it held.
fn remove(path: &std::path::Path) -> u64 {
    let size = dir_size(path);
    let removed = match path.symlink_metadata() {
        Ok(meta) if !meta.is_dir() => std::fs::remove_file(path),
        _ => std::fs::remove_dir_all(path),
    };
    match removed {
        Ok(()) => size,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), %e, "build prune");
            0
        }
    }
}

/// `POST /build/cancel?id=`: cancels a build started with that `buildid`
/// (unknown IDs are fine, as in moby).
async fn cancel(req: ApiRequest) -> Reply {
    let id = req
        .query
        .non_empty("id")
        .ok_or_else(|| ApiError::bad_request("build ID not provided"))?;
    if let Some(flag) = running().lock().ok().and_then(|r| r.get(id).cloned()) {
        flag.store(true, Ordering::SeqCst);
    }
    Ok(response::empty(StatusCode::OK))
}
