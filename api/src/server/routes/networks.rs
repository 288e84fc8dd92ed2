//! Network endpoints: they wait for networking (issue 6).

use hyper::Response;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::super::router::{route, Route};

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/networks" => pending),
        route!(POST "/networks/create" => pending),
        route!(POST "/networks/prune" => pending),
        route!(GET "/networks/{id}" => pending),
        route!(DELETE "/networks/{id}" => pending),
        route!(POST "/networks/{id}/connect" => pending),
        route!(POST "/networks/{id}/disconnect" => pending),
    ]
}

async fn pending(_req: ApiRequest) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_yet("networks", 6))
}
