//! The containers' side of networking: a container's network options as
//! the daemon receives them (kept in its config), turned into what
//! [`Networks`] needs, and the hook socket the supervisors call between
//! creating a container and starting it, so that the engine plugs its
//! veths into the new netns before the container's process runs (at every
//! start, restart-policy restarts included).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::network::{parse_publish, ContainerNetworking, EndpointOptions, Mode, PortRequest};

/// Docker's `NetworkingConfig.EndpointsConfig[name]`, the parts hutch acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    pub aliases: Vec<String>,
    /// `NAME:ALIAS` links on this network (Compose's `links:`): the
    /// container NAME reached as ALIAS from this one.
    pub links: Vec<String>,
    pub ipv4_address: Option<Ipv4Addr>,
    pub mac_address: Option<String>,
}

/// One `HostConfig.PortBindings` entry as given (`HostPort` may be empty
/// or a range).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A container's networking options (Docker's create body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkOptions {
    /// Endpoint settings by network name.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// `"80/tcp"` → bindings, as `HostConfig.PortBindings` gave them.
    pub port_bindings: BTreeMap<String, Vec<HostBinding>>,
    /// `-P`: every exposed port on a random host port.
    pub publish_all: bool,
    /// `"80/tcp"`: the request's and (at create) the image's exposed ports.
    pub exposed_ports: Vec<String>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`).
    pub extra_hosts: Vec<String>,
    /// Docker's legacy links (`--link NAME[:ALIAS]`, `HostConfig.Links`),
    /// in Docker's stored form `/NAME:/CONTAINER/ALIAS`.
    pub links: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub domainname: Option<String>,
}

/// `80`, `80/tcp`, `53/udp` → `80/tcp`, `53/udp`.
pub fn normalize_port(key: &str) -> String {
    if key.contains('/') {
        key.to_string()
    } else {
        format!("{key}/tcp")
    }
}

impl NetworkOptions {
    /// The ports to publish: the bindings, and with `-P` every exposed
    /// port not bound already, on a random host port.
    pub fn port_requests(&self) -> Result<Vec<PortRequest>, String> {
        let mut out = Vec::new();
        for (key, bindings) in &self.port_bindings {
            let key = normalize_port(key);
            let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            let list: Vec<HostBinding> = if bindings.is_empty() {
                vec![HostBinding::default()]
            } else {
                bindings.clone()
            };
            for b in list {
                let ip = match b.host_ip.as_str() {
                    "" => String::new(),
                    ip if ip.contains(':') => format!("[{ip}]:"),
                    ip => format!("{ip}:"),
                };
                let spec = format!("{ip}{}:{port}/{proto}", b.host_port);
                out.extend(parse_publish(&spec)?);
            }
        }
        if self.publish_all {
            for key in &self.exposed_ports {
                let key = normalize_port(key);
                for r in parse_publish(&key)? {
                    if !out
                        .iter()
                        .any(|o| o.container_port == r.container_port && o.proto == r.proto)
                    {
                        out.push(r);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// What [`Networks`](crate::network::Networks) needs to know about a
/// container. `mode` is `HostConfig.NetworkMode`, with `container:` given
/// the other container's full ID.
pub fn describe(
    id: &str,
    name: &str,
    mode: Option<&str>,
    hostname: Option<&str>,
    labels: &BTreeMap<String, String>,
    net: &NetworkOptions,
) -> Result<ContainerNetworking, String> {
    let endpoint = |cfg: Option<&EndpointConfig>| -> Result<EndpointOptions, String> {
        let cfg = cfg.cloned().unwrap_or_default();
        let mac_address = match cfg.mac_address.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => Some(parse_mac(m)?),
            None => None,
        };
        Ok(EndpointOptions {
            aliases: cfg.aliases,
            ipv4_address: cfg.ipv4_address,
            mac_address,
        })
    };
    let mode = match mode.unwrap_or("") {
        "host" => Mode::Host,
        "none" => Mode::None,
        m if m.starts_with("container:") => Mode::Container(m["container:".len()..].to_string()),
        m => {
            let first = match m {
                "" | "default" => "bridge",
                other => other,
            };
            // The mode's network first (it has the default route), then
            // the other networks of EndpointsConfig (API 1.44+).
            let mut list = vec![(
                first.to_string(),
                endpoint(
                    net.endpoints
                        .get(first)
                        .or_else(|| net.endpoints.get(m))
                        .or_else(|| {
                            (m.is_empty() || m == "default")
                                .then(|| net.endpoints.get("default"))
                                .flatten()
                        }),
                )?,
            )];
            for (n, cfg) in &net.endpoints {
                if n != first && n != m && n != "default" {
                    list.push((n.clone(), endpoint(Some(cfg))?));
                }
            }
            Mode::Networks(list)
        }
    };
    let mut c = ContainerNetworking::new(id, name, mode);
    c.hostname = hostname.map(str::to_string);
    c.ports = net.port_requests()?;
    c.dns = net
        .dns
        .iter()
        .map(|d| {
            d.parse::<IpAddr>()
                .map_err(|_| format!("invalid DNS server address {d:?}"))
        })
        .collect::<Result<_, _>>()?;
    c.dns_search = net.dns_search.clone();
    c.dns_options = net.dns_options.clone();
    c.extra_hosts = net.extra_hosts.clone();
    c.labels = labels.clone();
    Ok(c)
}

/// A link as given (`NAME[:ALIAS]`) or as Docker stores it
/// (`/NAME:/CONTAINER/ALIAS`): the linked container's name and its alias.
pub fn parse_link(spec: &str) -> Result<(String, String), String> {
    let (name, alias) = spec.split_once(':').unwrap_or((spec, spec));
    let name = name.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if name.is_empty() || alias.is_empty() {
        return Err(format!("invalid link {spec:?}: want NAME[:ALIAS]"));
    }
    Ok((name.to_owned(), alias.to_owned()))
}

/// The environment a legacy link gives the linking container `linker`, as
/// moby's `links.Link.ToEnv`: `ALIAS_NAME=/linker/alias`; for the linked
/// container's exposed ports (lowest first) `ALIAS_PORT=proto://ip:port`
/// (the lowest) and `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]`; and its
/// environment as `ALIAS_ENV_<var>` (but HOME and PATH).
pub fn link_env(
    linker: &str,
    alias: &str,
    ip: Ipv4Addr,
    exposed_ports: &[String],
    target_env: &[String],
) -> Vec<String> {
    let prefix = alias.to_ascii_uppercase().replace('-', "_");
    let mut ports: Vec<(u16, String)> = exposed_ports
        .iter()
        .filter_map(|p| {
            let p = normalize_port(p);
            let (port, proto) = p.split_once('/')?;
            Some((port.parse().ok()?, proto.to_owned()))
        })
        .collect();
    ports.sort();
    ports.dedup();
    let mut env = Vec::new();
    if let Some((port, proto)) = ports.first() {
        env.push(format!("{prefix}_PORT={proto}://{ip}:{port}"));
    }
    for (port, proto) in &ports {
        let key = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
        env.push(format!("{key}={proto}://{ip}:{port}"));
        env.push(format!("{key}_ADDR={ip}"));
        env.push(format!("{key}_PORT={port}"));
        env.push(format!("{key}_PROTO={proto}"));
    }
    env.push(format!(
        "{prefix}_NAME=/{}/{alias}",
        linker.trim_start_matches('/')
    ));
    for var in target_env {
        if let Some((k, v)) = var.split_once('=') {
            if k != "HOME" && k != "PATH" {
                env.push(format!("{prefix}_ENV_{k}={v}"));
            }
        }
    }
    env
}

fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address {text:?}");
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// The hook socket under a data root.
pub fn hook_path(data_root: &Path) -> PathBuf {
    data_root.join("network").join("hook.sock")
}

/// Longest socket path that fits `sun_path` with room to spare.
const SUN_PATH_MAX: usize = 100;

/// The hook's path as a supervisor names it: relative to its working
/// directory, the container's (`<data root>/containers/<id>`), when the
/// absolute one would not fit in a socket address.
pub fn hook_path_for_supervisor(data_root: &Path) -> PathBuf {
    let path = hook_path(data_root);
    if path.as_os_str().len() < SUN_PATH_MAX {
        path
    } else {
        PathBuf::from("../../network/hook.sock")
    }
}

/// Binds a unix socket at `path` even when it is longer than `sun_path`
/// allows: through `/proc/self/fd/<dir>/<name>`.
fn bind_any_length(path: &Path) -> io::Result<UnixListener> {
    if path.as_os_str().len() < SUN_PATH_MAX {
        return UnixListener::bind(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixListener::bind(path);
    };
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))
    .join(name);
    UnixListener::bind(short)
}

/// A supervisor's request: plug container `id` whose init is `pid`.
#[derive(Debug, Serialize, Deserialize)]
struct HookRequest {
    id: String,
    pid: i32,
}

#[derive(Debug, Serialize, Deserialize)]
struct HookReply {
    #[serde(default)]
    error: Option<String>,
}

/// Serves the hook socket on a thread: `plug(id, pid)` for each request.
/// What the plugging side does once the plug is done, right before the
/// supervisor gets its answer (the `connect` event).
pub type AfterReply = Box<dyn FnOnce() + Send>;

/// The engine's side of the hook: plugs container `id` (init `pid`) in.
pub type Plug = dyn Fn(&str, i32) -> Result<Option<AfterReply>, String>;

pub fn serve_hook(
    path: &Path,
    plug: impl Fn(&str, i32) -> Result<Option<AfterReply>, String> + Send + Sync + 'static,
) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = bind_any_length(path)?;
    let plug = std::sync::Arc::new(plug);
    std::thread::Builder::new()
        .name("network-hook".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let plug = plug.clone();
                let spawned = std::thread::Builder::new()
                    .name("network-plug".into())
                    .spawn(move || {
                        if let Err(e) = answer(conn, &*plug) {
                            tracing::warn!(%e, "network hook request");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::error!(%e, "starting a network hook thread");
                }
            }
        })?;
    Ok(())
}

fn answer(conn: UnixStream, plug: &Plug) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let req: HookRequest = serde_json::from_str(&line).map_err(io::Error::other)?;
    let (error, after) = match plug(&req.id, req.pid) {
        Ok(after) => (None, after),
        Err(e) => (Some(e), None),
    };
    // Before the answer, which lets the container run: a container that
    // exits at once would otherwise have its `disconnect` published ahead
    // of its `connect`. (Publishing is an in-memory append: microseconds.)
    if let Some(after) = after {
        after();
    }
    let mut out = serde_json::to_vec(&HookReply { error }).map_err(io::Error::other)?;
    out.push(b'\n');
    (&conn).write_all(&out)
}

/// The supervisor's call: asks the engine to plug the created container
/// into its networks. The engine does it while the supervisor goes on with
/// its own part of the start; [`HookCall::answer`] waits for it.
#[derive(Debug)]
pub struct HookCall {
    conn: UnixStream,
}

fn hook_failure(e: &dyn std::fmt::Display) -> String {
    format!("connecting the container to its networks (is the daemon running?): {e}")
}

impl HookCall {
    /// Sends the request for container `id` (init `pid`); does not wait.
    pub fn send(path: &Path, id: &str, pid: i32) -> Result<HookCall, String> {
        let conn = UnixStream::connect(path).map_err(|e| hook_failure(&e))?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| hook_failure(&e))?;
        let mut req = serde_json::to_vec(&HookRequest {
            id: id.to_string(),
            pid,
        })
        .map_err(|e| hook_failure(&e))?;
        req.push(b'\n');
        (&conn).write_all(&req).map_err(|e| hook_failure(&e))?;
        Ok(HookCall { conn })
    }

    /// Waits for the engine's answer: `Err` with its message if the plug
    /// failed.
    pub fn answer(self) -> Result<(), String> {
        let mut line = String::new();
        BufReader::new(&self.conn)
            .read_line(&mut line)
            .map_err(|e| hook_failure(&e))?;
        let reply: HookReply = serde_json::from_str(&line).map_err(|e| hook_failure(&e))?;
        match reply.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_as_given_and_as_docker_stores_them() {
        assert_eq!(parse_link("db"), Ok(("db".into(), "db".into())));
        assert_eq!(
            parse_link("db:database"),
            Ok(("db".into(), "database".into()))
        );
        assert_eq!(
            parse_link("/db:/web/database"),
            Ok(("db".into(), "database".into()))
        );
        assert!(parse_link(":x").is_err());
        assert!(parse_link("db:").is_err());
    }

    #[test]
    fn link_env_as_moby_writes_it() {
        let env = link_env(
            "/web",
            "my-db",
            Ipv4Addr::new(172, 17, 0, 2),
            &["5432/tcp".into(), "53/udp".into()],
            &[
                "PATH=/bin".into(),
                "PGDATA=/data".into(),
                "HOME=/root".into(),
            ],
        );
        assert_eq!(
            env,
            [
                "MY_DB_PORT=udp://172.17.0.2:53",
                "MY_DB_PORT_53_UDP=udp://172.17.0.2:53",
                "MY_DB_PORT_53_UDP_ADDR=172.17.0.2",
                "MY_DB_PORT_53_UDP_PORT=53",
                "MY_DB_PORT_53_UDP_PROTO=udp",
                "MY_DB_PORT_5432_TCP=tcp://172.17.0.2:5432",
                "MY_DB_PORT_5432_TCP_ADDR=172.17.0.2",
                "MY_DB_PORT_5432_TCP_PORT=5432",
                "MY_DB_PORT_5432_TCP_PROTO=tcp",
                "MY_DB_NAME=/web/my-db",
                "MY_DB_ENV_PGDATA=/data",
            ]
        );
    }
    use crate::network::Proto;

    #[test]
    fn bindings_and_publish_all_become_port_requests() -> Result<(), String> {
        let mut o = NetworkOptions::default();
        o.port_bindings.insert(
            "80/tcp".into(),
            vec![HostBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into(),
            }],
        );
        o.port_bindings.insert("53/udp".into(), vec![]);
        o.port_bindings.insert(
            "7000-7001/tcp".into(),
            vec![HostBinding {
                host_ip: String::new(),
                host_port: "9000-9001".into(),
            }],
        );
        o.publish_all = true;
        o.exposed_ports = vec!["80/tcp".into(), "443".into()];
        let r = o.port_requests()?;
        let find = |p: u16| r.iter().find(|x| x.container_port == p).cloned();
        assert_eq!(find(80).and_then(|x| x.host_port), Some(8080));
        assert_eq!(
            find(80).and_then(|x| x.host_ip),
            Some("127.0.0.1".parse().map_err(|_| "ip")?)
        );
        assert_eq!(
            find(53).map(|x| (x.proto, x.host_port)),
            Some((Proto::Udp, None))
        );
        assert_eq!(find(7001).and_then(|x| x.host_port), Some(9001));
        assert_eq!(find(443).map(|x| x.host_port), Some(None));
        assert_eq!(r.len(), 5);
        Ok(())
    }

    #[test]
    fn the_hook_binds_under_a_long_data_root() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("d".repeat(120));
        std::fs::create_dir_all(root.join("network"))?;
        let path = hook_path(&root);
        let (after_tx, after_rx) = std::sync::mpsc::channel();
        serve_hook(&path, move |id, pid| {
            if id == "c1" && pid == 7 {
                let tx = after_tx.clone();
                let then: AfterReply = Box::new(move || {
                    let _ = tx.send(());
                });
                Ok(Some(then))
            } else {
                Err(format!("unexpected {id} {pid}"))
            }
        })?;
        assert!(path.exists());
        assert_eq!(
            hook_path_for_supervisor(&root),
            PathBuf::from("../../network/hook.sock")
        );
        // (A supervisor connects by the relative path from its container
        // directory; the test cannot change its working directory.)
        let network_dir = std::fs::File::open(root.join("network"))?;
        let short = PathBuf::from(format!(
            "/proc/self/fd/{}/hook.sock",
            std::os::fd::AsRawFd::as_raw_fd(&network_dir)
        ));
        let reached = HookCall::send(&short, "c1", 7).and_then(HookCall::answer);
        assert_eq!(reached, Ok(()));
        // The work after the answer ran too.
        after_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .map_err(io::Error::other)?;
        assert!(HookCall::send(&short, "c2", 7)
            .and_then(HookCall::answer)
            .is_err_and(|e| e.contains("unexpected")));
        Ok(())
    }

    #[test]
    fn modes_and_endpoints() -> Result<(), String> {
        let mut o = NetworkOptions::default();
        o.endpoints.insert(
            "app".into(),
            EndpointConfig {
                aliases: vec!["web".into()],
                links: Vec::new(),
                ipv4_address: None,
                mac_address: Some("02:42:ac:11:00:09".into()),
            },
        );
        o.endpoints
            .insert("other".into(), EndpointConfig::default());
        let c = describe("id", "n", Some("app"), None, &BTreeMap::new(), &o)?;
        let Mode::Networks(list) = c.mode else {
            return Err("not networks".into());
        };
        assert_eq!(list[0].0, "app");
        assert_eq!(list[0].1.aliases, vec!["web".to_string()]);
        assert_eq!(list[0].1.mac_address, Some([2, 0x42, 0xac, 0x11, 0, 9]));
        assert_eq!(list[1].0, "other");
        let c = describe("id", "n", Some("default"), None, &BTreeMap::new(), &o)?;
        assert!(matches!(&c.mode, Mode::Networks(l) if l[0].0 == "bridge"));
        assert!(
            describe("id", "n", Some("host"), None, &BTreeMap::new(), &o)
                .is_ok_and(|c| matches!(c.mode, Mode::Host))
        );
        o.dns = vec!["not-an-ip".into()];
        assert!(describe("id", "n", None, None, &BTreeMap::new(), &o).is_err());
        Ok(())
    }
}
