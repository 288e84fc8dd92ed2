//! `GET /containers/{id}/export` (`docker export`): the container's merged
//! filesystem as a tar, streamed, running or stopped (see
//! `hutch_builder::exec::rootfs::Export`: an overlay view of its upper
//! directory over its image's layers, so mounts and volumes are not in it,
//! as with Docker).

use std::collections::BTreeMap;

use hutch_builder::exec::rootfs::Export;
use hutch_builder::exec::BuildError;
use hutch_engine::containers::config::UsernsMode;
use hutch_engine::containers::EngineEvent;
use hyper::Response;

use super::super::body_io::StreamWriter;
use super::super::error::ApiError;
use super::super::events::Event;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};

pub async fn export(req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let query = req.param("id").to_string();
    let daemon = req.daemon.clone();
    let d = daemon
        .with_engine(move |e| e.inspect_at_rest(&query))
        .await?;
    if d.config.options.userns_mode == UsernsMode::Private {
        return Err(ApiError::unsupported(
            "exporting a private-mode (--userns-mode private) container",
        ));
    }
    let store = daemon.images.clone();
    let (image, upper) = (d.config.image_id.clone(), d.rootfs_upper.clone());
    let tmp = daemon.data_root.join("builder/tmp");
    let prepared =
        tokio::task::spawn_blocking(move || Export::prepare(&store, &image, &upper, &tmp))
            .await
            .map_err(|e| ApiError::internal(format!("export: {e}")))?
            .map_err(|e| match e {
                BuildError::Image(e) => ApiError::from(e),
                other => ApiError::internal(other.to_string()),
            })?;
    let (resp, tx) = response::stream("application/x-tar");
    let id = d.config.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = StreamWriter::new(tx);
        let result = prepared
            .write_to(&mut writer)
            .and_then(std::io::Write::flush);
        if let Err(err) = result {
            // The status is gone already; the client sees a short archive.
            tracing::warn!(%err, %id, "container export ended early");
        }
    });
    let mut attributes = BTreeMap::new();
    attributes.insert("name".to_owned(), d.config.name.clone());
    daemon.events.publish(Event::container(&EngineEvent {
        kind: hutch_engine::containers::EventKind::Container,
        action: "export".to_owned(),
        id: d.config.id.clone(),
        attributes,
    }));
    Ok(resp)
}
