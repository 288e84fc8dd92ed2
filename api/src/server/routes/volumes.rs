//! Volume endpoints: they wait for the runtime's volumes (issue 4).

use hyper::Response;

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::Body;
use super::super::router::{route, Route};

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/volumes" => pending),
        route!(POST "/volumes/create" => pending),
        route!(POST "/volumes/prune" => pending),
        route!(GET "/volumes/{name}" => pending),
        route!(PUT "/volumes/{name}" => pending),
        route!(DELETE "/volumes/{name}" => pending),
    ]
}

async fn pending(_req: ApiRequest) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_yet("volumes", 4))
}
