//! `POST /commit` (`docker commit`): the container's upper directory as a
//! new layer on its image, through the builder's commit (the same upper-dir
//! reader as RUN). `pause` is accepted: a pod gives no cgroup freezer, so
//! the container keeps running while its changes are read, as with
//! `--pause=false`.

use std::collections::BTreeMap;

use hutch_builder::exec::commit::{commit as commit_image, CommitRequest};
use hutch_builder::exec::BuildError;
use hutch_engine::containers::config::UsernsMode;
use hutch_engine::containers::EngineEvent;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::super::error::ApiError;
use super::super::events::Event;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};

pub async fn commit(req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let container = req
        .query
        .non_empty("container")
        .ok_or_else(|| ApiError::bad_request("a container name or ID is required"))?
        .to_owned();
    let names = super::images::new_image_names(&req.query)?;
    let comment = req.query.non_empty("comment").map(str::to_owned);
    let author = req.query.non_empty("author").map(str::to_owned);
    let changes = super::images::changes_param(&req.query);
    let daemon = req.daemon.clone();
    let config: Option<Value> = req.optional_json().await?;
    let query = container.clone();
    let d = daemon
        .with_engine(move |e| e.inspect_at_rest(&query))
        .await?;
    if d.config.options.userns_mode == UsernsMode::Private {
        return Err(ApiError::unsupported(
            "committing a private-mode (--userns-mode private) container",
        ));
    }
    let c = &d.config;
    let created_by = std::iter::once(c.path.clone())
        .chain(c.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let request = CommitRequest {
        image_id: c.image_id.clone(),
        upper: d.rootfs_upper.clone(),
        env: c.env.clone(),
        cmd: c.options.cmd.clone(),
        entrypoint: c.options.entrypoint.clone(),
        user: Some(c.user.clone()),
        working_dir: Some(c.working_dir.clone()),
        labels: c.options.labels.clone(),
        created_by,
        config,
        changes,
        comment: comment.clone(),
        author,
        names: names.clone(),
    };
    let store = daemon.images.clone();
    let id = tokio::task::spawn_blocking(move || commit_image(&store, &request))
        .await
        .map_err(|e| ApiError::internal(format!("commit: {e}")))?
        .map_err(|e| match e {
            BuildError::Parse(_) | BuildError::Invalid(_) => ApiError::bad_request(e.to_string()),
            BuildError::Image(e) => ApiError::from(e),
            other => ApiError::internal(other.to_string()),
        })?;
    let id_text = id.to_string();
    let mut attributes = BTreeMap::new();
    attributes.insert("comment".to_owned(), comment.unwrap_or_default());
    attributes.insert("imageID".to_owned(), id_text.clone());
    attributes.insert(
        "imageRef".to_owned(),
        names.first().map(|n| n.familiar()).unwrap_or_default(),
    );
    attributes.insert("name".to_owned(), c.name.clone());
    daemon.events.publish(Event::container(&EngineEvent {
        kind: hutch_engine::containers::EventKind::Container,
        action: "commit".to_owned(),
        id: c.id.clone(),
        attributes,
    }));
    for n in &names {
        daemon
            .events
            .publish(Event::image("tag", &id_text, &n.familiar()));
    }
    Ok(response::json(
        StatusCode::CREATED,
        &json!({ "Id": id_text }),
    ))
}
