//! `POST /grpc`: the taken-over connection becomes an HTTP/2 server for
//! the control and gateway services (tonic's router over hyper's HTTP/2).
//! Methods hutch does not serve answer gRPC's `Unimplemented`, logged so
//! that a new client's needs show in the daemon log.

use hyper::Response;
use hyper_util::rt::TokioExecutor;
use hyper_util::service::TowerToHyperService;
use tonic::service::Routes;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::control::ControlService;
use super::gateway::GatewayService;
use super::h2c;
use super::proto::control::control_server::ControlServer;
use super::proto::gateway::llb_bridge_server::LlbBridgeServer;

pub async fn grpc(mut req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let upgrade = h2c::take(&mut req)?;
    let daemon = req.daemon.clone();
    Ok(h2c::switch(upgrade, move |io| async move {
        let routes = Routes::new(ControlServer::new(ControlService::new(daemon.clone())))
            .add_service(LlbBridgeServer::new(GatewayService::new(daemon)));
        let logged = tower::ServiceBuilder::new()
            .map_request(|req: hyper::http::Request<hyper::body::Incoming>| {
                tracing::debug!(path = req.uri().path(), "buildkit call");
                req
            })
            .service(routes);
        let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, TowerToHyperService::new(logged))
            .await;
        if let Err(err) = served {
            tracing::debug!(%err, "buildkit gRPC connection ended");
        }
    }))
}
