//! A container's /etc/hosts, /etc/resolv.conf and /etc/hostname, written by
//! the engine and bound into the container as Docker does.

use std::net::{IpAddr, Ipv4Addr};

use super::dns;

/// What the resolver file is made from.
#[derive(Debug, Clone, Default)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses the pod's resolv.conf.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => conf.search = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// The nameservers a container on a bridge network can reach: loopback
    /// ones are the pod's own and mean nothing inside the container, so
    /// Docker replaces them with public resolvers; we do too.
    pub fn for_bridge(&self) -> ResolvConf {
        let mut conf = self.clone();
        conf.nameservers.retain(|ip| !ip.is_loopback());
        if conf.nameservers.is_empty() {
            conf.nameservers = vec![
                IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
                IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
            ];
        }
        conf
    }

    /// The file for a container using the embedded DNS server: the pod's
    /// search domains and options, with 127.0.0.11 as the only nameserver.
    pub fn embedded(&self) -> ResolvConf {
        let mut conf = self.clone();
        conf.nameservers = vec![IpAddr::V4(dns::ADDRESS)];
        conf.options.retain(|o| o != "ndots:0");
        conf
    }

    /// Applies `--dns`, `--dns-search`, `--dns-option`.
    pub fn with_overrides(mut self, dns: &[IpAddr], search: &[String], options: &[String]) -> Self {
        if !dns.is_empty() {
            self.nameservers = dns.to_vec();
        }
        if !search.is_empty() {
            self.search = search.to_vec();
        }
        if !options.is_empty() {
            self.options = options.to_vec();
        }
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// /etc/hosts: Docker's fixed lines, the container's own addresses with its
/// hostname, then `--add-host` entries.
pub fn hosts(own: &[(IpAddr, Vec<String>)], extra: &[(String, IpAddr)]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    for (ip, names) in own {
        out.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    out
}

/// Parses `--add-host NAME:IP` (IP may be `host-gateway`, resolved to
/// `host_gateway`).
pub fn parse_extra_host(spec: &str, host_gateway: IpAddr) -> Result<(String, IpAddr), String> {
    let (name, ip) = spec
        .split_once(':')
        .or_else(|| spec.split_once('='))
        .ok_or_else(|| format!("invalid extra host {spec:?}: want NAME:IP"))?;
    let ip = if ip == "host-gateway" {
        host_gateway
    } else {
        ip.trim_matches(['[', ']'])
            .parse()
            .map_err(|_| format!("invalid extra host {spec:?}: {ip:?} is not an IP address"))?
    };
    Ok((name.to_owned(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_resolv_conf_is_adapted_for_containers() {
        let pod = ResolvConf::parse(
            "nameserver 127.0.0.53\nnameserver 10.96.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n",
        );
        let bridge = pod.for_bridge().render();
        assert!(bridge.starts_with("nameserver 10.96.0.10\n"), "{bridge}");
        assert!(bridge.contains("search ns.svc.cluster.local svc.cluster.local\n"));
        let embedded = pod.embedded().render();
        assert!(
            embedded.starts_with("nameserver 127.0.0.11\nsearch"),
            "{embedded}"
        );
        let only_local = ResolvConf::parse("nameserver 127.0.0.53\n").for_bridge();
        assert_eq!(only_local.nameservers.len(), 2);
    }

    #[test]
    fn extra_hosts_resolve_host_gateway() {
        let gw: IpAddr = "10.0.0.9".parse().expect("ip");
        assert_eq!(
            parse_extra_host("host.docker.internal:host-gateway", gw),
            Ok(("host.docker.internal".to_string(), gw))
        );
        assert!(parse_extra_host("nocolon", gw).is_err());
        let text = hosts(
            &[("172.18.0.2".parse().expect("ip"), vec!["abc".into()])],
            &[("db".into(), "10.1.1.1".parse().expect("ip"))],
        );
        assert!(text.contains("10.1.1.1\tdb\n") && text.ends_with("172.18.0.2\tabc\n"));
    }
}
