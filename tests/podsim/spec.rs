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
