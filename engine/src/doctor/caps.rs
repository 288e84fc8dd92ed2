//! The two capabilities a pod spec can add that change what hutch can do.
//! Both are namespaced: they count in the pod's user namespace, and over the
//! objects it owns.

use super::report::{Check, Status};
use super::status::{ProcStatus, CAP_NET_ADMIN, CAP_SYS_ADMIN};

fn held(status: &ProcStatus, cap: u32, name: &str) -> (Status, String) {
    match (status.has_effective(cap), status.has_bounding(cap)) {
        (true, _) => (Status::Ok, format!("{name} is effective")),
        (false, true) => (
            Status::Missing,
            format!("{name} is in the bounding set but not effective (not running as root?)"),
        ),
        (false, false) => (
            Status::Missing,
            format!("{name} is not in the bounding set"),
        ),
    }
}

/// `caps.sys_admin`.
pub fn check_sys_admin(status: &ProcStatus) -> Check {
    let (state, detail) = held(status, CAP_SYS_ADMIN, "CAP_SYS_ADMIN");
    Check::new("caps.sys_admin", "CAP_SYS_ADMIN in the pod", state, detail)
        .blocks(
            "lifting the masks over the pod's /proc and /sys (then only procMount: \
             Unmasked gives containers their own /proc); under containerd's \
             RuntimeDefault seccomp also unshare, mount, setns, open_tree, mount_setattr",
        )
        .fix(
            "\
securityContext:
  capabilities: {add: [SYS_ADMIN]}   # namespaced: it counts in the pod's user namespace only",
        )
}

/// `caps.net_admin`.
pub fn check_net_admin(status: &ProcStatus) -> Check {
    let (state, detail) = held(status, CAP_NET_ADMIN, "CAP_NET_ADMIN");
    Check::new("caps.net_admin", "CAP_NET_ADMIN in the pod", state, detail)
        .blocks("the kernel uplink (veth + NAT into the pod netns): the L4 relay is used")
        .fix(
            "\
securityContext:
  capabilities: {add: [NET_ADMIN]}   # applies to the pod netns when the pod's userns owns it",
        )
}
