//! BuildKit's API as dockerd serves it, so that buildx's `docker` driver
//! (what `docker build` runs whenever the buildx plugin is installed) builds
//! on hutch: gRPC on `POST /grpc` (the control API and the frontend
//! gateway) and client sessions on `POST /session` (the build context and
//! the Dockerfile, pulled from the client by fsutil's DiffCopy). The only
//! frontend is `dockerfile.v0`, run by hutch's own builder; LLB definitions
//! are refused.
//!
//! Modules: `h2c` (the connection takeover), `sessions` (the client's
//! side of the conversation), `serve` (gRPC on a taken-over connection),
//! `control` and `gateway` (the two services), `solves` (builds in flight
//! by ref, their status streams and results), `filesync` (a DiffCopy
//! receiver writing a directory), `frontend` (a Dockerfile solve on the
//! builder), `status` (the builder's progress as BuildKit vertexes), and
//! the client's session services the builder uses: `secrets`, `ssh`,
//! `content` (local caches), `output` (exported files).

mod content;
mod control;
mod export;
mod filemode;
mod filesync;
mod frontend;
mod gateway;
mod h2c;
mod output;
mod proto;
mod push;
mod result_def;
mod secrets;
mod serve;
mod sessions;
mod solves;
mod ssh;
mod status;
mod subrequest;
mod usage;

use super::router::{route, Route};

/// The daemon's BuildKit state: open sessions and solves in flight.
#[derive(Default)]
pub struct BuildKit {
    pub sessions: sessions::Sessions,
    pub solves: solves::Solves,
}

impl std::fmt::Debug for BuildKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildKit").finish_non_exhaustive()
    }
}

pub fn routes() -> Vec<Route> {
    vec![
        route!(POST "/grpc" => serve::grpc),
        route!(POST "/session" => sessions::open),
    ]
}
