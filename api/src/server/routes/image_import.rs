//! `POST /images/create?fromSrc=-` (`docker import`): the request body, a
//! tar (plain or gzip), becomes the single layer of a new image, with
//! `repo`/`tag`, `changes` (the config instructions `docker commit`
//! accepts) and `message`. The layer goes through the image store's safe
//! unpacker, so an entry that leaves the root fails the import and leaves
//! nothing. `fromSrc=URL` (`docker import https://host/rootfs.tar.gz`):
//! the daemon downloads it first (as ADD downloads: streamed to a file in
//! the data root's scratch), then imports the file the same way.

use hutch_builder::exec::rootfs::{import, ImportRequest};
use hutch_builder::exec::BuildError;
use hyper::Response;

use super::super::error::ApiError;
use super::super::events::Event;
use super::super::request::ApiRequest;
use super::super::response::{self, json_line, Body};

pub async fn import_image(req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let source = req.query.non_empty("fromSrc").unwrap_or("-").to_owned();
    let url = (source != "-").then(|| source.clone());
    if let Some(url) = &url {
        let lower = url.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(ApiError::bad_request(format!(
                "importing from {url}: only http(s) URLs and - (the request body) are \
                 supported"
            )));
        }
    }
    let names = super::images::new_image_names(&req.query)?;
    let changes = super::images::changes_param(&req.query);
    let (os, architecture) = match req.query.non_empty("platform") {
        Some(p) => {
            let mut parts = p.split('/');
            let os = parts.next().unwrap_or("linux").to_owned();
            let arch = parts.next().unwrap_or(std::env::consts::ARCH).to_owned();
            (os, arch)
        }
        None => ("linux".to_owned(), super::host::go_arch().to_owned()),
    };
    let request = ImportRequest {
        changes,
        message: req.query.non_empty("message").map(str::to_owned),
        source,
        os,
        architecture,
        names: names.clone(),
    };
    let daemon = req.daemon.clone();
    let store = daemon.images.clone();
    let body = req.body_reader();
    let scratch = daemon.data_root.join("builder/tmp");
    let data_root = daemon.data_root.clone();
    let id = tokio::task::spawn_blocking(move || match url {
        None => import(&store, body, &request),
        Some(url) => {
            let dir = std::fs::create_dir_all(&scratch)
                .and_then(|()| tempfile::tempdir_in(&scratch))
                .map_err(|e| BuildError::io("making the download's directory", e))?;
            let file = hutch_builder::remote_context::download(&url, dir.path(), &data_root)
                .map_err(|e| BuildError::Run(format!("downloading {url}: {e}")))?;
            let reader = std::fs::File::open(&file)
                .map_err(|e| BuildError::io("opening the download", e))?;
            import(&store, reader, &request)
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("import: {e}")))?
    .map_err(|e| match e {
        // A bad archive, body or change is the client's.
        BuildError::Image(hutch_images::ImageError::Archive(e)) => {
            ApiError::bad_request(format!("importing the archive: {e}"))
        }
        BuildError::Image(e) => ApiError::from(e),
        other => ApiError::bad_request(other.to_string()),
    })?;
    let id = id.to_string();
    daemon.events.publish(Event::image("import", &id, &id));
    for n in &names {
        daemon
            .events
            .publish(Event::image("tag", &id, &n.familiar()));
    }
    // As moby: one message whose status is the new image's ID.
    let line = json_line(&serde_json::json!({ "status": id }));
    Ok(response::json_messages(line.to_vec()))
}
