//! A solve's exporters. The docker driver's image exporter (`moby`, or
//! `image` as buildctl names it) names the built image in hutch's store,
//! as dockerd's does (hutch's builder has already written the image);
//! `push=true` (`--push`) pushes each name from the daemon (see `push`).
//! The file exporters `tar` and `local` send the image's files to the client
//! (`output`), as do `oci` and `docker` the image itself: an OCI image
//! layout or a docker-archive (what `docker save` writes), as a tar, or
//! with `tar=false` its blobs into the client's directory.

use std::collections::HashMap;

use base64::Engine as _;
use std::sync::Arc;

use hutch_images::archive::ArchiveFormat;
use hutch_images::Reference;
use tonic::Status;

use super::super::events::Event;
use super::super::Daemon;
use super::frontend::Built;
use super::output::{self, ArchiveExport, FileExport, Kind};
use super::proto::control::{SolveRequest, SolveResponse};
use super::push;
use super::solves::Solve;
use super::status::Vertex;

/// An exporter the client asked for, checked.
pub enum Exporter {
    Image(ImageExport),
    Files(FileExport),
    Archive(ArchiveExport),
}

pub struct ImageExport {
    names: Vec<String>,
    push: bool,
}

/// The request's exporters (the list, or the one of older clients).
pub fn exporters(req: &SolveRequest) -> Result<Vec<Exporter>, Status> {
    let exporters = parse_exporters(req)?;
    let several = req
        .frontend_attrs
        .get("platform")
        .is_some_and(|p| p.split(',').filter(|p| !p.trim().is_empty()).count() > 1);
    if several && exporters.iter().any(|e| !takes_several(e)) {
        return Err(several_to_client());
    }
    Ok(exporters)
}

/// Whether an exporter takes a build for several platforms: the image
/// store (then the registry), the OCI layout and the files (a directory
/// per platform) do; the docker-archive (one image per name; buildx
/// refuses it itself) does not.
fn takes_several(exporter: &Exporter) -> bool {
    match exporter {
        Exporter::Image(_) | Exporter::Files(_) => true,
        Exporter::Archive(a) => a.format == ArchiveFormat::Oci,
    }
}

fn several_to_client() -> Status {
    Status::unimplemented(
        "exporting a build for several platforms as a docker archive (--output type=docker) \
         is not supported by hutch: push it (--push), export it as an OCI layout (type=oci) \
         or as files (type=local, type=tar), or build one platform",
    )
}

fn parse_exporters(req: &SolveRequest) -> Result<Vec<Exporter>, Status> {
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
        .enumerate()
        .map(|(index, (kind, attrs))| match kind {
            "moby" | "image" => image_export(attrs).map(Exporter::Image),
            "tar" => Ok(Exporter::Files(FileExport {
                kind: Kind::Tar,
                index,
            })),
            "local" => Ok(Exporter::Files(FileExport {
                kind: Kind::Local,
                index,
            })),
            "oci" => archive_export(ArchiveFormat::Oci, attrs, index).map(Exporter::Archive),
            "docker" => archive_export(ArchiveFormat::Docker, attrs, index).map(Exporter::Archive),
            other => Err(Status::unimplemented(format!(
                "exporter {other:?} is not supported by hutch: the image goes to hutch's \
                 image store (the default, or --load), to the client as an image archive \
                 (type=oci, type=docker), or its files to the client (type=local, type=tar)"
            ))),
        })
        .collect()
}

/// The exporter's `name` attribute: comma-separated references, checked.
fn names(attrs: &HashMap<String, String>) -> Result<Vec<String>, Status> {
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
    Ok(names)
}

fn image_export(attrs: &HashMap<String, String>) -> Result<ImageExport, Status> {
    let push = attrs.get("push").is_some_and(|v| v == "true");
    // buildx refuses it for the docker driver itself; another client must
    // not get a tag pushed instead.
    if push && attrs.get("push-by-digest").is_some_and(|v| v == "true") {
        return Err(Status::unimplemented(
            "push-by-digest is not supported by hutch: push by name (--push), \
             or export an OCI layout (type=oci) and push it by digest",
        ));
    }
    let names = names(attrs)?;
    if push && names.is_empty() {
        return Err(Status::invalid_argument(
            "tag is needed when pushing to registry",
        ));
    }
    Ok(ImageExport { names, push })
}

/// `type=oci|docker[,name=N][,tar=false]`. The other attributes BuildKit
/// reads (compression, media types, annotations) change nothing here: the
/// archive holds the image's blobs as stored, so its digests are the
/// image's.
fn archive_export(
    format: ArchiveFormat,
    attrs: &HashMap<String, String>,
    index: usize,
) -> Result<ArchiveExport, Status> {
    let names = names(attrs)?
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .collect();
    // tar=false: the blobs go into a content store the client serves on
    // its session for its output directory.
    let tar = match attrs.get("tar").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Status::invalid_argument(format!(
                "invalid tar={other:?} (true or false)"
            )))
        }
    };
    Ok(ArchiveExport {
        format,
        names,
        index,
        tar,
    })
}

/// Runs each exporter on the built image, and answers what dockerd's
/// exporters answer.
pub async fn export(
    daemon: &Arc<Daemon>,
    solve: &Arc<Solve>,
    session: &str,
    built: Option<&Built>,
    exporters: &[Exporter],
) -> Result<SolveResponse, Status> {
    let mut response = HashMap::new();
    let Some(built) = built else {
        return Ok(SolveResponse {
            exporter_response: response,
        });
    };
    let id = built.id.to_string();
    let platforms = solve.platform_images();
    if platforms.len() > 1 && exporters.iter().any(|e| !takes_several(e)) {
        return Err(several_to_client());
    }
    let mut pushed = None;
    for exporter in exporters {
        match exporter {
            Exporter::Image(export) => {
                let vertex = Arc::new(Vertex::start(solve, "exporting to image"));
                export_image(daemon, &vertex, &id, export, &platforms).await?;
                if export.push {
                    let session = daemon.buildkit.sessions.get(session).await.ok();
                    pushed =
                        push::push_names(daemon, session.as_ref(), &vertex, &export.names).await?;
                }
                vertex.done();
                if !export.names.is_empty() {
                    response.insert("image.name".to_owned(), export.names.join(","));
                }
            }
            Exporter::Files(export) => {
                let name = match export.kind {
                    Kind::Tar => "exporting to client tarball",
                    Kind::Local => "exporting to client directory",
                };
                let vertex = Vertex::start(solve, name);
                let sent = match daemon.buildkit.sessions.get(session).await {
                    Ok(s) => output::export(daemon, &vertex, &s, &id, &platforms, export).await,
                    Err(e) => Err(Status::failed_precondition(e.message)),
                };
                vertex.finish(sent)?;
            }
            Exporter::Archive(export) => {
                let vertex = Vertex::start(
                    solve,
                    match export.format {
                        ArchiveFormat::Oci => "exporting to oci image format",
                        ArchiveFormat::Docker => "exporting to docker image format",
                    },
                );
                let sent = match daemon.buildkit.sessions.get(session).await {
                    Ok(s) => {
                        output::export_archive(daemon, &vertex, &s, &id, &platforms, export).await
                    }
                    Err(e) => Err(Status::failed_precondition(e.message)),
                };
                if let Some(manifest) = vertex.finish(sent)? {
                    let json = serde_json::to_vec(&manifest)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    response.insert(
                        "containerimage.descriptor".to_owned(),
                        base64::engine::general_purpose::STANDARD.encode(json),
                    );
                }
                if let Some(first) = export.names.first() {
                    response.insert("image.name".to_owned(), first.to_string());
                }
            }
        }
    }
    if let Some(manifest) = solve.cache_manifest() {
        response.insert("cache.manifest".to_owned(), manifest);
    }
    // As BuildKit's image exporter: the digest is the manifest's (or the
    // index's) once pushed, what `name@digest` pins; before that, the
    // image ID, which is all the store knows the image by.
    let digest = pushed.map_or_else(|| id.clone(), |p| p.digest.to_string());
    response.insert("containerimage.digest".to_owned(), digest);
    response.insert("containerimage.config.digest".to_owned(), id);
    Ok(SolveResponse {
        exporter_response: response,
    })
}

/// Names the image `id` in BuildKit's "exporting to image" vertex (left
/// open for the push). A build for several platforms (`platforms`, their
/// images) names `id` (this machine's platform's image: the store keeps
/// one image per name) and remembers the others with it, so that a push
/// of the name pushes them all and their index.
async fn export_image(
    daemon: &Arc<Daemon>,
    vertex: &Vertex,
    id: &str,
    export: &ImageExport,
    platforms: &[hutch_images::Digest],
) -> Result<(), Status> {
    vertex.status("exporting layers", true);
    vertex.status(&format!("writing image {id}"), true);
    let digest: hutch_images::Digest = id
        .parse()
        .map_err(|e| Status::internal(format!("the image ID {id}: {e}")))?;
    for name in &export.names {
        let full = Reference::parse(name)
            .map(|r| r.to_string())
            .unwrap_or_else(|_| name.clone());
        let named = vertex.status_start(&format!("naming to {full}"));
        let (source, target, ids) = (digest.clone(), name.clone(), platforms.to_vec());
        let tagged = daemon
            .with_images(move |s| {
                if ids.len() > 1 {
                    s.tag_platforms(&source, &target, &ids)
                } else {
                    s.tag(&source.to_string(), &target)
                }
            })
            .await;
        if let Err(err) = tagged {
            let message = format!("naming the image {name}: {}", err.message);
            vertex.fail(&message);
            return Err(Status::internal(message));
        }
        named.done();
        if let Ok(r) = Reference::parse(name) {
            daemon
                .events
                .publish(Event::image("tag", id, &r.familiar()));
        }
    }
    if platforms.len() > 1 && !export.names.is_empty() {
        vertex.status(
            &format!(
                "the name is this machine's platform's image; a push sends all {} \
                 platforms and their index",
                platforms.len()
            ),
            true,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn push_by_digest_is_refused_not_pushed_by_tag() {
        let refused = image_export(&attrs(&[
            ("name", "registry.example/app"),
            ("push", "true"),
            ("push-by-digest", "true"),
        ]));
        let Err(status) = refused else {
            panic!("push-by-digest was accepted");
        };
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("push-by-digest"));
        let pushed = image_export(&attrs(&[
            ("name", "registry.example/app:1"),
            ("push", "true"),
        ]))
        .expect("a push by name");
        assert!(pushed.push && pushed.names == ["registry.example/app:1"]);
    }
}
