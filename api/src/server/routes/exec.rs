//! Exec endpoints: they wait for the container runtime (issue 4).

use hyper::Response;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::super::router::{route, Route};

pub fn routes() -> Vec<Route> {
    vec![
        route!(POST "/containers/{id}/exec" => pending),
        route!(POST "/exec/{id}/start" => pending),
        route!(POST "/exec/{id}/resize" => pending),
        route!(GET "/exec/{id}/json" => pending),
    ]
}

async fn pending(_req: ApiRequest) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_yet("exec", 4))
}
