//! A solve's exporters. The docker driver's image exporter (`moby`, or
//! `image` as buildctl names it) names the built image in hutch's store,
//! as dockerd's does; hutch's builder has already written the image, so
//! naming is all there is to do. Pushing and the file exporters (`local`,
//! `tar`, `oci`, `docker`) are not supported yet and are refused before
//! the build runs.

use std::collections::HashMap;
use std::sync::Arc;

use hutch_images::Reference;
use tonic::Status;

use super::super::events::Event;
use super::super::Daemon;
use super::frontend::Built;
use super::proto::control::{SolveRequest, SolveResponse};
use super::solves::Solve;
use super::status::Vertex;

/// An exporter the client asked for, checked.
pub struct ImageExport {
    names: Vec<String>,
}

/// The request's exporters (the list, or the one of older clients).
pub fn exporters(req: &SolveRequest) -> Result<Vec<ImageExport>, Status> {
    let mut asked: Vec<(&str, &HashMap<String, String>)> = req
        .exporters
        .iter()
        .map(|e| (e.r#type.as_str(), &e.attrs))
        .collect();
    if asked.is_empty() && !req.exporter_deprecated.is_empty() {
        asked.push((&req.exporter_deprecated, &req.exporter_attrs_deprecated));
    }
    asked
        .into_iter()
        .map(|(kind, attrs)| match kind {
            "moby" | "image" => image_export(attrs),
            other => Err(Status::unimplemented(format!(
                "exporter {other:?} is not supported by hutch: the image goes to hutch's \
                 image store (the default, or --load)"
            ))),
        })
        .collect()
}

fn image_export(attrs: &HashMap<String, String>) -> Result<ImageExport, Status> {
    if attrs.get("push").is_some_and(|v| v == "true") {
        return Err(Status::unimplemented(
            "pushing from a build (--push) is not supported by hutch yet: \
             build, then docker push",
        ));
    }
    let names = attrs
        .get("name")
        .map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for name in &names {
        Reference::parse(name).map_err(|e| {
            Status::invalid_argument(format!("invalid reference format: {name}: {e}"))
        })?;
    }
    Ok(ImageExport { names })
}

/// Names the image for each image exporter, with BuildKit's "exporting to
/// image" vertex, and answers what dockerd's exporter answers.
pub async fn export(
    daemon: &Arc<Daemon>,
    solve: &Arc<Solve>,
    built: Option<&Built>,
    exporters: &[ImageExport],
) -> Result<SolveResponse, Status> {
    let mut response = HashMap::new();
    let Some(built) = built else {
        return Ok(SolveResponse {
            exporter_response: response,
        });
    };
    let id = built.id.to_string();
    for export in exporters {
        let vertex = Vertex::start(solve, "exporting to image");
        vertex.status("exporting layers", true);
        vertex.status(&format!("writing image {id}"), true);
        for name in &export.names {
            let full = Reference::parse(name)
                .map(|r| r.to_string())
                .unwrap_or_else(|_| name.clone());
            let named = vertex.status_start(&format!("naming to {full}"));
            let (source, target) = (id.clone(), name.clone());
            let tagged = daemon.with_images(move |s| s.tag(&source, &target)).await;
            if let Err(err) = tagged {
                let message = format!("naming the image {name}: {}", err.message);
                vertex.fail(&message);
                return Err(Status::internal(message));
            }
            named.done();
            if let Ok(r) = Reference::parse(name) {
                daemon
                    .events
                    .publish(Event::image("tag", &id, &r.familiar()));
            }
        }
        vertex.done();
        if !export.names.is_empty() {
            response.insert("image.name".to_owned(), export.names.join(","));
        }
    }
    response.insert("containerimage.digest".to_owned(), id.clone());
    response.insert("containerimage.config.digest".to_owned(), id);
    Ok(SolveResponse {
        exporter_response: response,
    })
}
