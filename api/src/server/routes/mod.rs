//! The route table, one module per Docker resource. Handlers only parse the
//! request into a typed call and shape the answer; errors become Docker's
//! status and message in `error`.

pub(super) mod build;
pub(super) mod build_cache;
pub(super) mod build_context;
mod build_progress;
mod container_archive;
mod container_changes;
mod container_commit;
mod container_create;
mod container_export;
mod container_io;
mod container_mounts;
pub(super) mod container_stats;
pub(super) mod container_views;
mod containers;
mod exec;
pub(super) mod host;
mod image_import;
pub(super) mod image_models;
mod images;
mod networks;
mod progress_stream;
mod registry;
mod swarm;
pub(super) mod system;
pub(super) mod volumes;

use super::router::Route;

/// Every route, in match order (first match wins).
pub fn all() -> Vec<Route> {
    [
        system::routes(),
        images::routes(),
        containers::routes(),
        exec::routes(),
        networks::routes(),
        volumes::routes(),
        build::routes(),
        swarm::routes(),
        super::buildkit::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}
