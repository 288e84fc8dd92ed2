//! Address management: subnets for new networks from Docker's default
//! pools, addresses for endpoints, and MAC addresses derived from the IP as
//! Docker derives them (02:42 followed by the four address bytes).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 subnet, `addr/prefix`, with `addr` the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// The `n`th address of the subnet.
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }

    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first usable host address (Docker's default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        self.nth(1)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid subnet {s:?}: want ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("invalid subnet {s:?}: {ip:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 30)
            .ok_or_else(|| format!("invalid subnet {s:?}: prefix length must be 0-30"))?;
        Ok(Subnet::new(ip, len))
    }
}

/// The default `bridge` network's subnet, as Docker's docker0.
pub const DEFAULT_BRIDGE: Subnet = Subnet {
    addr: Ipv4Addr::new(172, 17, 0, 0),
    prefix: 16,
};

/// Docker's default address pools for new networks, in its order:
/// 172.17-31.0.0/16, then 192.168.0.0/16 cut into /20s.
pub fn default_pool() -> impl Iterator<Item = Subnet> {
    let b = (17..=31u8).map(|x| Subnet::new(Ipv4Addr::new(172, x, 0, 0), 16));
    let c = (0..16u8).map(|x| Subnet::new(Ipv4Addr::new(192, 168, x * 16, 0), 20));
    b.chain(c)
}

/// An address pool as dockerd's `--default-address-pool base=CIDR,size=N`
/// (daemon.json `default-address-pools`) gives it: networks of prefix
/// `size` cut from `base`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Subnet,
    pub size: u8,
}

impl AddressPool {
    /// `base=10.10.0.0/16,size=24`.
    pub fn parse(spec: &str) -> Result<AddressPool, String> {
        let (mut base, mut size) = (None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => base = Some(v.parse::<Subnet>()?),
                Some(("size", v)) => {
                    size = Some(v.parse::<u8>().map_err(|_| {
                        format!("invalid address pool {spec:?}: size {v:?} is not a prefix length")
                    })?)
                }
                _ => {
                    return Err(format!(
                        "invalid address pool {spec:?}: want base=CIDR,size=N"
                    ))
                }
            }
        }
        let (Some(base), Some(size)) = (base, size) else {
            return Err(format!(
                "invalid address pool {spec:?}: want base=CIDR,size=N"
            ));
        };
        if size < base.prefix || size > 30 {
            return Err(format!(
                "invalid address pool {spec:?}: size must be between {} and 30",
                base.prefix
            ));
        }
        Ok(AddressPool { base, size })
    }

    /// Its networks, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Subnet> {
        let count = 1u64 << (self.size - self.base.prefix);
        let step = 1u64 << (32 - u32::from(self.size));
        let (base, size) = (u64::from(u32::from(self.base.addr)), self.size);
        (0..count).filter_map(move |i| {
            let addr = u32::try_from(base + i * step).ok()?;
            Some(Subnet::new(Ipv4Addr::from(addr), size))
        })
    }
}

/// The first subnet of `pools` (Docker's default pools when empty) that
/// overlaps none of `taken`.
pub fn free_subnet(pools: &[AddressPool], taken: &[Subnet]) -> Option<Subnet> {
    let free = |s: &Subnet| !taken.iter().any(|t| t.overlaps(s));
    if pools.is_empty() {
        return default_pool().find(free);
    }
    pools.iter().flat_map(AddressPool::subnets).find(free)
}

/// The lowest free host address of `subnet` (not the network address, the
/// broadcast address, or anything in `used`).
pub fn free_address(subnet: &Subnet, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let last = u32::try_from(subnet.size().saturating_sub(1)).unwrap_or(u32::MAX);
    (1..last)
        .map(|n| subnet.nth(n))
        .find(|ip| !used.contains(ip))
}

/// The lowest free host address of `subnet` inside `range` (`--ip-range`;
/// the whole subnet without one). Never the subnet's network or broadcast
/// address, even when the range spans them.
pub fn free_address_in(
    subnet: &Subnet,
    range: Option<&Subnet>,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let Some(range) = range else {
        return free_address(subnet, used);
    };
    let last = u32::try_from(subnet.size().saturating_sub(1)).unwrap_or(u32::MAX);
    let (network, broadcast) = (subnet.nth(0), subnet.nth(last));
    let size = u32::try_from(range.size()).unwrap_or(u32::MAX);
    (0..size)
        .map(|n| range.nth(n))
        .filter(|ip| subnet.contains(*ip) && *ip != network && *ip != broadcast)
        .find(|ip| !used.contains(ip))
}

/// Docker's MAC for an address: 02:42:a:b:c:d.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_normalise_and_overlap() {
        let s: Subnet = "10.1.2.3/16".parse().expect("valid");
        assert_eq!(s.to_string(), "10.1.0.0/16");
        assert!(s.contains(Ipv4Addr::new(10, 1, 200, 1)));
        assert!(!s.contains(Ipv4Addr::new(10, 2, 0, 1)));
        assert!(s.overlaps(&"10.0.0.0/8".parse().expect("valid")));
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
        assert!("nope".parse::<Subnet>().is_err());
    }

    #[test]
    fn configured_pools_cut_networks_in_order() -> Result<(), String> {
        let pools = [
            AddressPool::parse("base=10.201.0.0/16,size=24")?,
            AddressPool::parse("base=10.202.0.0/23,size=24")?,
        ];
        let taken: Vec<Subnet> = vec!["10.201.0.0/24".parse()?];
        assert_eq!(free_subnet(&pools, &taken), Some("10.201.1.0/24".parse()?));
        let all: Vec<Subnet> = pools.iter().flat_map(AddressPool::subnets).collect();
        assert_eq!(all.len(), 258);
        assert_eq!(all[257], "10.202.1.0/24".parse()?);
        assert_eq!(free_subnet(&pools[1..], &all), None);
        assert!(AddressPool::parse("base=10.0.0.0/24,size=16").is_err());
        assert!(AddressPool::parse("base=10.0.0.0/16").is_err());
        assert!(AddressPool::parse("size=24").is_err());
        Ok(())
    }

    #[test]
    fn pools_skip_taken_subnets() {
        let taken = vec![DEFAULT_BRIDGE, "172.18.0.0/16".parse().expect("valid")];
        assert_eq!(
            free_subnet(&[], &taken).map(|s| s.to_string()).as_deref(),
            Some("172.19.0.0/16")
        );
    }

    #[test]
    fn addresses_skip_used_ones_and_the_broadcast() {
        let s: Subnet = "10.0.0.0/30".parse().expect("valid");
        let mut used = BTreeSet::from([Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(free_address(&s, &used), Some(Ipv4Addr::new(10, 0, 0, 2)));
        used.insert(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(free_address(&s, &used), None);
    }

    #[test]
    fn an_ip_range_narrows_where_addresses_come_from() -> Result<(), String> {
        let subnet: Subnet = "172.28.0.0/16".parse()?;
        let range: Subnet = "172.28.5.0/30".parse()?;
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(ip) = free_address_in(&subnet, Some(&range), &used) {
            used.insert(ip);
            got.push(ip.to_string());
        }
        // A range's own network and broadcast addresses are usable hosts
        // of the subnet, as in Docker.
        assert_eq!(
            got,
            ["172.28.5.0", "172.28.5.1", "172.28.5.2", "172.28.5.3"]
        );
        // A range spanning the whole subnet skips its ends.
        let small: Subnet = "10.0.0.0/30".parse()?;
        let mut used = BTreeSet::new();
        let mut all = Vec::new();
        while let Some(ip) = free_address_in(&small, Some(&small), &used) {
            used.insert(ip);
            all.push(ip.to_string());
        }
        assert_eq!(all, ["10.0.0.1", "10.0.0.2"]);
        Ok(())
    }

    #[test]
    fn macs_are_derived_like_dockers() {
        assert_eq!(
            mac_string(mac_for(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }
}
