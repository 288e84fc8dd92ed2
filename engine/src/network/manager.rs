//! [`Networks`]: the engine's networking API for the daemon.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use nix::sys::socket::{shutdown, Shutdown as How};

use super::dns::{self, Dns};
use super::endpoint::{self, Plug};
use super::files::{self, ResolvConf};
use super::info::{
    EndpointInfo, EndpointSettings, HostPort, IpamConfig, NetworkInfo, NetworkSettings,
};
use super::ipam::{self, Subnet};
use super::netns::{self, NetNs, Worker};
use super::persist::Persister;
use super::podside::{self, PodParent};
use super::ports::{PortRequest, Published};
use super::relay::{self, Relay};
use super::rtnl::{Route, Rtnl};
use super::slirp::{self, Slirp};
use super::state::{EndpointRecord, NetworkRecord, PortBinding, State, Store};
use super::{default_bridge, mtu};
use super::{firewall, sock, UplinkMode};
use crate::runtime::{MountKind, MountSpec, NetworkMode};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("invalid network configuration: {0}")]
    Invalid(String),
    #[error("error while removing network: network {0} has active endpoints")]
    InUse(String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("no available IPv4 addresses on this network's address pools: {0}")]
    Exhausted(String),
    #[error("container {0} is not running: cannot join its network namespace")]
    NotRunning(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, NetworkError>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, NetworkError> {
        self.map_err(|source| NetworkError::Io {
            what: what(),
            source,
        })
    }
}

/// Which uplink to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UplinkPreference {
    /// The kernel path when the pod allows it, else the layer-4 relay.
    #[default]
    Auto,
    Kernel,
    L4Relay,
    /// slirp4netns (needs /dev/net/tun); if it cannot start, as `Auto`.
    Slirp4netns,
}

#[derive(Debug, Clone)]
pub struct NetworksConfig {
    /// The daemon's data root: state under `network/`, container files
    /// under `network/containers/<id>/`.
    pub data_root: PathBuf,
    /// Where container netns are bound for the runtime (`<run_dir>/netns/<id>`).
    pub run_dir: PathBuf,
    pub uplink: UplinkPreference,
    /// The pod's resolv.conf (normally /etc/resolv.conf).
    pub resolv_conf: PathBuf,
    /// The bridge networks' MTU (`--mtu`); default: the pod's (see
    /// [`Networks::open`]).
    pub mtu: Option<u32>,
    /// `--default-address-pool`: where networks without a subnet get one
    /// (Docker's default pools when empty), the default bridge too unless
    /// `bip` says.
    pub address_pools: Vec<ipam::AddressPool>,
    /// `--bip`: the default bridge's gateway address and prefix.
    pub bip: Option<(Ipv4Addr, u8)>,
}

/// `docker network create`.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    /// Only `bridge` (the default) is supported.
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`, inside the subnet.
    pub ip_range: Option<String>,
    /// `--aux-address NAME=IP`, inside the subnet.
    pub aux_addresses: BTreeMap<String, Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// Per-network options of a container (`--network-alias`, `--ip`).
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<Ipv4Addr>,
    /// `--mac-address`; Docker's derivation from the address otherwise.
    pub mac_address: Option<[u8; 6]>,
}

/// The container's network mode.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Bridge networks by name or ID (`bridge` is the default network).
    Networks(Vec<(String, EndpointOptions)>),
    Host,
    None,
    /// Another running container's netns (`container:<id>`).
    Container(String),
}

/// Everything about a container the network needs.
#[derive(Debug, Clone)]
pub struct ContainerNetworking {
    pub id: String,
    pub name: String,
    pub hostname: Option<String>,
    pub mode: Mode,
    pub ports: Vec<PortRequest>,
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`).
    pub extra_hosts: Vec<String>,
    /// Linked containers (`--link`, an endpoint's `Links`): the container
    /// and the names its address gets in /etc/hosts.
    pub links: Vec<HostLink>,
    pub labels: BTreeMap<String, String>,
}

/// A linked container as /etc/hosts names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    pub container_id: String,
    /// `ALIAS HOSTNAME [NAME]`, as Docker writes a link's line.
    pub names: String,
}

impl ContainerNetworking {
    pub fn new(id: &str, name: &str, mode: Mode) -> Self {
        ContainerNetworking {
            id: id.to_owned(),
            name: name.to_owned(),
            hostname: None,
            mode,
            ports: Vec::new(),
            dns: Vec::new(),
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            extra_hosts: Vec::new(),
            links: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    fn hostname(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.id.chars().take(12).collect())
    }
}

/// What the runtime needs to start the container on its networks.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub network: NetworkMode,
    /// /etc/hosts, /etc/resolv.conf, /etc/hostname binds.
    pub mounts: Vec<MountSpec>,
    pub hostname: String,
    pub settings: NetworkSettings,
}

/// A running container's live networking.
struct Running {
    netns: Option<Arc<NetNs>>,
    netns_path: Option<PathBuf>,
    /// Host-side veth names by network ID.
    links: BTreeMap<String, String>,
    _published: Published,
    /// Its published ports as the pod's kernel forwards them (kernel
    /// uplink only; see [`Networks::sync_forwards`]).
    forwards: Vec<podside::Forward>,
    dns_socket: Option<OwnedFd>,
    dns_networks: Arc<RwLock<Vec<String>>>,
    files_dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(fd) = &self.dns_socket {
            let _ = shutdown(std::os::fd::AsRawFd::as_raw_fd(fd), How::Both);
        }
    }
}

struct Inner {
    state: State,
    /// Containers attached but not yet plugged (see [`Networks::plug`]).
    pending: HashMap<String, (ContainerNetworking, Vec<(String, EndpointOptions)>)>,
    rtnl: Rtnl,
    running: HashMap<String, Running>,
}

/// The engine's networks.
pub struct Networks {
    inner: Mutex<Inner>,
    /// Writes `state.json`; see [`Networks::save`] and [`Networks::save_later`].
    persister: Persister,
    bridge_ns: NetNs,
    worker: Arc<Worker>,
    /// Deletes stopped containers' veths in the background.
    reaper: endpoint::Reaper,
    dns: Arc<Dns>,
    mode: UplinkMode,
    uplink_reason: String,
    parent: Option<&'static PodParent>,
    pod_resolv: ResolvConf,
    host_gateway: IpAddr,
    /// The networks' MTU unless one's own option says otherwise.
    mtu: u32,
    address_pools: Vec<ipam::AddressPool>,
    run_dir: PathBuf,
    files_root: PathBuf,
    _relay: Option<Relay>,
    _slirp: Option<Slirp>,
}

impl Networks {
    /// Creates the bridge netns, restores the persisted networks into it
    /// and brings up the uplink. `parent` is the pod-level parent
    /// ([`crate::bootstrap::pod_parent`]), needed for the kernel path and
    /// for ports below 1024.
    pub fn open(
        cfg: &NetworksConfig,
        parent: Option<&'static PodParent>,
    ) -> Result<Networks, NetworkError> {
        let dir = cfg.data_root.join("network");
        let store = Store::new(&dir);
        let mut state = store.load().ctx(|| "loading the network state".into())?;
        unbind_stale(&cfg.run_dir.join("netns"));
        // Read here, in the pod's netns (see `mtu::default_mtu`).
        let mtu = cfg.mtu.unwrap_or_else(mtu::pod_mtu);
        let bridge_ns = NetNs::create().ctx(|| "creating the bridge network namespace".into())?;
        let worker =
            Arc::new(Worker::start(&bridge_ns).ctx(|| "entering the bridge netns".into())?);
        let mut rtnl = bridge_ns
            .rtnl()
            .ctx(|| "netlink in the bridge netns".into())?;
        ensure_predefined(&mut state);
        default_bridge::place(&mut state, cfg.bip, &cfg.address_pools)?;
        let (slirp, (mode, uplink_reason)) = match start_slirp(cfg, &bridge_ns) {
            Some(ok) => ok,
            None => (None, choose_uplink(cfg.uplink, parent, &bridge_ns)),
        };
        for net in state.networks.iter().filter(|n| n.is_bridge()) {
            make_bridge(&mut rtnl, net, mode, mtu::of_network(net, mtu))
                .ctx(|| format!("creating the bridge of {}", net.name))?;
        }
        let relay = match mode {
            UplinkMode::Kernel => {
                bridge_uplink(&mut rtnl)
                    .ctx(|| "configuring the uplink in the bridge netns".into())?;
                None
            }
            UplinkMode::L4Relay => {
                Some(relay::start(worker.clone()).ctx(|| "starting the layer-4 relay".into())?)
            }
            UplinkMode::Slirp4netns => {
                // Replies come in on the tap: forwarding by input device.
                let index = rtnl.require(slirp::TAP).ctx(|| "finding the tap".into())?;
                rtnl.set_forwarding(index, true)
                    .ctx(|| "forwarding on the tap".into())?;
                None
            }
        };
        let pod_resolv =
            ResolvConf::parse(&std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default());
        let upstream = pod_resolv
            .nameservers
            .iter()
            .map(|ip| SocketAddr::new(*ip, 53))
            .collect();
        let host_gateway = host_gateway();
        store
            .save(&state)
            .ctx(|| "saving the network state".into())?;
        let reaper = endpoint::Reaper::start(
            bridge_ns
                .rtnl()
                .ctx(|| "netlink in the bridge netns".into())?,
        )
        .ctx(|| "starting the veth reaper".into())?;
        let nets = Networks {
            inner: Mutex::new(Inner {
                state,
                rtnl,
                pending: HashMap::new(),
                running: HashMap::new(),
            }),
            persister: Persister::spawn(store)
                .ctx(|| "starting the network state writer".into())?,
            bridge_ns,
            worker,
            reaper,
            dns: Arc::new(Dns::new(upstream)),
            mode,
            uplink_reason,
            parent,
            pod_resolv,
            host_gateway,
            mtu,
            address_pools: cfg.address_pools.clone(),
            run_dir: cfg.run_dir.clone(),
            files_root: dir.join("containers"),
            _relay: relay,
            _slirp: slirp,
        };
        {
            let inner = nets.lock()?;
            nets.apply_firewall(&inner)?;
        }
        tracing::info!(uplink = mode.name(), reason = %nets.uplink_reason, mtu, "networking ready");
        Ok(nets)
    }

    /// The uplink in use and why.
    pub fn uplink(&self) -> (UplinkMode, &str) {
        (self.mode, &self.uplink_reason)
    }

    /// What `host-gateway` (and `host.docker.internal`) resolve to: the pod.
    pub fn host_gateway(&self) -> IpAddr {
        self.host_gateway
    }

    /// The bridge netns (for tests and diagnostics).
    pub fn bridge_netns(&self) -> &NetNs {
        &self.bridge_ns
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, NetworkError> {
        self.inner.lock().map_err(|_| NetworkError::Io {
            what: "network state".into(),
            source: io::Error::other("lock poisoned"),
        })
    }

    /// Saves the state and waits until it is on disk: for changes of the
    /// networks themselves, which a user makes and expects to last.
    fn save(&self, inner: &Inner) -> Result<(), NetworkError> {
        self.persister
            .submit(&inner.state)
            .and_then(|generation| self.persister.wait(generation))
            .ctx(|| "saving the network state".into())
    }

    /// Saves the state without waiting: for a container's endpoints and
    /// ports, changed on every create, start and removal (see
    /// `persist.rs` for what a crash can lose, and how it is repaired).
    fn save_later(&self, inner: &Inner) -> Result<(), NetworkError> {
        self.persister
            .submit(&inner.state)
            .map(drop)
            .ctx(|| "saving the network state".into())
    }

    fn apply_firewall(&self, inner: &Inner) -> Result<(), NetworkError> {
        let networks: Vec<NetworkRecord> = inner
            .state
            .networks
            .iter()
            .filter(|n| n.is_bridge())
            .cloned()
            .collect();
        let mode = self.mode;
        self.worker
            .run(move || firewall::batch(&networks, mode).commit())
            .ctx(|| "applying nftables rules in the bridge netns".into())
    }

    /// `docker network create`.
    pub fn create(&self, req: &CreateNetwork) -> Result<NetworkInfo, NetworkError> {
        let driver = req.driver.as_deref().unwrap_or("bridge");
        if driver != "bridge" {
            return Err(NetworkError::Invalid(format!(
                "driver {driver:?} is not supported (only bridge)"
            )));
        }
        if req.name.is_empty()
            || !req
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(NetworkError::Invalid(format!(
                "invalid network name {:?}",
                req.name
            )));
        }
        mtu::check_option(&req.options).map_err(NetworkError::Invalid)?;
        let mut inner = self.lock()?;
        if inner.state.networks.iter().any(|n| n.name == req.name) {
            return Err(NetworkError::Exists(req.name.clone()));
        }
        let taken: Vec<Subnet> = inner
            .state
            .networks
            .iter()
            .filter(|n| n.is_bridge())
            .map(|n| n.subnet)
            .collect();
        let subnet = match &req.subnet {
            Some(s) => {
                let s: Subnet = s.parse().map_err(NetworkError::Invalid)?;
                if let Some(t) = taken.iter().find(|t| t.overlaps(&s)) {
                    return Err(NetworkError::Invalid(format!(
                        "subnet {s} overlaps {t} of another network"
                    )));
                }
                s
            }
            None => ipam::free_subnet(&self.address_pools, &taken).ok_or_else(|| {
                NetworkError::Invalid("the default address pools are exhausted".into())
            })?,
        };
        let gateway = req.gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) {
            return Err(NetworkError::Invalid(format!(
                "gateway {gateway} is not in subnet {subnet}"
            )));
        }
        let ip_range = match &req.ip_range {
            Some(r) => {
                let range: Subnet = r.parse().map_err(NetworkError::Invalid)?;
                if !subnet.contains(range.addr) || range.prefix < subnet.prefix {
                    return Err(NetworkError::Invalid(format!(
                        "ip range {range} is not within subnet {subnet}"
                    )));
                }
                Some(range)
            }
            None => None,
        };
        for (name, ip) in &req.aux_addresses {
            if !subnet.contains(*ip) {
                return Err(NetworkError::Invalid(format!(
                    "auxiliary address: ({name}:{ip}) must belong to the master pool: {subnet}"
                )));
            }
        }
        let id = random_id();
        let rec = NetworkRecord {
            bridge: format!("br-{}", &id[..12]),
            id,
            name: req.name.clone(),
            driver: "bridge".into(),
            created: now(),
            subnet,
            gateway,
            internal: req.internal,
            labels: req.labels.clone(),
            options: req.options.clone(),
            user_subnet: req.subnet.is_some(),
            ip_range,
            aux_addresses: req.aux_addresses.clone(),
        };
        make_bridge(
            &mut inner.rtnl,
            &rec,
            self.mode,
            mtu::of_network(&rec, self.mtu),
        )
        .ctx(|| format!("creating the bridge of {}", rec.name))?;
        inner.state.networks.push(rec.clone());
        self.save(&inner)?;
        self.apply_firewall(&inner)?;
        Ok(self.describe(&inner.state, &rec))
    }

    pub fn list(&self) -> Result<Vec<NetworkInfo>, NetworkError> {
        let inner = self.lock()?;
        Ok(inner
            .state
            .networks
            .iter()
            .map(|n| self.describe(&inner.state, n))
            .collect())
    }

    /// By full ID, name, or unique ID prefix.
    pub fn inspect(&self, id_or_name: &str) -> Result<NetworkInfo, NetworkError> {
        let inner = self.lock()?;
        let net = find(&inner.state, id_or_name)?;
        Ok(self.describe(&inner.state, net))
    }

    pub fn remove(&self, id_or_name: &str) -> Result<(), NetworkError> {
        self.settle();
        let mut inner = self.lock()?;
        let net = find(&inner.state, id_or_name)?.clone();
        if !net.is_bridge() || net.is_default_bridge() {
            return Err(NetworkError::Predefined(net.name));
        }
        if inner.state.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(NetworkError::InUse(net.name));
        }
        inner
            .rtnl
            .delete_link_named(&net.bridge)
            .ctx(|| format!("deleting {}", net.bridge))?;
        inner.state.networks.retain(|n| n.id != net.id);
        if let Ok(mut names) = self.dns.names.write() {
            names.drop_network(&net.id);
        }
        self.save(&inner)?;
        self.apply_firewall(&inner)
    }

    /// Removes user-defined networks without endpoints; returns their names.
    pub fn prune(&self) -> Result<Vec<String>, NetworkError> {
        let unused: Vec<String> = {
            let inner = self.lock()?;
            inner
                .state
                .networks
                .iter()
                .filter(|n| n.is_bridge() && !n.is_default_bridge())
                .filter(|n| !inner.state.endpoints.iter().any(|e| e.network_id == n.id))
                .map(|n| n.id.clone())
                .collect()
        };
        let mut names = Vec::new();
        for id in unused {
            let name = self.inspect(&id)?.name;
            self.remove(&id)?;
            names.push(name);
        }
        Ok(names)
    }

    /// `docker network connect`: reserves an address (and plugs the
    /// container in at once if it runs).
    pub fn connect(
        &self,
        network: &str,
        container_id: &str,
        container_name: &str,
        opts: &EndpointOptions,
    ) -> Result<EndpointSettings, NetworkError> {
        let mut inner = self.lock()?;
        let ep = reserve(
            &mut inner.state,
            network,
            container_id,
            container_name,
            opts,
        )?;
        self.save(&inner)?;
        if inner.running.contains_key(container_id) {
            self.plug_live(&mut inner, &ep)?;
        }
        let net = find(&inner.state, &ep.network_id)?;
        Ok(endpoint_settings(net, &ep))
    }

    /// `docker network disconnect`.
    pub fn disconnect(&self, network: &str, container_id: &str) -> Result<(), NetworkError> {
        let mut inner = self.lock()?;
        let net = find(&inner.state, network)?.clone();
        let Some(pos) = inner
            .state
            .endpoints
            .iter()
            .position(|e| e.network_id == net.id && e.container_id == container_id)
        else {
            return Err(NetworkError::NotConnected {
                container: container_id.to_owned(),
                network: net.name,
            });
        };
        let ep = inner.state.endpoints.remove(pos);
        self.unplug_live(&mut inner, &ep)?;
        self.save(&inner)
    }

    /// Builds the container's network: its netns, endpoints, DNS server,
    /// published ports and files. Call before creating the container; the
    /// result says which netns the runtime joins and what to mount.
    pub fn attach(&self, c: &ContainerNetworking) -> Result<Attachment, NetworkError> {
        let mut inner = self.lock()?;
        if inner.running.contains_key(&c.id) {
            drop(inner);
            self.release(&c.id)?;
            inner = self.lock()?;
        }
        let files_dir = self.files_root.join(&c.id);
        std::fs::create_dir_all(&files_dir).ctx(|| format!("creating {}", files_dir.display()))?;
        let hostname = c.hostname();
        let mut extra = c
            .extra_hosts
            .iter()
            .map(|h| files::parse_extra_host(h, self.host_gateway))
            .collect::<Result<Vec<_>, _>>()
            .map_err(NetworkError::Invalid)?;
        if !c.links.is_empty() {
            let mine: Vec<String> = match &c.mode {
                Mode::Networks(list) => list
                    .iter()
                    .filter_map(|(net, _)| Some(find(&inner.state, net).ok()?.id.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            for link in &c.links {
                if let Some(ip) = link_address(&inner.state, &mine, &link.container_id) {
                    extra.push((link.names.clone(), IpAddr::V4(ip)));
                }
            }
        }
        let overrides =
            |conf: ResolvConf| conf.with_overrides(&c.dns, &c.dns_search, &c.dns_options);
        let (network, own, resolv, running) = match &c.mode {
            Mode::Host => {
                let pod_host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                let _ = pod_host;
                (
                    NetworkMode::Host,
                    Vec::new(),
                    overrides(self.pod_resolv.clone()),
                    None,
                )
            }
            Mode::None => (
                NetworkMode::None,
                Vec::new(),
                overrides(self.pod_resolv.for_bridge()),
                None,
            ),
            Mode::Container(other) => {
                let path = inner
                    .running
                    .get(other)
                    .and_then(|r| r.netns_path.clone())
                    .ok_or_else(|| NetworkError::NotRunning(other.clone()))?;
                let other_dir = self.files_root.join(other);
                let own_resolv =
                    std::fs::read_to_string(other_dir.join("resolv.conf")).unwrap_or_default();
                (
                    NetworkMode::Join(path),
                    Vec::new(),
                    ResolvConf::parse(&own_resolv),
                    None,
                )
            }
            Mode::Networks(list) => {
                let list = if list.is_empty() {
                    vec![("bridge".to_owned(), EndpointOptions::default())]
                } else {
                    list.clone()
                };
                let mut own = Vec::new();
                let mut user_defined = false;
                let mut reserved = false;
                for (net, opts) in &list {
                    let rec = find(&inner.state, net)?.clone();
                    user_defined |= !rec.is_default_bridge();
                    let existing = inner
                        .state
                        .endpoints
                        .iter()
                        .find(|e| e.network_id == rec.id && e.container_id == c.id)
                        .map(|e| e.ip);
                    let ip = match existing {
                        Some(ip) => ip,
                        None => {
                            reserved = true;
                            reserve(&mut inner.state, net, &c.id, &c.name, opts)?.ip
                        }
                    };
                    own.push(ip);
                }
                // A start re-attaches with the same reservations: nothing
                // to write then.
                if reserved {
                    self.save_later(&inner)?;
                }
                let resolv = if user_defined {
                    self.pod_resolv.embedded()
                } else {
                    self.pod_resolv.for_bridge()
                };
                inner.pending.insert(c.id.clone(), (c.clone(), list));
                // A new netns for the container, made by the runtime inside
                // the container's user namespace: the container's root owns
                // it (binding ports below 1024, raw sockets, sysfs), and the
                // engine, owner of that user namespace, plugs the veths in
                // before the start ([`Networks::plug`]).
                (NetworkMode::None, own, overrides(resolv), Some(()))
            }
        };
        let _ = running;
        let own: Vec<(IpAddr, Vec<String>)> = own
            .into_iter()
            .map(|ip| (IpAddr::V4(ip), vec![hostname.clone()]))
            .collect();
        let write = |name: &str, text: String| -> Result<PathBuf, NetworkError> {
            let path = files_dir.join(name);
            // A start re-attaches and mostly writes the same text again;
            // on ext4 a file truncated and rewritten is flushed at close.
            if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))?;
            }
            Ok(path)
        };
        let hosts_text = match &c.mode {
            Mode::Container(other) => {
                std::fs::read_to_string(self.files_root.join(other).join("hosts"))
                    .unwrap_or_default()
            }
            _ => files::hosts(&own, &extra),
        };
        let mounts = vec![
            bind(write("hosts", hosts_text)?, "/etc/hosts"),
            bind(write("resolv.conf", resolv.render())?, "/etc/resolv.conf"),
            bind(write("hostname", format!("{hostname}\n"))?, "/etc/hostname"),
        ];
        let settings = self.settings_locked(&inner, &c.id);
        Ok(Attachment {
            network,
            mounts,
            hostname,
            settings,
        })
    }

    /// Plugs an attached container into its networks once the runtime has
    /// created it (before it starts): veths into the netns of `pid`, the
    /// embedded DNS server there, and the published ports.
    pub fn plug(&self, container_id: &str, pid: i32) -> Result<NetworkSettings, NetworkError> {
        let mut inner = self.lock()?;
        let Some((c, list)) = inner.pending.remove(container_id) else {
            return Ok(self.settings_locked(&inner, container_id));
        };
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let netns = NetNs::open(&path).ctx(|| format!("opening {}", path.display()))?;
        let files_dir = self.files_root.join(&c.id);
        // A name per start, as Docker's sandbox keys: the reaper may still
        // be unbinding the previous start's.
        let netns_path = self.run_dir.join("netns").join(format!(
            "{}-{}",
            c.id.get(..12).unwrap_or(&c.id),
            &random_id()[..8]
        ));
        match self.bring_up(&mut inner, &c, &list, &files_dir, netns, &netns_path) {
            Ok((running, _, _)) => {
                let forwards = !running.forwards.is_empty();
                inner.running.insert(c.id.clone(), running);
                if forwards {
                    self.sync_forwards(&inner);
                }
                Ok(self.settings_locked(&inner, container_id))
            }
            Err(e) => {
                self.undo_bring_up(&mut inner, &c.id, &netns_path);
                Err(e)
            }
        }
    }

    /// Makes the pod netns DNAT the published ports of the running
    /// containers (kernel uplink), so their traffic stays in the kernel
    /// rather than pass through the proxy. If the pod refuses, the proxy's
    /// listeners, still bound, serve those ports instead.
    fn sync_forwards(&self, inner: &Inner) {
        let Some(parent) = self.parent else {
            return;
        };
        let all: Vec<podside::Forward> = inner
            .running
            .values()
            .flat_map(|r| r.forwards.iter().cloned())
            .collect();
        if let Err(e) = parent.forward(all) {
            tracing::warn!(%e, "published ports: in-kernel forwarding refused, the proxy serves them");
        }
    }

    /// Takes a container's names out of the embedded DNS; returns its
    /// endpoints.
    fn unpublish_names(&self, inner: &Inner, container_id: &str) -> Vec<EndpointRecord> {
        let eps: Vec<EndpointRecord> = inner
            .state
            .endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
            .cloned()
            .collect();
        if let Ok(mut names) = self.dns.names.write() {
            for ep in &eps {
                names.remove(&ep.network_id, ep.ip);
            }
        }
        eps
    }

    /// After a failed [`Networks::bring_up`]: removes what it made (the
    /// veths, the names, the netns binding); the reservations stay.
    fn undo_bring_up(&self, inner: &mut Inner, container_id: &str, netns_path: &Path) {
        let eps = self.unpublish_names(inner, container_id);
        for ep in &eps {
            let link = endpoint::host_if_name(&ep.id);
            if let Err(e) = endpoint::unplug(&mut inner.rtnl, &link) {
                tracing::warn!(%link, %e, "removing a veth after a failed plug");
            }
        }
        let _ = netns::unbind(netns_path);
    }

    fn bring_up(
        &self,
        inner: &mut Inner,
        c: &ContainerNetworking,
        list: &[(String, EndpointOptions)],
        files_dir: &Path,
        netns: NetNs,
        path: &Path,
    ) -> Result<(Running, Vec<Ipv4Addr>, bool), NetworkError> {
        // What is worth writing: a new reservation, new aliases, ports.
        let before = (
            inner.state.ports.get(&c.id).cloned(),
            inner.state.endpoints.len(),
        );
        let mut eps = Vec::new();
        for (net, opts) in list {
            let id = find(&inner.state, net)?.id.clone();
            let existing = inner
                .state
                .endpoints
                .iter()
                .find(|e| e.network_id == id && e.container_id == c.id)
                .cloned();
            let ep = match existing {
                Some(mut ep) => {
                    for a in &opts.aliases {
                        if !ep.aliases.contains(a) {
                            ep.aliases.push(a.clone());
                        }
                    }
                    ep
                }
                None => reserve(&mut inner.state, net, &c.id, &c.name, opts)?,
            };
            eps.push(ep);
        }
        // Loopback comes up with the first endpoint (endpoint::plug).
        let netns = Arc::new(netns);
        netns
            .bind_to(path)
            .ctx(|| format!("binding the netns to {}", path.display()))?;
        let mut running = Running {
            netns: Some(netns.clone()),
            netns_path: Some(path.to_path_buf()),
            links: BTreeMap::new(),
            _published: Published::default(),
            forwards: Vec::new(),
            dns_socket: None,
            dns_networks: Arc::default(),
            files_dir: files_dir.to_path_buf(),
        };
        let mut own = Vec::new();
        let mut user_defined = false;
        let mut routed = false;
        for (i, ep) in eps.iter().enumerate() {
            let net = find(&inner.state, &ep.network_id)?.clone();
            let gateway = (!net.internal && !routed).then_some(net.gateway);
            routed |= gateway.is_some();
            let host_if = endpoint::host_if_name(&ep.id);
            endpoint::plug(
                &mut inner.rtnl,
                &netns,
                &Plug {
                    bridge: &net.bridge,
                    host_if: &host_if,
                    container_if: &format!("eth{i}"),
                    mac: ep.mac,
                    mtu: mtu::of_network(&net, self.mtu),
                    ip: ep.ip,
                    prefix: net.subnet.prefix,
                    gateway,
                },
            )
            .ctx(|| format!("connecting {} to {}", c.name, net.name))?;
            running.links.insert(net.id.clone(), host_if);
            own.push(ep.ip);
            if !net.is_default_bridge() {
                user_defined = true;
                if let Ok(mut dns_nets) = running.dns_networks.write() {
                    dns_nets.push(net.id.clone());
                }
                self.register_names(ep, c);
            }
        }
        if user_defined {
            let sock = netns
                .run(|| sock::udp_socket(SocketAddr::from((dns::ADDRESS, 53)), false))
                .ctx(|| "binding the embedded DNS server in the container's netns".into())?;
            running.dns_socket = Some(OwnedFd::from(sock.try_clone().ctx(|| "dup".into())?));
            self.dns
                .serve(sock, running.dns_networks.clone())
                .ctx(|| "starting the embedded DNS server".into())?;
        }
        if let Some(first) = eps.first() {
            let previous = inner.state.ports.get(&c.id).cloned().unwrap_or_default();
            let (published, bindings) =
                Published::start(&c.ports, &previous, first.ip, &self.worker, self.parent)
                    .ctx(|| format!("publishing the ports of {}", c.name))?;
            running._published = published;
            if self.mode == UplinkMode::Kernel {
                running.forwards = bindings
                    .iter()
                    .filter_map(|b| forward(b, first.ip))
                    .collect();
            }
            if bindings.is_empty() {
                inner.state.ports.remove(&c.id);
            } else {
                inner.state.ports.insert(c.id.clone(), bindings);
            }
        }
        let mut changed = before
            != (
                inner.state.ports.get(&c.id).cloned(),
                inner.state.endpoints.len(),
            );
        for ep in eps {
            if let Some(slot) = inner.state.endpoints.iter_mut().find(|e| e.id == ep.id) {
                changed |= *slot != ep;
                *slot = ep;
            }
        }
        if changed {
            self.save_later(inner)?;
        }
        Ok((running, own, user_defined))
    }

    fn register_names(&self, ep: &EndpointRecord, c: &ContainerNetworking) {
        let mut names = vec![
            c.name.trim_start_matches('/').to_owned(),
            c.id.chars().take(12).collect(),
        ];
        names.extend(ep.aliases.iter().cloned());
        if let Some(service) = c.labels.get("com.docker.compose.service") {
            names.push(service.clone());
        }
        if let Ok(mut table) = self.dns.names.write() {
            table.add(&ep.network_id, &names, ep.ip);
        }
    }

    fn plug_live(&self, inner: &mut Inner, ep: &EndpointRecord) -> Result<(), NetworkError> {
        let net = find(&inner.state, &ep.network_id)?.clone();
        let Some(running) = inner.running.get(&ep.container_id) else {
            return Ok(());
        };
        let Some(netns) = running.netns.clone() else {
            return Ok(());
        };
        let index = running.links.len();
        let host_if = endpoint::host_if_name(&ep.id);
        endpoint::plug(
            &mut inner.rtnl,
            &netns,
            &Plug {
                bridge: &net.bridge,
                host_if: &host_if,
                container_if: &format!("eth{index}"),
                mac: ep.mac,
                mtu: mtu::of_network(&net, self.mtu),
                ip: ep.ip,
                prefix: net.subnet.prefix,
                gateway: None,
            },
        )
        .ctx(|| format!("connecting to {}", net.name))?;
        if let Some(running) = inner.running.get_mut(&ep.container_id) {
            running.links.insert(net.id.clone(), host_if);
            if !net.is_default_bridge() {
                if let Ok(mut nets) = running.dns_networks.write() {
                    nets.push(net.id.clone());
                }
                let c = ContainerNetworking::new(&ep.container_id, &ep.container_name, Mode::None);
                self.register_names(ep, &c);
                if running.dns_socket.is_none() {
                    // Its first user-defined network: the embedded DNS
                    // server starts, and resolv.conf points at it, as
                    // Docker does on connect.
                    let sock = netns
                        .run(|| sock::udp_socket(SocketAddr::from((dns::ADDRESS, 53)), false))
                        .ctx(|| "binding the embedded DNS server".into())?;
                    running.dns_socket =
                        Some(OwnedFd::from(sock.try_clone().ctx(|| "dup".into())?));
                    self.dns
                        .serve(sock, running.dns_networks.clone())
                        .ctx(|| "starting the embedded DNS server".into())?;
                    let path = running.files_dir.join("resolv.conf");
                    let current =
                        ResolvConf::parse(&std::fs::read_to_string(&path).unwrap_or_default());
                    let mut conf = self.pod_resolv.embedded();
                    conf.search = current.search;
                    conf.options = current.options;
                    std::fs::write(&path, conf.render())
                        .ctx(|| format!("writing {}", path.display()))?;
                }
            }
        }
        Ok(())
    }

    fn unplug_live(&self, inner: &mut Inner, ep: &EndpointRecord) -> Result<(), NetworkError> {
        if let Ok(mut names) = self.dns.names.write() {
            names.remove(&ep.network_id, ep.ip);
        }
        let link = inner.running.get_mut(&ep.container_id).and_then(|r| {
            if let Ok(mut nets) = r.dns_networks.write() {
                nets.retain(|n| n != &ep.network_id);
            }
            r.links.remove(&ep.network_id)
        });
        if let Some(link) = link {
            endpoint::unplug(&mut inner.rtnl, &link).ctx(|| format!("deleting {link}"))?;
        }
        Ok(())
    }

    /// Adds `links` to a running container's /etc/hosts, each as a line
    /// with the linked container's address on a network both share (links
    /// connected while it runs). Written in place: the container's
    /// /etc/hosts is a bind of this very file.
    pub fn add_host_links(
        &self,
        container_id: &str,
        links: &[HostLink],
    ) -> Result<(), NetworkError> {
        let path = self.files_root.join(container_id).join("hosts");
        let mut text =
            std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
        for link in links {
            if let Some(ip) = self.link_address(container_id, &link.container_id) {
                text.push_str(&format!("{ip}\t{}\n", link.names));
            }
        }
        std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))
    }

    /// Removes a link's line (the one naming `alias` first) from a running
    /// container's /etc/hosts, in place.
    pub fn remove_host_link(&self, container_id: &str, alias: &str) -> Result<(), NetworkError> {
        let path = self.files_root.join(container_id).join("hosts");
        let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
        let kept: String = text
            .lines()
            .filter(|l| l.split_whitespace().nth(1) != Some(alias))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).ctx(|| format!("writing {}", path.display()))
    }

    /// Where `target` is reached from `container_id`, on the networks the
    /// latter has reserved endpoints on (a link's address).
    pub fn link_address(&self, container_id: &str, target: &str) -> Option<Ipv4Addr> {
        let inner = self.lock().ok()?;
        let mine: Vec<String> = inner
            .state
            .endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
            .map(|e| e.network_id.clone())
            .collect();
        link_address(&inner.state, &mine, target)
    }

    /// Tears down a stopped container's live networking (veths, DNS
    /// server, port listeners, netns binding). Its addresses and resolved
    /// ports stay reserved for its next start.
    pub fn release(&self, container_id: &str) -> Result<(), NetworkError> {
        let mut inner = self.lock()?;
        inner.pending.remove(container_id);
        let Some(running) = inner.running.remove(container_id) else {
            return Ok(());
        };
        self.unpublish_names(&inner, container_id);
        if !running.forwards.is_empty() {
            self.sync_forwards(&inner);
        }
        // The kernel takes tens of milliseconds to delete a veth: the
        // reaper deletes them off this path, by index (see endpoint::Reaper).
        for link in running.links.values() {
            self.reaper
                .unplug_later(&mut inner.rtnl, link)
                .ctx(|| format!("deleting {link}"))?;
        }
        if let Some(path) = running.netns_path.clone() {
            self.reaper
                .unbind_later(path)
                .ctx(|| "unbinding a stopped container's netns".into())?;
        }
        Ok(())
    }

    /// Forgets a removed container: releases it and frees its endpoints,
    /// ports and files.
    pub fn forget(&self, container_id: &str) -> Result<(), NetworkError> {
        self.release(container_id)?;
        let mut inner = self.lock()?;
        let endpoints = inner.state.endpoints.len();
        inner
            .state
            .endpoints
            .retain(|e| e.container_id != container_id);
        let had_ports = inner.state.ports.remove(container_id).is_some();
        let dir = self.files_root.join(container_id);
        self.reaper
            .remove_dir_later(dir.clone())
            .ctx(|| format!("removing {}", dir.display()))?;
        // Unchanged (`--network none`, `host`): no rewrite, which on ext4
        // costs a data flush on the `--rm` path (up to ~15 ms measured).
        if had_ports || inner.state.endpoints.len() != endpoints {
            self.save_later(&inner)?;
        }
        Ok(())
    }

    /// Drops the endpoints, ports and files of containers that no longer
    /// exist: their removal was the last change before a crash, and its
    /// write (or the reaper's removal of the files) was lost (see
    /// `persist.rs`). Called when the engine opens, with
    /// every container it knows.
    pub fn keep_only(&self, containers: &HashSet<String>) -> Result<(), NetworkError> {
        // Their files too, which the reaper removes after the removal.
        if let Ok(entries) = std::fs::read_dir(&self.files_root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !containers.contains(&name) {
                    let _ = self.reaper.remove_dir_later(entry.path());
                }
            }
        }
        let mut inner = self.lock()?;
        let stale: BTreeSet<String> = inner
            .state
            .endpoints
            .iter()
            .map(|e| &e.container_id)
            .chain(inner.state.ports.keys())
            .filter(|id| !containers.contains(*id))
            .cloned()
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        for id in &stale {
            tracing::info!(%id, "dropping the network reservations of a removed container");
        }
        inner
            .state
            .endpoints
            .retain(|e| !stale.contains(&e.container_id));
        inner.state.ports.retain(|id, _| !stale.contains(id));
        self.save(&inner)
    }

    /// The container's Docker-shaped `NetworkSettings`.
    pub fn settings(&self, container_id: &str) -> Result<NetworkSettings, NetworkError> {
        let inner = self.lock()?;
        Ok(self.settings_locked(&inner, container_id))
    }

    fn settings_locked(&self, inner: &Inner, container_id: &str) -> NetworkSettings {
        let mut s = NetworkSettings::default();
        for ep in inner
            .state
            .endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
        {
            if let Some(net) = inner.state.networks.iter().find(|n| n.id == ep.network_id) {
                s.networks
                    .insert(net.name.clone(), endpoint_settings(net, ep));
            }
        }
        for b in inner.state.ports.get(container_id).into_iter().flatten() {
            s.ports
                .entry(format!("{}/{}", b.container_port, b.proto.name()))
                .or_default()
                .push(HostPort {
                    host_ip: b.host_ip.to_string(),
                    host_port: b.host_port.to_string(),
                });
        }
        if let Some(r) = inner.running.get(container_id) {
            s.sandbox_key = r
                .netns_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
        }
        s
    }

    /// Waits until the veths of released containers are deleted.
    pub fn settle(&self) {
        self.reaper.settle();
    }

    /// The networks a container has endpoints on (by ID, the first
    /// reserved first) with their options: what it is plugged into at its
    /// next start, after any connect and disconnect.
    pub fn endpoints_of(
        &self,
        container_id: &str,
    ) -> Result<Vec<(String, EndpointOptions)>, NetworkError> {
        Ok(self
            .lock()?
            .state
            .endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
            .map(|e| {
                (
                    e.network_id.clone(),
                    EndpointOptions {
                        aliases: e.aliases.clone(),
                        ipv4_address: e.static_ip.then_some(e.ip),
                        mac_address: Some(e.mac),
                    },
                )
            })
            .collect())
    }

    /// The resolved published ports of a container (`docker port`).
    pub fn ports(&self, container_id: &str) -> Result<Vec<PortBinding>, NetworkError> {
        Ok(self
            .lock()?
            .state
            .ports
            .get(container_id)
            .cloned()
            .unwrap_or_default())
    }

    /// Removes everything from the kernel: containers' live networking,
    /// bridges, the uplink and the nftables tables. The persisted state is
    /// kept for the next start.
    pub fn shutdown(&self) -> Result<(), NetworkError> {
        let ids: Vec<String> = self.lock()?.running.keys().cloned().collect();
        for id in ids {
            self.release(&id)?;
        }
        self.settle();
        self.persister
            .flush()
            .ctx(|| "saving the network state".into())?;
        {
            let mut inner = self.lock()?;
            let bridges: Vec<String> = inner
                .state
                .networks
                .iter()
                .filter(|n| n.is_bridge())
                .map(|n| n.bridge.clone())
                .collect();
            for b in bridges {
                inner
                    .rtnl
                    .delete_link_named(&b)
                    .ctx(|| format!("deleting {b}"))?;
            }
            inner
                .rtnl
                .delete_link_named(podside::BRIDGE_LINK)
                .ctx(|| "deleting the uplink".into())?;
        }
        self.worker
            .run(firewall::clear)
            .ctx(|| "clearing nftables in the bridge netns".into())?;
        if self.mode == UplinkMode::Kernel {
            if let Some(parent) = self.parent {
                parent
                    .uplink_down()
                    .ctx(|| "removing the uplink from the pod netns".into())?;
            }
        }
        Ok(())
    }

    fn describe(&self, state: &State, net: &NetworkRecord) -> NetworkInfo {
        let containers = state
            .endpoints
            .iter()
            .filter(|e| e.network_id == net.id)
            .map(|e| {
                (
                    e.container_id.clone(),
                    EndpointInfo {
                        name: e.container_name.clone(),
                        endpoint_id: e.id.clone(),
                        mac_address: ipam::mac_string(e.mac),
                        ipv4_address: format!("{}/{}", e.ip, net.subnet.prefix),
                        ipv6_address: String::new(),
                    },
                )
            })
            .collect();
        let ipam = if net.is_bridge() {
            vec![IpamConfig {
                subnet: net.subnet.to_string(),
                gateway: net.gateway.to_string(),
                ip_range: net.ip_range.map(|r| r.to_string()).unwrap_or_default(),
                auxiliary_addresses: net
                    .aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
            }]
        } else {
            Vec::new()
        };
        let mut options = net.options.clone();
        if net.is_default_bridge() {
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            options.insert("com.docker.network.bridge.name".into(), net.bridge.clone());
        }
        NetworkInfo {
            name: net.name.clone(),
            id: net.id.clone(),
            created: net.created.clone(),
            scope: "local".into(),
            driver: net.driver.clone(),
            enable_ipv6: false,
            ipam,
            internal: net.internal,
            attachable: false,
            containers,
            options,
            labels: net.labels.clone(),
        }
    }
}

/// How the pod's kernel forwards a resolved published port to `ip`.
fn forward(b: &PortBinding, ip: Ipv4Addr) -> Option<podside::Forward> {
    let host_ip = match b.host_ip {
        IpAddr::V4(v4) => (!v4.is_unspecified()).then_some(v4),
        // IPv6 host addresses stay with the proxy.
        IpAddr::V6(_) => return None,
    };
    Some(podside::Forward {
        proto: b.proto,
        host_ip,
        host_port: b.host_port,
        to: std::net::SocketAddrV4::new(ip, b.container_port),
    })
}

fn bind(source: PathBuf, dest: &str) -> MountSpec {
    MountSpec {
        destination: PathBuf::from(dest),
        kind: MountKind::Bind {
            source,
            readonly: false,
            recursive: false,
        },
    }
}

/// The address a linked container is reached at from a container on
/// networks `mine` (IDs, in order): its address on the first network they
/// share, else on any of its networks (Docker's legacy links are on the
/// default bridge); `None` without one.
fn link_address(state: &State, mine: &[String], target: &str) -> Option<Ipv4Addr> {
    let theirs: Vec<&EndpointRecord> = state
        .endpoints
        .iter()
        .filter(|e| e.container_id == target)
        .collect();
    let shared = mine
        .iter()
        .find_map(|id| theirs.iter().find(|e| &e.network_id == id));
    shared.or(theirs.first()).map(|e| e.ip)
}

fn find<'a>(state: &'a State, key: &str) -> Result<&'a NetworkRecord, NetworkError> {
    if let Some(n) = state.networks.iter().find(|n| n.id == key || n.name == key) {
        return Ok(n);
    }
    let mut hits = state.networks.iter().filter(|n| n.id.starts_with(key));
    match (hits.next(), hits.next()) {
        (Some(n), None) if !key.is_empty() => Ok(n),
        _ => Err(NetworkError::NotFound(key.to_owned())),
    }
}

/// Netns bindings a previous daemon left (its reaper's queue is lost with
/// it): no container of this daemon runs plugged yet, so every one but the
/// slirp4netns bridge binding, which [`Slirp::start`] renews, is stale.
fn unbind_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == "bridge" {
            continue;
        }
        if let Err(e) = netns::unbind(&entry.path()) {
            tracing::warn!(path = %entry.path().display(), %e, "removing a stale netns binding");
        }
    }
}

fn reserve(
    state: &mut State,
    network: &str,
    container_id: &str,
    container_name: &str,
    opts: &EndpointOptions,
) -> Result<EndpointRecord, NetworkError> {
    let net = find(state, network)?.clone();
    if !net.is_bridge() {
        return Err(NetworkError::Invalid(format!(
            "container cannot be connected to the {} network this way",
            net.name
        )));
    }
    if state
        .endpoints
        .iter()
        .any(|e| e.network_id == net.id && e.container_id == container_id)
    {
        return Err(NetworkError::AlreadyConnected {
            container: container_name.to_owned(),
            network: net.name,
        });
    }
    let mut used: BTreeSet<Ipv4Addr> = state
        .endpoints
        .iter()
        .filter(|e| e.network_id == net.id)
        .map(|e| e.ip)
        .collect();
    used.insert(net.gateway);
    used.extend(net.aux_addresses.values().copied());
    let ip = match opts.ipv4_address {
        Some(ip) if !net.subnet.contains(ip) || used.contains(&ip) => {
            return Err(NetworkError::Invalid(format!(
                "address {ip} is not free in {}",
                net.subnet
            )));
        }
        Some(ip) => ip,
        None => ipam::free_address_in(&net.subnet, net.ip_range.as_ref(), &used)
            .ok_or_else(|| NetworkError::Exhausted(net.name.clone()))?,
    };
    let ep = EndpointRecord {
        id: random_id(),
        network_id: net.id.clone(),
        container_id: container_id.to_owned(),
        container_name: container_name.trim_start_matches('/').to_owned(),
        ip,
        mac: opts.mac_address.unwrap_or_else(|| ipam::mac_for(ip)),
        aliases: opts.aliases.clone(),
        static_ip: opts.ipv4_address.is_some(),
    };
    state.endpoints.push(ep.clone());
    Ok(ep)
}

fn endpoint_settings(net: &NetworkRecord, ep: &EndpointRecord) -> EndpointSettings {
    let mut dns_names = vec![
        ep.container_name.clone(),
        ep.container_id.chars().take(12).collect(),
    ];
    dns_names.extend(ep.aliases.iter().cloned());
    EndpointSettings {
        network_id: net.id.clone(),
        endpoint_id: ep.id.clone(),
        gateway: net.gateway.to_string(),
        ip_address: ep.ip.to_string(),
        ip_prefix_len: net.subnet.prefix,
        mac_address: ipam::mac_string(ep.mac),
        aliases: ep.aliases.clone(),
        dns_names: if net.is_default_bridge() {
            Vec::new()
        } else {
            dns_names
        },
    }
}

/// The default `bridge` network and the `host` and `none` pseudo networks.
fn ensure_predefined(state: &mut State) {
    for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
        if state.networks.iter().any(|n| n.name == name) {
            continue;
        }
        let id = random_id();
        state.networks.push(NetworkRecord {
            bridge: if name == "bridge" {
                "docker0".into()
            } else {
                String::new()
            },
            id,
            name: name.into(),
            driver: driver.into(),
            created: now(),
            subnet: ipam::DEFAULT_BRIDGE,
            gateway: ipam::DEFAULT_BRIDGE.first_host(),
            internal: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            user_subnet: false,
            ip_range: None,
            aux_addresses: BTreeMap::new(),
        });
    }
}

/// Creates the network's bridge in the bridge netns with the gateway
/// address and the network's MTU.
fn make_bridge(rtnl: &mut Rtnl, net: &NetworkRecord, mode: UplinkMode, mtu: u32) -> io::Result<()> {
    rtnl.delete_link_named(&net.bridge)?;
    rtnl.add_bridge(&net.bridge, Some(ipam::mac_for(net.gateway)), mtu)?;
    let index = rtnl.require(&net.bridge)?;
    rtnl.add_address(index, net.gateway, net.subnet.prefix)?;
    rtnl.set_up(index)?;
    if mode.link().is_some() && !net.internal {
        rtnl.set_forwarding(index, true)?;
    }
    Ok(())
}

/// The kernel path, bridge-netns side: address, default route, forwarding.
fn bridge_uplink(rtnl: &mut Rtnl) -> io::Result<()> {
    let index = rtnl.require(podside::BRIDGE_LINK)?;
    rtnl.add_address(index, podside::BRIDGE_ADDR, podside::UPLINK_PREFIX)?;
    rtnl.set_up(index)?;
    rtnl.set_forwarding(index, true)?;
    rtnl.add_route(&Route {
        gateway: Some(podside::POD_ADDR),
        ..Route::default()
    })
}

/// slirp4netns when asked for: `None` when not asked, else the running
/// slirp4netns and the mode, or the automatic choice if it cannot start.
fn start_slirp(
    cfg: &NetworksConfig,
    bridge_ns: &NetNs,
) -> Option<(Option<Slirp>, (UplinkMode, String))> {
    if cfg.uplink != UplinkPreference::Slirp4netns {
        return None;
    }
    match Slirp::start(bridge_ns, &cfg.run_dir) {
        Ok(s) => Some((
            Some(s),
            (
                UplinkMode::Slirp4netns,
                "chosen by configuration (slirp4netns on /dev/net/tun)".into(),
            ),
        )),
        Err(e) => {
            tracing::warn!(%e, "slirp4netns was asked for but cannot start");
            None
        }
    }
}

fn choose_uplink(
    pref: UplinkPreference,
    parent: Option<&PodParent>,
    bridge_ns: &NetNs,
) -> (UplinkMode, String) {
    if pref == UplinkPreference::L4Relay {
        return (UplinkMode::L4Relay, "chosen by configuration".into());
    }
    let Some(parent) = parent else {
        return (
            UplinkMode::L4Relay,
            "no pod-level parent process to create the uplink".into(),
        );
    };
    let fd = match bridge_ns.fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            return (
                UplinkMode::L4Relay,
                format!("duplicating the bridge netns: {e}"),
            )
        }
    };
    match parent.uplink_up(&fd) {
        Ok(()) => (
            UplinkMode::Kernel,
            "links and NAT can be added to the pod's network namespace".into(),
        ),
        Err(e) => {
            if pref == UplinkPreference::Kernel {
                tracing::warn!(%e, "the kernel uplink was asked for but is not possible");
            }
            (
                UplinkMode::L4Relay,
                format!("the pod's network namespace refused the uplink veth: {e}"),
            )
        }
    }
}

/// What `host-gateway` means here: the pod's first global IPv4 address
/// (builds, which run in the pod's network, resolve it so too).
pub fn host_gateway() -> IpAddr {
    pod_address().map_or(IpAddr::V4(podside::POD_ADDR), IpAddr::V4)
}

/// The pod's first global IPv4 address.
fn pod_address() -> Option<Ipv4Addr> {
    let mut rtnl = Rtnl::open().ok()?;
    rtnl.addresses()
        .ok()?
        .into_iter()
        .map(|a| a.ip)
        .find(|ip| !ip.is_loopback() && !ip.is_link_local())
}

fn random_id() -> String {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // /dev/urandom is always there in practice; fall back to the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes[..16].copy_from_slice(&t.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
