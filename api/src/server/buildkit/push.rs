//! The image exporter's `push=true`: the named image pushed by the daemon
//! at the end of the solve, as dockerd's exporter does with the
//! containerd image store, whose worker label hutch's worker carries.
//! buildx 0.22 and later leave the push to such a daemon (its docker
//! driver's "direct push"); older ones push each name again through `POST
//! /images/{name}/push` afterwards, as they do with dockerd, which then
//! finds every blob in place.
//!
//! Credentials are the client's, asked of its session's `Auth` service
//! (its `docker login`), as BuildKit's pusher asks; without them the
//! daemon's own registry settings and stored credentials apply.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hutch_images::registry::push::Pushed;
use hutch_images::{ProgressEvent, ProgressSink, Reference, RegistryRequest};
use tonic::Status;

use super::super::events::Event;
use super::super::Daemon;
use super::sessions::Session;
use super::status::Vertex;

/// Pushes each of `names` (all name the built image), reporting in
/// `vertex` as BuildKit does (`pushing layers`, each blob's bytes,
/// `pushing manifest for NAME@DIGEST`). Answers the first name's push.
pub async fn push_names(
    daemon: &Arc<Daemon>,
    session: Option<&Session>,
    vertex: &Arc<Vertex>,
    names: &[String],
) -> Result<Option<Pushed>, Status> {
    let mut first = None;
    for name in names {
        let reference = Reference::parse(name)
            .map_err(|e| Status::invalid_argument(format!("invalid reference {name}: {e}")))?;
        let auth = match session {
            Some(s) => s.credentials(reference.domain()).await,
            None => None,
        };
        let request = RegistryRequest {
            settings: daemon.registry.clone(),
            auth,
        };
        let layers = vertex.status_start("pushing layers");
        let sink: Arc<dyn ProgressSink> = Arc::new(PushStatus {
            vertex: vertex.clone(),
            sent: Mutex::default(),
        });
        let pushed = daemon
            .images
            .push(&reference.to_string(), &request, sink)
            .await
            .map_err(|err| {
                let message = format!("failed to push {}: {err}", reference);
                vertex.fail(&message);
                Status::unknown(message)
            })?;
        layers.done();
        // The manifest (or index) went last; BuildKit reports it so.
        vertex.status(
            &format!("pushing manifest for {reference}@{}", pushed.digest),
            true,
        );
        daemon.events.publish(Event::image(
            "push",
            &reference.familiar(),
            &reference.familiar(),
        ));
        first.get_or_insert(pushed);
    }
    Ok(first)
}

/// A push's progress as the vertex's byte-counting sub-tasks, one per
/// blob, named by digest as BuildKit's are.
struct PushStatus {
    vertex: Arc<Vertex>,
    /// Each blob's last count, repeated when it is done.
    sent: Mutex<HashMap<String, (i64, i64)>>,
}

impl ProgressSink for PushStatus {
    fn event(&self, event: ProgressEvent) {
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match event {
            // (The push reports the bytes sent as `Downloading`.)
            ProgressEvent::Downloading {
                layer,
                current,
                total,
            } => {
                let id = layer.to_string();
                let count = (bytes(current), total.map_or(0, bytes));
                self.vertex.progress(&id, count.0, count.1, false);
                self.sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, count);
            }
            ProgressEvent::Done { layer }
            | ProgressEvent::AlreadyExists { layer }
            | ProgressEvent::Mounted { layer, .. } => {
                let id = layer.to_string();
                let (current, total) = self
                    .sent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                    .unwrap_or_default();
                self.vertex.progress(&id, current, total, true);
            }
            _ => {}
        }
    }
}
