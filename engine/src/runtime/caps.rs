//! Capabilities: Docker's default set, `--cap-add`/`--cap-drop`, and applying
//! a set to the container's first process.

use std::collections::HashSet;

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities Docker gives a container by default.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapsError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
}

/// Canonical name of a capability as Docker accepts it: any case, with or
/// without the `CAP_` prefix.
pub fn canonical(name: &str) -> Result<String, CapsError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Capability>()
        .map(|c| c.to_string())
        .map_err(|_| CapsError::Unknown(name.to_string()))
}

/// Docker's rule for the final set: start from the default set, add
/// `cap_add`, then remove `cap_drop`; `ALL` in either means every capability
/// the kernel knows.
pub fn resolve(cap_add: &[String], cap_drop: &[String]) -> Result<Vec<String>, CapsError> {
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut set: HashSet<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if cap_add.iter().any(is_all) {
        set.extend(caps::all().into_iter().map(|c| c.to_string()));
    }
    for c in cap_add.iter().filter(|c| !is_all(c)) {
        set.insert(canonical(c)?);
    }
    if cap_drop.iter().any(is_all) {
        set.clear();
        // Docker keeps explicitly added capabilities when dropping ALL.
        for c in cap_add.iter().filter(|c| !is_all(c)) {
            set.insert(canonical(c)?);
        }
    } else {
        for c in cap_drop {
            set.remove(&canonical(c)?);
        }
    }
    let mut list: Vec<String> = set.into_iter().collect();
    list.sort();
    Ok(list)
}

/// Parses a list of names into the set the kernel calls take.
pub fn to_set(names: &[String]) -> Result<CapsHashSet, CapsError> {
    names
        .iter()
        .map(|n| {
            n.parse::<Capability>()
                .map_err(|_| CapsError::Unknown(n.clone()))
        })
        .collect()
}

/// Shrinks the bounding set to `keep`. Must run while the process still holds
/// CAP_SETPCAP, i.e. before it changes to a non-root user.
pub fn limit_bounding(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    Ok(())
}

/// Sets permitted and effective to `keep` and clears inheritable and ambient,
/// as Docker does; execve then gives root the set and a non-root user none.
pub fn set_process_caps(keep: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
    caps::clear(None, CapSet::Ambient)?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    caps::set(None, CapSet::Effective, &CapsHashSet::new())?;
    caps::set(None, CapSet::Permitted, keep)?;
    caps::set(None, CapSet::Effective, keep)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_are_accepted_as_docker_spells_them() -> Result<(), CapsError> {
        assert_eq!(canonical("net_admin")?, "CAP_NET_ADMIN");
        assert_eq!(canonical("CAP_SYS_ADMIN")?, "CAP_SYS_ADMIN");
        assert!(canonical("FLY").is_err());
        Ok(())
    }

    #[test]
    fn default_set_is_dockers_fourteen() -> Result<(), CapsError> {
        let caps = resolve(&[], &[])?;
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        to_set(&caps)?;
        Ok(())
    }

    #[test]
    fn add_and_drop_follow_dockers_rules() -> Result<(), CapsError> {
        let caps = resolve(&s(&["sys_admin"]), &s(&["NET_RAW", "cap_chown"]))?;
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(
            resolve(&s(&["NET_ADMIN"]), &s(&["ALL"]))?,
            s(&["CAP_NET_ADMIN"])
        );
        assert!(resolve(&s(&["ALL"]), &[])?.len() > 30);
        assert!(resolve(&s(&["BOGUS"]), &[]).is_err());
        Ok(())
    }
}
