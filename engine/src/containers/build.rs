//! From Docker's create options and the image's config to the container's
//! record and its runtime spec, with Docker's merge rules.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::{ContainerConfig, CreateOptions, HealthConfig, Ulimit};
use super::sharing::Sharing;
use super::store::ContainerDir;
use super::timefmt;
use crate::runtime::caps::{canonical, DEFAULT_CAPABILITIES};
use crate::runtime::spec::{Donor, IpcMode, Rlimit, Sysctl};
use crate::runtime::sysctl;
use crate::runtime::user::resource;
use crate::runtime::Seccomp;
use crate::runtime::{ContainerSpec, IdMap, NetworkMode, ProcMode, ProcessSpec, RootfsSpec, User};

/// The image config fields a container takes (the `config` object of an
/// OCI/Docker image config).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageRunConfig {
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub healthcheck: Option<HealthConfig>,
    pub stop_signal: Option<String>,
    /// VOLUME destinations (`{"/data": {}}`).
    pub volumes: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

impl ImageRunConfig {
    /// From a whole image config document.
    pub fn from_image_config(doc: &serde_json::Value) -> ImageRunConfig {
        doc.get("config")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default()
    }
}

/// All Linux capabilities, for `--privileged`.
fn all_capabilities() -> Vec<String> {
    caps::all().into_iter().map(|c| c.to_string()).collect()
}

/// Docker's default set with `--cap-add`/`--cap-drop` (`ALL` allowed).
pub fn capabilities(opts: &CreateOptions) -> Result<Vec<String>, String> {
    if opts.privileged {
        return Ok(all_capabilities());
    }
    let norm = |list: &[String]| -> Result<Vec<String>, String> {
        list.iter()
            .map(|c| {
                if c.eq_ignore_ascii_case("all") {
                    Ok("ALL".to_string())
                } else {
                    canonical(c).map_err(|e| e.to_string())
                }
            })
            .collect()
    };
    let (add, drop) = (norm(&opts.cap_add)?, norm(&opts.cap_drop)?);
    let mut set: Vec<String> = if add.iter().any(|c| c == "ALL") {
        all_capabilities()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    for c in add.iter().filter(|c| *c != "ALL") {
        if !set.contains(c) {
            set.push(c.clone());
        }
    }
    if drop.iter().any(|c| c == "ALL") {
        set.retain(|c| add.contains(c));
    } else {
        set.retain(|c| !drop.contains(c));
    }
    Ok(set)
}

/// `--ulimit`s as the runtime's limits: known names only, soft ≤ hard, and
/// Docker's `-1` as unlimited.
pub fn rlimits(opts: &CreateOptions) -> Result<Vec<Rlimit>, String> {
    ulimits_as_rlimits(&opts.ulimits)
}

/// [`rlimits`] of a list (a build's RUNs take them too).
pub fn ulimits_as_rlimits(ulimits: &[Ulimit]) -> Result<Vec<Rlimit>, String> {
    let value = |v: i64| u64::try_from(v).unwrap_or(libc::RLIM_INFINITY);
    ulimits
        .iter()
        .map(|u| {
            if resource(&u.name).is_none() {
                return Err(format!("invalid ulimit type: {}", u.name));
            }
            let (soft, hard) = (value(u.soft), value(u.hard));
            if soft > hard {
                return Err(format!(
                    "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                    u.soft, u.hard
                ));
            }
            Ok(Rlimit {
                name: u.name.clone(),
                soft,
                hard,
            })
        })
        .collect()
}

/// What `--security-opt` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SecurityOpts {
    pub seccomp_unconfined: bool,
    pub no_new_privs: bool,
}

impl SecurityOpts {
    /// Docker's spellings (`seccomp=unconfined`, `seccomp:unconfined`,
    /// `no-new-privileges`, `no-new-privileges=true|false`); AppArmor and
    /// SELinux options are accepted (hutch applies no LSM profile).
    pub fn parse(opts: &[String]) -> Result<SecurityOpts, String> {
        let mut out = SecurityOpts::default();
        for opt in opts {
            let (key, value) = opt
                .split_once(['=', ':'])
                .map_or((opt.as_str(), None), |(k, v)| (k, Some(v)));
            match (key, value) {
                ("seccomp", Some("unconfined")) => out.seccomp_unconfined = true,
                ("seccomp", Some(_)) => {
                    return Err(
                        "custom seccomp profiles are not supported yet: use the default or \
                         seccomp=unconfined"
                            .into(),
                    )
                }
                ("no-new-privileges", None | Some("true")) => out.no_new_privs = true,
                ("no-new-privileges", Some("false")) => out.no_new_privs = false,
                ("apparmor" | "label", Some(_)) => {}
                _ => return Err(format!("invalid --security-opt: {opt:?}")),
            }
        }
        Ok(out)
    }
}

/// `base` with `over`'s `KEY=VALUE` entries replacing same-named ones.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split('=').next().unwrap_or("").to_string();
    let mut out: Vec<String> = base.to_vec();
    for kv in over {
        let k = key(kv);
        match out.iter().position(|e| key(e) == k) {
            Some(i) => out[i] = kv.clone(),
            None => out.push(kv.clone()),
        }
    }
    out
}

/// Docker's default for a container with a network namespace of its own:
/// any port is bindable without CAP_NET_BIND_SERVICE. (Docker's other
/// default, `net.ipv4.ping_group_range`, it leaves out in a user namespace,
/// where the group range cannot be written; so does hutch.)
const UNPRIVILEGED_PORT_START: &str = "net.ipv4.ip_unprivileged_port_start";

/// The sysctls the runtime writes: Docker's default, then the user's
/// (which win). None where the pod's /proc/sys is read-only (the degraded
/// /proc): the engine warns about the user's then.
fn sysctls(
    opts: &CreateOptions,
    proc_mode: ProcMode,
    host_ipc: bool,
) -> Result<Vec<Sysctl>, String> {
    let mode = opts.network_mode.as_deref().unwrap_or("bridge");
    let host_network = mode == "host";
    for name in opts.sysctls.keys() {
        sysctl::check(name, host_network, host_ipc)?;
    }
    if proc_mode == ProcMode::BindEngine {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let own_netns = !host_network && !mode.starts_with("container:");
    if own_netns && !opts.sysctls.contains_key(UNPRIVILEGED_PORT_START) {
        out.push(Sysctl {
            name: UNPRIVILEGED_PORT_START.into(),
            value: "0".into(),
            required: false,
        });
    }
    out.extend(opts.sysctls.iter().map(|(name, value)| Sysctl {
        name: name.clone(),
        value: value.clone(),
        required: true,
    }));
    Ok(out)
}

/// Everything needed to make the record and spec.
pub struct Inputs<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub image_id: &'a str,
    pub image: &'a ImageRunConfig,
    /// Layer directories, bottom first.
    pub layers: &'a [PathBuf],
    pub dir: &'a ContainerDir,
    pub proc_mode: ProcMode,
    /// Identity, or the container's private range.
    pub id_map: IdMap,
    /// The layers are copies owned by the private range already (no
    /// idmapped mounts: see `shifted_layers.rs`).
    pub lowers_shifted: bool,
    /// `--pid`/`--ipc`, as [`super::sharing::parse`] read them.
    pub sharing: &'a Sharing,
}

pub fn build(
    opts: &CreateOptions,
    inp: &Inputs,
) -> Result<(ContainerConfig, ContainerSpec), String> {
    let image = inp.image;
    // Docker: an entrypoint given on create drops the image's cmd.
    let entrypoint = opts
        .entrypoint
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&opts.cmd, &opts.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    let (path, args) = match argv.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => return Err("no command specified".into()),
    };
    let mut env = merge_env(&image.env.clone().unwrap_or_default(), &opts.env);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", crate::runtime::spec::DEFAULT_PATH));
    }
    let user = opts
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    let working_dir = opts
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !working_dir.starts_with('/') {
        return Err(format!(
            "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        ));
    }
    let healthcheck = match (&image.healthcheck, &opts.healthcheck) {
        (Some(i), Some(o)) => Some(i.merged(o)),
        (None, Some(o)) => Some(o.clone()),
        (Some(i), None) => Some(i.clone()),
        (None, None) => None,
    }
    .filter(|h| h.probe().is_some());
    let stop_signal = opts
        .stop_signal
        .clone()
        .or_else(|| image.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    // Bridge networks and `container:` are set up by the engine's networks
    // ([`crate::network::Networks::attach`]) over this.
    let network = match opts.network_mode.as_deref() {
        Some("host") => NetworkMode::Host,
        _ => NetworkMode::None,
    };

    let mut process = ProcessSpec::new(argv);
    process.env = env.clone();
    process.cwd = PathBuf::from(&working_dir);
    process.user = User {
        name: user.clone(),
        group_add: opts.group_add.clone(),
    };
    process.capabilities = capabilities(opts)?;
    process.init = opts.init;
    process.rlimits = rlimits(opts)?;
    let security = SecurityOpts::parse(&opts.security_opt)?;
    process.no_new_privs = security.no_new_privs;
    process.seccomp = if opts.privileged || security.seccomp_unconfined {
        Seccomp::Unconfined
    } else {
        Seccomp::Default
    };
    let rootfs = RootfsSpec {
        lower: inp.layers.iter().rev().cloned().collect(),
        upper: inp.dir.upper(),
        work: inp.dir.work(),
        target: inp.dir.rootfs(),
        readonly: opts.read_only,
        lowers_shifted: inp.lowers_shifted,
    };
    let mut spec = ContainerSpec::new(inp.id, rootfs, process, inp.id_map.clone());
    spec.hostname = Some(
        opts.hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| inp.id.chars().take(12).collect()),
    );
    spec.namespaces.proc = inp.proc_mode;
    spec.namespaces.network = network;
    // The donor as given; the engine resolves it (and its init) at each
    // start, as Docker does.
    spec.namespaces.ipc = inp.sharing.ipc;
    spec.namespaces.donor = inp.sharing.donor.clone().map(|id| Donor {
        id,
        pid: 0,
        pid_ns: inp.sharing.pid_ns,
    });
    if opts.privileged {
        spec.masked_paths.clear();
        spec.readonly_paths.clear();
    }
    spec.devices = super::devices::resolve(&opts.devices, opts.privileged, Path::new("/dev"))?;
    spec.sysctls = sysctls(opts, inp.proc_mode, inp.sharing.ipc == IpcMode::Host)?;
    let config = ContainerConfig {
        id: inp.id.to_string(),
        name: inp.name.to_string(),
        created: timefmt::now(),
        image: opts.image.clone(),
        image_id: inp.image_id.to_string(),
        path,
        args,
        env,
        user,
        working_dir,
        options: opts.clone(),
        healthcheck,
        stop_signal,
        stop_timeout: opts.stop_timeout.unwrap_or(10),
        mounts: Vec::new(),
        image_volumes: image
            .volumes
            .as_ref()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default(),
    };
    Ok((config, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opts_parse_as_docker_spells_them() -> Result<(), String> {
        let parse =
            |v: &[&str]| SecurityOpts::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            parse(&["seccomp=unconfined", "no-new-privileges"])?,
            SecurityOpts {
                seccomp_unconfined: true,
                no_new_privs: true
            }
        );
        assert!(parse(&["seccomp:unconfined"])?.seccomp_unconfined);
        assert!(parse(&["seccomp=/tmp/profile.json"]).is_err());
        assert!(parse(&["bogus"]).is_err());
        assert_eq!(parse(&["apparmor=unconfined"])?, SecurityOpts::default());
        Ok(())
    }

    #[test]
    fn env_merges_by_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let over = vec!["A=2".to_string(), "B=3".to_string()];
        assert_eq!(merge_env(&base, &over), vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn caps_add_and_drop_like_docker() -> Result<(), String> {
        let mut opts = CreateOptions {
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into()],
            ..CreateOptions::default()
        };
        let set = capabilities(&opts)?;
        assert!(set.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!set.contains(&"CAP_CHOWN".to_string()));
        opts.cap_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&opts)?, vec!["CAP_NET_ADMIN".to_string()]);
        Ok(())
    }

    #[test]
    fn entrypoint_on_create_drops_the_images_cmd() -> Result<(), String> {
        let dir = ContainerDir::new("/c");
        let image = ImageRunConfig {
            cmd: Some(vec!["sh".into()]),
            entrypoint: None,
            ..ImageRunConfig::default()
        };
        let inp = Inputs {
            id: &"a".repeat(64),
            name: "x",
            image_id: "sha256:1",
            image: &image,
            layers: &[PathBuf::from("/l0"), PathBuf::from("/l1")],
            dir: &dir,
            proc_mode: ProcMode::Fresh,
            id_map: IdMap::identity(),
            lowers_shifted: false,
            sharing: &Sharing::default(),
        };
        let opts = CreateOptions {
            entrypoint: Some(vec!["echo".into()]),
            ..CreateOptions::default()
        };
        let (config, spec) = build(&opts, &inp)?;
        assert_eq!((config.path.as_str(), config.args.len()), ("echo", 0));
        assert_eq!(
            spec.rootfs.lower,
            vec![PathBuf::from("/l1"), PathBuf::from("/l0")]
        );
        let (config, _) = build(&CreateOptions::default(), &inp)?;
        assert_eq!(config.path, "sh");
        assert_eq!(config.stop_signal, "SIGTERM");
        Ok(())
    }
}
