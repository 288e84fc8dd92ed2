//! Narrowing a process to the pod's capabilities, as runc does for every
//! container process: the bounding set, then permitted and effective.

use anyhow::{bail, Context};
use caps::{CapSet, Capability, CapsHashSet};

/// Leaves the calling process with exactly `keep`: bounding, permitted and
/// effective sets equal to it, inheritable and ambient empty (containerd has
/// left inheritable empty since CVE-2022-24769). After this, an execve as
/// uid 0 gains back exactly `keep` and nothing more.
pub fn confine(keep: &CapsHashSet) -> anyhow::Result<()> {
    check_kernel_caps_known()?;
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .with_context(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).context("clearing ambient capabilities")?;
    caps::clear(None, CapSet::Inheritable).context("clearing inheritable capabilities")?;
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, keep).context("setting effective capabilities")?;
    caps::set(None, CapSet::Permitted, keep).context("setting permitted capabilities")?;
    Ok(())
}

/// A capability the caps crate does not know could not be dropped; refuse to
/// build a pod whose bounding set would silently keep it.
fn check_kernel_caps_known() -> anyhow::Result<()> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .context("reading /proc/sys/kernel/cap_last_cap")?;
    let last: u8 = text
        .trim()
        .parse()
        .context("parsing /proc/sys/kernel/cap_last_cap")?;
    let known = caps::all().iter().map(Capability::index).max().unwrap_or(0);
    if last > known {
        bail!("the kernel has capabilities up to {last}, podsim knows only up to {known}");
    }
    Ok(())
}
