//! Build endpoints: they wait for the builder (issue 7). BuildKit's
//! `/grpc` and `/session` are out of scope: buildx then reports the 404.

use hyper::Response;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::super::router::{route, Route};

pub fn routes() -> Vec<Route> {
    vec![
        route!(POST "/build" => pending),
        route!(POST "/build/prune" => pending),
        route!(POST "/build/cancel" => pending),
    ]
}

async fn pending(_req: ApiRequest) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_yet("building images through the API", 7))
}
