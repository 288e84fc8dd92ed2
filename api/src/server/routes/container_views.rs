//! How containers look on the wire: `GET /containers/{id}/json` and
//! `GET /containers/json` (with moby's filters), built from the engine's
//! records with every field Docker always sends.

use std::collections::HashMap;

use bollard_stubs::models::{
    ContainerConfig, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    ContainerSummary, ContainerSummaryHostConfig, ContainerSummaryNetworkSettings,
    ContainerSummaryStateEnum, DriverData, EndpointSettings, Health, HostConfig,
    HostConfigLogConfig, NetworkSettings, Port, PortBinding, PortMap, PortTypeEnum,
    RestartPolicy as WireRestartPolicy, RestartPolicyNameEnum,
};
use hutch_engine::containers::config::RestartPolicyName;
use hutch_engine::containers::networking::normalize_port;
use hutch_engine::containers::state::Status;
use hutch_engine::containers::ContainerDetails;

use super::super::error::ApiError;
use super::super::query::{timestamp, Filters};

/// The network mode a container runs with, as Docker names it.
pub(super) fn network_mode(d: &ContainerDetails) -> String {
    d.config
        .options
        .network_mode
        .clone()
        .unwrap_or_else(|| "none".into())
}

fn created_unix(d: &ContainerDetails) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&d.config.created).map_or(0, |t| t.timestamp())
}

/// Docker's `Config.Entrypoint` and `Config.Cmd`: the argv split where the
/// create asked for an entrypoint, else all of it as the command.
fn entrypoint_and_cmd(d: &ContainerDetails) -> (Option<Vec<String>>, Vec<String>) {
    let mut argv = vec![d.config.path.clone()];
    argv.extend(d.config.args.iter().cloned());
    match d
        .config
        .options
        .entrypoint
        .as_ref()
        .filter(|e| !e.is_empty())
    {
        Some(e) if argv.starts_with(e) => (Some(e.clone()), argv[e.len()..].to_vec()),
        _ => (None, argv),
    }
}

fn wire_status(s: Status) -> ContainerStateStatusEnum {
    match s {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Restarting => ContainerStateStatusEnum::RESTARTING,
        Status::Removing => ContainerStateStatusEnum::REMOVING,
        Status::Exited => ContainerStateStatusEnum::EXITED,
        Status::Dead => ContainerStateStatusEnum::DEAD,
    }
}

fn summary_state(s: Status) -> ContainerSummaryStateEnum {
    match s {
        Status::Created => ContainerSummaryStateEnum::CREATED,
        Status::Running => ContainerSummaryStateEnum::RUNNING,
        Status::Paused => ContainerSummaryStateEnum::PAUSED,
        Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
        Status::Removing => ContainerSummaryStateEnum::REMOVING,
        Status::Exited => ContainerSummaryStateEnum::EXITED,
        Status::Dead => ContainerSummaryStateEnum::DEAD,
    }
}

/// The engine's health record has Docker's shape already.
fn health(d: &ContainerDetails) -> Option<Health> {
    let h = d.state.health.as_ref()?;
    serde_json::to_value(h)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

fn restart_policy(d: &ContainerDetails) -> WireRestartPolicy {
    let p = d.config.options.restart_policy;
    WireRestartPolicy {
        name: Some(match p.name {
            RestartPolicyName::No => RestartPolicyNameEnum::NO,
            RestartPolicyName::Always => RestartPolicyNameEnum::ALWAYS,
            RestartPolicyName::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            RestartPolicyName::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        }),
        maximum_retry_count: Some(i64::from(p.maximum_retry_count)),
    }
}

fn host_config(d: &ContainerDetails) -> HostConfig {
    let o = &d.config.options;
    let mut log_opts = HashMap::new();
    if let Some(size) = o.log_config.max_size {
        log_opts.insert("max-size".to_string(), size.to_string());
    }
    if o.log_config.max_file > 1 {
        log_opts.insert("max-file".to_string(), o.log_config.max_file.to_string());
    }
    HostConfig {
        binds: (!o.binds.is_empty()).then(|| o.binds.clone()),
        mounts: super::container_mounts::host_mounts(&o.mounts),
        tmpfs: (!o.tmpfs.is_empty()).then(|| o.tmpfs.clone().into_iter().collect()),
        container_id_file: Some(String::new()),
        log_config: Some(HostConfigLogConfig {
            typ: Some(o.log_config.driver.name().into()),
            config: Some(log_opts),
        }),
        network_mode: Some(network_mode(d)),
        port_bindings: Some(port_bindings(d)),
        dns: Some(o.network.dns.clone()),
        dns_search: Some(o.network.dns_search.clone()),
        dns_options: Some(o.network.dns_options.clone()),
        extra_hosts: Some(o.network.extra_hosts.clone()),
        // Docker's stored form of a link: `/NAME:/CONTAINER/ALIAS`.
        links: (!o.network.links.is_empty()).then(|| {
            o.network
                .links
                .iter()
                .filter_map(|l| hutch_engine::containers::networking::parse_link(l).ok())
                .map(|(name, alias)| format!("/{name}:/{}/{alias}", d.config.name))
                .collect()
        }),
        restart_policy: Some(restart_policy(d)),
        auto_remove: Some(o.auto_remove),
        volume_driver: Some(String::new()),
        volumes_from: (!o.volumes_from.is_empty()).then(|| o.volumes_from.clone()),
        // Docker keeps what the client sent: no capabilities is `null`.
        cap_add: (!o.cap_add.is_empty()).then(|| o.cap_add.clone()),
        cap_drop: (!o.cap_drop.is_empty()).then(|| o.cap_drop.clone()),
        group_add: Some(o.group_add.clone()),
        init: Some(o.init),
        // Docker fills in its default IPC mode; the rest as given.
        ipc_mode: Some(if o.ipc_mode.is_empty() {
            "private".into()
        } else {
            o.ipc_mode.clone()
        }),
        pid_mode: Some(o.pid_mode.clone()),
        privileged: Some(o.privileged),
        publish_all_ports: Some(o.network.publish_all),
        readonly_rootfs: Some(o.read_only),
        security_opt: Some(Vec::new()),
        uts_mode: Some(String::new()),
        userns_mode: Some(String::new()),
        shm_size: Some(super::container_mounts::shm_size(&o.tmpfs)),
        runtime: Some("hutch".into()),
        memory: Some(o.limits.memory),
        memory_swap: Some(o.limits.memory_swap),
        nano_cpus: Some(o.limits.nano_cpus),
        cpu_shares: Some(o.limits.cpu_shares),
        cpu_period: Some(o.limits.cpu_period),
        cpu_quota: Some(o.limits.cpu_quota),
        cpuset_cpus: Some(String::new()),
        cpuset_mems: Some(String::new()),
        pids_limit: (o.limits.pids_limit != 0).then_some(o.limits.pids_limit),
        oom_kill_disable: Some(false),
        devices: Some(
            o.devices
                .iter()
                .map(|d| bollard_stubs::models::DeviceMapping {
                    path_on_host: Some(d.path_on_host.clone()),
                    path_in_container: Some(d.path_in_container.clone()),
                    cgroup_permissions: Some(d.cgroup_permissions.clone()),
                })
                .collect(),
        ),
        // Docker leaves it out when none were given.
        sysctls: (!o.sysctls.is_empty()).then(|| o.sysctls.clone().into_iter().collect()),
        ..Default::default()
    }
}

fn config(d: &ContainerDetails) -> ContainerConfig {
    let o = &d.config.options;
    let (entrypoint, cmd) = entrypoint_and_cmd(d);
    ContainerConfig {
        hostname: Some(
            o.hostname
                .clone()
                .unwrap_or_else(|| d.config.id.chars().take(12).collect()),
        ),
        domainname: Some(o.network.domainname.clone().unwrap_or_default()),
        exposed_ports: (!o.network.exposed_ports.is_empty())
            .then(|| o.network.exposed_ports.clone()),
        user: Some(d.config.user.clone()),
        attach_stdin: Some(o.open_stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(o.tty),
        open_stdin: Some(o.open_stdin),
        stdin_once: Some(o.stdin_once),
        env: Some(d.config.env.clone()),
        cmd: Some(cmd),
        healthcheck: d
            .config
            .healthcheck
            .as_ref()
            .map(|h| bollard_stubs::models::HealthConfig {
                test: Some(h.test.clone()),
                interval: Some(h.interval as i64),
                timeout: Some(h.timeout as i64),
                retries: Some(i64::from(h.retries)),
                start_period: Some(h.start_period as i64),
                start_interval: Some(h.start_interval as i64),
            }),
        image: Some(d.config.image.clone()),
        volumes: config_volumes(d),
        working_dir: Some(d.config.working_dir.clone()),
        entrypoint,
        on_build: None,
        labels: Some(o.labels.clone().into_iter().collect()),
        stop_signal: Some(d.config.stop_signal.clone()),
        stop_timeout: Some(i64::from(d.config.stop_timeout)),
        ..Default::default()
    }
}

/// `HostConfig.PortBindings` as the create gave them.
fn port_bindings(d: &ContainerDetails) -> PortMap {
    d.config
        .options
        .network
        .port_bindings
        .iter()
        .map(|(port, list)| {
            let list = list
                .iter()
                .map(|b| PortBinding {
                    host_ip: Some(b.host_ip.clone()),
                    host_port: Some(b.host_port.clone()),
                })
                .collect();
            (normalize_port(port), Some(list))
        })
        .collect()
}

/// A network entry as Docker shows it; a stopped container keeps its
/// networks but no live endpoint (no address, no endpoint ID).
/// `links`: the endpoint's `Links` as given (`NAME:ALIAS`).
fn endpoint(
    e: &hutch_engine::network::EndpointSettings,
    links: Option<Vec<String>>,
    live: bool,
) -> EndpointSettings {
    let text = |v: &String| Some(if live { v.clone() } else { String::new() });
    EndpointSettings {
        ipam_config: None,
        links,
        mac_address: text(&e.mac_address),
        aliases: Some(e.aliases.clone()),
        driver_opts: None,
        gw_priority: Some(0),
        network_id: Some(e.network_id.clone()),
        endpoint_id: text(&e.endpoint_id),
        gateway: text(&e.gateway),
        ip_address: text(&e.ip_address),
        ip_prefix_len: Some(if live { i64::from(e.ip_prefix_len) } else { 0 }),
        ipv6_gateway: Some(String::new()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        dns_names: Some(e.dns_names.clone()),
    }
}

fn networks(d: &ContainerDetails) -> HashMap<String, EndpointSettings> {
    let live = d.state.is_active();
    d.network
        .iter()
        .flat_map(|n| n.networks.iter())
        .map(|(name, e)| {
            let links = d
                .config
                .options
                .network
                .endpoints
                .get(name)
                .map(|c| c.links.clone())
                .filter(|l| !l.is_empty());
            (name.clone(), endpoint(e, links, live))
        })
        .collect()
}

/// `NetworkSettings.Ports` of a running container: each exposed port,
/// with its resolved bindings or `null`.
fn ports(d: &ContainerDetails) -> PortMap {
    if !d.state.is_active() {
        return PortMap::new();
    }
    let mut map: PortMap = d
        .config
        .options
        .network
        .exposed_ports
        .iter()
        .map(|p| (normalize_port(p), None))
        .collect();
    for (port, bindings) in d.network.iter().flat_map(|n| n.ports.iter()) {
        let list = bindings
            .iter()
            .map(|b| PortBinding {
                host_ip: Some(b.host_ip.clone()),
                host_port: Some(b.host_port.clone()),
            })
            .collect();
        map.insert(port.clone(), Some(list));
    }
    map
}

/// `Config.Volumes`: the request's anonymous volumes and the image's.
fn config_volumes(d: &ContainerDetails) -> Option<Vec<String>> {
    let mut v: Vec<String> = d.config.options.volumes.clone();
    v.extend(d.config.image_volumes.iter().cloned());
    v.sort();
    v.dedup();
    (!v.is_empty()).then_some(v)
}

/// The container's addresses and published ports; the top-level legacy
/// fields are those of the default `bridge` network.
fn network_settings(d: &ContainerDetails) -> NetworkSettings {
    let networks = networks(d);
    let bridge = networks.get("bridge");
    let field = |f: &dyn Fn(&EndpointSettings) -> Option<String>| {
        Some(bridge.and_then(f).unwrap_or_default())
    };
    NetworkSettings {
        bridge: Some(String::new()),
        sandbox_id: Some(String::new()),
        // Only while it runs, as Docker releases the sandbox at the exit
        // (a created container may be plugged in already: primed).
        sandbox_key: Some(
            d.network
                .as_ref()
                .filter(|_| d.state.is_active())
                .map(|n| n.sandbox_key.clone())
                .unwrap_or_default(),
        ),
        hairpin_mode: Some(false),
        link_local_ipv6_address: Some(String::new()),
        link_local_ipv6_prefix_len: Some(0),
        ports: Some(ports(d)),
        endpoint_id: field(&|e| e.endpoint_id.clone()),
        gateway: field(&|e| e.gateway.clone()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ip_address: field(&|e| e.ip_address.clone()),
        ip_prefix_len: Some(bridge.and_then(|e| e.ip_prefix_len).unwrap_or(0)),
        ipv6_gateway: Some(String::new()),
        mac_address: field(&|e| e.mac_address.clone()),
        networks: Some(networks),
        ..Default::default()
    }
}

/// Before API 1.45 Docker listed the container's short ID among the
/// `Aliases` of its user-defined networks (DNSNames came after);
/// docker-compose 1.x looks for it there, and reconnects the container
/// when it is missing.
pub fn legacy_aliases(body: &mut ContainerInspectResponse) {
    let short: String = body
        .id
        .as_deref()
        .unwrap_or_default()
        .chars()
        .take(12)
        .collect();
    let networks = body
        .network_settings
        .as_mut()
        .and_then(|n| n.networks.as_mut());
    for (name, e) in networks.into_iter().flatten() {
        if matches!(name.as_str(), "bridge" | "host" | "none") {
            continue;
        }
        let aliases = e.aliases.get_or_insert_with(Vec::new);
        if !aliases.contains(&short) {
            aliases.push(short.clone());
        }
    }
}

/// `docker ps`'s PORTS: published ports with their host side, exposed
/// ones without.
fn summary_ports(d: &ContainerDetails) -> Vec<Port> {
    let mut out = Vec::new();
    for (key, bindings) in ports(d) {
        let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        let Ok(private_port) = port.parse::<u16>() else {
            continue;
        };
        let typ = Some(match proto {
            "udp" => PortTypeEnum::UDP,
            "sctp" => PortTypeEnum::SCTP,
            _ => PortTypeEnum::TCP,
        });
        match bindings {
            Some(list) if !list.is_empty() => {
                for b in list {
                    out.push(Port {
                        ip: b.host_ip,
                        private_port,
                        public_port: b.host_port.and_then(|p| p.parse().ok()),
                        typ,
                    });
                }
            }
            _ => out.push(Port {
                ip: None,
                private_port,
                public_port: None,
                typ,
            }),
        }
    }
    out.sort_by_key(|p| (p.private_port, p.public_port));
    out
}

/// `GET /containers/{id}/json`.
pub fn inspect(d: &ContainerDetails, exec_ids: Vec<String>) -> ContainerInspectResponse {
    let s = &d.state;
    let dir = d
        .log_path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    ContainerInspectResponse {
        id: Some(d.config.id.clone()),
        created: Some(d.config.created.clone()),
        path: Some(d.config.path.clone()),
        args: Some(d.config.args.clone()),
        state: Some(ContainerState {
            status: Some(wire_status(s.status)),
            running: Some(s.running),
            paused: Some(s.paused),
            restarting: Some(s.restarting),
            oom_killed: Some(s.oom_killed),
            dead: Some(s.dead),
            pid: Some(i64::from(s.pid)),
            exit_code: Some(i64::from(s.exit_code)),
            error: Some(s.error.clone()),
            started_at: Some(s.started_at.clone()),
            finished_at: Some(s.finished_at.clone()),
            health: health(d),
        }),
        image: Some(d.config.image_id.clone()),
        resolv_conf_path: Some(dir.join("resolv.conf").display().to_string()),
        hostname_path: Some(dir.join("hostname").display().to_string()),
        hosts_path: Some(dir.join("hosts").display().to_string()),
        log_path: Some(d.log_path.display().to_string()),
        name: Some(format!("/{}", d.config.name)),
        restart_count: Some(i64::from(s.restart_count)),
        driver: Some("overlay".into()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: (!exec_ids.is_empty()).then_some(exec_ids),
        host_config: Some(host_config(d)),
        graph_driver: Some(DriverData {
            name: "overlay".into(),
            data: HashMap::from([
                ("UpperDir".to_string(), d.rootfs_upper.display().to_string()),
                (
                    "WorkDir".to_string(),
                    dir.join("work").display().to_string(),
                ),
                (
                    "MergedDir".to_string(),
                    dir.join("rootfs").display().to_string(),
                ),
            ]),
        }),
        mounts: Some(super::container_mounts::mount_points(&d.config.mounts)),
        config: Some(config(d)),
        network_settings: Some(network_settings(d)),
        ..Default::default()
    }
}

/// `Up 5 minutes`, `Exited (3) 2 seconds ago`, as `docker ps` shows them.
fn status_text(d: &ContainerDetails, now: chrono::DateTime<chrono::Utc>) -> String {
    let since = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| human_duration(now.signed_duration_since(t.with_timezone(&chrono::Utc))))
            .unwrap_or_default()
    };
    let s = &d.state;
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let health = match &s.health {
                Some(h) => format!(" ({})", h.status.as_str()),
                None => String::new(),
            };
            format!("Up {}{health}", since(&s.started_at))
        }
        Status::Paused => format!("Up {} (Paused)", since(&s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, since(&s.finished_at)),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code, since(&s.finished_at)),
        Status::Dead => "Dead".into(),
    }
}

/// Go's `units.HumanDuration`, as `docker ps` prints it.
fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86400 => format!("{} days", s / 86400),
        s if s < 60 * 86400 => format!("{} weeks", s / (7 * 86400)),
        s if s < 730 * 86400 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

/// What `size=1` adds to a container's list row or inspect, as moby counts
/// it: `SizeRw`, the content of its writable layer (the overlay's upper
/// directory), and `SizeRootFs`, that plus its image's layers. Walks the
/// upper directory: call it off the async threads.
pub fn sizes(d: &ContainerDetails, image_sizes: &HashMap<String, u64>) -> (i64, i64) {
    let rw = hutch_engine::du::dir_size(&d.rootfs_upper);
    let image = image_sizes.get(&d.config.image_id).copied().unwrap_or(0);
    let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    (as_i64(rw), as_i64(rw.saturating_add(image)))
}

/// One row of `GET /containers/json`.
pub fn summary(d: &ContainerDetails, now: chrono::DateTime<chrono::Utc>) -> ContainerSummary {
    let mut command = vec![d.config.path.clone()];
    command.extend(d.config.args.iter().cloned());
    ContainerSummary {
        id: Some(d.config.id.clone()),
        names: Some(vec![format!("/{}", d.config.name)]),
        image: Some(d.config.image.clone()),
        image_id: Some(d.config.image_id.clone()),
        command: Some(command.join(" ")),
        created: Some(created_unix(d)),
        ports: Some(summary_ports(d)),
        labels: Some(d.config.options.labels.clone().into_iter().collect()),
        state: Some(summary_state(d.state.status)),
        status: Some(status_text(d, now)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(network_mode(d)),
            annotations: None,
        }),
        network_settings: Some(ContainerSummaryNetworkSettings {
            networks: Some(networks(d)),
        }),
        mounts: Some(super::container_mounts::mount_points(&d.config.mounts)),
        ..Default::default()
    }
}

/// moby's `/containers/json` filters.
pub struct ListFilter {
    filters: Filters,
    /// Created strictly after / before these containers (`since`, `before`).
    after: Option<i64>,
    before: Option<i64>,
}

pub const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "exited", "ancestor", "before", "since", "health", "network",
    "volume", "publish", "expose", "is-task",
];

impl ListFilter {
    /// `all` lists are needed to resolve `before`/`since` references.
    pub fn new(filters: Filters, all: &[ContainerDetails]) -> Result<ListFilter, ApiError> {
        filters.allow_only(LIST_FILTERS)?;
        for status in filters.values("status") {
            if !matches!(
                status,
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(ApiError::bad_request(format!(
                    "invalid filter 'status={status}'"
                )));
            }
        }
        for code in filters.values("exited") {
            code.parse::<i32>()
                .map_err(|_| ApiError::bad_request(format!("invalid filter 'exited={code}'")))?;
        }
        let created_of = |key: &str| -> Result<Option<i64>, ApiError> {
            match filters.single(key)? {
                None => Ok(None),
                Some(v) => all
                    .iter()
                    .find(|d| {
                        d.config.id.starts_with(v) || d.config.name == v.trim_start_matches('/')
                    })
                    .map(|d| Some(created_nanos(d)))
                    .ok_or_else(|| ApiError::not_found(format!("No such container: {v}"))),
            }
        };
        Ok(ListFilter {
            after: created_of("since")?,
            before: created_of("before")?,
            filters,
        })
    }

    /// Whether the listing should show stopped containers even without
    /// `all` (moby: `exited` and `status` filters other than running).
    pub fn wants_stopped(&self) -> bool {
        self.filters.contains_key("exited")
            || self.filters.values("status").any(|s| s != "running")
            || self.after.is_some()
            || self.before.is_some()
    }

    pub fn matches(&self, d: &ContainerDetails) -> bool {
        let f = &self.filters;
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
            !f.contains_key(key) || f.values(key).any(pred)
        };
        let created = created_nanos(d);
        let status = wire_status(d.state.status).to_string();
        any("id", &|v| d.config.id.starts_with(v))
            && any("name", &|v| name_matches(&d.config.name, v))
            && f.values("label").all(|v| match v.split_once('=') {
                Some((k, val)) => d.config.options.labels.get(k).is_some_and(|l| l == val),
                None => d.config.options.labels.contains_key(v),
            })
            && any("status", &|v| v == status)
            && any("exited", &|v| {
                d.state.status == Status::Exited && v.parse() == Ok(d.state.exit_code)
            })
            && any("ancestor", &|v| {
                d.config.image == v
                    || d.config.image.strip_suffix(":latest") == Some(v)
                    || v.strip_suffix(":latest") == Some(d.config.image.as_str())
                    || d.config
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            })
            && any("health", &|v| {
                let h = d
                    .state
                    .health
                    .as_ref()
                    .map_or("none", |h| h.status.as_str());
                v == h
            })
            && any("network", &|v| {
                v == network_mode(d)
                    || networks(d).iter().any(|(name, e)| {
                        name == v || e.network_id.as_deref().is_some_and(|id| id.starts_with(v))
                    })
            })
            && any("volume", &|v| {
                d.config
                    .mounts
                    .iter()
                    .any(|m| m.name == v || m.destination == v || m.source == v)
            })
            && self.after.is_none_or(|t| created > t)
            && self.before.is_none_or(|t| created < t)
    }
}

/// moby matches names as a regular expression; hutch supports its common
/// uses: a substring, with `^` and `$` anchors.
fn name_matches(name: &str, pattern: &str) -> bool {
    let full = format!("/{name}");
    let (anchored_start, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let (anchored_end, core) = match rest.strip_suffix('$') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    [name, full.as_str()]
        .iter()
        .any(|n| match (anchored_start, anchored_end) {
            (true, true) => *n == core,
            (true, false) => n.starts_with(core),
            (false, true) => n.ends_with(core),
            (false, false) => n.contains(core),
        })
}

fn created_nanos(d: &ContainerDetails) -> i64 {
    timestamp(&d.config.created, 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_docker_users_write_them() {
        assert!(name_matches("web-1", "web"));
        assert!(name_matches("web-1", "^/web"));
        assert!(name_matches("web-1", "^web-1$"));
        assert!(!name_matches("web-1", "^eb"));
        assert!(name_matches("web-1", "-1$"));
    }

    #[test]
    fn durations_read_like_docker_ps() {
        assert_eq!(human_duration(chrono::TimeDelta::seconds(3)), "3 seconds");
        assert_eq!(
            human_duration(chrono::TimeDelta::seconds(90)),
            "About a minute"
        );
        assert_eq!(
            human_duration(chrono::TimeDelta::seconds(600)),
            "10 minutes"
        );
    }
}
