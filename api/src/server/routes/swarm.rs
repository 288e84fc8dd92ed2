//! Swarm mode and plugins, which hutch does not offer, answered as a Docker
//! daemon outside a swarm and without plugins answers: swarm objects 503
//! "not a swarm manager", the plugin list empty, a named plugin 404.

use hyper::{Response, StatusCode};

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};
use super::super::router::{route, Route};

/// moby's `errNoSwarm`-style text for a node outside a swarm.
const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \
     \"docker swarm join\" to connect this node to swarm and try again.";

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/swarm" => not_manager),
        route!(GET "/swarm/unlockkey" => not_manager),
        route!(POST "/swarm/update" => not_manager),
        route!(POST "/swarm/unlock" => not_manager),
        route!(POST "/swarm/leave" => not_in_swarm),
        route!(POST "/swarm/init" => no_swarm_mode),
        route!(POST "/swarm/join" => no_swarm_mode),
        route!(GET "/nodes" => not_manager),
        route!(GET "/nodes/{id}" => not_manager),
        route!(DELETE "/nodes/{id}" => not_manager),
        route!(POST "/nodes/{id}/update" => not_manager),
        route!(GET "/services" => not_manager),
        route!(POST "/services/create" => not_manager),
        route!(GET "/services/{id}" => not_manager),
        route!(DELETE "/services/{id}" => not_manager),
        route!(POST "/services/{id}/update" => not_manager),
        route!(GET "/services/{id}/logs" => not_manager),
        route!(GET "/tasks" => not_manager),
        route!(GET "/tasks/{id}" => not_manager),
        route!(GET "/tasks/{id}/logs" => not_manager),
        route!(GET "/secrets" => not_manager),
        route!(POST "/secrets/create" => not_manager),
        route!(GET "/secrets/{id}" => not_manager),
        route!(DELETE "/secrets/{id}" => not_manager),
        route!(POST "/secrets/{id}/update" => not_manager),
        route!(GET "/configs" => not_manager),
        route!(POST "/configs/create" => not_manager),
        route!(GET "/configs/{id}" => not_manager),
        route!(DELETE "/configs/{id}" => not_manager),
        route!(POST "/configs/{id}/update" => not_manager),
        route!(GET "/plugins" => no_plugins),
        route!(GET "/plugins/privileges" => plugins_unsupported),
        route!(POST "/plugins/pull" => plugins_unsupported),
        route!(POST "/plugins/create" => plugins_unsupported),
        route!(GET "/plugins/{name:.*}/json" => no_such_plugin),
        route!(DELETE "/plugins/{name:.*}" => no_such_plugin),
        route!(POST "/plugins/{name:.*}/enable" => no_such_plugin),
        route!(POST "/plugins/{name:.*}/disable" => no_such_plugin),
        route!(POST "/plugins/{name:.*}/upgrade" => no_such_plugin),
        route!(POST "/plugins/{name:.*}/push" => no_such_plugin),
        route!(POST "/plugins/{name:.*}/set" => no_such_plugin),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

async fn not_manager(_req: ApiRequest) -> Reply {
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        NOT_A_MANAGER,
    ))
}

/// moby's answer to `swarm leave` outside a swarm.
async fn not_in_swarm(_req: ApiRequest) -> Reply {
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not part of a swarm",
    ))
}

async fn no_swarm_mode(_req: ApiRequest) -> Reply {
    Err(ApiError::unsupported("swarm mode"))
}

async fn no_plugins(_req: ApiRequest) -> Reply {
    Ok(response::json(StatusCode::OK, &Vec::<()>::new()))
}

async fn plugins_unsupported(_req: ApiRequest) -> Reply {
    Err(ApiError::unsupported("managed plugins"))
}

/// moby's text for a plugin it does not have.
async fn no_such_plugin(req: ApiRequest) -> Reply {
    Err(ApiError::not_found(format!(
        "plugin \"{}\" not found",
        req.param("name")
    )))
}
