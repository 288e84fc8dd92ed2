//! The build cache through BuildKit's eyes: `Control.DiskUsage` (what
//! `docker buildx du` and, with buildx installed, `docker system df -v`
//! read) and `Control.Prune` (`docker builder prune`, `docker buildx
//! prune`) over the same records `/system/df` and `POST /build/prune` use,
//! so both APIs agree on what the cache holds and what a prune frees.

use std::sync::Arc;

use bollard_stubs::models::BuildCache;
use prost_types::Timestamp;
use tonic::Status;

use super::super::routes::{build, build_cache, container_views, image_models};
use super::super::Daemon;
use super::proto::control::{PruneRequest, UsageRecord};

/// Every record of the build cache.
pub async fn disk_usage(daemon: &Arc<Daemon>) -> Result<Vec<UsageRecord>, Status> {
    let steps = daemon
        .with_images(|s| Ok(image_models::LayerUsage::of(s)?.build_cache_steps()))
        .await
        .map_err(|e| Status::internal(e.message))?;
    let container_images = daemon
        .with_engine(|e| {
            let now = chrono::Utc::now();
            Ok(e.list(true)
                .iter()
                .filter_map(|d| container_views::summary(d, now).image_id)
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| Status::internal(e.message))?;
    let data_root = daemon.data_root.clone();
    let records = tokio::task::spawn_blocking(move || {
        build_cache::records(steps, &container_images, &data_root)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?;
    Ok(records.iter().map(record).collect())
}

/// Prunes as asked and returns the records removed. `keepDuration` keeps
/// what was used more recently (buildx's `--filter until=`); `all` changes
/// nothing (no record is held by a build of the past); `keepBytes` is not
/// supported and refused rather than ignored.
pub async fn prune(daemon: &Arc<Daemon>, req: &PruneRequest) -> Result<Vec<UsageRecord>, Status> {
    if let Some(f) = req.filter.iter().find(|f| !f.is_empty()) {
        return Err(Status::invalid_argument(format!(
            "filter {f:?} is not supported by hutch's build cache prune (until only)"
        )));
    }
    if req.keep_bytes > 0 {
        return Err(Status::invalid_argument(
            "--keep-storage is not supported by hutch's build cache prune",
        ));
    }
    let cutoff = (req.keep_duration > 0)
        .then(|| chrono::Utc::now() - chrono::Duration::nanoseconds(req.keep_duration));
    let pruned = build::prune_cache(daemon, cutoff)
        .await
        .map_err(|e| Status::internal(e.message))?;
    // A shared record's bytes belong to an image too: not freed.
    Ok(pruned
        .records
        .iter()
        .map(|r| UsageRecord {
            size: if r.shared == Some(true) {
                0
            } else {
                r.size.unwrap_or(0)
            },
            ..record(r)
        })
        .collect())
}

/// Docker's record as BuildKit's.
fn record(r: &BuildCache) -> UsageRecord {
    UsageRecord {
        id: r.id.clone().unwrap_or_default(),
        mutable: false,
        in_use: r.in_use.unwrap_or(false),
        size: r.size.unwrap_or(0),
        created_at: r.created_at.as_deref().and_then(timestamp),
        last_used_at: r.last_used_at.as_deref().and_then(timestamp),
        usage_count: r.usage_count.unwrap_or(0),
        description: r.description.clone().unwrap_or_default(),
        record_type: r.typ.map(|t| t.to_string()).unwrap_or_default(),
        shared: r.shared.unwrap_or(false),
        parents: Vec::new(),
    }
}

fn timestamp(rfc3339: &str) -> Option<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}
