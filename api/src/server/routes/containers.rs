//! Container endpoints. They wait for the container runtime (issue 4): each
//! is routed already, so clients get an honest 501 naming what is missing
//! rather than "page not found".

use hyper::Response;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::super::router::{route, Route};

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/containers/json" => pending),
        route!(POST "/containers/create" => pending),
        route!(POST "/containers/prune" => pending),
        route!(GET "/containers/{id}/json" => pending),
        route!(GET "/containers/{id}/top" => pending),
        route!(GET "/containers/{id}/logs" => pending),
        route!(GET "/containers/{id}/changes" => pending),
        route!(GET "/containers/{id}/export" => pending),
        route!(GET "/containers/{id}/stats" => pending),
        route!(GET "/containers/{id}/attach/ws" => pending),
        route!(GET "/containers/{id}/archive" => pending),
        route!(HEAD "/containers/{id}/archive" => pending),
        route!(PUT "/containers/{id}/archive" => pending),
        route!(POST "/containers/{id}/resize" => pending),
        route!(POST "/containers/{id}/start" => pending),
        route!(POST "/containers/{id}/stop" => pending),
        route!(POST "/containers/{id}/restart" => pending),
        route!(POST "/containers/{id}/kill" => pending),
        route!(POST "/containers/{id}/update" => pending),
        route!(POST "/containers/{id}/rename" => pending),
        route!(POST "/containers/{id}/pause" => pending),
        route!(POST "/containers/{id}/unpause" => pending),
        route!(POST "/containers/{id}/attach" => pending),
        route!(POST "/containers/{id}/wait" => pending),
        route!(DELETE "/containers/{id}" => pending),
        route!(POST "/commit" => pending),
    ]
}

async fn pending(_req: ApiRequest) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_yet("containers", 4))
}
