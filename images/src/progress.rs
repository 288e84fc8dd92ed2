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
    /// The layer is complete and stored.
    Done {
        layer: Digest,
    },
    /// The whole image is stored.
    Complete {
        image: Digest,
    },
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
