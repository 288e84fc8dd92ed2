//! Volume endpoints (`docker volume ...`), on the engine's local volume
//! store: list with moby's filters, create (idempotent), inspect, remove
//! (409 while in use), prune (anonymous volumes unless `all=true`), and
//! Docker's answer to `PUT` for a volume that is not a cluster volume.

use std::collections::BTreeMap;

use bollard_stubs::models::{EventMessageTypeEnum, VolumeCreateOptions};
use hutch_engine::volumes::{Volume, VolumeCreate};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::super::error::ApiError;
use super::super::events::{now_nanos, Event};
use super::super::query::Filters;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};
use super::super::router::{route, Route};
use super::super::Daemon;

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/volumes" => list),
        route!(POST "/volumes/create" => create),
        route!(POST "/volumes/prune" => prune),
        route!(GET "/volumes/{name}" => inspect),
        route!(PUT "/volumes/{name}" => update),
        route!(DELETE "/volumes/{name}" => remove),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

/// Docker's `Volume`: `Labels` and `Options` are `null` when empty, and
/// `UsageData` is `null` outside `system df`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeBody {
    pub created_at: String,
    pub driver: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub mountpoint: String,
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
    pub scope: &'static str,
    pub usage_data: Option<UsageData>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageData {
    pub size: i64,
    pub ref_count: i64,
}

pub fn volume_body(v: &Volume, usage: Option<UsageData>) -> VolumeBody {
    VolumeBody {
        created_at: v.created_at.clone(),
        driver: v.driver.clone(),
        labels: (!v.labels.is_empty()).then(|| v.labels.clone()),
        mountpoint: v.mountpoint.display().to_string(),
        name: v.name.clone(),
        options: (!v.options.is_empty()).then(|| v.options.clone()),
        scope: "local",
        usage_data: usage,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListBody {
    volumes: Vec<VolumeBody>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PruneBody {
    volumes_deleted: Vec<String>,
    space_reclaimed: u64,
}

fn publish(daemon: &Daemon, action: &str, v: &Volume) {
    let mut attributes = BTreeMap::new();
    attributes.insert("driver".to_string(), v.driver.clone());
    daemon.events.publish(Event {
        kind: EventMessageTypeEnum::VOLUME,
        action: action.to_string(),
        actor_id: v.name.clone(),
        attributes,
        time_nano: now_nanos(),
    });
}

/// moby's `label` filter: `key` or `key=value`.
fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
        None => labels.contains_key(filter),
    }
}

/// The label filters (`label`, `label!`) every volume must pass.
fn labels_pass(filters: &Filters, v: &Volume) -> bool {
    filters.values("label").all(|l| label_matches(&v.labels, l))
        && !filters
            .values("label!")
            .any(|l| label_matches(&v.labels, l))
}

async fn list(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["dangling", "driver", "label", "label!", "name"])?;
    let dangling = filters.bool("dangling")?;
    let all = req.daemon.with_engine(|e| e.volume_list()).await?;
    let volumes = all
        .iter()
        .filter(|u| dangling.is_none_or(|d| d == u.users.is_empty()))
        .filter(|u| {
            let drivers: Vec<&str> = filters.values("driver").collect();
            drivers.is_empty() || drivers.contains(&u.volume.driver.as_str())
        })
        .filter(|u| {
            let names: Vec<&str> = filters.values("name").collect();
            names.is_empty() || names.iter().any(|n| u.volume.name.contains(n))
        })
        .filter(|u| labels_pass(&filters, &u.volume))
        .map(|u| volume_body(&u.volume, None))
        .collect();
    Ok(response::json(
        StatusCode::OK,
        &ListBody {
            volumes,
            warnings: Vec::new(),
        },
    ))
}

async fn create(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let body: VolumeCreateOptions = req.json().await?;
    if body.cluster_volume_spec.is_some() {
        return Err(ApiError::unsupported("cluster volumes (swarm)"));
    }
    let create = VolumeCreate {
        name: body.name.filter(|n| !n.is_empty()),
        driver: body.driver.unwrap_or_default(),
        labels: body.labels.unwrap_or_default().into_iter().collect(),
        options: body.driver_opts.unwrap_or_default().into_iter().collect(),
    };
    let existed = match &create.name {
        Some(name) => {
            let name = name.clone();
            daemon
                .with_engine(move |e| Ok(e.volume_inspect(&name).is_ok()))
                .await?
        }
        None => false,
    };
    let volume = daemon
        .with_engine(move |e| e.volume_create(&create))
        .await?;
    if !existed {
        publish(&daemon, "create", &volume);
    }
    Ok(response::json(
        StatusCode::CREATED,
        &volume_body(&volume, None),
    ))
}

async fn inspect(req: ApiRequest) -> Reply {
    let name = req.param("name").to_string();
    let volume = req
        .daemon
        .with_engine(move |e| e.volume_inspect(&name))
        .await?;
    Ok(response::json(StatusCode::OK, &volume_body(&volume, None)))
}

/// `PUT /volumes/{name}` updates cluster volumes only; without a swarm
/// manager moby answers this 503.
async fn update(_req: ApiRequest) -> Reply {
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "volume update only valid for cluster volumes, but swarm is unavailable",
    ))
}

async fn remove(req: ApiRequest) -> Reply {
    let force = req.query.bool("force");
    let name = req.param("name").to_string();
    let daemon = req.daemon.clone();
    let removed = daemon
        .with_engine(move |e| {
            let v = e.volume_inspect(&name).ok();
            e.volume_remove(&name, force).map(|()| v)
        })
        .await?;
    if let Some(v) = removed {
        publish(&daemon, "destroy", &v);
    }
    Ok(response::empty(StatusCode::NO_CONTENT))
}

async fn prune(req: ApiRequest) -> Reply {
    let filters = req.query.filters()?;
    filters.allow_only(&["label", "label!", "all"])?;
    let all = filters.bool("all")?.unwrap_or(false);
    let daemon = req.daemon.clone();
    let (pruned, volumes) = daemon
        .with_engine(move |e| {
            let before = e.volume_list()?;
            let pruned = e.volume_prune(all, &|v| labels_pass(&filters, v))?;
            Ok((pruned, before))
        })
        .await?;
    for v in volumes
        .iter()
        .filter(|u| pruned.names.contains(&u.volume.name))
    {
        publish(&daemon, "destroy", &v.volume);
    }
    Ok(response::json(
        StatusCode::OK,
        &PruneBody {
            volumes_deleted: pruned.names,
            space_reclaimed: pruned.bytes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_labels_and_options_are_null_on_the_wire() -> Result<(), serde_json::Error> {
        let v = Volume {
            name: "data".into(),
            driver: "local".into(),
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created_at: "2024-01-01T00:00:00Z".into(),
            mountpoint: "/var/lib/hutch/volumes/data/_data".into(),
        };
        let json = serde_json::to_value(volume_body(&v, None))?;
        assert_eq!(
            json,
            serde_json::json!({"CreatedAt": "2024-01-01T00:00:00Z", "Driver": "local",
                "Labels": null, "Mountpoint": "/var/lib/hutch/volumes/data/_data",
                "Name": "data", "Options": null, "Scope": "local", "UsageData": null})
        );
        Ok(())
    }

    #[test]
    fn label_filters_take_keys_and_pairs() {
        let labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert!(label_matches(&labels, "a"));
        assert!(label_matches(&labels, "a=1"));
        assert!(!label_matches(&labels, "a=2"));
        assert!(!label_matches(&labels, "b"));
    }
}
