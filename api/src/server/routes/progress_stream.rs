//! Streaming an image operation's progress as moby's JSON messages: the
//! store's progress events (pull, push, load) are queued by [`Forward`],
//! held by [`Stream`] until the first one decides between an HTTP error
//! and a streamed answer, and turned into `jsonmessage` lines by [`Render`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hutch_images::{ImageError, ProgressEvent, ProgressSink};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::error::ApiError;
use super::super::response::json_line;

/// Downloading/Extracting updates are sent at most this often per layer.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Pull,
    Push,
    /// `docker load`: only its layers' "Loading layer" progress.
    Load,
}

/// An error after streaming began, as moby sends it.
pub(super) fn error_line(err: &ImageError) -> serde_json::Value {
    let message = err.to_string();
    json!({"errorDetail": {"message": message}, "error": message})
}

/// Hands progress events from the image store to the stream writer. The
/// store calls it from hot loops, so it only queues.
pub(super) struct Forward(pub(super) mpsc::UnboundedSender<ProgressEvent>);

impl ProgressSink for Forward {
    fn event(&self, event: ProgressEvent) {
        let _ = self.0.send(event);
    }
}

/// An operation that has got as far as its first real progress event (so
/// its answer will be a stream), with that event held back.
pub(super) struct Stream<T> {
    first: Option<ProgressEvent>,
    events: mpsc::UnboundedReceiver<ProgressEvent>,
    task: JoinHandle<Result<T, ImageError>>,
}

pub(super) enum Forwarded<T> {
    /// The client went away; the operation was cancelled.
    Gone,
    Done(Result<T, ImageError>),
}

impl<T: Send + 'static> Stream<T> {
    /// An operation whose answer is a stream already (nothing held back).
    pub(super) fn started(
        events: mpsc::UnboundedReceiver<ProgressEvent>,
        task: JoinHandle<Result<T, ImageError>>,
    ) -> Stream<T> {
        Stream {
            first: None,
            events,
            task,
        }
    }

    /// Waits until the operation either fails before doing anything visible
    /// (an HTTP error answer) or emits its first event past resolving the
    /// name (a streamed answer).
    pub(super) async fn first(
        mut events: mpsc::UnboundedReceiver<ProgressEvent>,
        mut task: JoinHandle<Result<T, ImageError>>,
    ) -> Result<Stream<T>, ApiError> {
        let result = loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(ProgressEvent::Resolving { .. }) => continue,
                    Some(event) => {
                        return Ok(Stream { first: Some(event), events, task });
                    }
                    // Every sender is gone: the operation has ended.
                    None => break (&mut task).await,
                },
                result = &mut task => break result,
            }
        };
        match result {
            Ok(Err(err)) => Err(err.into()),
            Err(join) => Err(join.into()),
            // Finished with nothing to show (all done at once): stream the
            // closing lines only.
            Ok(Ok(value)) => Ok(Stream {
                first: None,
                events,
                task: tokio::spawn(async move { Ok(value) }),
            }),
        }
    }

    /// Streams `opening`, then every event as Docker's message, until the
    /// operation ends. Cancels the operation if the client hangs up.
    pub(super) async fn forward(
        mut self,
        op: Operation,
        tx: &mpsc::Sender<Bytes>,
        opening: Vec<serde_json::Value>,
    ) -> Forwarded<T> {
        let mut render = Render::new(op);
        let mut pending: Vec<serde_json::Value> = opening;
        if let Some(first) = self.first.take() {
            pending.extend(render.messages(&first));
        }
        loop {
            for line in pending.drain(..) {
                if tx.send(json_line(&line)).await.is_err() {
                    self.task.abort();
                    return Forwarded::Gone;
                }
            }
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => pending.extend(render.messages(&event)),
                    None => break,
                },
                // A client that hangs up while nothing is being sent.
                _ = tx.closed() => {
                    self.task.abort();
                    return Forwarded::Gone;
                }
            }
        }
        match self.task.await {
            Ok(result) => Forwarded::Done(result),
            Err(join) => Forwarded::Done(Err(ImageError::Pull(
                hutch_images::registry::PullError::Internal(join.to_string()),
            ))),
        }
    }
}

/// Turns progress events into moby's `jsonmessage` lines.
struct Render {
    op: Operation,
    /// Layers already announced, and when each last sent a byte count.
    seen: HashMap<String, Option<Instant>>,
}

impl Render {
    fn new(op: Operation) -> Render {
        Render {
            op,
            seen: HashMap::new(),
        }
    }

    fn messages(&mut self, event: &ProgressEvent) -> Vec<serde_json::Value> {
        let Some(layer) = event.layer() else {
            return Vec::new();
        };
        let id = layer.short().to_owned();
        let mut out = Vec::new();
        let first_time = !self.seen.contains_key(&id);
        let announced = match self.op {
            Operation::Pull => Some("Pulling fs layer"),
            Operation::Push => Some("Preparing"),
            Operation::Load => None,
        };
        if let Some(status) = announced.filter(|_| first_time) {
            if !matches!(event, ProgressEvent::AlreadyExists { .. }) {
                out.push(status_line(status, &id));
            }
        }
        let last = self.seen.entry(id.clone()).or_insert(None);
        let status = match (event, self.op) {
            (ProgressEvent::Waiting { .. }, _) => "Waiting".to_owned(),
            (ProgressEvent::AlreadyExists { .. }, Operation::Pull) => "Already exists".to_owned(),
            (ProgressEvent::AlreadyExists { .. }, Operation::Push) => {
                "Layer already exists".to_owned()
            }
            (ProgressEvent::Mounted { from, .. }, _) => format!("Mounted from {from}"),
            (ProgressEvent::Verifying { .. }, _) => "Verifying Checksum".to_owned(),
            (ProgressEvent::Done { .. }, Operation::Pull) => "Pull complete".to_owned(),
            (ProgressEvent::Done { .. }, Operation::Push) => "Pushed".to_owned(),
            (
                ProgressEvent::Downloading { current, total, .. }
                | ProgressEvent::Extracting { current, total, .. },
                op,
            ) => {
                let finished = total.is_some_and(|t| *current >= t);
                let now = Instant::now();
                if !finished && last.is_some_and(|at| now.duration_since(at) < PROGRESS_INTERVAL) {
                    return out;
                }
                *last = Some(now);
                let status = match (event, op) {
                    (ProgressEvent::Extracting { .. }, Operation::Load) => "Loading layer",
                    (ProgressEvent::Extracting { .. }, _) => "Extracting",
                    (_, Operation::Push) => "Pushing",
                    (_, _) => "Downloading",
                };
                let mut detail = json!({"current": current});
                if let Some(total) = total {
                    detail["total"] = json!(total);
                }
                out.push(json!({"status": status, "progressDetail": detail, "id": id}));
                return out;
            }
            (ProgressEvent::Resolving { .. } | ProgressEvent::Complete { .. }, _)
            | (ProgressEvent::AlreadyExists { .. } | ProgressEvent::Done { .. }, Operation::Load) =>
            {
                return out;
            }
        };
        out.push(status_line(&status, &id));
        out
    }
}

fn status_line(status: &str, id: &str) -> serde_json::Value {
    json!({"status": status, "progressDetail": {}, "id": id})
}

#[cfg(test)]
mod tests {
    use super::*;
    use hutch_images::Digest;

    #[test]
    fn events_become_moby_messages() {
        let layer = Digest::of(b"layer");
        let mut render = Render::new(Operation::Pull);
        let first = render.messages(&ProgressEvent::Downloading {
            layer: layer.clone(),
            current: 10,
            total: Some(100),
        });
        assert_eq!(first.len(), 2);
        assert_eq!(first[0]["status"], "Pulling fs layer");
        assert_eq!(first[1]["progressDetail"]["total"], 100);
        // A second update within the interval is dropped; completion is not.
        let again = render.messages(&ProgressEvent::Downloading {
            layer: layer.clone(),
            current: 20,
            total: Some(100),
        });
        assert!(again.is_empty());
        let done = render.messages(&ProgressEvent::Downloading {
            layer: layer.clone(),
            current: 100,
            total: Some(100),
        });
        assert_eq!(done[0]["progressDetail"]["current"], 100);
        let complete = render.messages(&ProgressEvent::Done { layer });
        assert_eq!(complete[0]["status"], "Pull complete");
        assert_eq!(complete[0]["id"].as_str().map(str::len), Some(12));

        let mut push = Render::new(Operation::Push);
        let exists = push.messages(&ProgressEvent::AlreadyExists {
            layer: Digest::of(b"other"),
        });
        assert_eq!(exists.len(), 1);
        assert_eq!(exists[0]["status"], "Layer already exists");
    }

    #[test]
    fn a_load_shows_only_its_loading_layers() {
        let layer = Digest::of(b"layer");
        let mut load = Render::new(Operation::Load);
        let lines = load.messages(&ProgressEvent::Extracting {
            layer: layer.clone(),
            current: 5,
            total: Some(10),
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["status"], "Loading layer");
        assert_eq!(lines[0]["progressDetail"]["current"], 5);
        assert_eq!(lines[0]["id"].as_str(), Some(layer.short()));
    }
}
