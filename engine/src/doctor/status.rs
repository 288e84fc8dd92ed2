//! The fields of /proc/self/status the doctor reads: capabilities,
//! `NoNewPrivs` and `Seccomp`.

/// Capability numbers (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;

/// The seccomp mode of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    Disabled,
    Strict,
    Filter,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcStatus {
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub no_new_privs: bool,
    /// None on kernels without seccomp.
    pub seccomp: Option<SeccompMode>,
}

impl ProcStatus {
    /// Reads /proc/self/status; a process that cannot read it gets the
    /// empty status (no capabilities), which makes every check say so.
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Self {
        let mut status = ProcStatus::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "CapEff" => status.cap_eff = u64::from_str_radix(value, 16).unwrap_or(0),
                "CapBnd" => status.cap_bnd = u64::from_str_radix(value, 16).unwrap_or(0),
                "NoNewPrivs" => status.no_new_privs = value == "1",
                "Seccomp" => {
                    status.seccomp = match value {
                        "0" => Some(SeccompMode::Disabled),
                        "1" => Some(SeccompMode::Strict),
                        "2" => Some(SeccompMode::Filter),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        status
    }

    pub fn has_effective(&self, cap: u32) -> bool {
        self.cap_eff & (1u64 << cap) != 0
    }

    pub fn has_bounding(&self, cap: u32) -> bool {
        self.cap_bnd & (1u64 << cap) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_DEFAULT: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\n\
        Uid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\n\
        CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn parses_kubernetes_default_capabilities() {
        let status = ProcStatus::parse(POD_DEFAULT);
        // 0xa80425fb is the Docker/containerd default set: no SYS_ADMIN, no NET_ADMIN.
        assert!(!status.has_effective(CAP_SYS_ADMIN));
        assert!(!status.has_effective(CAP_NET_ADMIN));
        assert!(status.has_effective(0)); // CAP_CHOWN
        assert!(status.has_bounding(7)); // CAP_SETUID
        assert!(status.no_new_privs);
        assert_eq!(status.seccomp, Some(SeccompMode::Filter));
    }

    #[test]
    fn parses_added_capabilities_and_no_seccomp() {
        let status = ProcStatus::parse(
            "CapEff:\t00000000a82435fb\nCapBnd:\t00000000a82435fb\nNoNewPrivs:\t0\nSeccomp:\t0\n",
        );
        assert!(status.has_effective(CAP_SYS_ADMIN));
        assert!(status.has_effective(CAP_NET_ADMIN));
        assert!(!status.no_new_privs);
        assert_eq!(status.seccomp, Some(SeccompMode::Disabled));
    }

    #[test]
    fn missing_fields_mean_nothing_held() {
        let status = ProcStatus::parse("Name:\tx\n");
        assert_eq!(status, ProcStatus::default());
        assert_eq!(status.seccomp, None);
    }
}
