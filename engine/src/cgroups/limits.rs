//! Docker's resource limits and the interface files they become.

use serde::{Deserialize, Serialize};

/// `HostConfig`'s limits; 0 (or a negative PIDs limit) means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `-m`, bytes.
    pub memory: i64,
    /// `--memory-swap`, bytes of memory plus swap; -1 unlimited.
    pub memory_swap: i64,
    /// `--cpus`, in billionths of a CPU.
    pub nano_cpus: i64,
    /// `--cpu-shares` (relative weight, 1024 the default).
    pub cpu_shares: i64,
    /// `--cpu-quota`/`--cpu-period`, microseconds.
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// `--pids-limit`; 0 or -1 unlimited.
    pub pids_limit: i64,
}

/// The CFS period Docker uses with `--cpus`.
const DEFAULT_PERIOD: i64 = 100_000;

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory > 0
            || self.memory_swap > 0
            || self.nano_cpus > 0
            || self.cpu_shares > 0
            || self.cpu_quota > 0
            || self.pids_limit > 0
    }

    /// The controllers the set limits need ("memory", "cpu", "pids").
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.memory > 0 || self.memory_swap > 0 {
            out.push("memory");
        }
        if self.nano_cpus > 0 || self.cpu_shares > 0 || self.cpu_quota > 0 {
            out.push("cpu");
        }
        if self.pids_limit > 0 {
            out.push("pids");
        }
        out
    }

    /// `docker update`'s merge: what `update` sets (non-zero) replaces.
    pub fn merged(&self, update: &Limits) -> Limits {
        let pick = |new: i64, old: i64| if new != 0 { new } else { old };
        let mut out = Limits {
            memory: pick(update.memory, self.memory),
            memory_swap: pick(update.memory_swap, self.memory_swap),
            nano_cpus: pick(update.nano_cpus, self.nano_cpus),
            cpu_shares: pick(update.cpu_shares, self.cpu_shares),
            cpu_quota: pick(update.cpu_quota, self.cpu_quota),
            cpu_period: pick(update.cpu_period, self.cpu_period),
            pids_limit: pick(update.pids_limit, self.pids_limit),
        };
        // --cpus and --cpu-quota exclude each other: the newer one wins.
        if update.nano_cpus > 0 {
            out.cpu_quota = 0;
        } else if update.cpu_quota > 0 {
            out.nano_cpus = 0;
        }
        out
    }

    /// Docker's own checks (its messages).
    pub fn validate(&self) -> Result<(), String> {
        if self.memory > 0 && self.memory < 6 * 1024 * 1024 {
            return Err("Minimum memory limit allowed is 6MB".into());
        }
        if self.memory_swap > 0 && self.memory > 0 && self.memory_swap < self.memory {
            return Err(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            );
        }
        if self.memory_swap > 0 && self.memory <= 0 {
            return Err(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            );
        }
        if self.nano_cpus > 0 && self.cpu_quota > 0 {
            return Err("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
        }
        Ok(())
    }

    /// (file, value) pairs in writing order. Unset limits are written as
    /// "unlimited" so that `docker update` can lift them too.
    pub fn files(&self, v2: bool) -> Vec<(&'static str, String)> {
        let (quota, period) = if self.nano_cpus > 0 {
            (
                self.nano_cpus * DEFAULT_PERIOD / 1_000_000_000,
                DEFAULT_PERIOD,
            )
        } else if self.cpu_quota > 0 {
            (
                self.cpu_quota,
                if self.cpu_period > 0 {
                    self.cpu_period
                } else {
                    DEFAULT_PERIOD
                },
            )
        } else {
            (-1, DEFAULT_PERIOD)
        };
        let mut out = Vec::new();
        if v2 {
            let max = |v: i64| {
                if v > 0 {
                    v.to_string()
                } else {
                    "max".into()
                }
            };
            out.push(("memory.max", max(self.memory)));
            // v2 counts swap apart: memory-swap minus memory.
            let swap = if self.memory_swap > 0 && self.memory > 0 {
                (self.memory_swap - self.memory).to_string()
            } else {
                "max".into()
            };
            out.push(("memory.swap.max", swap));
            out.push(("cpu.max", format!("{} {period}", max(quota))));
            if self.cpu_shares > 0 {
                // runc's conversion of shares [2, 262144] to weight [1, 10000].
                let shares = self.cpu_shares.clamp(2, 262_144);
                out.push((
                    "cpu.weight",
                    (1 + ((shares - 2) * 9999) / 262_142).to_string(),
                ));
            }
            out.push(("pids.max", max(self.pids_limit)));
        } else {
            let limit = |v: i64| if v > 0 { v.to_string() } else { "-1".into() };
            // memsw must stay >= memory: lift it first, then set both.
            out.push(("memory.memsw.limit_in_bytes", "-1".into()));
            out.push(("memory.limit_in_bytes", limit(self.memory)));
            if self.memory_swap > 0 {
                out.push(("memory.memsw.limit_in_bytes", self.memory_swap.to_string()));
            }
            out.push(("cpu.cfs_period_us", period.to_string()));
            out.push(("cpu.cfs_quota_us", quota.to_string()));
            if self.cpu_shares > 0 {
                out.push(("cpu.shares", self.cpu_shares.to_string()));
            }
            out.push((
                "pids.max",
                if self.pids_limit > 0 {
                    self.pids_limit.to_string()
                } else {
                    "max".into()
                },
            ));
        }
        out
    }
}

/// Files a kernel may lack (no swap accounting, no CFS bandwidth control).
pub(super) fn optional(file: &str) -> bool {
    file.starts_with("memory.memsw.") || file == "memory.swap.max" || file.starts_with("cpu.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_files() {
        let l = Limits {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: 50,
            ..Limits::default()
        };
        let v1 = l.files(false);
        assert!(v1.contains(&("memory.limit_in_bytes", (64u64 << 20).to_string())));
        assert!(v1.contains(&("cpu.cfs_quota_us", "50000".into())));
        assert!(v1.contains(&("pids.max", "50".into())));
        let v2 = l.files(true);
        assert!(v2.contains(&("memory.max", (64u64 << 20).to_string())));
        assert!(v2.contains(&("cpu.max", "50000 100000".into())));
        assert!(v2.contains(&("memory.swap.max", "max".into())));
        let none = Limits::default().files(false);
        assert!(none.contains(&("memory.limit_in_bytes", "-1".into())));
        assert!(none.contains(&("cpu.cfs_quota_us", "-1".into())));
    }

    #[test]
    fn v2_files_for_swap_shares_and_quota() {
        let l = Limits {
            memory: 64 << 20,
            memory_swap: 96 << 20,
            cpu_shares: 512,
            cpu_quota: 20_000,
            cpu_period: 50_000,
            ..Limits::default()
        };
        let v2 = l.files(true);
        // v2 counts swap apart from memory.
        assert!(v2.contains(&("memory.swap.max", (32u64 << 20).to_string())));
        assert!(v2.contains(&("cpu.max", "20000 50000".into())));
        // runc's conversion: shares 512 -> weight 20.
        assert!(v2.contains(&("cpu.weight", "20".into())));
        assert!(v2.contains(&("pids.max", "max".into())));
        let none = Limits::default().files(true);
        assert!(none.contains(&("memory.max", "max".into())));
        assert!(none.contains(&("cpu.max", "max 100000".into())));
        assert!(!none.iter().any(|(f, _)| *f == "cpu.weight"));
    }

    #[test]
    fn controllers_the_limits_need() {
        assert!(Limits::default().controllers().is_empty());
        let l = Limits {
            memory_swap: 1 << 30,
            nano_cpus: 1,
            pids_limit: 5,
            ..Limits::default()
        };
        assert_eq!(l.controllers(), ["memory", "cpu", "pids"]);
        let shares = Limits {
            cpu_shares: 2,
            ..Limits::default()
        };
        assert_eq!(shares.controllers(), ["cpu"]);
    }

    #[test]
    fn update_keeps_what_it_does_not_set() {
        let old = Limits {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            ..Limits::default()
        };
        let new = old.merged(&Limits {
            pids_limit: 60,
            cpu_quota: 20_000,
            ..Limits::default()
        });
        assert_eq!(new.memory, 64 << 20);
        assert_eq!(new.pids_limit, 60);
        assert_eq!((new.nano_cpus, new.cpu_quota), (0, 20_000));
    }

    #[test]
    fn docker_validation() {
        let small = Limits {
            memory: 1 << 20,
            ..Limits::default()
        };
        assert_eq!(
            small.validate(),
            Err("Minimum memory limit allowed is 6MB".into())
        );
        assert!(Limits::default().validate().is_ok());
    }
}
