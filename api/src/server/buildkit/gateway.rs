//! `moby.buildkit.v1.frontend.LLBBridge` for a build function running in
//! the client (buildx's): `Ping` says what hutch's gateway can do, `Solve`
//! with the `dockerfile.v0` frontend builds the image and hands back a ref
//! naming it, `Return` passes the client's final result to the waiting
//! `Control.Solve`. Calls name their solve by the
//! `buildkit-controlapi-buildid` metadata.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::super::Daemon;
use super::control::worker;
use super::frontend;
use super::proto::gateway::llb_bridge_server::LlbBridge;
use super::proto::gateway::{
    result, EvaluateRequest, EvaluateResponse, PingRequest, PongResponse, ReadDirRequest,
    ReadDirResponse, ReadFileRequest, ReadFileResponse, Ref, ResolveImageConfigRequest,
    ResolveImageConfigResponse, Result as PbResult, ReturnRequest, ReturnResponse, SolveRequest,
    SolveResponse, StatFileRequest, StatFileResponse, WarnRequest, WarnResponse,
};
use super::proto::moby::buildkit::v1::apicaps::ApiCap;
use super::solves::Solve;

const BUILD_ID: &str = "buildkit-controlapi-buildid";

/// The gateway capabilities hutch has. A client checks these before it
/// uses a feature; what is missing it either works around or refuses.
const CAPS: &[&str] = &[
    "solve.base",
    "solve.inlinereturn",
    "return",
    "proto.refarray",
    "gateway.evaluate",
    "gateway.warnings",
    // A result's definition (`Ref.def`): buildx turns it into another bake
    // target's named context (see `result_def`).
    "reference.output",
];

/// LLB capabilities. Only the cache backends buildx checks for: without
/// them it drops `type=gha` and `type=s3` cache options without a word,
/// and the build runs uncached; with them the options reach hutch, which
/// refuses them by name (as BuildKit refuses a backend it lacks) so that
/// a CI job does not lose its cache silently.
const LLB_CAPS: &[&str] = &["cache.gha", "cache.s3"];

pub struct GatewayService {
    daemon: Arc<Daemon>,
}

impl GatewayService {
    pub fn new(daemon: Arc<Daemon>) -> GatewayService {
        GatewayService { daemon }
    }

    fn solve_of<T>(&self, request: &Request<T>) -> Result<Arc<Solve>, Status> {
        let id = request
            .metadata()
            .get(BUILD_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "no build named: a gateway call needs {BUILD_ID} metadata"
                ))
            })?;
        Ok(self.daemon.buildkit.solves.entry(id))
    }
}

#[tonic::async_trait]
impl LlbBridge for GatewayService {
    async fn resolve_image_config(
        &self,
        _request: Request<ResolveImageConfigRequest>,
    ) -> Result<Response<ResolveImageConfigResponse>, Status> {
        Err(Status::unimplemented(
            "resolving image configs through the gateway is not supported by hutch",
        ))
    }

    async fn solve(
        &self,
        request: Request<SolveRequest>,
    ) -> Result<Response<SolveResponse>, Status> {
        let solve = self.solve_of(&request)?;
        let req = request.into_inner();
        if let Some(sub) = req.frontend_opt.get("requestid").filter(|r| !r.is_empty()) {
            // buildx's --check and --call: answered, nothing built.
            let metadata =
                super::subrequest::answer(&self.daemon, &solve, sub, &req.frontend_opt).await?;
            return Ok(Response::new(SolveResponse {
                r#ref: String::new(),
                result: Some(PbResult {
                    result: None,
                    metadata,
                }),
            }));
        }
        if req.frontend != frontend::DOCKERFILE {
            return Err(Status::unimplemented(if req.frontend.is_empty() {
                "hutch builds Dockerfiles (frontend dockerfile.v0) only: LLB definitions are not supported".to_owned()
            } else {
                format!(
                    "frontend {} is not supported by hutch (only dockerfile.v0)",
                    req.frontend
                )
            }));
        }
        // Another target's result as a named context (bake's `target:`).
        let opts = super::result_def::resolve_inputs(&req.frontend_opt, &req.frontend_inputs)
            .map_err(Status::unimplemented)?;
        let built = frontend::solve(&self.daemon, &solve, &opts).await?;
        let id = built.id.to_string();
        let config = self
            .daemon
            .with_images({
                let id = id.clone();
                move |s| s.inspect(&id)
            })
            .await
            .map_err(|e| Status::internal(e.message))
            .map(|d| serde_json::to_vec(&d.config).unwrap_or_default())?;
        solve.keep_result(&id, built);
        let mut metadata = std::collections::HashMap::new();
        metadata.insert("containerimage.config".to_owned(), config);
        let response = if req.allow_result_return {
            SolveResponse {
                r#ref: String::new(),
                result: Some(PbResult {
                    // buildx turns it into another target's input.
                    result: Some(result::Result::Ref(Ref {
                        def: Some(super::result_def::of_image(&id)),
                        id,
                    })),
                    metadata,
                }),
            }
        } else {
            SolveResponse {
                r#ref: id,
                result: None,
            }
        };
        Ok(Response::new(response))
    }

    async fn read_file(
        &self,
        _request: Request<ReadFileRequest>,
    ) -> Result<Response<ReadFileResponse>, Status> {
        Err(Status::unimplemented(
            "reading files of a result is not supported by hutch",
        ))
    }

    async fn read_dir(
        &self,
        _request: Request<ReadDirRequest>,
    ) -> Result<Response<ReadDirResponse>, Status> {
        Err(Status::unimplemented(
            "reading directories of a result is not supported by hutch",
        ))
    }

    async fn stat_file(
        &self,
        _request: Request<StatFileRequest>,
    ) -> Result<Response<StatFileResponse>, Status> {
        Err(Status::unimplemented(
            "stat of a result's files is not supported by hutch",
        ))
    }

    async fn evaluate(
        &self,
        _request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        // A ref hutch hands out is an image already built.
        Ok(Response::new(EvaluateResponse {}))
    }

    async fn ping(&self, _request: Request<PingRequest>) -> Result<Response<PongResponse>, Status> {
        let caps = |ids: &[&str]| {
            ids.iter()
                .map(|id| ApiCap {
                    id: (*id).to_owned(),
                    enabled: true,
                    ..ApiCap::default()
                })
                .collect()
        };
        Ok(Response::new(PongResponse {
            frontend_api_caps: caps(CAPS),
            llb_caps: caps(LLB_CAPS),
            workers: vec![worker(&self.daemon)],
        }))
    }

    async fn r#return(
        &self,
        request: Request<ReturnRequest>,
    ) -> Result<Response<ReturnResponse>, Status> {
        let solve = self.solve_of(&request)?;
        solve.set_returned(request.into_inner())?;
        Ok(Response::new(ReturnResponse {}))
    }

    async fn warn(&self, request: Request<WarnRequest>) -> Result<Response<WarnResponse>, Status> {
        let solve = self.solve_of(&request)?;
        let warn = request.into_inner();
        solve.publish(super::proto::control::StatusResponse {
            warnings: vec![super::proto::control::VertexWarning {
                vertex: warn.digest,
                level: warn.level,
                short: warn.short,
                detail: warn.detail,
                url: warn.url,
            }],
            ..Default::default()
        });
        Ok(Response::new(WarnResponse {}))
    }
}
