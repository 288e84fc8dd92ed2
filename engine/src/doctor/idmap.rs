//! The ID ranges we run with (/proc/self/uid_map, gid_map), and the maps the
//! probes' child user namespaces get.

use nix::unistd::{getegid, geteuid, Pid};

use super::child::{At, Failure};
use super::report::{Check, Status};

pub use super::report::IdExtent as Extent;

/// The range a `hostUsers: false` pod gets, and what images need.
pub const FULL_RANGE: u64 = 65536;

/// Parses the text of a uid_map or gid_map. Malformed lines are skipped:
/// the kernel writes this file, a line we cannot read is one we cannot use.
pub fn parse_map(text: &str) -> Vec<Extent> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count)), None) if count > 0 => {
                    Some(Extent {
                        inside,
                        outside,
                        count,
                    })
                }
                _ => None,
            }
        })
        .collect()
}

pub fn read_map(which: &str) -> Vec<Extent> {
    std::fs::read_to_string(format!("/proc/self/{which}"))
        .map(|text| parse_map(&text))
        .unwrap_or_default()
}

/// The initial user namespace maps all 2^32-1 IDs onto themselves.
pub fn is_initial(map: &[Extent]) -> bool {
    map == [Extent {
        inside: 0,
        outside: 0,
        count: u32::MAX,
    }]
}

/// How many IDs hutch can hand to child namespaces: all mapped ones when it
/// is root of its namespace (it writes child maps itself, with CAP_SETUID),
/// only its own ID otherwise (no setuid helpers are used).
pub fn usable_ids(map: &[Extent], root: bool) -> u64 {
    if root {
        map.iter().map(|e| u64::from(e.count)).sum()
    } else {
        u64::from(!map.is_empty())
    }
}

/// IDs 0..65535 are all mapped, contiguously from 0.
pub fn covers_full_range(map: &[Extent]) -> bool {
    let mut next: u64 = 0;
    let mut extents: Vec<_> = map.to_vec();
    extents.sort_by_key(|e| e.inside);
    for e in extents {
        if u64::from(e.inside) > next {
            break;
        }
        next = next.max(u64::from(e.inside) + u64::from(e.count));
    }
    next >= FULL_RANGE
}

/// The map a probe's child user namespace gets: our own IDs 1:1 when we are
/// root (so files it creates are ours), otherwise just our own ID as its root.
pub fn child_map(map: &[Extent], root: bool, own_id: u32) -> String {
    if root && !is_initial(map) {
        map.iter()
            .map(|e| format!("{0} {0} {1}\n", e.inside, e.count))
            .collect()
    } else if root {
        // Real root on a node: the engine's range would be 0-65535 too.
        format!("0 0 {FULL_RANGE}\n")
    } else {
        format!("0 {own_id} 1\n")
    }
}

/// Writes the uid_map and gid_map of a child that has just unshared its user
/// namespace (only the parent namespace may write them).
pub fn map_child(child: Pid) -> Result<(), Failure> {
    let root = geteuid().is_root();
    let uid_map = child_map(&read_map("uid_map"), root, geteuid().as_raw());
    let gid_map = child_map(&read_map("gid_map"), root, getegid().as_raw());
    if !root {
        // Without CAP_SETGID in our namespace the kernel requires this first.
        std::fs::write(format!("/proc/{child}/setgroups"), "deny").at("write setgroups")?;
    }
    std::fs::write(format!("/proc/{child}/uid_map"), uid_map).at("write the child's uid_map")?;
    std::fs::write(format!("/proc/{child}/gid_map"), gid_map).at("write the child's gid_map")?;
    Ok(())
}

fn describe(map: &[Extent]) -> String {
    if map.is_empty() {
        return "no IDs mapped".to_owned();
    }
    if is_initial(map) {
        return "the initial user namespace (all IDs; not a userns pod)".to_owned();
    }
    map.iter()
        .map(|e| {
            let last = u64::from(e.inside) + u64::from(e.count) - 1;
            let out_last = u64::from(e.outside) + u64::from(e.count) - 1;
            format!(
                "{}-{last} -> {}-{out_last} ({} IDs)",
                e.inside, e.outside, e.count
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const FIX_RANGE: &str = "\
spec:
  hostUsers: false        # the pod gets its own 65536 IDs (0-65535 inside)
  containers:
  - name: hutch
    securityContext:
      runAsUser: 0        # root in the pod's user namespace writes child ID maps
      runAsGroup: 0
# more IDs per pod (node): kubelet config userNamespaces.idsPerPod: 131072";

/// `idmap.uid_map` / `idmap.gid_map`: a hard requirement (some usable range)
/// that is only fully met by all 65536 IDs.
pub fn check(id: &str, what: &str, map: &[Extent], root: bool) -> Check {
    let usable = usable_ids(map, root);
    let full = root && covers_full_range(map);
    let mut detail = describe(map);
    if !root {
        detail.push_str("; not root in this user namespace: only our own ID is usable");
    }
    let status = if usable == 0 {
        Status::Missing
    } else if full {
        Status::Ok
    } else {
        Status::Degraded
    };
    Check::new(
        id,
        &format!(
            "{what} range (/proc/self/{})",
            id.trim_start_matches("idmap.")
        ),
        status,
        detail,
    )
    .hard()
    .blocks(format!(
        "image files owned by {what}s outside the usable range ({usable} IDs) cannot be \
         unpacked (they are clamped), and private ID ranges per container are unavailable"
    ))
    .fix(FIX_RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pod_map() {
        let map = parse_map("         0     131072      65536\n");
        assert_eq!(
            map,
            vec![Extent {
                inside: 0,
                outside: 131072,
                count: 65536
            }]
        );
        assert!(covers_full_range(&map));
        assert_eq!(usable_ids(&map, true), 65536);
        assert!(!is_initial(&map));
    }

    #[test]
    fn recognises_the_initial_namespace() {
        let map = parse_map("0 0 4294967295\n");
        assert!(is_initial(&map));
        assert!(covers_full_range(&map));
        assert_eq!(child_map(&map, true, 0), "0 0 65536\n");
    }

    #[test]
    fn multi_extent_maps_count_and_cover() {
        let map = parse_map("0 100000 1000\n1000 200000 64536\n");
        assert_eq!(map.len(), 2);
        assert!(covers_full_range(&map));
        assert_eq!(child_map(&map, true, 0), "0 0 1000\n1000 1000 64536\n");
    }

    #[test]
    fn gaps_and_small_ranges_are_not_full() {
        assert!(!covers_full_range(&parse_map(
            "0 100000 1000\n2000 200000 64536\n"
        )));
        assert!(!covers_full_range(&parse_map("0 1000 1\n")));
        assert!(!covers_full_range(&parse_map("1 100000 65536\n")));
    }

    #[test]
    fn skips_malformed_lines() {
        assert!(parse_map("").is_empty());
        assert!(parse_map("0 1\n0 0 0\nx y z\n0 1 2 3\n").is_empty());
    }

    #[test]
    fn a_non_root_process_can_use_only_its_own_id() {
        let map = parse_map("0 100000 65536\n");
        assert_eq!(usable_ids(&map, false), 1);
        assert_eq!(child_map(&map, false, 1000), "0 1000 1\n");
        let check = check("idmap.uid_map", "user ID", &map, false);
        assert_eq!(check.status, Status::Degraded);
        assert!(check.fix.is_some());
    }

    #[test]
    fn statuses() {
        let full = parse_map("0 65536 65536\n");
        assert_eq!(
            check("idmap.uid_map", "user ID", &full, true).status,
            Status::Ok
        );
        let small = parse_map("0 1000 1\n");
        let c = check("idmap.uid_map", "user ID", &small, true);
        assert_eq!(c.status, Status::Degraded);
        assert!(
            c.hard && !c.fails_hard(),
            "a small range still lets hutch run"
        );
        let none = check("idmap.uid_map", "user ID", &[], true);
        assert_eq!(none.status, Status::Missing);
        assert!(none.fails_hard());
    }
}
