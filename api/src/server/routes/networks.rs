//! Network endpoints (`docker network ...`), in Docker's wire shapes, over
//! the engine's [`Networks`]: list with moby's filters, create (bridge
//! driver only), inspect, remove, prune, connect and disconnect. Each
//! change is published on the event bus as Docker's `network` events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard_stubs::models::EventMessageTypeEnum;
use hutch_engine::network::{CreateNetwork, EndpointOptions, NetworkInfo, Networks};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::error::ApiError;
use super::super::events::{now_nanos, Event};
use super::super::query::Filters;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};
use super::super::router::{route, Route};
use super::super::Daemon;

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/networks" => list),
        route!(POST "/networks/create" => create),
        route!(POST "/networks/prune" => prune),
        route!(GET "/networks/{id}" => inspect),
        route!(DELETE "/networks/{id}" => remove),
        route!(POST "/networks/{id}/connect" => connect),
        route!(POST "/networks/{id}/disconnect" => disconnect),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

/// The predefined networks, which cannot be removed.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

fn networks(daemon: &Daemon) -> Result<Arc<Networks>, ApiError> {
    daemon.engine.networks().cloned().ok_or_else(|| {
        ApiError::unsupported("networks (networking could not be set up: see the daemon's log)")
    })
}

/// Runs a blocking networks call on a blocking thread.
async fn with_networks<T, F>(daemon: &Daemon, op: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Networks) -> Result<T, ApiError> + Send + 'static,
{
    let nets = networks(daemon)?;
    tokio::task::spawn_blocking(move || op(&nets))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn publish(daemon: &Daemon, action: &str, net: &NetworkInfo, container: Option<&str>) {
    let mut attributes = BTreeMap::new();
    attributes.insert("name".to_string(), net.name.clone());
    attributes.insert("type".to_string(), net.driver.clone());
    if let Some(c) = container {
        attributes.insert("container".to_string(), c.to_string());
    }
    daemon.events.publish(Event {
        kind: EventMessageTypeEnum::NETWORK,
        action: action.to_string(),
        actor_id: net.id.clone(),
        attributes,
        time_nano: now_nanos(),
    });
}

/// A network as Docker's `GET /networks/{id}` shows it; `containers`
/// leaves the map empty, as Docker's list does.
pub fn wire(net: &NetworkInfo, containers: bool) -> Value {
    let config: Vec<Value> = net
        .ipam
        .iter()
        .map(|c| {
            let mut pool = json!({"Subnet": c.subnet, "Gateway": c.gateway});
            if !c.ip_range.is_empty() {
                pool["IPRange"] = json!(c.ip_range);
            }
            if !c.auxiliary_addresses.is_empty() {
                pool["AuxiliaryAddresses"] = json!(c.auxiliary_addresses);
            }
            pool
        })
        .collect();
    let members: BTreeMap<&String, Value> = if containers {
        net.containers
            .iter()
            .map(|(id, e)| {
                (
                    id,
                    json!({
                        "Name": e.name,
                        "EndpointID": e.endpoint_id,
                        "MacAddress": e.mac_address,
                        "IPv4Address": e.ipv4_address,
                        "IPv6Address": e.ipv6_address,
                    }),
                )
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    json!({
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": net.scope,
        "Driver": net.driver,
        "EnableIPv4": true,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": members,
        "Options": net.options,
        "Labels": net.labels,
    })
}

/// moby's network filters.
fn matches(net: &NetworkInfo, f: &Filters) -> Result<bool, ApiError> {
    let predefined = PREDEFINED.contains(&net.name.as_str());
    let any = |key: &str, test: &dyn Fn(&str) -> bool| -> bool {
        !f.contains_key(key) || f.values(key).any(test)
    };
    if !any("name", &|v| net.name.contains(v))
        || !any("id", &|v| net.id.starts_with(v))
        || !any("driver", &|v| v == net.driver)
        || !any("scope", &|v| v == "local")
        || !any("type", &|v| {
            (v == "custom" && !predefined) || (v == "builtin" && predefined)
        })
    {
        return Ok(false);
    }
    for v in f.values("type") {
        if v != "custom" && v != "builtin" {
            return Err(ApiError::bad_request(format!(
                "invalid filter: 'type'='{v}'"
            )));
        }
    }
    if !label_matches(&net.labels, f) {
        return Ok(false);
    }
    if let Some(dangling) = f.bool("dangling")? {
        let is_dangling = !predefined && net.containers.is_empty();
        if dangling != is_dangling {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `label=KEY` or `label=KEY=VALUE`, all of them.
fn label_matches(labels: &BTreeMap<String, String>, f: &Filters) -> bool {
    f.values("label").all(|l| has_label(labels, l))
}

fn has_label(labels: &BTreeMap<String, String>, l: &str) -> bool {
    match l.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(l),
    }
}

async fn list(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["name", "id", "label", "driver", "type", "dangling", "scope"])?;
    let nets = with_networks(&req.daemon, |n| Ok(n.list()?)).await?;
    let mut out = Vec::new();
    for net in &nets {
        if matches(net, &filters)? {
            out.push(wire(net, false));
        }
    }
    Ok(response::json(StatusCode::OK, &out))
}

async fn inspect(req: ApiRequest) -> Reply {
    let id = req.param("id").to_string();
    let net = with_networks(&req.daemon, move |n| Ok(n.inspect(&id)?)).await?;
    Ok(response::json(StatusCode::OK, &wire(&net, true)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamPool {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
    auxiliary_addresses: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamPool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    ingress: bool,
    config_only: bool,
    config_from: Option<Value>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// The create body as [`CreateNetwork`], with 400s for what hutch cannot do.
fn create_request(body: CreateBody) -> Result<CreateNetwork, ApiError> {
    if body.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    let driver = body.driver.clone().filter(|d| !d.is_empty());
    if let Some(d) = driver.as_deref().filter(|d| *d != "bridge") {
        return Err(ApiError::bad_request(format!(
            "network driver {d:?} is not supported by hutch: only \"bridge\" networks can be created"
        )));
    }
    if body.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request(
            "IPv6 networks are not supported by hutch yet",
        ));
    }
    if body.ingress || body.config_only || body.config_from.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "ingress and config-only networks are swarm features, not supported by hutch",
        ));
    }
    let ipam = body.ipam.unwrap_or_default();
    if let Some(d) = ipam
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "default")
    {
        return Err(ApiError::bad_request(format!(
            "IPAM driver {d:?} is not supported by hutch (only \"default\")"
        )));
    }
    let pools = ipam.config.unwrap_or_default();
    if pools.len() > 1 {
        return Err(ApiError::bad_request(
            "hutch supports one IPv4 subnet per network",
        ));
    }
    let pool = pools.into_iter().next().unwrap_or_default();
    let ip_range = pool.ip_range.filter(|r| !r.is_empty());
    if ip_range.is_some() && pool.subnet.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("an ip range needs a subnet"));
    }
    let aux_addresses = pool
        .auxiliary_addresses
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ip)| match ip.parse() {
            Ok(addr) => Ok((name, addr)),
            Err(_) => Err(ApiError::bad_request(format!(
                "invalid auxiliary address {name}={ip}: want an IPv4 address"
            ))),
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    let gateway = match pool.gateway.as_deref().filter(|g| !g.is_empty()) {
        Some(g) => Some(g.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid gateway address {g:?}: want an IPv4 address"
            ))
        })?),
        None => None,
    };
    if gateway.is_some() && pool.subnet.is_none() {
        return Err(ApiError::bad_request("a gateway needs a subnet"));
    }
    Ok(CreateNetwork {
        name: body.name,
        driver,
        subnet: pool.subnet.filter(|s| !s.is_empty()),
        gateway,
        ip_range,
        aux_addresses,
        internal: body.internal,
        labels: body.labels.unwrap_or_default(),
        options: body.options.unwrap_or_default(),
    })
}

async fn create(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let body: CreateBody = req.json().await?;
    let request = create_request(body)?;
    let net = with_networks(&daemon, move |n| Ok(n.create(&request)?)).await?;
    publish(&daemon, "create", &net, None);
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"Id": net.id, "Warning": ""}),
    ))
}

async fn remove(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let id = req.param("id").to_string();
    let net = with_networks(&daemon, move |n| {
        let net = n.inspect(&id)?;
        if PREDEFINED.contains(&net.name.as_str()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is a pre-defined network and cannot be removed",
                    net.name
                ),
            ));
        }
        n.remove(&net.id)?;
        Ok(net)
    })
    .await?;
    publish(&daemon, "destroy", &net, None);
    Ok(response::empty(StatusCode::NO_CONTENT))
}

async fn prune(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let filters = req.query.filters()?;
    filters.allow_only(&["label", "label!", "until"])?;
    let until = match filters.single("until")? {
        Some(v) => Some(super::super::query::timestamp(
            v,
            chrono::Utc::now().timestamp(),
        )?),
        None => None,
    };
    let removed = with_networks(&daemon, move |n| {
        let mut removed = Vec::new();
        for net in n.list()? {
            let unused = !PREDEFINED.contains(&net.name.as_str()) && net.containers.is_empty();
            let old_enough = until.is_none_or(|t| {
                chrono::DateTime::parse_from_rfc3339(&net.created).is_ok_and(|c| c.timestamp() < t)
            });
            let not_labelled = filters.values("label!").all(|l| !has_label(&net.labels, l));
            if unused && old_enough && not_labelled && label_matches(&net.labels, &filters) {
                match n.remove(&net.id) {
                    Ok(()) => removed.push(net),
                    Err(e) => tracing::warn!(network = %net.name, %e, "pruning"),
                }
            }
        }
        Ok(removed)
    })
    .await?;
    for net in &removed {
        publish(&daemon, "destroy", net, None);
    }
    let names: Vec<&String> = removed.iter().map(|n| &n.name).collect();
    Ok(response::json(
        StatusCode::OK,
        &json!({ "NetworksDeleted": names }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointBody {
    aliases: Option<Vec<String>>,
    /// `network connect --link NAME[:ALIAS]`.
    links: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointBody>,
    force: bool,
}

async fn connect(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let network = req.param("id").to_string();
    let body: ConnectBody = req.json().await?;
    if body.container.is_empty() {
        return Err(ApiError::bad_request("no container specified"));
    }
    let ep = body.endpoint_config.unwrap_or_default();
    let ipv4_address = match ep
        .ipam_config
        .and_then(|c| c.ipv4_address)
        .filter(|a| !a.is_empty())
    {
        Some(a) => Some(
            a.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {a}")))?,
        ),
        None => None,
    };
    let opts = EndpointOptions {
        aliases: ep.aliases.unwrap_or_default(),
        ipv4_address,
        mac_address: None,
    };
    let links = ep.links.unwrap_or_default();
    let container = body.container.clone();
    let (net, id, running) = daemon
        .with_engine(move |e| {
            let id = e.resolve(&container)?;
            e.network_connect(&network, &id, &opts, &links)?;
            let net = e.networks().map(|n| n.inspect(&network)).transpose()?;
            let running = e.inspect(&id)?.state.running;
            Ok((net, id, running))
        })
        .await?;
    // As Docker: a container that is not running is connected (and the
    // event sent) when it starts.
    if let (Some(net), true) = (net, running) {
        publish(&daemon, "connect", &net, Some(&id));
    }
    Ok(response::empty(StatusCode::OK))
}

async fn disconnect(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let network = req.param("id").to_string();
    let body: ConnectBody = req.json().await?;
    if body.container.is_empty() {
        return Err(ApiError::bad_request("no container specified"));
    }
    let _ = body.force;
    let container = body.container.clone();
    let (net, id, running) = daemon
        .with_engine(move |e| {
            let id = e.resolve(&container)?;
            let net = e.networks().map(|n| n.inspect(&network)).transpose()?;
            let running = e.inspect(&id)?.state.running;
            e.network_disconnect(&network, &id)?;
            Ok((net, id, running))
        })
        .await?;
    if let (Some(net), true) = (net, running) {
        publish(&daemon, "disconnect", &net, Some(&id));
    }
    Ok(response::empty(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies() {
        let parse = |v: Value| {
            serde_json::from_value::<CreateBody>(v)
                .map_err(|e| e.to_string())
                .and_then(|b| create_request(b).map_err(|e| e.status.to_string()))
        };
        let ok = parse(
            json!({"Name": "app", "CheckDuplicate": true, "Driver": "bridge",
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1"}]},
            "Labels": {"a": "b"}, "Options": {"com.docker.network.bridge.name": "x"}}),
        );
        assert!(
            ok.as_ref()
                .is_ok_and(|c| c.subnet.as_deref() == Some("10.9.0.0/24")
                    && c.gateway
                        == Some(
                            "10.9.0.1"
                                .parse()
                                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
                        )
                    && c.labels.get("a").is_some_and(|v| v == "b")),
            "{ok:?}"
        );
        assert!(parse(json!({"Name": "x", "Driver": "overlay"})).is_err());
        assert!(parse(json!({"Name": ""})).is_err());
        assert!(parse(json!({"Name": "x", "IPAM": {"Config": [{"Gateway": "bad"}]}})).is_err());
        assert!(parse(json!({"Name": "x", "EnableIPv6": true})).is_err());
    }
}
