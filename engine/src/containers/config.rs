//! A container's configuration as the daemon receives it (Docker's create
//! options) and as it is kept in `config.json`. The runtime's
//! [`ContainerSpec`](crate::runtime::ContainerSpec) is derived from it (and
//! the image) at create time and kept next to it in `spec.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Docker's create options that the engine acts on. Empty or `None` fields
/// take the image's value, then Docker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateOptions {
    /// `--name`; generated when `None`.
    pub name: Option<String>,
    /// Image reference (`busybox`, `name:tag`, an ID).
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`; added to (and overriding) the image's.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub group_add: Vec<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub labels: BTreeMap<String, String>,
    pub hostname: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--init`.
    pub init: bool,
    pub restart_policy: RestartPolicy,
    /// Overrides the image's HEALTHCHECK field by field (Docker merges them).
    pub healthcheck: Option<HealthConfig>,
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL (default 10).
    pub stop_timeout: Option<u32>,
    pub log_config: LogConfig,
    /// `HostConfig.NetworkMode`: `bridge` (or empty/`default`), `host`,
    /// `none`, `container:<id>` or a network's name or ID.
    pub network_mode: Option<String>,
    /// `--rm`: removed once its process has ended for good.
    pub auto_remove: bool,
    /// How the container's IDs map to the engine's.
    pub userns_mode: UsernsMode,
    /// `--ulimit`: resource limits of the container's processes.
    pub ulimits: Vec<Ulimit>,
    /// `--security-opt`: `seccomp=unconfined`, `no-new-privileges[=true]`;
    /// `apparmor=` and `label=` are accepted and have nothing to act on.
    pub security_opt: Vec<String>,
    /// Networks, published ports, DNS and hosts entries (`network_mode`
    /// says which networks).
    pub network: super::networking::NetworkOptions,
    /// `-v` (HostConfig.Binds): `SRC:DST[:MODE]`, `DST[:MODE]`.
    pub binds: Vec<String>,
    /// `--mount` (HostConfig.Mounts).
    pub mounts: Vec<crate::volumes::MountRequest>,
    /// `--tmpfs` (HostConfig.Tmpfs): destination → options.
    pub tmpfs: BTreeMap<String, String>,
    /// `--volumes-from`: `CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
    /// Config.Volumes: destinations that get anonymous volumes.
    pub volumes: Vec<String>,
    /// Memory, CPU and PIDs limits (applied with a delegated cgroup).
    #[serde(default)]
    pub limits: crate::cgroups::Limits,
    /// `--device` (HostConfig.Devices).
    pub devices: Vec<DeviceMapping>,
    /// `--sysctl` (HostConfig.Sysctls).
    pub sysctls: BTreeMap<String, String>,
    /// `--pid` (HostConfig.PidMode) as given: empty or
    /// `container:<name|id>` (see [`super::sharing`]).
    pub pid_mode: String,
    /// `--ipc` (HostConfig.IpcMode) as given: empty, `private`,
    /// `shareable`, `none`, `host` or `container:<name|id>`.
    pub ipc_mode: String,
}

/// One `--device HOST[:CONTAINER[:PERMISSIONS]]` (Docker's
/// `HostConfig.Devices` entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    /// Empty: the same path as on the host.
    pub path_in_container: String,
    /// `rwm` and its subsets: device cgroup permissions, which a pod
    /// cannot enforce (kept for inspect).
    pub cgroup_permissions: String,
}

/// One `--ulimit NAME=SOFT[:HARD]` (Docker's `HostConfig.Ulimits` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// `nofile`, `nproc`, `core`, ... (Docker's names).
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

impl Ulimit {
    /// Parses Docker's `NAME=SOFT[:HARD]` (`-1` is unlimited); the hard
    /// limit defaults to the soft one.
    pub fn parse(text: &str) -> Result<Ulimit, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| format!("invalid ulimit argument: {text}"))?;
        let (soft, hard) = values.split_once(':').unwrap_or((values, values));
        let number = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| format!("invalid ulimit argument: {text}"))
        };
        Ok(Ulimit {
            name: name.to_string(),
            soft: number(soft)?,
            hard: number(hard)?,
        })
    }
}

/// A container's ID mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsernsMode {
    /// The engine's IDs 0-65535 mapped 1:1 (Docker's `--userns host` is
    /// this).
    #[default]
    Identity,
    /// A range of the engine's IDs of its own, sized from the image, with
    /// single-ID lines for high IDs such as 65534.
    Private,
}

impl UsernsMode {
    /// `identity` (or Docker's `host`, or empty) and `private`.
    pub fn parse(text: &str) -> Option<UsernsMode> {
        match text {
            "" | "identity" | "host" => Some(UsernsMode::Identity),
            "private" => Some(UsernsMode::Private),
            _ => None,
        }
    }
}

/// `--restart`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub name: RestartPolicyName,
    /// For `on-failure`: 0 means no limit.
    pub maximum_retry_count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicyName {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartPolicy {
    /// Parses Docker's `--restart` value: `no`, `always`, `unless-stopped`,
    /// `on-failure[:N]`.
    pub fn parse(text: &str) -> Option<RestartPolicy> {
        let (name, count) = text.split_once(':').unwrap_or((text, ""));
        let name = match name {
            "" | "no" => RestartPolicyName::No,
            "always" => RestartPolicyName::Always,
            "unless-stopped" => RestartPolicyName::UnlessStopped,
            "on-failure" => RestartPolicyName::OnFailure,
            _ => return None,
        };
        let maximum_retry_count = match (name, count) {
            (_, "") => 0,
            (RestartPolicyName::OnFailure, n) => n.parse().ok()?,
            _ => return None,
        };
        Some(RestartPolicy {
            name,
            maximum_retry_count,
        })
    }
}

/// A healthcheck, with Docker's JSON shape (durations in nanoseconds; 0
/// means the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    /// Between probes while the start period lasts and the container is
    /// not yet healthy (Docker 25's `--health-start-interval`); 0: the
    /// interval.
    pub start_interval: u64,
    pub retries: u32,
}

impl HealthConfig {
    /// `self` with the fields `over` sets replacing its own.
    pub fn merged(&self, over: &HealthConfig) -> HealthConfig {
        let pick = |a: u64, b: u64| if b != 0 { b } else { a };
        HealthConfig {
            test: if over.test.is_empty() {
                self.test.clone()
            } else {
                over.test.clone()
            },
            interval: pick(self.interval, over.interval),
            timeout: pick(self.timeout, over.timeout),
            start_period: pick(self.start_period, over.start_period),
            start_interval: pick(self.start_interval, over.start_interval),
            retries: if over.retries != 0 {
                over.retries
            } else {
                self.retries
            },
        }
    }

    /// The probe's argv, or `None` when the check is disabled.
    pub fn probe(&self) -> Option<Vec<String>> {
        match self.test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
            }
            _ => None,
        }
    }

    pub fn interval(&self) -> Duration {
        or_default(self.interval, 30)
    }
    pub fn timeout(&self) -> Duration {
        or_default(self.timeout, 30)
    }
    pub fn start_period(&self) -> Duration {
        Duration::from_nanos(self.start_period)
    }
    /// The wait before the next probe: the start interval while the start
    /// period lasts and the container is still starting, else the interval.
    pub fn next_probe_in(&self, since_start: Duration, starting: bool) -> Duration {
        if self.start_interval != 0 && starting && since_start < self.start_period() {
            Duration::from_nanos(self.start_interval)
        } else {
            self.interval()
        }
    }
    pub fn retries(&self) -> u32 {
        if self.retries == 0 {
            3
        } else {
            self.retries
        }
    }
}

fn or_default(nanos: u64, secs: u64) -> Duration {
    if nanos == 0 {
        Duration::from_secs(secs)
    } else {
        Duration::from_nanos(nanos)
    }
}

/// The logging driver (`--log-driver`). `local` is stored as json-file is
/// (hutch reads both the same way), with Docker's `local` defaults;
/// `none` keeps nothing, and `docker logs` says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    #[default]
    JsonFile,
    Local,
    None,
}

impl LogDriver {
    pub fn parse(name: &str) -> Option<LogDriver> {
        match name {
            "" | "json-file" => Some(LogDriver::JsonFile),
            "local" => Some(LogDriver::Local),
            "none" => Some(LogDriver::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogDriver::JsonFile => "json-file",
            LogDriver::Local => "local",
            LogDriver::None => "none",
        }
    }
}

/// Log options (`--log-opt max-size=10m --log-opt max-file=3`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub driver: LogDriver,
    /// Rotate when the file would grow past this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// Files kept, the live one included (Docker's default 1).
    pub max_file: u32,
}

impl LogConfig {
    /// From Docker's log options map.
    pub fn from_opts(opts: &BTreeMap<String, String>) -> Result<LogConfig, String> {
        LogConfig::for_driver(LogDriver::JsonFile, opts)
    }

    /// Options for `driver`; `local` rotates at 20 MB over 5 files unless
    /// told otherwise, as Docker's.
    pub fn for_driver(
        driver: LogDriver,
        opts: &BTreeMap<String, String>,
    ) -> Result<LogConfig, String> {
        let local = driver == LogDriver::Local;
        let max_size = match opts.get("max-size") {
            Some(s) => Some(parse_size(s)?),
            None if local => Some(20 << 20),
            None => None,
        };
        let max_file = match opts.get("max-file") {
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("invalid max-file {n:?}"))?,
            None if local => 5,
            None => 1,
        };
        Ok(LogConfig {
            driver,
            max_size,
            max_file,
        })
    }

    pub fn files(&self) -> u32 {
        self.max_file.max(1)
    }
}

/// `10m`, `1g`, `512k`, `100` (bytes), as Docker's units.RAMInBytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?}"))
}

/// What `config.json` holds: the options as resolved against the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub created: String,
    /// The reference the container was created from, and its ID.
    pub image: String,
    pub image_id: String,
    /// Docker's `Path` and `Args`: the process's argv split.
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub options: CreateOptions,
    /// The merged healthcheck (image + options), if any.
    pub healthcheck: Option<HealthConfig>,
    pub stop_signal: String,
    pub stop_timeout: u32,
    /// The mounts as resolved at create (Docker's `Mounts`).
    #[serde(default)]
    pub mounts: Vec<crate::volumes::MountPoint>,
    /// The image's VOLUME destinations (inspect's Config.Volumes).
    #[serde(default)]
    pub image_volumes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_as_docker_spells_them() -> Result<(), String> {
        let u = Ulimit::parse("nofile=1024:2048")?;
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = Ulimit::parse("core=-1")?;
        assert_eq!((u.soft, u.hard), (-1, -1));
        assert!(Ulimit::parse("nofile").is_err());
        assert!(Ulimit::parse("nofile=x").is_err());
        Ok(())
    }

    #[test]
    fn restart_policies_parse_as_docker_spells_them() {
        assert_eq!(RestartPolicy::parse("no"), Some(RestartPolicy::default()));
        assert_eq!(
            RestartPolicy::parse("on-failure:2"),
            Some(RestartPolicy {
                name: RestartPolicyName::OnFailure,
                maximum_retry_count: 2
            })
        );
        assert_eq!(
            RestartPolicy::parse("unless-stopped").map(|p| p.name),
            Some(RestartPolicyName::UnlessStopped)
        );
        assert_eq!(RestartPolicy::parse("always:3"), None);
        assert_eq!(RestartPolicy::parse("sometimes"), None);
    }

    #[test]
    fn healthchecks_merge_and_build_probes() {
        let image = HealthConfig {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            interval: 5_000_000_000,
            ..HealthConfig::default()
        };
        let over = HealthConfig {
            retries: 2,
            ..HealthConfig::default()
        };
        let m = image.merged(&over);
        assert_eq!(m.interval(), Duration::from_secs(5));
        assert_eq!(m.timeout(), Duration::from_secs(30));
        assert_eq!(m.retries(), 2);
        assert_eq!(
            m.probe(),
            Some(vec!["/bin/sh".into(), "-c".into(), "test -f /ok".into()])
        );
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..HealthConfig::default()
        };
        assert_eq!(image.merged(&none).probe(), None);
    }

    #[test]
    fn the_start_interval_holds_while_starting_in_the_start_period() {
        let secs = Duration::from_secs;
        let hc = HealthConfig {
            interval: 3_600_000_000_000,
            start_period: 60_000_000_000,
            start_interval: 200_000_000,
            ..HealthConfig::default()
        };
        assert_eq!(hc.next_probe_in(secs(0), true), Duration::from_millis(200));
        assert_eq!(hc.next_probe_in(secs(59), true), Duration::from_millis(200));
        assert_eq!(hc.next_probe_in(secs(61), true), secs(3600));
        assert_eq!(hc.next_probe_in(secs(5), false), secs(3600));
        let no_start_interval = HealthConfig {
            start_interval: 0,
            ..hc
        };
        assert_eq!(no_start_interval.next_probe_in(secs(0), true), secs(3600));
    }

    #[test]
    fn log_sizes_parse_with_units() -> Result<(), String> {
        assert_eq!(parse_size("10m")?, 10 << 20);
        assert_eq!(parse_size("1k")?, 1024);
        assert_eq!(parse_size("300")?, 300);
        assert!(parse_size("x").is_err());
        let opts = BTreeMap::from([
            ("max-size".to_string(), "1k".to_string()),
            ("max-file".to_string(), "3".to_string()),
        ]);
        assert_eq!(
            LogConfig::from_opts(&opts)?,
            LogConfig {
                driver: Default::default(),
                max_size: Some(1024),
                max_file: 3
            }
        );
        Ok(())
    }
}
