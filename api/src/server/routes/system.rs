//! System endpoints: `/_ping`, `/version`, `/info`, `/system/df`,
//! `/events`, `/auth`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    Commit, IndexInfo, LocalNodeState, PluginsInfo, RegistryServiceConfig, SwarmInfo, SystemInfo,
    SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum, SystemVersion,
    SystemVersionComponents, SystemVersionPlatform,
};
use bytes::Bytes;
use hutch_images::registry::RegistrySettings;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, PRAGMA};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::super::doctor::DoctorOutcome;
use super::super::error::ApiError;
use super::super::events::{now_nanos, Event, EventFilter};
use super::super::query::timestamp;
use super::super::request::ApiRequest;
use super::super::response::{self, json_line, Body};
use super::super::router::{route, Route};
use super::super::version::{API_VERSION, MIN_API_VERSION};
use super::host;
use super::images::{disk_usage, ImageCounts};

pub fn routes() -> Vec<Route> {
    vec![
        route!(GET "/_ping" => ping),
        route!(HEAD "/_ping" => ping),
        route!(GET "/version" => version),
        route!(GET "/info" => info),
        route!(GET "/system/df" => system_df),
        route!(GET "/events" => events),
        route!(POST "/auth" => auth),
    ]
}

type Reply = Result<Response<Body>, ApiError>;

async fn ping(req: ApiRequest) -> Reply {
    let mut resp = if req.method == Method::HEAD {
        let mut r = response::text(StatusCode::OK, "");
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else {
        response::text(StatusCode::OK, "OK")
    };
    let h = resp.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_COMMIT: &str = env!("HUTCH_GIT_COMMIT");
const BUILD_TIME: &str = env!("HUTCH_BUILD_TIME");
const RUSTC_VERSION: &str = env!("HUTCH_RUSTC_VERSION");

/// `GoVersion` names the toolchain; ours is Rust.
fn toolchain() -> &'static str {
    if RUSTC_VERSION.is_empty() {
        "rust"
    } else {
        RUSTC_VERSION
    }
}

async fn version(_req: ApiRequest) -> Reply {
    let kernel = host::kernel_version();
    let details: HashMap<String, String> = [
        ("ApiVersion", API_VERSION),
        ("Arch", host::go_arch()),
        ("BuildTime", BUILD_TIME),
        ("Experimental", "false"),
        ("GitCommit", GIT_COMMIT),
        ("GoVersion", toolchain()),
        ("KernelVersion", kernel.as_str()),
        ("MinAPIVersion", MIN_API_VERSION),
        ("Os", "linux"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: "hutch".into(),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".into(),
            version: VERSION.into(),
            details: Some(details),
        }]),
        version: Some(VERSION.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(GIT_COMMIT.into()),
        go_version: Some(toolchain().into()),
        os: Some("linux".into()),
        arch: Some(host::go_arch().into()),
        kernel_version: Some(kernel),
        experimental: Some(false),
        build_time: Some(BUILD_TIME.into()),
    };
    Ok(response::json(StatusCode::OK, &body))
}

/// `/info`: Docker's fields, plus `Hutch` with the doctor's choices (clients
/// ignore unknown fields; `docker info --format '{{json .}}'` shows it).
#[derive(Serialize)]
struct Info {
    #[serde(flatten)]
    docker: SystemInfo,
    #[serde(rename = "Hutch")]
    hutch: serde_json::Value,
}

async fn info(req: ApiRequest) -> Reply {
    let daemon = req.daemon.clone();
    let counts: ImageCounts = daemon.with_images(ImageCounts::of).await?;
    let (containers, private_storage) = daemon
        .with_engine(|e| Ok((e.list(true), e.private_id_storage())))
        .await?;
    let count = |pred: &dyn Fn(&hutch_engine::containers::state::Status) -> bool| {
        containers.iter().filter(|c| pred(&c.state.status)).count() as i64
    };
    use hutch_engine::containers::state::Status;
    let doctor = daemon.doctor.get().await;
    let mut warnings = daemon.config_warnings.clone();
    let mut driver_status = vec![
        vec!["Backing Filesystem".to_owned(), String::new()],
        vec!["Supports d_type".to_owned(), "true".to_owned()],
        vec!["Using metacopy".to_owned(), "false".to_owned()],
        vec!["Native Overlay Diff".to_owned(), "true".to_owned()],
        vec!["userxattr".to_owned(), "true".to_owned()],
    ];
    let (cgroup_version, hutch) = match doctor.as_ref() {
        DoctorOutcome::Report(report) => {
            driver_status[0][1] = report.environment.data_root_fs.clone();
            // What this daemon uses (the doctor says what it could).
            driver_status.push(vec![
                "Private ID storage".to_owned(),
                choice_name(&private_storage),
            ]);
            for check in report
                .checks
                .iter()
                .filter(|c| c.status != hutch_engine::doctor::Status::Ok)
            {
                let mut w = format!("WARNING: {}: {}", check.title, check.detail);
                if let Some(blocks) = &check.blocks {
                    w.push_str(&format!(" (disables: {blocks})"));
                }
                warnings.push(w);
            }
            let version = match report.environment.cgroup_version.as_str() {
                "v2" => SystemInfoCgroupVersionEnum::_2,
                "v1" | "hybrid" => SystemInfoCgroupVersionEnum::_1,
                _ => SystemInfoCgroupVersionEnum::EMPTY,
            };
            let hutch = serde_json::json!({
                "Doctor": { "Ok": report.ok, "Choices": report.choices },
            });
            (version, hutch)
        }
        DoctorOutcome::Failed(why) => {
            warnings.push(format!(
                "WARNING: the environment check (hutch doctor) failed: {why}"
            ));
            (
                SystemInfoCgroupVersionEnum::EMPTY,
                serde_json::json!({ "Doctor": { "Error": why } }),
            )
        }
    };
    let mut hutch = hutch;
    // The uplink the daemon chose (the doctor's choice is a prediction).
    hutch["Network"] = match daemon.engine.networks() {
        Some(n) => {
            let (mode, reason) = n.uplink();
            serde_json::json!({ "Uplink": mode.name(), "Reason": reason })
        }
        None => {
            warnings.push(
                "WARNING: networking is unavailable: containers run with network mode \"none\""
                    .to_owned(),
            );
            serde_json::json!({ "Uplink": "none", "Reason": "networking could not be set up" })
        }
    };
    let cgroups = daemon.engine.cgroups().cloned();
    let has_cgroup = |c: &str| cgroups.as_ref().is_some_and(|g| g.has(c));
    let cgroup_version = match cgroups.as_ref().map(|c| c.version()) {
        Some("2") => SystemInfoCgroupVersionEnum::_2,
        Some(_) => SystemInfoCgroupVersionEnum::_1,
        None => cgroup_version,
    };
    let os = host::os_release();
    let docker = SystemInfo {
        id: Some(daemon.id.clone()),
        containers: Some(containers.len() as i64),
        containers_running: Some(count(&|s| {
            matches!(s, Status::Running | Status::Restarting)
        })),
        containers_paused: Some(count(&|s| *s == Status::Paused)),
        containers_stopped: Some(count(&|s| {
            !matches!(s, Status::Running | Status::Restarting | Status::Paused)
        })),
        images: Some(counts.images as i64),
        driver: Some("overlay".into()),
        driver_status: Some(driver_status),
        docker_root_dir: Some(daemon.data_root.display().to_string()),
        plugins: Some(PluginsInfo {
            volume: Some(vec!["local".into()]),
            network: Some(vec!["bridge".into(), "host".into(), "null".into()]),
            authorization: None,
            log: Some(vec!["json-file".into()]),
        }),
        // True only for what a delegated hierarchy lets us apply.
        memory_limit: Some(has_cgroup("memory")),
        swap_limit: Some(false),
        kernel_memory_tcp: Some(false),
        cpu_cfs_period: Some(has_cgroup("cpu")),
        cpu_cfs_quota: Some(has_cgroup("cpu")),
        cpu_shares: Some(has_cgroup("cpu")),
        cpu_set: Some(false),
        pids_limit: Some(has_cgroup("pids")),
        oom_kill_disable: Some(false),
        ipv4_forwarding: Some(true),
        bridge_nf_iptables: Some(false),
        bridge_nf_ip6tables: Some(false),
        debug: Some(tracing::enabled!(tracing::Level::DEBUG)),
        nfd: Some(host::open_fds()),
        n_goroutines: Some(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as i64,
        ),
        system_time: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        logging_driver: Some("json-file".into()),
        cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(cgroup_version),
        n_events_listener: Some(daemon.events.listeners() as i64),
        kernel_version: Some(host::kernel_version()),
        operating_system: Some(os.pretty_name),
        os_version: Some(os.version_id),
        os_type: Some("linux".into()),
        architecture: Some(host::machine()),
        ncpu: Some(host::ncpu()),
        mem_total: Some(host::mem_total()),
        index_server_address: Some("https://index.docker.io/v1/".into()),
        http_proxy: Some(std::env::var("HTTP_PROXY").unwrap_or_default()),
        https_proxy: Some(std::env::var("HTTPS_PROXY").unwrap_or_default()),
        no_proxy: Some(std::env::var("NO_PROXY").unwrap_or_default()),
        name: Some(host::hostname()),
        labels: Some(Vec::new()),
        experimental_build: Some(false),
        server_version: Some(VERSION.into()),
        default_runtime: Some("hutch".into()),
        swarm: Some(SwarmInfo {
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            local_node_state: Some(LocalNodeState::INACTIVE),
            control_available: Some(false),
            error: Some(String::new()),
            remote_managers: None,
            nodes: None,
            managers: None,
            cluster: None,
        }),
        live_restore_enabled: Some(false),
        init_binary: Some(String::new()),
        containerd_commit: Some(Commit::default()),
        runc_commit: Some(Commit::default()),
        init_commit: Some(Commit::default()),
        security_options: Some(vec!["name=userns".into(), "name=rootless".into()]),
        registry_config: Some(registry_config(&daemon.registry)),
        warnings: Some(warnings),
        ..Default::default()
    };
    Ok(response::json(StatusCode::OK, &Info { docker, hutch }))
}

/// `/info`'s `RegistryConfig` as dockerd fills it: loopback networks and
/// listed networks as insecure CIDRs, listed hosts as insecure index
/// configs, Docker Hub secure with the mirrors. `docker info` prints the
/// insecure ones and the mirrors.
fn registry_config(settings: &RegistrySettings) -> RegistryServiceConfig {
    let mut cidrs = vec!["::1/128".to_owned(), "127.0.0.0/8".to_owned()];
    let mut indexes = HashMap::new();
    indexes.insert(
        "docker.io".to_owned(),
        IndexInfo {
            name: Some("docker.io".into()),
            mirrors: Some(settings.mirrors.clone()),
            secure: Some(true),
            official: Some(true),
        },
    );
    for entry in &settings.insecure {
        if entry.contains('/') {
            cidrs.push(entry.clone());
        } else {
            indexes.insert(
                entry.clone(),
                IndexInfo {
                    name: Some(entry.clone()),
                    mirrors: Some(Vec::new()),
                    secure: Some(false),
                    official: Some(false),
                },
            );
        }
    }
    RegistryServiceConfig {
        insecure_registry_cidrs: Some(cidrs),
        index_configs: Some(indexes),
        mirrors: Some(settings.mirrors.clone()),
    }
}

fn choice_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `/system/df`: images (with how many containers use each), containers
/// with the size of their writable layers.
async fn system_df(req: ApiRequest) -> Reply {
    let mut usage = req.daemon.with_images(disk_usage).await?;
    let image_sizes = req
        .daemon
        .with_images(super::containers::image_sizes)
        .await?;
    let containers = req
        .daemon
        .with_engine(move |e| {
            let now = chrono::Utc::now();
            Ok(e.list(true)
                .iter()
                .map(|d| {
                    let mut s = super::container_views::summary(d, now);
                    let (rw, root_fs) = super::container_views::sizes(d, &image_sizes);
                    s.size_rw = Some(rw);
                    s.size_root_fs = Some(root_fs);
                    s
                })
                .collect::<Vec<_>>())
        })
        .await?;
    if let Some(images) = usage.images.as_mut() {
        for image in images {
            image.containers = containers
                .iter()
                .filter(|c| c.image_id.as_deref() == Some(image.id.as_str()))
                .count() as i64;
        }
    }
    let data_root = req.daemon.data_root.clone();
    let steps = usage.build_cache.take().unwrap_or_default();
    let container_images: Vec<String> = containers
        .iter()
        .filter_map(|c| c.image_id.clone())
        .collect();
    usage.build_cache = Some(
        tokio::task::spawn_blocking(move || {
            super::build_cache::records(steps, &container_images, &data_root)
        })
        .await?,
    );
    usage.containers = Some(containers);
    let volumes = req
        .daemon
        .with_engine(|e| {
            Ok(e.volume_list()?
                .iter()
                .map(|u| {
                    super::volumes::volume_body(
                        &u.volume,
                        Some(super::volumes::UsageData {
                            size: e.volume_size(&u.volume.name) as i64,
                            ref_count: u.users.len() as i64,
                        }),
                    )
                })
                .collect::<Vec<_>>())
        })
        .await?;
    // Volumes in Docker's own shape (`Labels: null` and all).
    let mut body = serde_json::to_value(&usage)
        .map_err(|e| ApiError::internal(format!("encoding system df: {e}")))?;
    body["Volumes"] = serde_json::to_value(volumes)
        .map_err(|e| ApiError::internal(format!("encoding system df: {e}")))?;
    Ok(response::json(StatusCode::OK, &body))
}

/// `/events`: replay kept events from `since`, then follow live ones until
/// `until` (or forever). Headers go out at once: clients block on them.
async fn events(req: ApiRequest) -> Reply {
    let now = now_nanos();
    let since = req
        .query
        .non_empty("since")
        .map(|v| timestamp(v, now))
        .transpose()?;
    let until = req
        .query
        .non_empty("until")
        .map(|v| timestamp(v, now))
        .transpose()?;
    let filter = EventFilter::new(req.query.filters()?)?;
    let (past, mut live) = req.daemon.events.subscribe();
    let (resp, tx) = response::stream("application/json");
    tokio::spawn(async move {
        let in_window = |e: &Event| {
            since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u)
        };
        // Without `since`, only live events are sent, as moby does.
        if since.is_some() {
            for event in past.iter().filter(|e| in_window(e) && filter.matches(e)) {
                if send(&tx, event).await.is_err() {
                    return;
                }
            }
        }
        let deadline = until.map(|u| Duration::from_nanos(u.saturating_sub(now).max(0) as u64));
        let sleep = tokio::time::sleep(deadline.unwrap_or(Duration::MAX / 4));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                // The client hung up: stop at once, not at the next event.
                _ = tx.closed() => return,
                got = live.recv() => match got {
                    Ok(event) => {
                        if filter.matches(&event) && in_window(&event) && send(&tx, &event).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "an /events client fell behind; events were dropped");
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    Ok(resp)
}

async fn send(tx: &mpsc::Sender<Bytes>, event: &Arc<Event>) -> Result<(), ()> {
    tx.send(json_line(&event.wire())).await.map_err(|_| ())
}

async fn auth(req: ApiRequest) -> Reply {
    super::registry::auth(req).await
}
