//! Process-wide restrictions and the kernel: no_new_privs, seccomp (and
//! whether it lets pivot_root through), AppArmor, the kernel version.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::unistd::{chdir, pivot_root};

use super::child::{At, Failure, Sandbox};
use super::report::{Check, Status};
use super::scratch::Scratch;
use super::status::{ProcStatus, SeccompMode};

/// Reads a file holding one number, such as a sysctl.
pub fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `kernel.apparmor_restrict_unprivileged_userns = 1` (Ubuntu 23.10+).
pub fn apparmor_restricts_userns() -> bool {
    read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1)
}

/// (major, minor) of a kernel release string such as `6.18.44-fc-v769`.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// `misc.kernel`: overlayfs in a user namespace needs 5.11, idmapped tmpfs 6.3.
pub fn check_kernel(release: &str) -> Check {
    let title = "kernel version";
    let fix = "node: a kernel >= 6.3 (Linux 6.3 made tmpfs idmappable; 5.11 allowed \
               overlayfs in user namespaces)";
    match parse_kernel_version(release) {
        Some(v) if v >= (6, 3) => Check::new("misc.kernel", title, Status::Ok, release),
        Some(v) if v >= (5, 11) => Check::new(
            "misc.kernel",
            title,
            Status::Degraded,
            format!("{release}: older than 6.3"),
        )
        .blocks("idmapped tmpfs layers: private ID ranges use FUSE shifting or copies")
        .fix(fix),
        _ => Check::new(
            "misc.kernel",
            title,
            Status::Missing,
            format!("{release}: older than 5.11"),
        )
        .blocks("overlayfs inside a user namespace: container root filesystems")
        .fix(fix),
    }
}

/// `misc.no_new_privs`: inherited by everything we start, for good.
pub fn check_no_new_privs(status: &ProcStatus) -> Check {
    let (state, detail) = if status.no_new_privs {
        (
            Status::Degraded,
            "NoNewPrivs: 1 (set by allowPrivilegeEscalation: false)",
        )
    } else {
        (Status::Ok, "NoNewPrivs: 0")
    };
    Check::new("misc.no_new_privs", "no_new_privs", state, detail)
        .blocks(
            "setuid and file-capability binaries inside containers (sudo, su, ping as a \
             user) do not gain privileges; hutch itself needs no setuid helpers",
        )
        .fix(
            "\
securityContext:
  allowPrivilegeEscalation: true",
        )
}

/// `misc.seccomp`: the pod's filter applies to everything nested; the trial
/// is pivot_root, which containerd's RuntimeDefault never allows.
pub fn check_seccomp(status: &ProcStatus, scratch: Option<&Scratch>) -> Check {
    let mode = match status.seccomp {
        Some(SeccompMode::Disabled) => "no seccomp filter",
        Some(SeccompMode::Strict) => "seccomp strict mode",
        Some(SeccompMode::Filter) => "a seccomp filter is active",
        None => "seccomp not reported by the kernel",
    };
    let trial = match scratch {
        Some(scratch) => scratch.dir("pivot").and_then(|dir| pivot_root_trial(&dir)),
        None => Err(Failure::other("pivot_root trial", "no scratch directory")),
    };
    let (state, detail) = match trial {
        Ok(()) => (Status::Ok, format!("{mode}; pivot_root allowed")),
        Err(failure) => (Status::Degraded, format!("{mode}; {failure}")),
    };
    Check::new("misc.seccomp", "seccomp (pivot_root)", state, detail)
        .blocks(
            "pivot_root: containers' roots are switched with MS_MOVE + chroot instead, \
             which leaves the old root reachable to a process that escapes the chroot",
        )
        .fix(
            "\
securityContext:
  seccompProfile: {type: Localhost, localhostProfile: profiles/hutch.json}
  # a profile that allows pivot_root, keyctl, unshare, mount, open_tree, mount_setattr",
        )
}

/// In a child userns + mount ns: pivot_root into a tmpfs.
fn pivot_root_trial(dir: &Path) -> Result<(), Failure> {
    let dir = dir.to_owned();
    Sandbox::user().mount().run(move || {
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .at("mount tmpfs")?;
        std::fs::create_dir(dir.join("old")).at("mkdir old")?;
        chdir(&dir).at("chdir")?;
        pivot_root(".", "old").at("pivot_root")?;
        Ok(())
    })
}

/// `misc.apparmor`: a confining profile can deny mount even with SYS_ADMIN.
pub fn check_apparmor() -> Check {
    let title = "AppArmor";
    let profile = [
        "/proc/self/attr/apparmor/current",
        "/proc/self/attr/current",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim_end_matches(['\0', '\n']).to_owned());
    let restricted = apparmor_restricts_userns();
    let enabled = Path::new("/sys/module/apparmor").exists();
    let mut check = match profile {
        Some(p) if enabled && p != "unconfined" => Check::new(
            "misc.apparmor",
            title,
            Status::Degraded,
            format!("confined by profile {p}"),
        ),
        Some(p) if enabled => Check::new("misc.apparmor", title, Status::Ok, p),
        _ => Check::new("misc.apparmor", title, Status::Ok, "AppArmor is not active"),
    };
    if restricted {
        check
            .detail
            .push_str("; kernel.apparmor_restrict_unprivileged_userns=1");
    }
    check
        .blocks("mounts the profile denies (containerd's default profile has `deny mount`)")
        .fix(
            "\
securityContext:
  appArmorProfile: {type: Unconfined}   # or Localhost with a profile allowing mount and userns",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v769"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.3"), Some((6, 3)));
        assert_eq!(parse_kernel_version("garbage"), None);
        assert_eq!(check_kernel("6.18.44").status, Status::Ok);
        assert_eq!(check_kernel("5.15.0").status, Status::Degraded);
        assert_eq!(check_kernel("4.19.0").status, Status::Missing);
    }

    #[test]
    fn no_new_privs_degrades() {
        let status = ProcStatus {
            no_new_privs: true,
            ..ProcStatus::default()
        };
        let check = check_no_new_privs(&status);
        assert_eq!(check.status, Status::Degraded);
        assert!(check
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("allowPrivilegeEscalation")));
        assert_eq!(
            check_no_new_privs(&ProcStatus::default()).status,
            Status::Ok
        );
    }
}
