//! Solves in flight, by the ref the client gives each (`Control.Solve`'s
//! `Ref`; the gateway's calls carry it as `buildkit-controlapi-buildid`
//! metadata). A solve without a frontend is driven by the client (buildx
//! runs its build function against the gateway, then `Return`s the result):
//! `Control.Solve` registers the solve's session and exporters, waits for
//! that result and exports it. A solve naming `dockerfile.v0` itself
//! (`buildctl build --frontend dockerfile.v0`) runs the Dockerfile here.
//! The status log of each solve is kept whole until a short while after it
//! ends, so a `Control.Status` that arrives late still replays it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::{watch, Notify};
use tonic::Status;

use super::super::Daemon;
use super::export;
use super::frontend::{self, Built};
use super::proto::control::{CacheOptionsEntry, SolveRequest, SolveResponse, StatusResponse};
use super::proto::gateway::ReturnRequest;

/// How long a finished solve's status stays for a late `Status` call.
const LINGER: Duration = Duration::from_secs(60);
/// How long a status stream waits for a `Control.Solve` that has not come
/// (a client that died between its calls).
const ORPHAN: Duration = Duration::from_secs(60);
/// How long a gateway call waits for its `Control.Solve` to arrive.
const ARRIVAL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Solves {
    live: Arc<Mutex<HashMap<String, Arc<Solve>>>>,
}

impl Solves {
    /// The solve `reference`, made if this is the first call to name it.
    pub fn entry(&self, reference: &str) -> Arc<Solve> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(solve) = live.get(reference) {
            return solve.clone();
        }
        let solve = Arc::new(Solve::new(reference));
        live.insert(reference.to_owned(), solve.clone());
        self.forget_orphan(reference.to_owned());
        solve
    }

    /// Drops the solve `reference` if its `Control.Solve` never comes (a
    /// client that died after its first calls).
    fn forget_orphan(&self, reference: String) {
        let live = self.live.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ORPHAN + ARRIVAL).await;
            let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
            if live
                .get(&reference)
                .is_some_and(|s| s.context.borrow().is_none())
            {
                live.remove(&reference);
            }
        });
    }

    /// Drops the finished solve `reference` once a late `Status` call can
    /// no longer want it.
    fn forget_later(&self, reference: String) {
        let live = self.live.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
            if live.get(&reference).is_some_and(|s| s.is_finished()) {
                live.remove(&reference);
            }
        });
    }
}

/// What `Control.Solve` says about the solve, which the gateway's calls
/// need: the client's session and the frontend attributes.
#[derive(Clone, Debug, Default)]
pub struct SolveContext {
    pub session: String,
    pub frontend_attrs: HashMap<String, String>,
    /// `--cache-from` / `--cache-to`, as `type=..,key=value` specs.
    pub cache_from: Vec<String>,
    pub cache_to: Vec<String>,
}

#[derive(Default)]
struct Log {
    events: Vec<StatusResponse>,
    finished: bool,
}

pub struct Solve {
    pub reference: String,
    log: Mutex<Log>,
    changed: Notify,
    context: watch::Sender<Option<SolveContext>>,
    /// The client's `Return`, once it comes.
    returned: watch::Sender<Option<ReturnRequest>>,
    /// Images the gateway's solves built, by the ref ID handed back.
    results: Mutex<HashMap<String, Built>>,
    /// The descriptor (JSON) of the cache manifest written to the client's
    /// local cache, which it names in its `index.json`.
    cache_manifest: Mutex<Option<String>>,
    /// A build for several platforms: its image for each, in the order
    /// asked.
    platform_images: Mutex<Vec<hutch_images::Digest>>,
    /// The vertex that loaded the Dockerfile, which its lint warnings go
    /// under, and the warnings reported so far (a build for several
    /// platforms lints the file for each).
    lint: Mutex<(Option<String>, HashSet<String>)>,
}

impl Solve {
    fn new(reference: &str) -> Solve {
        Solve {
            reference: reference.to_owned(),
            log: Mutex::default(),
            changed: Notify::new(),
            context: watch::channel(None).0,
            returned: watch::channel(None).0,
            results: Mutex::default(),
            cache_manifest: Mutex::default(),
            platform_images: Mutex::default(),
            lint: Mutex::default(),
        }
    }

    /// The vertex that loaded the Dockerfile (its digest).
    pub fn set_definition_vertex(&self, digest: String) {
        self.lint.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(digest);
    }

    /// Where lint warnings go, and which of `shorts` are new (each is
    /// reported once).
    pub fn new_warnings<'a>(&self, shorts: &'a [String]) -> (Option<String>, Vec<&'a String>) {
        let mut lint = self.lint.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = shorts
            .iter()
            .filter(|s| lint.1.insert((*s).clone()))
            .collect();
        (lint.0.clone(), fresh)
    }

    pub fn set_platform_images(&self, ids: Vec<hutch_images::Digest>) {
        *self
            .platform_images
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ids;
    }

    /// The images of a build for several platforms (empty for one).
    pub fn platform_images(&self) -> Vec<hutch_images::Digest> {
        self.platform_images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_cache_manifest(&self, descriptor: String) {
        *self
            .cache_manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(descriptor);
    }

    pub fn cache_manifest(&self) -> Option<String> {
        self.cache_manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a status event (callable from the build thread).
    pub fn publish(&self, event: StatusResponse) {
        self.lock_log().events.push(event);
        self.changed.notify_waiters();
    }

    fn finish(&self) {
        self.lock_log().finished = true;
        self.changed.notify_waiters();
    }

    fn is_finished(&self) -> bool {
        self.lock_log().finished
    }

    /// Every status event from the first, then each new one, until the
    /// solve ends.
    pub fn status_stream(
        self: Arc<Solve>,
    ) -> impl Stream<Item = Result<StatusResponse, Status>> + Send {
        futures_util::stream::unfold((self, 0usize), |(solve, next)| async move {
            let event = solve.next_event(next).await?;
            Some((Ok(event), (solve, next + 1)))
        })
    }

    /// Event `index`, once there is one (`None`: the solve ended first, or
    /// its `Control.Solve` never came).
    async fn next_event(&self, index: usize) -> Option<StatusResponse> {
        loop {
            let notified = self.changed.notified();
            {
                let log = self.lock_log();
                if let Some(event) = log.events.get(index) {
                    return Some(event.clone());
                }
                if log.finished {
                    return None;
                }
            }
            if self.context.borrow().is_some() {
                notified.await;
            } else if tokio::time::timeout(ORPHAN, notified).await.is_err()
                && self.context.borrow().is_none()
            {
                return None;
            }
        }
    }

    /// The solve's context, waiting for its `Control.Solve` a while.
    pub async fn context(&self) -> Result<SolveContext, Status> {
        let mut rx = self.context.subscribe();
        let found = tokio::time::timeout(ARRIVAL, rx.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(ctx)) => ctx
                .clone()
                .ok_or_else(|| Status::internal("the solve lost its context")),
            _ => Err(Status::not_found(format!(
                "no build {} in progress (Control.Solve was not called for it)",
                self.reference
            ))),
        }
    }

    pub fn keep_result(&self, id: &str, built: Built) {
        if let Ok(mut r) = self.results.lock() {
            r.insert(id.to_owned(), built);
        }
    }

    fn result(&self, id: &str) -> Option<Built> {
        self.results.lock().ok().and_then(|r| r.get(id).cloned())
    }

    /// The client's `Return`.
    pub fn set_returned(&self, ret: ReturnRequest) -> Result<(), Status> {
        let mut taken = false;
        self.returned.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(ret.clone());
            taken = true;
            true
        });
        if taken {
            Ok(())
        } else {
            Err(Status::already_exists(
                "the build has already returned its result",
            ))
        }
    }
}

/// Marks the solve finished however `Control.Solve` ends (an error, a
/// client that hangs up and drops the call).
struct FinishOnDrop<'a> {
    daemon: &'a Arc<Daemon>,
    solve: Arc<Solve>,
}

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.solve.finish();
        self.daemon
            .buildkit
            .solves
            .forget_later(self.solve.reference.clone());
    }
}

/// `Control.Solve`.
pub async fn control_solve(
    daemon: &Arc<Daemon>,
    req: SolveRequest,
) -> Result<SolveResponse, Status> {
    if req.r#ref.is_empty() {
        return Err(Status::invalid_argument("the solve has no ref"));
    }
    let solve = daemon.buildkit.solves.entry(&req.r#ref);
    let _finish = FinishOnDrop {
        daemon,
        solve: solve.clone(),
    };
    if req.definition.as_ref().is_some_and(|d| !d.def.is_empty()) {
        return Err(Status::unimplemented(
            "hutch builds Dockerfiles (frontend dockerfile.v0) only: LLB definitions are not supported",
        ));
    }
    let exporters = export::exporters(&req)?;
    let cache = req.cache.clone().unwrap_or_default();
    let context = SolveContext {
        session: req.session.clone(),
        frontend_attrs: req.frontend_attrs.clone(),
        cache_from: cache.imports.iter().map(cache_spec).collect(),
        cache_to: cache.exports.iter().map(cache_spec).collect(),
    };
    solve.context.send_replace(Some(context.clone()));
    let built = match req.frontend.as_str() {
        "" => wait_for_return(&solve).await?,
        frontend::DOCKERFILE => {
            Some(frontend::solve(daemon, &solve, &context.frontend_attrs).await?)
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "frontend {other} is not supported by hutch (only dockerfile.v0)"
            )))
        }
    };
    let response =
        export::export(daemon, &solve, &context.session, built.as_ref(), &exporters).await?;
    Ok(response)
}

/// A cache option as buildx's command line spells it (`type=registry,
/// ref=...,mode=max`), which the builder parses.
fn cache_spec(entry: &CacheOptionsEntry) -> String {
    let mut attrs: Vec<(&String, &String)> = entry.attrs.iter().collect();
    attrs.sort();
    std::iter::once(format!("type={}", entry.r#type))
        .chain(attrs.into_iter().map(|(k, v)| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits for the client's `Return` and finds the image its result names
/// (`None`: the result has no ref, as buildx's capability probe returns).
async fn wait_for_return(solve: &Arc<Solve>) -> Result<Option<Built>, Status> {
    let mut rx = solve.returned.subscribe();
    let ret = rx
        .wait_for(Option::is_some)
        .await
        .map_err(|_| Status::internal("the solve ended without a result"))?
        .clone()
        .ok_or_else(|| Status::internal("the solve ended without a result"))?;
    if let Some(err) = ret.error {
        // The client's message already starts with its code's name
        // ("Unimplemented: ..."); code Unknown keeps buildx from adding it
        // once more.
        return Err(Status::unknown(err.message));
    }
    let id = match ret.result.and_then(|r| r.result) {
        None => return Ok(None),
        Some(super::proto::gateway::result::Result::Ref(r)) => r.id,
        Some(super::proto::gateway::result::Result::RefDeprecated(id)) => id,
        Some(super::proto::gateway::result::Result::Refs(_)) => {
            return Err(Status::unimplemented(
                "a result with several refs (multi-platform) is not supported by hutch",
            ))
        }
    };
    if id.is_empty() {
        return Ok(None);
    }
    solve
        .result(&id)
        .map(Some)
        .ok_or_else(|| Status::not_found(format!("no result {id} in this build")))
}
