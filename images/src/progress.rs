//! Typed progress events for long image operations (pull, push, load),
//! which the API turns into Docker's JSON progress messages and the CLI
//! into progress bars.

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// Resolving a name to a manifest.
    Resolving {
        reference: String,
    },
    /// A layer is queued behind others.
    Waiting {
        layer: Digest,
    },
    /// The layer is already in the store; nothing to fetch.
    AlreadyExists {
        layer: Digest,
    },
    Downloading {
        layer: Digest,
        current: u64,
        total: Option<u64>,
    },
    Verifying {
        layer: Digest,
    },
    Extracting {
        layer: Digest,
        current: u64,
        total: Option<u64>,
    },
    /// Push: the registry linked the blob from another repository.
    Mounted {
        layer: Digest,
        from: String,
    },
    /// The layer is complete and stored (pull) or sent (push).
    Done {
        layer: Digest,
    },
    /// The whole image is stored.
    Complete {
        image: Digest,
    },
}

impl ProgressEvent {
    /// The layer an event is about, if any.
    pub fn layer(&self) -> Option<&Digest> {
        match self {
            ProgressEvent::Waiting { layer }
            | ProgressEvent::AlreadyExists { layer }
            | ProgressEvent::Downloading { layer, .. }
            | ProgressEvent::Verifying { layer }
            | ProgressEvent::Extracting { layer, .. }
            | ProgressEvent::Mounted { layer, .. }
            | ProgressEvent::Done { layer } => Some(layer),
            ProgressEvent::Resolving { .. } | ProgressEvent::Complete { .. } => None,
        }
    }
}

/// Receives progress events; must be cheap (called from hot loops).
pub trait ProgressSink: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

/// Discards events.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}
