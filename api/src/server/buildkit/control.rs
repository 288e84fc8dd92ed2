//! `moby.buildkit.v1.Control`: what the worker is (ListWorkers, Info), a
//! solve (the frontend runs in the client, which drives it through the
//! gateway; this call waits for the client's result and exports it) and
//! its status stream. Disk usage and prune work on the builder's cache
//! (`usage`).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::super::Daemon;
use super::proto::control::control_server::Control;
use super::proto::control::{
    BuildHistoryEvent, BuildHistoryRequest, DiskUsageRequest, DiskUsageResponse, InfoRequest,
    InfoResponse, ListWorkersRequest, ListWorkersResponse, PruneRequest, SolveRequest,
    SolveResponse, StatusRequest, StatusResponse, UsageRecord,
};
use super::proto::pb;
use super::proto::worker::{BuildkitVersion, WorkerRecord};
use super::solves;
use super::usage;

pub struct ControlService {
    daemon: Arc<Daemon>,
}

impl ControlService {
    pub fn new(daemon: Arc<Daemon>) -> ControlService {
        ControlService { daemon }
    }
}

/// hutch's version as BuildKit clients read it (buildx prints it in
/// `buildx ls` and `buildx inspect`).
pub fn version() -> BuildkitVersion {
    BuildkitVersion {
        package: "github.com/hutch/hutch".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        revision: env!("HUTCH_GIT_COMMIT").into(),
    }
}

/// The one worker: hutch's builder on this machine's platform. Its
/// `org.mobyproject.buildkit.worker.snapshotter` label is what dockerd's
/// worker carries with containerd's image store (Docker 29's default):
/// buildx then sends cache exports (`--cache-to type=registry`), the `oci`
/// and `docker` archive exporters and multi-platform requests instead of
/// refusing them itself. hutch does the first two and refuses the rest by
/// name; attestations stay refused by buildx, which also wants the
/// `exporter.image.attestations` LLB capability hutch does not claim.
pub fn worker(daemon: &Daemon) -> WorkerRecord {
    let p = hutch_images::oci::host_platform();
    let labels = [
        ("org.mobyproject.buildkit.worker.executor", "hutch"),
        ("org.mobyproject.buildkit.worker.network", "host"),
        ("org.mobyproject.buildkit.worker.selinux.enabled", "false"),
        ("org.mobyproject.buildkit.worker.snapshotter", "overlayfs"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain([
        (
            "org.mobyproject.buildkit.worker.hostname".to_owned(),
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
        ),
        // buildx resolves `--add-host NAME:host-gateway` with this, as
        // dockerd's worker gives it.
        (
            "org.mobyproject.buildkit.worker.moby.host-gateway-ip".to_owned(),
            daemon
                .engine
                .networks()
                .map_or_else(hutch_engine::network::host_gateway, |n| n.host_gateway())
                .to_string(),
        ),
    ])
    .collect();
    WorkerRecord {
        id: daemon.id.clone(),
        labels,
        platforms: worker_platforms(p),
        gc_policy: Vec::new(),
        buildkit_version: Some(version()),
    }
}

/// The platforms the worker builds RUN steps for, as BuildKit lists them
/// (`docker buildx ls`): this machine's, 32-bit x86 on x86-64, and those an
/// emulator was found for (see `hutch_engine::emulation`).
fn worker_platforms(host: hutch_images::oci::Platform) -> Vec<pb::Platform> {
    let platform = |architecture: &str, variant: &str| pb::Platform {
        architecture: architecture.to_owned(),
        os: "linux".to_owned(),
        variant: variant.to_owned(),
        os_version: String::new(),
    };
    let mut out = vec![pb::Platform {
        architecture: host.architecture.clone(),
        os: host.os,
        variant: host.variant.unwrap_or_default(),
        os_version: String::new(),
    }];
    if host.architecture == "amd64" {
        out.push(platform("386", ""));
    }
    for (arch, _) in hutch_engine::emulation::available() {
        match arch {
            "arm" => out.extend([platform("arm", "v7"), platform("arm", "v6")]),
            other => out.push(platform(other, "")),
        }
    }
    out
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<StatusResponse, Status>> + Send>>;
type PruneStream = Pin<Box<dyn Stream<Item = Result<UsageRecord, Status>> + Send>>;

#[tonic::async_trait]
impl Control for ControlService {
    async fn disk_usage(
        &self,
        _request: Request<DiskUsageRequest>,
    ) -> Result<Response<DiskUsageResponse>, Status> {
        let record = usage::disk_usage(&self.daemon).await?;
        Ok(Response::new(DiskUsageResponse { record }))
    }

    type PruneStream = PruneStream;

    async fn prune(
        &self,
        request: Request<PruneRequest>,
    ) -> Result<Response<Self::PruneStream>, Status> {
        let removed = usage::prune(&self.daemon, request.get_ref()).await?;
        Ok(Response::new(Box::pin(futures_util::stream::iter(
            removed.into_iter().map(Ok),
        ))))
    }

    async fn solve(
        &self,
        request: Request<SolveRequest>,
    ) -> Result<Response<SolveResponse>, Status> {
        let response = solves::control_solve(&self.daemon, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    type StatusStream = StatusStream;

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<Self::StatusStream>, Status> {
        let solve = self
            .daemon
            .buildkit
            .solves
            .entry(&request.into_inner().r#ref);
        Ok(Response::new(Box::pin(solve.status_stream())))
    }

    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        Ok(Response::new(ListWorkersResponse {
            record: vec![worker(&self.daemon)],
        }))
    }

    type ListenBuildHistoryStream =
        Pin<Box<dyn Stream<Item = Result<BuildHistoryEvent, Status>> + Send>>;

    async fn listen_build_history(
        &self,
        _request: Request<BuildHistoryRequest>,
    ) -> Result<Response<Self::ListenBuildHistoryStream>, Status> {
        Err(Status::unimplemented(
            "build history (docker buildx history) is not supported by hutch: \
             a build's steps, logs and result are in its own output",
        ))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        Ok(Response::new(InfoResponse {
            buildkit_version: Some(version()),
        }))
    }
}
