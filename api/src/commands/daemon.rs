//! `hutch daemon`: prepare the data root and serve the API.

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{bail, Context};
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::containers::{Engine, EngineEvent, EngineOptions};
use hutch_engine::network::ipam::AddressPool;
use hutch_engine::network::{Networks, NetworksConfig, UplinkPreference};
use hutch_images::registry::RegistrySettings;

use crate::cli::{DaemonArgs, GlobalOptions};
use crate::defaults;
use crate::server::{self, EventBus, ListenAddr, TlsOptions};

/// dockerd's default `--shutdown-timeout`, in seconds.
const SHUTDOWN_TIMEOUT: i64 = 15;

pub fn run(global: &GlobalOptions, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    for key in &args.ignored_config {
        tracing::warn!(option = %key, "a dockerd option in the config file that hutch ignores");
    }
    let data_root = global.data_root.clone().unwrap_or_else(defaults::data_root);
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating data root {}", data_root.display()))?;
    // The doctor describes the pod as the pod is: it starts before we leave
    // the pod's namespaces.
    let doctor = server::DoctorProcess::spawn(&data_root);
    let ns_options = BootstrapOptions {
        userns_base: args.userns_base,
    };
    let addrs = if global.hosts.is_empty() {
        vec![ListenAddr::Unix(defaults::socket_path())]
    } else {
        global
            .hosts
            .iter()
            .map(|h| ListenAddr::parse(h))
            .collect::<Result<Vec<_>, _>>()?
    };
    // Outside a pod the engine's root is an unprivileged host ID: give it
    // the directories it writes, while we are still host root.
    if let Some((uid, gid)) = bootstrap::host_root_ids(&ns_options)? {
        let mut dirs = vec![data_root.clone()];
        for addr in &addrs {
            if let ListenAddr::Unix(path) = addr {
                if let Some(dir) = path.parent().filter(|d| *d == defaults::socket_dir()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    dirs.push(dir.to_path_buf());
                }
            }
        }
        for dir in dirs {
            nix::unistd::chown(
                &dir,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .with_context(|| format!("giving {} to the engine's root", dir.display()))?;
        }
    }
    // Before any thread starts (the async runtime's, the engine's): the
    // namespace can only be entered by a single-threaded process.
    let ns = bootstrap::enter(&ns_options)?;
    let images = super::images::open_store_at(&data_root)?;
    let events = Arc::new(EventBus::default());
    let sink = events.clone();
    let mut warnings = ns.warnings;
    let networks = open_networks(args, &data_root, &mut warnings)?;
    let engine = Engine::open(EngineOptions {
        data_root: data_root.clone(),
        exe: std::env::current_exe().context("locating the hutch binary")?,
        proc_mode: ns.proc_mode,
        warnings,
        private_layers_on_tmpfs: args.private_layers_tmpfs,
        on_event: Some(Arc::new(move |e: &EngineEvent| sink.publish_container(e))),
        networks: networks.clone(),
        cgroups: hutch_engine::cgroups::Cgroups::detect(),
        prime_starts: !args.no_primed_starts,
    })
    .context("opening the container engine")?;
    let shutdown_timeout = args.shutdown_timeout.unwrap_or(SHUTDOWN_TIMEOUT);
    // Before the API serves, as dockerd restores: containers that lost
    // their network stopped, those whose policy says so started again.
    engine.restore(shutdown_timeout);
    let containers = engine.clone();
    let config = server::Config {
        addrs,
        socket_group: args.group.clone(),
        tls: tls_options(args)?,
        data_root,
        images,
        engine,
        events,
        doctor,
        registry: registry_settings(args),
        config_warnings: args
            .ignored_config
            .iter()
            .map(|key| {
                format!("daemon config option {key:?} is not supported by hutch and was ignored")
            })
            .collect(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(server::serve(config));
    // A third SIGINT/SIGTERM cuts the stops below short, as with dockerd.
    runtime.spawn(server::force_quit_after(2));
    // dockerd without live-restore: every running container is stopped
    // (with its stop signal and timeout, bounded) before the daemon goes.
    containers.shutdown_containers(shutdown_timeout);
    // Links and nftables rules in the pod's netns outlive us otherwise.
    if let Some(nets) = networks {
        if let Err(e) = nets.shutdown() {
            tracing::warn!(%e, "tearing the networks down");
        }
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The environment's registry settings (as daemonless commands read them)
/// plus the daemon's `--insecure-registry`/`--registry-mirror` and their
/// config-file forms.
fn registry_settings(args: &DaemonArgs) -> RegistrySettings {
    let mut settings = RegistrySettings::from_env();
    settings
        .insecure
        .extend(args.insecure_registries.iter().cloned());
    settings
        .mirrors
        .extend(args.registry_mirrors.iter().cloned());
    settings
}

/// The bridge networks, in a bridge netns of the engine's; without them
/// (a pod that cannot make network namespaces) containers run with
/// network `none` and every create says so.
fn open_networks(
    args: &DaemonArgs,
    data_root: &std::path::Path,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<Arc<Networks>>> {
    let uplink = match args.network_uplink.as_deref().unwrap_or("auto") {
        "auto" => UplinkPreference::Auto,
        "kernel" => UplinkPreference::Kernel,
        "l4-relay" => UplinkPreference::L4Relay,
        "slirp4netns" => UplinkPreference::Slirp4netns,
        other => {
            bail!("unknown --network-uplink {other:?}: use auto, kernel, l4-relay or slirp4netns")
        }
    };
    let cfg = NetworksConfig {
        data_root: data_root.to_path_buf(),
        run_dir: args.exec_root.clone().unwrap_or_else(defaults::socket_dir),
        uplink,
        resolv_conf: "/etc/resolv.conf".into(),
        mtu: match args.mtu {
            None => None,
            Some(mtu @ 68..=65535) => Some(mtu as u32),
            Some(other) => bail!("invalid --mtu {other}: a number from 68 to 65535"),
        },
        address_pools: args
            .default_address_pools
            .iter()
            .map(|p| AddressPool::parse(p).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        bip: args.bip.as_deref().map(parse_bip).transpose()?,
    };
    match Networks::open(&cfg, bootstrap::pod_parent()) {
        Ok(n) => Ok(Some(Arc::new(n))),
        Err(e) => {
            tracing::error!(%e, "networking is unavailable");
            warnings.push(format!(
                "networking is unavailable ({e}): containers run with network mode \"none\""
            ));
            Ok(None)
        }
    }
}

/// `--bip 10.200.0.1/24`: the default bridge's gateway and prefix.
fn parse_bip(spec: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let bad = || anyhow::anyhow!("invalid --bip {spec:?}: want ADDRESS/PREFIX, e.g. 10.200.0.1/24");
    let (ip, prefix) = spec.split_once('/').ok_or_else(bad)?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(bad)?;
    let subnet = hutch_engine::network::ipam::Subnet::new(ip, prefix);
    if ip == subnet.addr || u64::from(u32::from(ip) - u32::from(subnet.addr)) + 1 >= subnet.size() {
        bail!("invalid --bip {spec:?}: the gateway must be a host address of its subnet");
    }
    Ok((ip, prefix))
}

/// dockerd's TLS flags: `--tlsverify` implies `--tls`; both need a
/// certificate and key, and verification needs the clients' CA.
fn tls_options(args: &DaemonArgs) -> anyhow::Result<Option<TlsOptions>> {
    if !args.tls && !args.tlsverify {
        if args.tlscacert.is_some() || args.tlscert.is_some() || args.tlskey.is_some() {
            bail!("--tlscacert, --tlscert and --tlskey take effect only with --tls or --tlsverify");
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&args.tlscert, &args.tlskey) else {
        bail!("--tls and --tlsverify need --tlscert and --tlskey");
    };
    if args.tlsverify && args.tlscacert.is_none() {
        bail!("--tlsverify needs --tlscacert: the CA that signs client certificates");
    }
    Ok(Some(TlsOptions {
        verify: args.tlsverify,
        ca: args.tlscacert.clone(),
        cert: cert.clone(),
        key: key.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bip_is_a_host_address_with_its_prefix() {
        assert_eq!(
            parse_bip("10.200.0.1/24").ok(),
            Some((std::net::Ipv4Addr::new(10, 200, 0, 1), 24))
        );
        for bad in [
            "10.200.0.0/24",
            "10.200.0.255/24",
            "10.200.0.1",
            "10.200.0.1/31",
            "x/24",
        ] {
            assert!(parse_bip(bad).is_err(), "{bad}");
        }
    }
}
