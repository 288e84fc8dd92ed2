//! Image endpoints. Handlers parse the request into an `ImageStore` call on
//! a blocking thread, publish the events the operation caused, and shape
//! the answer through the constructors in `image_models`.

use std::sync::Arc;

use bollard_stubs::models::{ImageDeleteResponseItem, ImagePruneResponse};
use hutch_images::{Digest, ListFilters, LoadedImage, ProgressSink, Reference, Removed};
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::super::body_io::StreamWriter;
use super::super::error::ApiError;
use super::super::events::{now_nanos, Event};
use super::super::query::{timestamp, Query};
use super::super::request::ApiRequest;
use super::super::response::{self, json_line, Body};
use super::super::router::{route, Route};
use super::super::Daemon;
use super::image_models::{history, inspect, summary, LayerUsage};
use super::progress_stream::{error_line, Forward, Forwarded, Operation, Stream};

pub use super::image_models::{disk_usage, ImageCounts};

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/images/json" => list),
        route!(GET "/images/search" => search),
        route!(GET "/images/get" => save_many),
        route!(GET "/images/{name:.*}/get" => save_one),
        route!(GET "/images/{name:.*}/history" => get_history),
        route!(GET "/images/{name:.*}/json" => get_inspect),
        route!(POST "/images/load" => load),
        route!(POST "/images/create" => create),
        route!(POST "/images/prune" => prune),
        route!(POST "/images/{name:.*}/push" => push),
        route!(POST "/images/{name:.*}/tag" => tag),
        route!(DELETE "/images/{name:.*}" => delete),
        route!(GET "/distribution/{name:.*}/json" => distribution),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

async fn list(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["before", "dangling", "label", "reference", "since", "until"])?;
    let until = filters
        .single("until")?
        .map(|v| timestamp(v, now_nanos()))
        .transpose()?;
    let mut pairs = filters.pairs();
    pairs.retain(|p| !p.starts_with("until="));
    let list_filters =
        ListFilters::parse(&pairs).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let shared = req.query.bool("shared-size");
    let version = req.version;
    let images = req
        .daemon
        .with_images(move |store| {
            let usage = if shared {
                Some(LayerUsage::of(store)?)
            } else {
                None
            };
            let mut out = Vec::new();
            for s in store.list(&list_filters)? {
                let created_nanos = s.created.and_then(|c| c.timestamp_nanos_opt());
                if until.is_some_and(|u| created_nanos.is_none_or(|c| c > u)) {
                    continue;
                }
                let shared_size = usage.as_ref().map(|u| u.shared_size(&s.id));
                out.push(summary(&s, version, shared_size));
            }
            Ok(out)
        })
        .await?;
    Ok(response::json(StatusCode::OK, &images))
}

async fn get_inspect(req: ApiRequest) -> Reply {
    let name = req.param("name").to_owned();
    let version = req.version;
    let body = req
        .daemon
        .with_images(move |store| {
            let details = store.inspect(&name)?;
            let layers = store.layer_dirs(&details.record)?;
            Ok(inspect(&details, &layers, version))
        })
        .await?;
    Ok(response::json(StatusCode::OK, &body))
}

async fn get_history(req: ApiRequest) -> Reply {
    let name = req.param("name").to_owned();
    let body = req
        .daemon
        .with_images(move |store| history(store, &name))
        .await?;
    Ok(response::json(StatusCode::OK, &body))
}

/// The name `repo[:tag]` of the `repo`/`tag` query parameters (tag,
/// commit, import), checked as Docker checks it: a digest is refused.
pub(super) fn tag_target(repo: &str, tag: Option<&str>) -> Result<(String, Reference), ApiError> {
    let target = match tag {
        Some(tag) => format!("{repo}:{tag}"),
        None => repo.to_owned(),
    };
    let parsed = Reference::parse(&target).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if parsed.digest().is_some() {
        return Err(ApiError::bad_request(
            "refusing to create a tag with a digest reference",
        ));
    }
    Ok((target, parsed))
}

/// The names a new image gets from `repo`/`tag` (commit, import): none
/// without `repo`.
pub(super) fn new_image_names(query: &Query) -> Result<Vec<Reference>, ApiError> {
    match query.non_empty("repo") {
        None => Ok(Vec::new()),
        Some(repo) => Ok(vec![tag_target(repo, query.non_empty("tag"))?.1]),
    }
}

/// `changes=` (commit, import): the Dockerfile instructions to apply, blank
/// ones dropped.
pub(super) fn changes_param(query: &Query) -> Vec<String> {
    query
        .all("changes")
        .into_iter()
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST /images/{name}/tag?repo=&tag=`: 201 with no body.
async fn tag(req: ApiRequest) -> Reply {
    let source = req.param("name").to_owned();
    let repo = req.query.get("repo").unwrap_or_default();
    let (target, parsed) = tag_target(repo, req.query.non_empty("tag"))?;
    let daemon = req.daemon.clone();
    let id = daemon
        .with_images(move |store| {
            store.tag(&source, &target)?;
            store.resolve(&target)
        })
        .await?;
    daemon
        .events
        .publish(Event::image("tag", &id.to_string(), &parsed.familiar()));
    Ok(response::empty(StatusCode::CREATED))
}

/// `DELETE /images/{name}?force=&noprune=`. hutch's images have no parent
/// chain, so `noprune` has nothing to keep.
async fn delete(req: ApiRequest) -> Reply {
    let name = req.param("name").to_owned();
    let force = req.query.bool("force");
    let daemon = req.daemon.clone();
    let containers = daemon.with_engine(|e| Ok(e.list(true))).await?;
    let (id, removed) = daemon
        .with_images(move |store| {
            let id = store.resolve(&name)?;
            if let Some(conflict) = used_by_container(store, &name, &id, &containers, force)? {
                return Ok(Err(conflict));
            }
            Ok(Ok((id, store.remove(&name, force)?)))
        })
        .await??;
    prune_layer_copies(&daemon).await;
    let items = publish_removed(&daemon.events, &id, &removed);
    Ok(response::json(StatusCode::OK, &items))
}

/// moby's refusal to delete an image a container was created from. A
/// stopped container's layers sit on the image's, so hutch refuses even
/// with `force` there, where Docker would leave the layers behind.
fn used_by_container(
    store: &hutch_images::ImageStore,
    name: &str,
    id: &Digest,
    containers: &[hutch_engine::containers::ContainerDetails],
    force: bool,
) -> Result<Option<ApiError>, hutch_images::ImageError> {
    let id_text = id.to_string();
    let Some(user) = containers.iter().find(|c| c.config.image_id == id_text) else {
        return Ok(None);
    };
    let hex = id_text.trim_start_matches("sha256:");
    let by_id = hex.starts_with(name.trim_start_matches("sha256:"));
    let tags = store.inspect(name)?.summary.repo_tags.len();
    if !by_id && tags > 1 {
        // Only a name goes; the image stays.
        return Ok(None);
    }
    let short = &hex[..hex.len().min(12)];
    let container = &user.config.id[..user.config.id.len().min(12)];
    let (how, state) = if user.state.is_active() {
        ("cannot be forced", "running")
    } else if force {
        ("cannot be forced", "stopped")
    } else {
        ("must be forced", "stopped")
    };
    Ok(Some(ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "conflict: unable to delete {short} ({how}) - image is being used by {state} container {container}"
        ),
    )))
}

fn publish_removed(
    events: &super::super::events::EventBus,
    id: &Digest,
    removed: &[Removed],
) -> Vec<ImageDeleteResponseItem> {
    let id = id.to_string();
    removed
        .iter()
        .map(|r| match r {
            Removed::Untagged(name) => {
                events.publish(Event::image("untag", &id, &name.familiar()));
                ImageDeleteResponseItem {
                    untagged: Some(name.familiar()),
                    deleted: None,
                }
            }
            Removed::Deleted(deleted) => {
                events.publish(Event::image(
                    "delete",
                    &deleted.to_string(),
                    &deleted.to_string(),
                ));
                ImageDeleteResponseItem {
                    untagged: None,
                    deleted: Some(deleted.to_string()),
                }
            }
        })
        .collect()
}

/// `POST /images/prune`: dangling images by default; `dangling=false` also
/// removes tagged ones (no image is used by a container yet).
async fn prune(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["dangling", "label", "label!", "until"])?;
    let dangling_only = filters.bool("dangling")?.unwrap_or(true);
    let until = filters
        .single("until")?
        .map(|v| timestamp(v, now_nanos()))
        .transpose()?;
    let mut list_filters = ListFilters::parse(
        &filters
            .values("label")
            .map(|l| format!("label={l}"))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if dangling_only {
        list_filters.dangling = Some(true);
    }
    let excluded: Vec<String> = filters.values("label!").map(str::to_owned).collect();
    let daemon = req.daemon.clone();
    let (removed, reclaimed) = daemon
        .with_images(move |store| {
            let before = LayerUsage::of(store)?.total();
            let mut removed = Vec::new();
            for s in store.list(&list_filters)? {
                let created = s.created.and_then(|c| c.timestamp_nanos_opt());
                if until.is_some_and(|u| created.is_none_or(|c| c > u)) {
                    continue;
                }
                if excluded.iter().any(|l| label_matches(&s.labels, l)) {
                    continue;
                }
                match store.remove(&s.id.to_string(), true) {
                    Ok(r) => removed.push((s.id.clone(), r)),
                    // Removed meanwhile by someone else: nothing to prune.
                    Err(hutch_images::ImageError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let after = LayerUsage::of(store)?.total();
            Ok((removed, before.saturating_sub(after)))
        })
        .await?;
    prune_layer_copies(&daemon).await;
    let items: Vec<ImageDeleteResponseItem> = removed
        .iter()
        .flat_map(|(id, r)| publish_removed(&daemon.events, id, r))
        .collect();
    let body = ImagePruneResponse {
        images_deleted: (!items.is_empty()).then_some(items),
        space_reclaimed: Some(reclaimed as i64),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// After images are removed: the private-mode containers' shifted copies
/// of their layers go too (a failure there costs only space, and is logged).
async fn prune_layer_copies(daemon: &std::sync::Arc<crate::server::Daemon>) {
    let _ = daemon
        .with_engine(|e| {
            e.prune_private_layers();
            Ok(())
        })
        .await;
}

fn label_matches(labels: &std::collections::BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
        None => labels.contains_key(filter),
    }
}

async fn save_many(req: ApiRequest) -> Reply {
    let names: Vec<String> = req
        .query
        .all("names")
        .into_iter()
        .map(str::to_owned)
        .collect();
    save(req, names).await
}

async fn save_one(req: ApiRequest) -> Reply {
    let names = vec![req.param("name").to_owned()];
    save(req, names).await
}

/// Streams a docker-archive. Every name is checked first, so a missing one
/// is a real 404 rather than a truncated tar.
async fn save(req: ApiRequest, names: Vec<String>) -> Reply {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given to save"));
    }
    let checked = names.clone();
    req.daemon
        .with_images(move |store| {
            for name in &checked {
                store.resolve(name)?;
            }
            Ok(())
        })
        .await?;
    let (resp, tx) = response::stream("application/x-tar");
    let store = req.daemon.images.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut writer = StreamWriter::new(tx);
        let result = store
            .save(&refs, &mut writer)
            .map_err(|e| e.to_string())
            .and_then(|()| std::io::Write::flush(&mut writer).map_err(|e| e.to_string()));
        if let Err(err) = result {
            // The status is gone already; the client sees a short archive.
            tracing::warn!(%err, ?names, "image save ended early");
        }
    });
    Ok(resp)
}

/// `POST /images/load`: the body is a docker-archive or OCI layout tar. The
/// answer is a JSON message stream, as moby's, with one `Loaded image` line
/// per name; an archive that fails before anything loaded is a real error.
/// `POST /images/load`. With `quiet` (what the docker CLI sends when its
/// output is not a terminal) the answer is the `Loaded image` lines once
/// everything is stored; without, each unpacked layer's "Loading layer"
/// progress streams first, as moby (an error before the first progress
/// line is an HTTP error, one after it an `errorDetail` line).
async fn load(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let quiet = req.query.bool("quiet");
    let reader = req.body_reader();
    if quiet {
        let loaded = daemon.with_images(move |store| store.load(reader)).await?;
        let mut body = Vec::new();
        for line in loaded_lines(&daemon, &loaded) {
            body.extend_from_slice(&json_line(&line));
        }
        return Ok(response::json_messages(body));
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    let sink: Arc<dyn ProgressSink> = Arc::new(Forward(events_tx));
    let store = daemon.images.clone();
    let task = tokio::task::spawn_blocking(move || store.load_with_progress(reader, sink));
    let first = Stream::first(events, task).await?;
    let (resp, tx) = response::stream("application/json");
    tokio::spawn(async move {
        let lines = match first.forward(Operation::Load, &tx, Vec::new()).await {
            Forwarded::Gone => return,
            Forwarded::Done(Ok(loaded)) => loaded_lines(&daemon, &loaded),
            Forwarded::Done(Err(err)) => vec![error_line(&err)],
        };
        for line in lines {
            if tx.send(json_line(&line)).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

/// Publishes a `load` event per image and answers moby's lines for them.
fn loaded_lines(daemon: &Daemon, loaded: &[LoadedImage]) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for image in loaded {
        let id = image.id.to_string();
        daemon.events.publish(Event::image("load", &id, &id));
        if image.names.is_empty() {
            lines.push(json!({"stream": format!("Loaded image ID: {id}\n")}));
        }
        for name in &image.names {
            lines.push(json!({"stream": format!("Loaded image: {}\n", name.familiar())}));
        }
    }
    lines
}

async fn create(req: ApiRequest) -> Reply {
    if req.query.non_empty("fromImage").is_some() {
        return super::registry::pull(req).await;
    }
    if req.query.non_empty("fromSrc").is_some() {
        return super::image_import::import_image(req).await;
    }
    Err(ApiError::bad_request(
        "either fromImage or fromSrc is required",
    ))
}

async fn push(req: ApiRequest) -> Reply {
    super::registry::push(req).await
}

async fn search(req: ApiRequest) -> Reply {
    super::registry::search(req).await
}

async fn distribution(req: ApiRequest) -> Reply {
    super::registry::distribution(req).await
}
