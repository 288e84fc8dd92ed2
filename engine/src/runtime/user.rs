//! Switching the container's first process to its user, groups, resource
//! limits and capabilities, in the order the kernel requires.

use nix::sys::prctl;
use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use super::caps::{limit_bounding, set_process_caps, to_set};
use super::error::{Context, SetupError};
use super::passwd::{self, Credentials};
use super::spec::{ProcessSpec, Rlimit, User};

/// Becomes root of the new user namespace right after the maps are written
/// (in private mode the helper's own IDs are not mapped at all).
pub fn become_root() -> Result<(), SetupError> {
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .ctx(|| "setresgid(0) in the container".to_string())?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .ctx(|| "setresuid(0) in the container".to_string())?;
    setgroups(&[]).ctx(|| "clearing supplementary groups".to_string())
}

/// Resolves the process's user against the container's /etc/passwd and
/// /etc/group. Runs inside the container, after the switch into its rootfs;
/// an image without those files still runs numeric users.
pub fn resolve(user: &User) -> Result<Credentials, SetupError> {
    let read = |path: &str| match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.ctx(|| format!("reading {path}")),
    };
    passwd::resolve(
        &user.name,
        &user.group_add,
        &read("/etc/passwd")?,
        &read("/etc/group")?,
    )
    .map_err(|e| SetupError::Invalid(e.to_string()))
}

/// Applies rlimits, then drops to the process's user with its capabilities.
/// The bounding set shrinks first (that needs CAP_SETPCAP, which a non-root
/// user no longer has), capabilities survive the UID change through
/// KEEPCAPS, and execve then leaves a non-root user with none effective.
pub fn switch_user(process: &ProcessSpec, user: &Credentials) -> Result<(), SetupError> {
    for limit in &process.rlimits {
        apply_rlimit(limit)?;
    }
    let keep = to_set(&process.capabilities).map_err(|e| SetupError::Invalid(e.to_string()))?;
    limit_bounding(&keep)
        .map_err(|e| SetupError::Invalid(format!("capability bounding set: {e}")))?;
    let groups: Vec<Gid> = user
        .additional_gids
        .iter()
        .map(|&g| Gid::from_raw(g))
        .collect();
    setgroups(&groups).ctx(|| format!("setgroups({:?})", user.additional_gids))?;
    let gid = Gid::from_raw(user.gid);
    setresgid(gid, gid, gid).ctx(|| format!("setresgid({})", user.gid))?;
    prctl::set_keepcaps(true).ctx(|| "PR_SET_KEEPCAPS".to_string())?;
    let uid = Uid::from_raw(user.uid);
    setresuid(uid, uid, uid).ctx(|| format!("setresuid({})", user.uid))?;
    set_process_caps(&keep)
        .map_err(|e| SetupError::Invalid(format!("setting capabilities: {e}")))?;
    if process.no_new_privs {
        prctl::set_no_new_privs().ctx(|| "PR_SET_NO_NEW_PRIVS".to_string())?;
    }
    Ok(())
}

/// The kernel resource for a Docker ulimit name.
pub fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "rttime" => Resource::RLIMIT_RTTIME,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        "as" => Resource::RLIMIT_AS,
        _ => return None,
    })
}

fn apply_rlimit(limit: &Rlimit) -> Result<(), SetupError> {
    let res = resource(&limit.name)
        .ok_or_else(|| SetupError::Invalid(format!("unknown ulimit {:?}", limit.name)))?;
    setrlimit(res, limit.soft, limit.hard).ctx(|| {
        format!(
            "setting ulimit {}={}:{}",
            limit.name, limit.soft, limit.hard
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_ulimit_names_map_to_resources() {
        assert_eq!(resource("nofile"), Some(Resource::RLIMIT_NOFILE));
        assert_eq!(resource("nproc"), Some(Resource::RLIMIT_NPROC));
        assert_eq!(resource("bogus"), None);
    }
}
