//! Registry endpoints: pull (`POST /images/create?fromImage`), push
//! (`POST /images/{name}/push`), login (`POST /auth`) and search (`GET
//! /images/search`, the logic in `hutch_images::registry::search`). Pull and push
//! stream Docker's JSON progress messages; an error before anything was
//! streamed gets a proper HTTP status, one after it an `errorDetail` line,
//! as moby does.

use std::sync::Arc;

use bollard_stubs::models::{DistributionInspect, OciDescriptor, OciPlatform};
use hutch_images::registry::search::{self, SearchError, SearchFilters};
use hutch_images::registry::{login, AuthConfig, LoginError, PullStatus};
use hutch_images::{ImageError, ProgressSink, Reference, RegistryRequest};
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::super::error::ApiError;
use super::super::events::Event;
use super::super::request::ApiRequest;
use super::super::response::{self, json_line, Body};
use super::progress_stream::{error_line, Forward, Forwarded, Operation, Stream};

type Reply = Result<Response<Body>, ApiError>;

/// Registry settings are the daemon's (flags, config file, environment);
/// credentials come from the client's `X-Registry-Auth`.
pub(crate) fn registry_request(req: &ApiRequest) -> Result<RegistryRequest, ApiError> {
    let headers = &req.headers;
    let auth = match headers.get("X-Registry-Auth").map(|v| v.to_str()) {
        Some(Ok(value)) if !value.trim().is_empty() => Some(
            AuthConfig::from_header(value)
                .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth: {e}")))?,
        ),
        Some(Err(_)) => return Err(ApiError::bad_request("invalid X-Registry-Auth header")),
        _ => None,
    };
    Ok(RegistryRequest {
        settings: req.daemon.registry.clone(),
        auth,
    })
}

/// `fromImage` plus `tag` (a tag, or a digest for `name@sha256:...`).
fn pull_reference(from: &str, tag: Option<&str>) -> Result<String, ApiError> {
    let name = match tag {
        Some(tag) if tag.contains(':') => format!("{from}@{tag}"),
        Some(tag) => format!("{from}:{tag}"),
        None => from.to_owned(),
    };
    Reference::parse(&name)
        .map(|r| r.to_string())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The repository `fromImage` names when it has neither tag nor digest and
/// no `tag` is given: moby then pulls every tag (`docker pull --all-tags`
/// sends no `tag`; a plain `docker pull` always sends one). moby also
/// accepts the trailing `:` older CLIs sent with `-a`.
fn all_tags_of(from: &str, tag: Option<&str>) -> Result<Option<Reference>, ApiError> {
    if tag.is_some() {
        return Ok(None);
    }
    let repository = Reference::parse_normalized(from.strip_suffix(':').unwrap_or(from))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((repository.tag().is_none() && repository.digest().is_none()).then_some(repository))
}

pub async fn pull(req: ApiRequest) -> Reply {
    let from = req
        .query
        .non_empty("fromImage")
        .ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    if let Some(repository) = all_tags_of(from, req.query.non_empty("tag"))? {
        return pull_all_tags(req, repository).await;
    }
    let name = pull_reference(from, req.query.non_empty("tag"))?;
    let platform = req.query.non_empty("platform").map(str::to_owned);
    let request = registry_request(&req)?;
    let reference = Reference::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let daemon = req.daemon.clone();

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let store = daemon.images.clone();
    let sink: Arc<dyn ProgressSink> = Arc::new(Forward(events_tx));
    let task_name = name.clone();
    let task = tokio::spawn(async move {
        store
            .pull(&task_name, platform.as_deref(), &request, sink)
            .await
    });
    let first = Stream::first(events_rx, task).await?;

    let (resp, tx) = response::stream("application/json");
    let header = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => String::new(),
    };
    let opening = json!({"status": format!("Pulling from {}", reference.path()), "id": header});
    tokio::spawn(async move {
        let done = first.forward(Operation::Pull, &tx, vec![opening]).await;
        let closing = match done {
            Forwarded::Gone => return,
            Forwarded::Done(Ok(pulled)) => {
                let id = pulled.id.to_string();
                daemon
                    .events
                    .publish(Event::image("pull", &reference.familiar(), &id));
                let status = pulled.status.status_text();
                vec![
                    json!({"status": format!("Digest: {}", pulled.digest)}),
                    json!({"status": format!("Status: {status} {}", reference.familiar())}),
                ]
            }
            Forwarded::Done(Err(err)) => vec![error_line(&err)],
        };
        for line in closing {
            if tx.send(json_line(&line)).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

pub async fn push(req: ApiRequest) -> Reply {
    let mut name = req.param("name").to_owned();
    if let Some(tag) = req.query.non_empty("tag") {
        name = format!("{name}:{tag}");
    }
    let reference = Reference::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let request = registry_request(&req)?;
    let daemon = req.daemon.clone();
    // moby answers 404 before streaming when the image is not there.
    let lookup = name.clone();
    daemon
        .with_images(move |store| store.resolve(&lookup))
        .await?;

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let store = daemon.images.clone();
    let sink: Arc<dyn ProgressSink> = Arc::new(Forward(events_tx));
    let task_name = name.clone();
    let task = tokio::spawn(async move { store.push(&task_name, &request, sink).await });
    let first = Stream::first(events_rx, task).await?;

    let (resp, tx) = response::stream("application/json");
    let opening = json!({"status": format!(
        "The push refers to repository [{}]",
        reference.repository().familiar_name()
    )});
    tokio::spawn(async move {
        let closing = match first.forward(Operation::Push, &tx, vec![opening]).await {
            Forwarded::Gone => return,
            Forwarded::Done(Ok(pushed)) => {
                daemon.events.publish(Event::image(
                    "push",
                    &reference.familiar(),
                    &reference.familiar(),
                ));
                let tag = reference.tag().unwrap_or("latest").to_owned();
                vec![
                    json!({"status": format!(
                        "{tag}: digest: {} size: {}", pushed.digest, pushed.size
                    )}),
                    json!({"progressDetail": {}, "aux": {
                        "Tag": tag, "Digest": pushed.digest.to_string(), "Size": pushed.size
                    }}),
                ]
            }
            Forwarded::Done(Err(err)) => vec![error_line(&err)],
        };
        for line in closing {
            if tx.send(json_line(&line)).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

/// `GET /distribution/{name}/json`: the descriptor the name resolves to
/// in its registry and the platforms it offers, nothing pulled.
pub async fn distribution(req: ApiRequest) -> Reply {
    let name = req.param("name").to_string();
    let request = registry_request(&req)?;
    let reference = Reference::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let info = req
        .daemon
        .images
        .distribution(&reference.to_string(), &request)
        .await?;
    let body = DistributionInspect {
        descriptor: OciDescriptor {
            media_type: Some(info.descriptor.media_type),
            digest: Some(info.descriptor.digest.to_string()),
            size: i64::try_from(info.descriptor.size).ok(),
            ..Default::default()
        },
        platforms: info
            .platforms
            .into_iter()
            .map(|p| OciPlatform {
                architecture: Some(p.architecture),
                os: Some(p.os),
                variant: p.variant,
                ..Default::default()
            })
            .collect(),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// `GET /images/search?term=&limit=&filters=`: moby's parameters and
/// messages; the search itself is the images crate's.
pub async fn search(req: ApiRequest) -> Reply {
    let term = req.query.get("term").unwrap_or_default().to_owned();
    let limit = match req.query.non_empty("limit") {
        None => 0,
        Some(text) => text.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("invalid limit specified: {text:?} is not a number"))
        })?,
    };
    let filters = req.query.filters()?;
    filters.allow_only(&["is-automated", "is-official", "stars"])?;
    let mut stars = None;
    for value in filters.values("stars") {
        let n: u64 = value
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid filter 'stars={value}'")))?;
        stars = Some(stars.map_or(n, |s: u64| s.max(n)));
    }
    let search_filters = SearchFilters {
        is_official: filters.bool("is-official")?,
        is_automated: filters.bool("is-automated")?,
        stars,
    };
    // As moby: for a search a missing or unreadable X-Registry-Auth is no
    // error (the stored credentials, or none, are used).
    let auth = req
        .headers
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| AuthConfig::from_header(v).ok());
    let settings = req.daemon.registry.clone();
    let results = search::search(&settings, auth.as_ref(), &term, limit, &search_filters)
        .await
        .map_err(|err| {
            let status = match &err {
                SearchError::Scheme(_) | SearchError::Limit(_) | SearchError::Auth(_) => {
                    StatusCode::BAD_REQUEST
                }
                // Not 401: on a 401 the docker CLI prompts for a login and,
                // without a terminal, hangs; moby itself never answers a
                // search with 401 (a private registry's refusal is a 500).
                SearchError::Unauthorized { .. } => StatusCode::FORBIDDEN,
                SearchError::Unreachable { .. } | SearchError::Registry { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            ApiError::new(status, err.to_string())
        })?;
    Ok(response::json(StatusCode::OK, &results))
}

/// `POST /auth`: moby checks the credentials with the registry and answers
/// `Login Succeeded`, or 401 with the registry's refusal.
pub async fn auth(req: ApiRequest) -> Reply {
    let settings = req.daemon.registry.clone();
    let config: AuthConfig = req.json().await?;
    let server = config.server_address.clone().unwrap_or_default();
    match login(&settings, &server, &config).await {
        Ok(()) => Ok(response::json(
            StatusCode::OK,
            &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        )),
        Err(LoginError::Unauthorized(message)) => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, message))
        }
        Err(LoginError::Auth(err)) => Err(ApiError::bad_request(err.to_string())),
        Err(err @ LoginError::Unreachable { .. }) => Err(ApiError::internal(err.to_string())),
    }
}

/// `docker pull --all-tags`: every tag the registry lists, one after the
/// other, each streamed as a pull of its own (`TAG: Pulling from ...`, its
/// layers, `Digest: ...`), then one `Status:` line and one `pull` event for
/// the repository, as moby. A tag that fails ends the whole pull with its
/// error, as in moby; the tags pulled before it stay. Listing the tags is
/// done before streaming, so a missing repository is an HTTP error.
async fn pull_all_tags(req: ApiRequest, repository: Reference) -> Reply {
    let platform = req.query.non_empty("platform").map(str::to_owned);
    let request = registry_request(&req)?;
    let daemon = req.daemon.clone();
    let tags = daemon
        .images
        .tags(&repository, &request)
        .await
        .map_err(ApiError::from)?;
    let (resp, tx) = response::stream("application/json");
    tokio::spawn(async move {
        let mut downloaded = false;
        for tag in tags {
            let reference = match repository.with_tag(&tag) {
                Ok(reference) => reference,
                Err(e) => {
                    let err = ImageError::from(e);
                    let _ = tx.send(json_line(&error_line(&err))).await;
                    return;
                }
            };
            let (events_tx, events) = mpsc::unbounded_channel();
            let sink: Arc<dyn ProgressSink> = Arc::new(Forward(events_tx));
            let (store, name, request, platform) = (
                daemon.images.clone(),
                reference.to_string(),
                request.clone(),
                platform.clone(),
            );
            let task = tokio::spawn(async move {
                store.pull(&name, platform.as_deref(), &request, sink).await
            });
            let stream = Stream::started(events, task);
            let opening =
                json!({"status": format!("Pulling from {}", reference.path()), "id": tag});
            let line = match stream.forward(Operation::Pull, &tx, vec![opening]).await {
                Forwarded::Gone => return,
                Forwarded::Done(Ok(pulled)) => {
                    downloaded |= pulled.status == PullStatus::Downloaded;
                    json!({"status": format!("Digest: {}", pulled.digest)})
                }
                Forwarded::Done(Err(err)) => {
                    let _ = tx.send(json_line(&error_line(&err))).await;
                    return;
                }
            };
            if tx.send(json_line(&line)).await.is_err() {
                return;
            }
        }
        let familiar = repository.familiar();
        daemon
            .events
            .publish(Event::image("pull", &familiar, &familiar));
        let status = if downloaded {
            PullStatus::Downloaded
        } else {
            PullStatus::UpToDate
        }
        .status_text();
        let _ = tx
            .send(json_line(
                &json!({"status": format!("Status: {status} {familiar}")}),
            ))
            .await;
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_references_combine_from_image_and_tag() {
        assert_eq!(
            pull_reference("busybox", Some("1.36")).ok().as_deref(),
            Some("docker.io/library/busybox:1.36")
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            pull_reference("localhost:5000/x", Some(&digest)).ok(),
            Some(format!("localhost:5000/x@{digest}"))
        );
        assert!(pull_reference("UPPER", None).is_err());
    }
}
