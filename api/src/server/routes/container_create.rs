//! `POST /containers/create`: Docker's create body (bollard's model, read
//! as moby reads it) turned into the engine's create options, with 400s for
//! what hutch cannot do yet and warnings for what it accepts but ignores.

use std::collections::BTreeMap;

use bollard_stubs::models::{ContainerCreateBody, HostConfig, RestartPolicyNameEnum};
use hutch_engine::containers::config::{
    CreateOptions, DeviceMapping, HealthConfig, LogConfig, LogDriver, RestartPolicy,
    RestartPolicyName, Ulimit, UsernsMode,
};
use hutch_engine::containers::networking::{
    normalize_port, EndpointConfig, HostBinding, NetworkOptions,
};
use serde_json::Value;

use super::super::error::ApiError;

/// What the body asks for, as engine options, and the warnings to return.
#[derive(Debug)]
pub struct CreateRequest {
    pub opts: CreateOptions,
    pub warnings: Vec<String>,
}

/// moby's `StrSlice`: `Cmd`, `Entrypoint` and `Shell` may be a string.
fn string_slices(body: &mut Value) {
    for key in ["Cmd", "Entrypoint", "Shell"] {
        if let Some(v) = body.get_mut(key) {
            if let Value::String(s) = v {
                *v = Value::Array(vec![Value::String(std::mem::take(s))]);
            }
        }
    }
}

/// Parses the body; `name` is the `name` query parameter.
pub fn parse(mut body: Value, name: Option<&str>) -> Result<CreateRequest, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON: the create body must be an object",
        ));
    }
    string_slices(&mut body);
    let body: ContainerCreateBody = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let image = body.image.clone().unwrap_or_default();
    if image.is_empty() {
        return Err(ApiError::bad_request("No image specified"));
    }
    let mut warnings = Vec::new();
    let mounts = super::container_mounts::options(&body, &host_of(&body))?;
    let host = body.host_config.clone().unwrap_or_default();
    check_host_config(&host, &mut warnings)?;
    let restart_policy = restart_policy(&host)?;
    let auto_remove = host.auto_remove.unwrap_or(false);
    if auto_remove && restart_policy.name != RestartPolicyName::No {
        return Err(ApiError::bad_request(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    let network_mode = match host.network_mode.as_deref() {
        None | Some("") | Some("default") => Some("bridge".to_string()),
        Some(other) => Some(other.to_string()),
    };
    let network = network_options(&body, &host)?;
    Ok(CreateRequest {
        opts: CreateOptions {
            name: name.filter(|n| !n.is_empty()).map(str::to_string),
            image,
            cmd: body.cmd.clone().filter(|c| !c.is_empty()),
            entrypoint: body.entrypoint.clone(),
            env: body.env.clone().unwrap_or_default(),
            user: body.user.clone().filter(|u| !u.is_empty()),
            group_add: host.group_add.clone().unwrap_or_default(),
            working_dir: body.working_dir.clone().filter(|w| !w.is_empty()),
            tty: body.tty.unwrap_or(false),
            open_stdin: body.open_stdin.unwrap_or(false),
            stdin_once: body.stdin_once.unwrap_or(false),
            labels: body
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            hostname: body.hostname.clone().filter(|h| !h.is_empty()),
            read_only: host.readonly_rootfs.unwrap_or(false),
            cap_add: host.cap_add.clone().unwrap_or_default(),
            cap_drop: host.cap_drop.clone().unwrap_or_default(),
            privileged: host.privileged.unwrap_or(false),
            init: host.init.unwrap_or(false),
            restart_policy,
            healthcheck: body.healthcheck.as_ref().map(|h| HealthConfig {
                test: h.test.clone().unwrap_or_default(),
                interval: nanos(h.interval),
                timeout: nanos(h.timeout),
                start_period: nanos(h.start_period),
                start_interval: nanos(h.start_interval),
                retries: h.retries.and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
            }),
            stop_signal: body.stop_signal.clone().filter(|s| !s.is_empty()),
            stop_timeout: body.stop_timeout.and_then(|t| u32::try_from(t).ok()),
            log_config: log_config(&host)?,
            network_mode,
            auto_remove,
            userns_mode: userns_mode(&host)?,
            ulimits: ulimits(&host)?,
            security_opt: host.security_opt.clone().unwrap_or_default(),
            network,
            limits: limits_of(&host),
            devices: devices(&host),
            sysctls: host
                .sysctls
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            pid_mode: host.pid_mode.clone().unwrap_or_default(),
            ipc_mode: host.ipc_mode.clone().unwrap_or_default(),
            ..mounts
        },
        warnings,
    })
}

/// `HostConfig.Devices` as the engine takes them.
fn devices(host: &HostConfig) -> Vec<DeviceMapping> {
    host.devices
        .iter()
        .flatten()
        .map(|d| DeviceMapping {
            path_on_host: d.path_on_host.clone().unwrap_or_default(),
            path_in_container: d.path_in_container.clone().unwrap_or_default(),
            cgroup_permissions: d.cgroup_permissions.clone().unwrap_or_default(),
        })
        .collect()
}

/// `--userns`: Docker's `host` (and empty) is hutch's identity mode;
/// `private` gives the container an ID range of its own.
fn userns_mode(host: &HostConfig) -> Result<UsernsMode, ApiError> {
    let text = host.userns_mode.as_deref().unwrap_or("");
    UsernsMode::parse(text).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid user namespace mode {text:?}: use \"host\" (identity) or \"private\""
        ))
    })
}

fn ulimits(host: &HostConfig) -> Result<Vec<Ulimit>, ApiError> {
    host.ulimits
        .iter()
        .flatten()
        .map(|u| match (&u.name, u.soft, u.hard) {
            (Some(name), Some(soft), hard) if !name.is_empty() => Ok(Ulimit {
                name: name.clone(),
                soft,
                hard: hard.unwrap_or(soft),
            }),
            _ => Err(ApiError::bad_request(
                "invalid ulimit: Name and Soft are required",
            )),
        })
        .collect()
}

/// Ports, endpoints, DNS and hosts entries of the create body.
fn network_options(
    body: &ContainerCreateBody,
    host: &HostConfig,
) -> Result<NetworkOptions, ApiError> {
    let mut endpoints = BTreeMap::new();
    let configs = body
        .networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.clone())
        .unwrap_or_default();
    for (name, ep) in configs {
        let ipv4_address = match ep
            .ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.as_deref())
            .filter(|a| !a.is_empty())
        {
            Some(a) => Some(
                a.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {a}")))?,
            ),
            None => None,
        };
        endpoints.insert(
            name,
            EndpointConfig {
                aliases: ep.aliases.clone().unwrap_or_default(),
                links: ep.links.clone().unwrap_or_default(),
                ipv4_address,
                mac_address: ep
                    .mac_address
                    .clone()
                    .filter(|m| !m.is_empty())
                    .or_else(|| body.mac_address.clone().filter(|m| !m.is_empty())),
            },
        );
    }
    let mut port_bindings = BTreeMap::new();
    for (port, bindings) in host.port_bindings.clone().unwrap_or_default() {
        port_bindings.insert(
            port,
            bindings
                .unwrap_or_default()
                .into_iter()
                .map(|b| HostBinding {
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port: b.host_port.unwrap_or_default(),
                })
                .collect(),
        );
    }
    let mut exposed_ports: Vec<String> = body
        .exposed_ports
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|p| normalize_port(p))
        .collect();
    for key in port_bindings.keys() {
        let key = normalize_port(key);
        if !exposed_ports.contains(&key) {
            exposed_ports.push(key);
        }
    }
    let options = NetworkOptions {
        endpoints,
        port_bindings,
        publish_all: host.publish_all_ports.unwrap_or(false),
        exposed_ports,
        extra_hosts: host.extra_hosts.clone().unwrap_or_default(),
        links: host.links.clone().unwrap_or_default(),
        dns: host.dns.clone().unwrap_or_default(),
        dns_search: host.dns_search.clone().unwrap_or_default(),
        dns_options: host.dns_options.clone().unwrap_or_default(),
        domainname: body.domainname.clone().filter(|d| !d.is_empty()),
    };
    // Bad ports are the create's 400, not a failed start.
    options.port_requests().map_err(ApiError::bad_request)?;
    Ok(options)
}

fn nanos(v: Option<i64>) -> u64 {
    v.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn host_of(body: &ContainerCreateBody) -> HostConfig {
    body.host_config.clone().unwrap_or_default()
}

/// Refuses what would silently change the container's meaning; warns about
/// limits that cannot be applied (a pod's cgroups are not writable).
fn check_host_config(host: &HostConfig, warnings: &mut Vec<String>) -> Result<(), ApiError> {
    let limited = host.memory.is_some_and(|v| v > 0)
        || host.memory_swap.is_some_and(|v| v > 0)
        || host.nano_cpus.is_some_and(|v| v > 0)
        || host.cpu_shares.is_some_and(|v| v > 0)
        || host.cpu_quota.is_some_and(|v| v > 0)
        || host.pids_limit.is_some_and(|v| v > 0)
        || host.cpuset_cpus.as_ref().is_some_and(|v| !v.is_empty());
    if limited {
        warnings.push(LIMITS_WARNING.into());
    }
    // Device cgroup rules need the node's privileges (a device program on
    // the cgroup): said rather than dropped silently.
    if let Some(rules) = host.device_cgroup_rules.as_ref().filter(|r| !r.is_empty()) {
        warnings.push(format!(
            "device cgroup rules (--device-cgroup-rule) are not applied by hutch: a pod \
             cannot restrict device access by cgroup: {}",
            rules.join(", ")
        ));
    }
    Ok(())
}

/// The limits the engine applies with a delegated cgroup hierarchy.
pub fn limits_of(host: &HostConfig) -> hutch_engine::cgroups::Limits {
    hutch_engine::cgroups::Limits {
        memory: host.memory.unwrap_or(0),
        memory_swap: host.memory_swap.unwrap_or(0),
        nano_cpus: host.nano_cpus.unwrap_or(0),
        cpu_shares: host.cpu_shares.unwrap_or(0),
        cpu_quota: host.cpu_quota.unwrap_or(0),
        cpu_period: host.cpu_period.unwrap_or(0),
        pids_limit: host.pids_limit.unwrap_or(0),
    }
}

/// Resource limits need writable cgroups, which pods do not have.
pub const LIMITS_WARNING: &str = "resource limits (memory, CPU, PIDs) are not applied: the pod's \
cgroups are not writable";

fn restart_policy(host: &HostConfig) -> Result<RestartPolicy, ApiError> {
    let Some(p) = &host.restart_policy else {
        return Ok(RestartPolicy::default());
    };
    let name = match p.name {
        None | Some(RestartPolicyNameEnum::EMPTY) | Some(RestartPolicyNameEnum::NO) => {
            RestartPolicyName::No
        }
        Some(RestartPolicyNameEnum::ALWAYS) => RestartPolicyName::Always,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => RestartPolicyName::UnlessStopped,
        Some(RestartPolicyNameEnum::ON_FAILURE) => RestartPolicyName::OnFailure,
    };
    let count = p.maximum_retry_count.unwrap_or(0);
    if count < 0 {
        return Err(ApiError::bad_request(
            "invalid restart policy: maximum retry count cannot be negative",
        ));
    }
    if count > 0 && name != RestartPolicyName::OnFailure {
        return Err(ApiError::bad_request(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ));
    }
    Ok(RestartPolicy {
        name,
        maximum_retry_count: u32::try_from(count).unwrap_or(u32::MAX),
    })
}

fn log_config(host: &HostConfig) -> Result<LogConfig, ApiError> {
    let Some(lc) = &host.log_config else {
        return Ok(LogConfig::default());
    };
    let name = lc.typ.as_deref().unwrap_or("");
    let driver = LogDriver::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "logging driver {name:?} is not supported by hutch (json-file, local and none are)"
        ))
    })?;
    let opts: BTreeMap<String, String> =
        lc.config.clone().unwrap_or_default().into_iter().collect();
    LogConfig::for_driver(driver, &opts).map_err(ApiError::bad_request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clis_body_and_string_commands() -> Result<(), ApiError> {
        let body = serde_json::json!({
            "Image": "busybox", "Cmd": "echo hi", "Entrypoint": null, "Env": null,
            "Tty": true, "OpenStdin": true, "Labels": {"a": "b"}, "Unknown": 1,
            "HostConfig": {"AutoRemove": true, "NetworkMode": "default",
                           "RestartPolicy": {"Name": "no"}, "ConsoleSize": [30, 100],
                           "LogConfig": {"Type": "json-file", "Config": {"max-size": "1k"}}},
        });
        let r = parse(body, Some("web"))?;
        assert_eq!(r.opts.cmd, Some(vec!["echo hi".to_string()]));
        assert_eq!(r.opts.entrypoint, None);
        assert!(r.opts.tty && r.opts.open_stdin && r.opts.auto_remove);
        assert_eq!(r.opts.name.as_deref(), Some("web"));
        assert_eq!(r.opts.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(r.opts.log_config.max_size, Some(1024));
        assert!(r.warnings.is_empty());
        assert_eq!(r.opts.network_mode.as_deref(), Some("bridge"));
        Ok(())
    }

    #[test]
    fn refusals() {
        let status = |body: Value| parse(body, None).map(|_| ()).map_err(|e| e.status.as_u16());
        assert_eq!(status(serde_json::json!({})), Err(400));
        assert_eq!(
            status(serde_json::json!({"Image": "b", "HostConfig": {"Binds": ["/a:/b"]}})),
            Ok(())
        );
        assert_eq!(
            status(
                serde_json::json!({"Image": "b", "HostConfig": {"Mounts": [{"Type": "image"}]}})
            ),
            Err(400)
        );
        assert_eq!(
            status(
                serde_json::json!({"Image": "b", "HostConfig": {"AutoRemove": true,
                "RestartPolicy": {"Name": "always"}}})
            ),
            Err(400)
        );
        assert_eq!(
            status(
                serde_json::json!({"Image": "b", "HostConfig": {"LogConfig": {"Type": "syslog"}}})
            ),
            Err(400)
        );
        assert_eq!(
            status(serde_json::json!({"Image": "b", "HostConfig": {"NetworkMode": "host"}})),
            Ok(())
        );
    }
}
