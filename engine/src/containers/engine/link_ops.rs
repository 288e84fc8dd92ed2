//! Docker's container links: legacy `--link NAME[:ALIAS]`
//! (`HostConfig.Links`) and an endpoint's `Links` (Compose's `links:`).
//! Both put the linked container's address in the linking container's
//! /etc/hosts under the alias, its hostname and its name, rewritten at
//! every start (the network files are). A legacy link also gives the
//! environment moby's links give (`ALIAS_PORT_5432_TCP_ADDR`, ...),
//! computed at create from the linked container's address then (its
//! reservation keeps that address across restarts), and needs the linked
//! container running at each start, as Docker refuses otherwise. On
//! user-defined networks Docker answers a link's alias from its DNS
//! server instead; a hosts line answers the same lookups.

use super::{Engine, EngineError, Result};
use crate::containers::config::ContainerConfig;
use crate::containers::networking;
use crate::network::HostLink;

/// One link of a container, its target resolved.
pub(super) struct Linked {
    pub target: String,
    pub alias: String,
    /// `--link` (HostConfig.Links), not an endpoint's.
    pub legacy: bool,
}

impl Engine {
    /// The containers `config` links to, resolved by name now.
    pub(super) fn links_of(&self, config: &ContainerConfig) -> Result<Vec<Linked>> {
        let net = &config.options.network;
        let legacy = net.links.iter().map(|l| (l, true));
        let endpoint = net
            .endpoints
            .values()
            .flat_map(|e| e.links.iter().map(|l| (l, false)));
        let mut out = Vec::new();
        for (spec, legacy) in legacy.chain(endpoint) {
            let (name, alias) = networking::parse_link(spec).map_err(EngineError::Invalid)?;
            let target = self
                .resolve(&name)
                .map_err(|_| EngineError::Invalid(format!("could not get container for {name}")))?;
            if target == config.id {
                return Err(EngineError::Invalid(format!(
                    "cannot link to the container itself ({name})"
                )));
            }
            out.push(Linked {
                target,
                alias,
                legacy,
            });
        }
        Ok(out)
    }

    /// `docker rm --link /PARENT/ALIAS`: removes the legacy link ALIAS from
    /// the container PARENT, and its line from PARENT's /etc/hosts when it
    /// runs (its link environment stays until it is created again, as in
    /// Docker).
    pub fn remove_link(&self, name: &str) -> Result<()> {
        let trimmed = name.trim_start_matches('/');
        let Some((parent, alias)) = trimmed.rsplit_once('/') else {
            return Err(EngineError::Invalid(
                "Conflict, cannot remove the default link name of the container".into(),
            ));
        };
        let id = self.resolve(parent).map_err(|_| {
            EngineError::Invalid(format!("Cannot get parent /{parent} for link name {name}"))
        })?;
        let (config, running) = {
            let mut table = self.lock();
            let r = table
                .containers
                .get_mut(&id)
                .ok_or_else(|| EngineError::NotFound(id.clone()))?;
            let links = &mut r.config.options.network.links;
            let before = links.len();
            links.retain(|l| networking::parse_link(l).map_or(true, |(_, a)| a != alias));
            if links.len() == before {
                return Err(EngineError::NotFound(format!("/{trimmed}")));
            }
            (r.config.clone(), r.state.is_active())
        };
        self.inner.store.dir(&id).write_config(&config)?;
        if running {
            if let Some(nets) = self.networks() {
                nets.remove_host_link(&id, alias)?;
            }
        }
        Ok(())
    }

    /// The /etc/hosts lines of `links`: `ALIAS HOSTNAME [NAME]`, as Docker
    /// writes a link's line.
    pub(super) fn host_links(&self, links: &[Linked]) -> Vec<HostLink> {
        if links.is_empty() {
            return Vec::new();
        }
        let table = self.lock();
        links
            .iter()
            .filter_map(|l| {
                let theirs = &table.containers.get(&l.target)?.config;
                let hostname = theirs
                    .options
                    .hostname
                    .clone()
                    .unwrap_or_else(|| theirs.id.chars().take(12).collect());
                let mut names = format!("{} {hostname}", l.alias);
                if l.alias != theirs.name {
                    names.push(' ');
                    names.push_str(&theirs.name);
                }
                Some(HostLink {
                    container_id: l.target.clone(),
                    names,
                })
            })
            .collect()
    }

    /// The environment of `config`'s legacy links, from the linked
    /// containers' addresses as reserved now.
    pub(super) fn link_env(&self, config: &ContainerConfig, links: &[Linked]) -> Vec<String> {
        let Some(nets) = &self.inner.opts.networks else {
            return Vec::new();
        };
        let mut env = Vec::new();
        for l in links.iter().filter(|l| l.legacy) {
            let Some(ip) = nets.link_address(&config.id, &l.target) else {
                continue;
            };
            let Some(theirs) = self
                .lock()
                .containers
                .get(&l.target)
                .map(|r| r.config.clone())
            else {
                continue;
            };
            env.extend(networking::link_env(
                &config.name,
                &l.alias,
                ip,
                &theirs.options.network.exposed_ports,
                &theirs.env,
            ));
        }
        env
    }

    /// Before a start: every legacy link's container must be running, as
    /// Docker refuses the start otherwise.
    pub(super) fn check_links_running(&self, id: &str) -> Result<()> {
        // Looked at under the lock first: every start passes here, and
        // almost none has a link.
        let config = match self.lock().containers.get(id) {
            None => return Err(EngineError::NotFound(id.to_string())),
            Some(r) if r.config.options.network.links.is_empty() => return Ok(()),
            Some(r) => r.config.clone(),
        };
        for l in self.links_of(&config)?.iter().filter(|l| l.legacy) {
            let table = self.lock();
            let Some(theirs) = table.containers.get(&l.target) else {
                continue;
            };
            if !theirs.state.running {
                return Err(EngineError::Invalid(format!(
                    "Cannot link to a non running container: /{} AS /{}/{}",
                    theirs.config.name, config.name, l.alias
                )));
            }
        }
        Ok(())
    }
}
