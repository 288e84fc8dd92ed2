//! The validated description of the pod to create.

use anyhow::Context;
use caps::{Capability, CapsHashSet};
use hutch_tests::podsim::{canonical_cap_name, Device, NetnsOwner, DEFAULT_CAPS};

use crate::cli::PodOpts;

/// A pod to create, from podsim's options.
#[derive(Clone, Debug)]
pub struct PodConfig {
    /// The bounding set: Kubernetes' defaults plus `--cap-add`.
    pub caps: CapsHashSet,
    pub netns_owner: NetnsOwner,
    pub proc_unmasked: bool,
    pub devices: Vec<Device>,
    pub delegate_cgroups_v1: bool,
    pub delegate_cgroups_v2: bool,
}

impl PodConfig {
    pub fn from_opts(opts: &PodOpts) -> anyhow::Result<PodConfig> {
        let names = DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .chain(opts.cap_add.iter().map(|s| canonical_cap_name(s)));
        let caps = names
            .map(|name| {
                name.parse::<Capability>()
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("unknown capability {name}"))
            })
            .collect::<anyhow::Result<CapsHashSet>>()?;
        let mut devices = opts.devices.clone();
        devices.sort_by_key(|d| d.as_str());
        devices.dedup();
        Ok(PodConfig {
            caps,
            netns_owner: opts.netns_owner,
            proc_unmasked: opts.proc_unmasked,
            devices,
            delegate_cgroups_v1: opts.delegate_cgroups_v1,
            delegate_cgroups_v2: opts.delegate_cgroups_v2,
        })
    }

    /// The bounding set as sorted `CAP_*` names.
    pub fn cap_names(&self) -> Vec<String> {
        cap_names(&self.caps)
    }
}

/// Sorted `CAP_*` names of a set.
pub fn cap_names(set: &CapsHashSet) -> Vec<String> {
    let mut caps: Vec<&Capability> = set.iter().collect();
    caps.sort_by_key(|c| c.index());
    caps.iter().map(|c| c.to_string()).collect()
}

/// The set named by `names`.
pub fn cap_set(names: &[String]) -> anyhow::Result<CapsHashSet> {
    names
        .iter()
        .map(|name| {
            canonical_cap_name(name)
                .parse::<Capability>()
                .map_err(|e| anyhow::anyhow!("unknown capability {name}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(caps: &[&str], devices: &[Device]) -> PodOpts {
        PodOpts {
            cap_add: caps.iter().map(|s| s.to_string()).collect(),
            proc_unmasked: false,
            netns_owner: NetnsOwner::Pod,
            devices: devices.to_vec(),
            delegate_cgroups_v1: false,
            delegate_cgroups_v2: false,
        }
    }

    #[test]
    fn caps_are_defaults_plus_added_in_any_spelling() {
        let config = PodConfig::from_opts(&opts(&["sys_admin", "CAP_NET_ADMIN"], &[]))
            .expect("valid options");
        let names = config.cap_names();
        assert_eq!(names.len(), DEFAULT_CAPS.len() + 2);
        assert!(names.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(names.contains(&"CAP_NET_ADMIN".to_string()));
        assert_eq!(cap_set(&names).expect("round trip"), config.caps);
        assert!(PodConfig::from_opts(&opts(&["SYS_MAGIC"], &[])).is_err());
    }

    #[test]
    fn devices_are_deduplicated() {
        let config = PodConfig::from_opts(&opts(&[], &[Device::Tun, Device::Fuse, Device::Tun]))
            .expect("valid options");
        assert_eq!(config.devices, [Device::Fuse, Device::Tun]);
    }
}
