//! `hutch __net`: drives the engine's networking API from JSON commands,
//! one per line on stdin, one JSON reply per line on stdout, with
//! containers run through the runtime. The networking tests and benchmark
//! use it in the pod simulator until the daemon serves networks.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use anyhow::Context;
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::network::{
    parse_publish, Attachment, ContainerNetworking, CreateNetwork, EndpointOptions, Mode, Networks,
    NetworksConfig, UplinkPreference,
};
use hutch_engine::runtime::{Container, ContainerSpec, Output, ProcMode, Runtime};
use nix::sys::signal::Signal;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::cli::NetArgs;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Cmd {
    Info,
    Create {
        name: String,
        #[serde(default)]
        subnet: Option<String>,
        #[serde(default)]
        gateway: Option<Ipv4Addr>,
        #[serde(default)]
        internal: bool,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    },
    Ls,
    Inspect {
        name: String,
    },
    Rm {
        name: String,
    },
    Prune,
    Connect {
        network: String,
        container: String,
        #[serde(default)]
        aliases: Vec<String>,
    },
    Disconnect {
        network: String,
        container: String,
    },
    /// Attach the container's networks, then create and start it.
    Run {
        spec: Box<ContainerSpec>,
        name: String,
        /// `bridge` (default), `host`, `none`, `container:<id>` or network names.
        #[serde(default)]
        networks: Vec<String>,
        #[serde(default)]
        aliases: Vec<String>,
        #[serde(default)]
        publish: Vec<String>,
        #[serde(default)]
        add_host: Vec<String>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        hostname: Option<String>,
        /// Where the container's stdout and stderr go.
        #[serde(default)]
        log: Option<std::path::PathBuf>,
    },
    Settings {
        id: String,
    },
    Wait {
        id: String,
    },
    /// Kill, remove and release a container (its reservations stay).
    Stop {
        id: String,
    },
    /// Free a removed container's reservations.
    Forget {
        id: String,
    },
    /// Links, addresses and nftables tables in the bridge netns, and
    /// nftables tables and links in the pod netns.
    Kernel,
    Shutdown,
}

pub fn run(args: &NetArgs) -> anyhow::Result<ExitCode> {
    let engine = bootstrap::enter(&BootstrapOptions::default())?;
    let uplink = match args.uplink.as_str() {
        "auto" => UplinkPreference::Auto,
        "kernel" => UplinkPreference::Kernel,
        "l4-relay" => UplinkPreference::L4Relay,
        "slirp4netns" => UplinkPreference::Slirp4netns,
        other => anyhow::bail!("unknown uplink {other:?}"),
    };
    let cfg = NetworksConfig {
        data_root: args.data_root.clone(),
        run_dir: args.run_dir.clone(),
        uplink,
        resolv_conf: args.resolv_conf.clone(),
        mtu: None,
        address_pools: Vec::new(),
        bip: None,
    };
    let networks = Networks::open(&cfg, bootstrap::pod_parent())?;
    let runtime = Runtime::from_current_exe().context("locating the hutch binary")?;
    let mut session = Session {
        networks: Some(networks),
        runtime,
        proc_mode: engine.proc_mode,
        containers: HashMap::new(),
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (reply, done) = match serde_json::from_str::<Cmd>(&line) {
            Ok(Cmd::Shutdown) => (session.shutdown().map(|()| Value::Null), true),
            Ok(cmd) => (session.handle(cmd), false),
            Err(e) => (Err(anyhow::anyhow!("bad command: {e}")), false),
        };
        let reply = match reply {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "error": format!("{e:#}") }),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
        if done {
            return Ok(ExitCode::SUCCESS);
        }
    }
    session.shutdown()?;
    Ok(ExitCode::SUCCESS)
}

struct Session {
    networks: Option<Networks>,
    runtime: Runtime,
    proc_mode: ProcMode,
    containers: HashMap<String, Container>,
}

impl Session {
    fn handle(&mut self, cmd: Cmd) -> anyhow::Result<Value> {
        let nets = self.networks.as_ref().context("networking is shut down")?;
        Ok(match cmd {
            Cmd::Info => {
                let (mode, reason) = nets.uplink();
                json!({ "uplink": mode.name(), "reason": reason, "host_gateway": nets.host_gateway() })
            }
            Cmd::Create {
                name,
                subnet,
                gateway,
                internal,
                labels,
            } => serde_json::to_value(nets.create(&CreateNetwork {
                name,
                subnet,
                gateway,
                internal,
                labels,
                ..CreateNetwork::default()
            })?)?,
            Cmd::Ls => serde_json::to_value(nets.list()?)?,
            Cmd::Inspect { name } => serde_json::to_value(nets.inspect(&name)?)?,
            Cmd::Rm { name } => {
                nets.remove(&name)?;
                Value::Null
            }
            Cmd::Prune => serde_json::to_value(nets.prune()?)?,
            Cmd::Connect {
                network,
                container,
                aliases,
            } => serde_json::to_value(nets.connect(
                &network,
                &container,
                &container,
                &EndpointOptions {
                    aliases,
                    ipv4_address: None,
                    mac_address: None,
                },
            )?)?,
            Cmd::Disconnect { network, container } => {
                nets.disconnect(&network, &container)?;
                Value::Null
            }
            Cmd::Run {
                spec,
                name,
                networks,
                aliases,
                publish,
                add_host,
                labels,
                hostname,
                log,
            } => {
                let mut c = container_networking(
                    &spec, name, networks, aliases, publish, add_host, labels, hostname,
                )?;
                let attachment = nets.attach(&c)?;
                c.ports.clear();
                let mut container = create(&self.runtime, *spec, attachment, self.proc_mode, log)?;
                let settings = match nets.plug(&c.id, container.pid()) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = container.delete();
                        return Err(e.into());
                    }
                };
                container.start()?;
                self.containers.insert(c.id.clone(), container);
                serde_json::to_value(&settings)?
            }
            Cmd::Settings { id } => serde_json::to_value(nets.settings(&id)?)?,
            Cmd::Wait { id } => {
                let c = self.containers.get_mut(&id).context("no such container")?;
                json!(c.wait()?)
            }
            Cmd::Stop { id } => {
                if let Some(c) = self.containers.remove(&id) {
                    let _ = c.kill(Signal::SIGKILL);
                    c.delete()?;
                }
                nets.release(&id)?;
                Value::Null
            }
            Cmd::Forget { id } => {
                nets.forget(&id)?;
                Value::Null
            }
            Cmd::Kernel => {
                nets.settle();
                kernel_state(nets)?
            }
            Cmd::Shutdown => Value::Null,
        })
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        for (_, c) in self.containers.drain() {
            let _ = c.kill(Signal::SIGKILL);
            c.delete()?;
        }
        if let Some(nets) = self.networks.take() {
            nets.shutdown()?;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn container_networking(
    spec: &ContainerSpec,
    name: String,
    networks: Vec<String>,
    aliases: Vec<String>,
    publish: Vec<String>,
    add_host: Vec<String>,
    labels: BTreeMap<String, String>,
    hostname: Option<String>,
) -> anyhow::Result<ContainerNetworking> {
    let mode = match networks.first().map(String::as_str) {
        Some("host") => Mode::Host,
        Some("none") => Mode::None,
        Some(other) if other.starts_with("container:") => {
            Mode::Container(other.trim_start_matches("container:").to_owned())
        }
        _ => Mode::Networks(
            networks
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        EndpointOptions {
                            aliases: aliases.clone(),
                            ipv4_address: None,
                            mac_address: None,
                        },
                    )
                })
                .collect(),
        ),
    };
    let mut c = ContainerNetworking::new(&spec.id, &name, mode);
    c.hostname = hostname;
    c.extra_hosts = add_host;
    c.labels = labels;
    for p in &publish {
        c.ports
            .extend(parse_publish(p).map_err(anyhow::Error::msg)?);
    }
    Ok(c)
}

fn create(
    runtime: &Runtime,
    mut spec: ContainerSpec,
    attachment: Attachment,
    proc_mode: ProcMode,
    log: Option<std::path::PathBuf>,
) -> anyhow::Result<Container> {
    spec.namespaces.network = attachment.network;
    spec.namespaces.proc = proc_mode;
    spec.hostname = Some(attachment.hostname);
    spec.mounts.extend(attachment.mounts);
    for dir in [&spec.rootfs.upper, &spec.rootfs.work, &spec.rootfs.target] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let sink = |path: &std::path::Path| -> anyhow::Result<(OwnedFd, OwnedFd)> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok((OwnedFd::from(f.try_clone()?), OwnedFd::from(f)))
    };
    let (out, err) = sink(log.as_deref().unwrap_or(std::path::Path::new("/dev/null")))?;
    Ok(runtime.create(
        &spec,
        Output {
            stdout: Some(out),
            stderr: Some(err),
        },
    )?)
}

fn kernel_state(nets: &Networks) -> anyhow::Result<Value> {
    use hutch_engine::network::{nft, rtnl::Rtnl};
    let bridge = nets.bridge_netns().run(|| {
        let mut rtnl = Rtnl::open()?;
        let links: Vec<String> = rtnl.links()?.into_iter().map(|l| l.name).collect();
        let addrs: Vec<String> = rtnl
            .addresses()?
            .into_iter()
            .map(|a| format!("{}/{}", a.ip, a.prefix))
            .collect();
        Ok((links, addrs, nft::tables(nft::FAMILY_IP)?))
    })?;
    let mut rtnl = Rtnl::open()?;
    let pod_links: Vec<String> = rtnl.links()?.into_iter().map(|l| l.name).collect();
    Ok(json!({
        "bridge": { "links": bridge.0, "addresses": bridge.1, "tables": bridge.2 },
        "pod": { "links": pod_links, "tables": nft::tables(nft::FAMILY_IP).unwrap_or_default() },
    }))
}
