//! Can we create a child user namespace? Everything hutch does for containers
//! happens in one, so this is the first hard requirement.

use nix::unistd::geteuid;

use super::child::Sandbox;
use super::misc::{apparmor_restricts_userns, read_number};
use super::report::{Check, Status};
use super::status::{ProcStatus, SeccompMode, CAP_SYS_ADMIN};

const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";

const FIX_SYSCTL: &str = "\
# node (not settable from a pod):
sysctl -w user.max_user_namespaces=15000";

/// `userns.max`: the per-user limit on user namespaces.
pub fn check_max() -> Check {
    let check = match read_number(MAX_USER_NAMESPACES) {
        Some(0) => Check::new(
            "userns.max",
            "user.max_user_namespaces",
            Status::Missing,
            "0: the node forbids user namespaces (Bottlerocket, EKS Auto Mode ship this)",
        ),
        Some(n) => Check::new(
            "userns.max",
            "user.max_user_namespaces",
            Status::Ok,
            format!("{n}"),
        ),
        None => Check::new(
            "userns.max",
            "user.max_user_namespaces",
            Status::Degraded,
            format!("{MAX_USER_NAMESPACES} is not readable"),
        ),
    };
    check
        .blocks("creating user namespaces, and with them every container")
        .fix(FIX_SYSCTL)
}

/// `userns.create`: a trial unshare(CLONE_NEWUSER) in a child, with maps.
pub fn check_create(status: &ProcStatus) -> Check {
    let title = "child user namespace";
    match Sandbox::user().run(|| Ok(geteuid().is_root())) {
        Ok(true) => Check::new(
            "userns.create",
            title,
            Status::Ok,
            "created one, mapped our IDs 1:1 and became its root",
        ),
        Ok(false) => Check::new(
            "userns.create",
            title,
            Status::Missing,
            "created one, but did not become its root after mapping",
        ),
        Err(failure) => Check::new(
            "userns.create",
            title,
            Status::Missing,
            format!("{failure}{}", likely_cause(status)),
        ),
    }
    .hard()
    .blocks("everything: containers, builds and image unpacking all run in child user namespaces")
    .fix(fix_for())
}

fn likely_cause(status: &ProcStatus) -> String {
    let mut causes = Vec::new();
    if read_number(MAX_USER_NAMESPACES) == Some(0) {
        causes.push("user.max_user_namespaces is 0");
    }
    if apparmor_restricts_userns() {
        causes.push("kernel.apparmor_restrict_unprivileged_userns is 1");
    }
    if status.seccomp == Some(SeccompMode::Filter) && !status.has_bounding(CAP_SYS_ADMIN) {
        causes.push(
            "a seccomp filter is active and SYS_ADMIN is not in the bounding set \
             (containerd's RuntimeDefault then refuses unshare)",
        );
    }
    if causes.is_empty() {
        String::new()
    } else {
        format!(" (likely: {})", causes.join("; "))
    }
}

fn fix_for() -> String {
    let mut fix = String::from(
        "\
securityContext:
  # containerd's RuntimeDefault seccomp profile allows unshare/mount/setns/
  # open_tree/mount_setattr only when SYS_ADMIN is in the bounding set:
  capabilities: {add: [SYS_ADMIN]}
  # or keep the capabilities and use a profile that allows them:
  # seccompProfile: {type: Localhost, localhostProfile: profiles/hutch.json}",
    );
    if apparmor_restricts_userns() {
        fix.push_str(
            "\n  # AppArmor restricts unprivileged user namespaces on this node:\
             \n  appArmorProfile: {type: Unconfined}   # or Localhost with `userns,`",
        );
    }
    if read_number(MAX_USER_NAMESPACES) == Some(0) {
        fix.push('\n');
        fix.push_str(FIX_SYSCTL);
    }
    fix
}
