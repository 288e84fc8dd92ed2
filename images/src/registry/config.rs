//! Per-registry connection settings, as Docker's daemon has them: plain
//! HTTP for localhost and registries listed as insecure, CA certificates
//! from a `certs.d` directory (`<dir>/<host[:port]>/*.crt`, Docker's
//! layout), and mirrors tried before Docker Hub.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where CA certificates for registries live by default.
pub const DEFAULT_CERTS_DIR: &str = "/etc/hutch/certs.d";
/// Hosts Docker Hub images come from when no mirror answers.
pub const HUB_DOMAIN: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Mirrors of Docker Hub (`https://mirror.example` or `host[:port]`),
    /// tried in order before Docker Hub itself.
    pub mirrors: Vec<String>,
    /// `certs.d`-style directory of CA certificates per registry.
    pub certs_dir: PathBuf,
    /// CA certificates (PEM) given explicitly per registry, in addition to
    /// those in `certs_dir`.
    pub extra_ca: BTreeMap<String, Vec<u8>>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            extra_ca: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

/// One place to talk to for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    pub scheme: Scheme,
    /// Extra trusted CA certificates (PEM), for HTTPS.
    pub ca_pem: Vec<Vec<u8>>,
    /// Whether this is a mirror standing in for `domain`.
    pub mirror: bool,
    /// Whether the next endpoint is worth a try if this one fails (a
    /// mirror, or plain HTTP to an insecure registry that may speak TLS).
    pub may_fall_back: bool,
}

impl Endpoint {
    /// Whether an operation that failed here goes on to the next endpoint,
    /// as Docker's does: a mirror that fails is skipped, and so is plain
    /// HTTP to a registry that turned out to speak only TLS (`tls_only`).
    pub fn gives_way(&self, tls_only: bool) -> bool {
        self.mirror || (self.may_fall_back && tls_only)
    }
}

impl RegistrySettings {
    /// Settings from the environment of a daemonless command:
    /// `HUTCH_INSECURE_REGISTRIES` and `HUTCH_REGISTRY_MIRRORS` (comma
    /// separated) and `HUTCH_CERTS_DIR`.
    pub fn from_env() -> RegistrySettings {
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        RegistrySettings {
            insecure: list("HUTCH_INSECURE_REGISTRIES"),
            mirrors: list("HUTCH_REGISTRY_MIRRORS"),
            certs_dir: std::env::var_os("HUTCH_CERTS_DIR")
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR), PathBuf::from),
            extra_ca: BTreeMap::new(),
        }
    }

    /// Where to reach `domain` (a reference's registry part), in the order
    /// to try: Hub mirrors first, then the registry itself.
    pub fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if domain == HUB_DOMAIN {
            for mirror in &self.mirrors {
                let (scheme, host) = split_url(mirror);
                let mut endpoint = self.endpoint(&host, scheme);
                endpoint.mirror = true;
                endpoint.may_fall_back = true;
                out.push(endpoint);
            }
        }
        let endpoint = self.endpoint(domain, None);
        if endpoint.scheme == Scheme::Http {
            // An insecure registry may still speak TLS (Docker tries both):
            // then the certificate must verify, which says what is wrong.
            out.push(Endpoint {
                may_fall_back: true,
                ..endpoint.clone()
            });
            out.push(Endpoint {
                scheme: Scheme::Https,
                ..endpoint
            });
        } else {
            out.push(endpoint);
        }
        out
    }

    fn endpoint(&self, host: &str, scheme: Option<Scheme>) -> Endpoint {
        let ca_pem = self.cas_for(host);
        // A configured CA means the registry speaks TLS; otherwise local
        // and listed registries are plain HTTP, as Docker treats them.
        let scheme = scheme.unwrap_or(if ca_pem.is_empty() && self.is_insecure(host) {
            Scheme::Http
        } else {
            Scheme::Https
        });
        Endpoint {
            host: host.to_owned(),
            scheme,
            ca_pem,
            mirror: false,
            may_fall_back: false,
        }
    }

    /// localhost and loopback addresses are insecure by default, as in
    /// Docker (which treats 127.0.0.0/8 so); others only when listed.
    pub fn is_insecure(&self, host: &str) -> bool {
        let name = strip_port(host);
        name == "localhost"
            || name.starts_with("127.")
            || name == "[::1]"
            || self
                .insecure
                .iter()
                .any(|i| i == host || i == name || in_cidr(i, name))
    }

    fn cas_for(&self, host: &str) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.extra_ca.get(host).cloned().into_iter().collect();
        out.extend(read_cas(&self.certs_dir.join(host)));
        out
    }
}

/// `*.crt` files of a certs.d host directory, sorted by name.
fn read_cas(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| match crate::store::read_limited(p, 1 << 20) {
            Ok(pem) => Some(pem),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "skipping unreadable CA certificate");
                None
            }
        })
        .collect()
}

/// Whether `name` is an IP address inside `cidr` (`10.0.0.0/8`,
/// `fd00::/8`): dockerd's insecure-registries take networks as well as
/// hosts. Not an IP, or not a CIDR: false.
fn in_cidr(cidr: &str, name: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let (Ok(net), Ok(bits), Ok(ip)) = (
        net.parse::<IpAddr>(),
        bits.parse::<u32>(),
        name.parse::<IpAddr>(),
    ) else {
        return false;
    };
    let (net, ip, width) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    // A /0 matches everything; shifting a u128 by 128 would overflow.
    shift >= 128 || (net >> shift) == (ip >> shift)
}

fn split_url(url: &str) -> (Option<Scheme>, String) {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Some(Scheme::Https), rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Some(Scheme::Http), rest)
    } else {
        (None, url)
    };
    (scheme, rest.trim_end_matches('/').to_owned())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_networks_match_the_addresses_in_them() {
        let settings = RegistrySettings {
            insecure: vec!["10.0.0.0/8".into(), "fd00::/8".into(), "bad/99".into()],
            ..RegistrySettings::default()
        };
        assert!(settings.is_insecure("10.1.2.3:5000"));
        assert!(settings.is_insecure("[fd00::1]:5000"));
        assert!(!settings.is_insecure("11.1.2.3:5000"));
        assert!(!settings.is_insecure("reg.internal:5000"));
        assert!(in_cidr("0.0.0.0/0", "192.0.2.1"));
        assert!(!in_cidr("10.0.0.0/33", "10.0.0.1"));
        assert!(!in_cidr("10.0.0.0/8", "fd00::1"));
    }

    #[test]
    fn local_and_listed_registries_are_plain_http() {
        let settings = RegistrySettings {
            insecure: vec!["reg.internal:5000".into()],
            certs_dir: PathBuf::from("/nonexistent"),
            ..RegistrySettings::default()
        };
        let scheme = |d: &str| settings.endpoints(d)[0].scheme;
        let schemes = |d: &str| {
            settings
                .endpoints(d)
                .iter()
                .map(|e| e.scheme)
                .collect::<Vec<_>>()
        };
        assert_eq!(schemes("localhost:5000"), vec![Scheme::Http, Scheme::Https]);
        assert_eq!(schemes("quay.io"), vec![Scheme::Https]);
        assert_eq!(scheme("localhost:5000"), Scheme::Http);
        assert_eq!(scheme("127.0.0.1:36000"), Scheme::Http);
        assert_eq!(scheme("reg.internal:5000"), Scheme::Http);
        assert_eq!(scheme("reg.internal:5001"), Scheme::Https);
        assert_eq!(scheme("quay.io"), Scheme::Https);
    }

    #[test]
    fn a_ca_in_certs_d_means_tls() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host_dir = dir.path().join("127.0.0.1:5443");
        fs::create_dir(&host_dir).expect("mkdir");
        fs::write(host_dir.join("ca.crt"), b"PEM").expect("write");
        fs::write(host_dir.join("client.key"), b"KEY").expect("write");
        let settings = RegistrySettings {
            certs_dir: dir.path().to_owned(),
            ..RegistrySettings::default()
        };
        let endpoint = &settings.endpoints("127.0.0.1:5443")[0];
        assert_eq!(endpoint.scheme, Scheme::Https);
        assert_eq!(endpoint.ca_pem, vec![b"PEM".to_vec()]);
    }

    #[test]
    fn hub_mirrors_come_first() {
        let settings = RegistrySettings {
            mirrors: vec![
                "https://mirror.example/".into(),
                "http://10.0.0.1:5000".into(),
            ],
            ..RegistrySettings::default()
        };
        let hub = settings.endpoints("docker.io");
        let hosts: Vec<(&str, Scheme, bool)> = hub
            .iter()
            .map(|e| (e.host.as_str(), e.scheme, e.mirror))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("mirror.example", Scheme::Https, true),
                ("10.0.0.1:5000", Scheme::Http, true),
                ("docker.io", Scheme::Https, false),
            ]
        );
        assert_eq!(settings.endpoints("quay.io").len(), 1);
    }
}
