//! `hutch daemon --config-file`: dockerd's `daemon.json`, read as dockerd
//! reads it.
//!
//! The keys are dockerd's names for the same settings (`data-root`,
//! `hosts`, `insecure-registries`, `registry-mirrors`, `tlsverify`, ...),
//! so a Docker user's file works. As in dockerd, a setting given both as a
//! flag and in the file is an error naming both values, and a key that is
//! no option at all is an error; dockerd options hutch does not implement
//! (`storage-driver`, `live-restore`, ...) are ignored with a warning, so a
//! file written for Docker does not stop the daemon.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::cli::{DaemonArgs, GlobalOptions};

/// Read when `--config-file` is not given; missing is fine then.
pub const DEFAULT_FILE: &str = "/etc/hutch/daemon.json";

/// dockerd options that hutch accepts in the file but does not act on.
const IGNORED: &[&str] = &[
    "builder",
    "cgroup-parent",
    "default-runtime",
    "default-ulimits",
    "dns",
    "dns-opts",
    "dns-search",
    "exec-opts",
    "experimental",
    "features",
    "ip-forward",
    "ip-masq",
    "ip6tables",
    "iptables",
    "ipv6",
    "live-restore",
    "log-driver",
    "log-opts",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "metrics-addr",
    "runtimes",
    "storage-driver",
    "storage-opts",
    "userland-proxy",
];

/// The settings a file may hold, as dockerd names them.
#[derive(Debug, Default, PartialEq)]
pub struct DaemonFile {
    pub data_root: Option<PathBuf>,
    pub hosts: Vec<String>,
    pub debug: Option<bool>,
    pub log_level: Option<String>,
    pub group: Option<String>,
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    pub network_uplink: Option<String>,
    pub mtu: Option<i64>,
    pub bip: Option<String>,
    /// `[{"base": CIDR, "size": N}]`, as `base=CIDR,size=N` (the flag's form).
    pub default_address_pools: Vec<String>,
    pub shutdown_timeout: Option<i64>,
    /// dockerd options present in the file and ignored.
    pub ignored: Vec<String>,
}

impl DaemonFile {
    /// Reads `path`. `explicit` says the user named it: then it must exist.
    pub fn read(path: &Path, explicit: bool) -> anyhow::Result<DaemonFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(DaemonFile::default())
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "unable to configure the daemon with file {}",
                        path.display()
                    )
                })
            }
        };
        DaemonFile::parse(&text).with_context(|| {
            format!(
                "unable to configure the daemon with file {}",
                path.display()
            )
        })
    }

    pub fn parse(text: &str) -> anyhow::Result<DaemonFile> {
        let map: Map<String, Value> =
            serde_json::from_str(text).context("the file is not a JSON object")?;
        let mut file = DaemonFile::default();
        let mut unknown = Vec::new();
        for (key, value) in &map {
            let at = |e: anyhow::Error| e.context(format!("option {key:?}"));
            match key.as_str() {
                "data-root" => file.data_root = Some(path(value).map_err(at)?),
                "hosts" => file.hosts = strings(value).map_err(at)?,
                "debug" => file.debug = Some(boolean(value).map_err(at)?),
                "log-level" => file.log_level = Some(string(value).map_err(at)?),
                "group" => file.group = Some(string(value).map_err(at)?),
                "tls" => file.tls = Some(boolean(value).map_err(at)?),
                "tlsverify" => file.tlsverify = Some(boolean(value).map_err(at)?),
                "tlscacert" => file.tlscacert = Some(path(value).map_err(at)?),
                "tlscert" => file.tlscert = Some(path(value).map_err(at)?),
                "tlskey" => file.tlskey = Some(path(value).map_err(at)?),
                "exec-root" => file.exec_root = Some(path(value).map_err(at)?),
                "insecure-registries" => file.insecure_registries = strings(value).map_err(at)?,
                "registry-mirrors" => file.registry_mirrors = strings(value).map_err(at)?,
                "network-uplink" => file.network_uplink = Some(string(value).map_err(at)?),
                "shutdown-timeout" => file.shutdown_timeout = Some(integer(value).map_err(at)?),
                "mtu" => file.mtu = Some(integer(value).map_err(at)?),
                "bip" => file.bip = Some(string(value).map_err(at)?),
                "default-address-pools" => {
                    file.default_address_pools = address_pools(value).map_err(at)?
                }
                other if IGNORED.contains(&other) => file.ignored.push(other.to_owned()),
                other => unknown.push(other.to_owned()),
            }
        }
        // Sorted whatever order the JSON map keeps.
        unknown.sort();
        file.ignored.sort();
        if !unknown.is_empty() {
            bail!(
                "the following directives don't match any configuration option: {}",
                unknown.join(", ")
            );
        }
        Ok(file)
    }

    /// Fills the options not given as flags from the file; a setting given
    /// both ways is an error, as in dockerd.
    pub fn merge_into(
        self,
        global: &mut GlobalOptions,
        args: &mut DaemonArgs,
    ) -> anyhow::Result<()> {
        let mut conflicts = Vec::new();
        fn take<T: std::fmt::Debug>(
            name: &str,
            flag: &mut Option<T>,
            file: Option<T>,
            conflicts: &mut Vec<String>,
        ) {
            match (flag.as_ref(), file) {
                (Some(f), Some(v)) => {
                    conflicts.push(format!("{name}: (from flag: {f:?}, from file: {v:?})"))
                }
                (None, Some(v)) => *flag = Some(v),
                _ => {}
            }
        }
        fn take_list(
            name: &str,
            flag: &mut Vec<String>,
            file: Vec<String>,
            conflicts: &mut Vec<String>,
        ) {
            if flag.is_empty() {
                *flag = file;
            } else if !file.is_empty() {
                conflicts.push(format!(
                    "{name}: (from flag: {flag:?}, from file: {file:?})"
                ));
            }
        }
        fn take_bool(name: &str, flag: &mut bool, file: Option<bool>, conflicts: &mut Vec<String>) {
            match file {
                Some(v) if *flag => {
                    conflicts.push(format!("{name}: (from flag: true, from file: {v})"))
                }
                Some(v) => *flag = v,
                None => {}
            }
        }
        let c = &mut conflicts;
        take("data-root", &mut global.data_root, self.data_root, c);
        take_list("hosts", &mut global.hosts, self.hosts, c);
        take_bool("debug", &mut global.debug, self.debug, c);
        take("log-level", &mut global.log_level, self.log_level, c);
        take("group", &mut args.group, self.group, c);
        take_bool("tls", &mut args.tls, self.tls, c);
        take_bool("tlsverify", &mut args.tlsverify, self.tlsverify, c);
        take("tlscacert", &mut args.tlscacert, self.tlscacert, c);
        take("tlscert", &mut args.tlscert, self.tlscert, c);
        take("tlskey", &mut args.tlskey, self.tlskey, c);
        take("exec-root", &mut args.exec_root, self.exec_root, c);
        take_list(
            "insecure-registries",
            &mut args.insecure_registries,
            self.insecure_registries,
            c,
        );
        take_list(
            "registry-mirrors",
            &mut args.registry_mirrors,
            self.registry_mirrors,
            c,
        );
        take(
            "network-uplink",
            &mut args.network_uplink,
            self.network_uplink,
            c,
        );
        take(
            "shutdown-timeout",
            &mut args.shutdown_timeout,
            self.shutdown_timeout,
            c,
        );
        take("mtu", &mut args.mtu, self.mtu, c);
        take("bip", &mut args.bip, self.bip, c);
        take_list(
            "default-address-pools",
            &mut args.default_address_pools,
            self.default_address_pools,
            c,
        );
        if !conflicts.is_empty() {
            bail!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                conflicts.join(", ")
            );
        }
        args.ignored_config = self.ignored;
        Ok(())
    }
}

/// Reads the daemon's file (`--config-file`, else [`DEFAULT_FILE`]) into
/// its options. Runs before logging starts, since the file may set it.
pub fn apply(global: &mut GlobalOptions, args: &mut DaemonArgs) -> anyhow::Result<()> {
    let (path, explicit) = match &args.config_file {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_FILE), false),
    };
    DaemonFile::read(&path, explicit)?.merge_into(global, args)
}

fn string(v: &Value) -> anyhow::Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => bail!("expected a string, got {other}"),
    }
}

fn path(v: &Value) -> anyhow::Result<PathBuf> {
    let s = string(v)?;
    if s.is_empty() {
        bail!("expected a path, got an empty string");
    }
    Ok(PathBuf::from(s))
}

fn integer(v: &Value) -> anyhow::Result<i64> {
    match v.as_i64() {
        Some(n) => Ok(n),
        None => bail!("expected an integer, got {v}"),
    }
}

fn boolean(v: &Value) -> anyhow::Result<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => bail!("expected true or false, got {other}"),
    }
}

fn strings(v: &Value) -> anyhow::Result<Vec<String>> {
    match v {
        Value::Array(items) => items.iter().map(string).collect(),
        other => bail!("expected a list of strings, got {other}"),
    }
}

/// daemon.json's `default-address-pools`: `[{"base": CIDR, "size": N}]`.
fn address_pools(v: &Value) -> anyhow::Result<Vec<String>> {
    let Value::Array(items) = v else {
        bail!("expected a list of {{\"base\": CIDR, \"size\": N}}, got {v}");
    };
    items
        .iter()
        .map(|item| {
            let base = item.get("base").map(string).transpose()?;
            let size = item.get("size").map(integer).transpose()?;
            match (base, size) {
                (Some(base), Some(size)) => Ok(format!("base={base},size={size}")),
                _ => bail!("expected {{\"base\": CIDR, \"size\": N}}, got {item}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parsed(args: &[&str]) -> anyhow::Result<(GlobalOptions, DaemonArgs)> {
        let cli =
            crate::cli::Cli::try_parse_from(std::iter::once("hutch").chain(args.iter().copied()))?;
        match cli.command {
            crate::cli::Command::Daemon(a) => Ok((cli.global, *a)),
            _ => bail!("not the daemon command"),
        }
    }

    #[test]
    fn a_dockerd_file_fills_what_flags_left_out() -> anyhow::Result<()> {
        let file = DaemonFile::parse(
            r#"{"data-root": "/data", "hosts": ["unix:///run/d.sock", "tcp://0.0.0.0:2376"],
                "insecure-registries": ["reg.internal:5000"],
                "registry-mirrors": ["https://mirror.example"],
                "debug": true, "tlsverify": true, "tlscert": "/c.pem",
                "storage-driver": "overlay2", "live-restore": true,
                "shutdown-timeout": 30, "mtu": 1450, "bip": "10.200.0.1/24",
                "default-address-pools": [{"base": "10.201.0.0/16", "size": 24}]}"#,
        )?;
        assert_eq!(file.ignored, ["live-restore", "storage-driver"]);
        let (mut global, mut args) = parsed(&["daemon", "--tlskey", "/k.pem"])?;
        file.merge_into(&mut global, &mut args)?;
        assert_eq!(global.data_root, Some(PathBuf::from("/data")));
        assert_eq!(global.hosts.len(), 2);
        assert!(global.debug && args.tlsverify);
        assert_eq!(args.tlscert, Some(PathBuf::from("/c.pem")));
        assert_eq!(args.tlskey, Some(PathBuf::from("/k.pem")));
        assert_eq!(args.insecure_registries, ["reg.internal:5000"]);
        assert_eq!(args.registry_mirrors, ["https://mirror.example"]);
        assert_eq!(args.ignored_config, ["live-restore", "storage-driver"]);
        assert_eq!(args.shutdown_timeout, Some(30));
        assert_eq!(args.mtu, Some(1450));
        assert_eq!(args.bip.as_deref(), Some("10.200.0.1/24"));
        assert_eq!(args.default_address_pools, ["base=10.201.0.0/16,size=24"]);
        let twice = DaemonFile::parse(r#"{"shutdown-timeout": 5}"#)?;
        let (mut global, mut args) = parsed(&["daemon", "--shutdown-timeout", "-1"])?;
        assert_eq!(args.shutdown_timeout, Some(-1));
        assert!(twice.merge_into(&mut global, &mut args).is_err());
        assert!(DaemonFile::parse(r#"{"shutdown-timeout": "5"}"#).is_err());
        Ok(())
    }

    #[test]
    fn a_setting_given_twice_is_dockerds_error() -> anyhow::Result<()> {
        let file = DaemonFile::parse(r#"{"debug": false, "registry-mirrors": ["https://m"]}"#)?;
        let (mut global, mut args) = parsed(&["-D", "daemon", "--registry-mirror", "https://n"])?;
        let err = file
            .merge_into(&mut global, &mut args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("specified both as a flag and in the configuration file")
                && err.contains("debug: (from flag: true, from file: false)")
                && err.contains("registry-mirrors"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors() {
        let unknown = DaemonFile::parse(r#"{"data-roots": "/x", "insecure-registry": []}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            unknown,
            "the following directives don't match any configuration option: data-roots, insecure-registry"
        );
        let wrong = DaemonFile::parse(r#"{"hosts": "unix:///x"}"#)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            wrong.contains("\"hosts\"") && wrong.contains("list of strings"),
            "{wrong}"
        );
        assert!(DaemonFile::parse("[1, 2]").is_err());
        assert!(DaemonFile::parse("{\"debug\": tru").is_err());
    }

    #[test]
    fn only_a_named_file_must_exist() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("daemon.json");
        assert_eq!(DaemonFile::read(&missing, false)?, DaemonFile::default());
        let err = DaemonFile::read(&missing, true)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("unable to configure the daemon with file"),
            "{err}"
        );
        Ok(())
    }
}
