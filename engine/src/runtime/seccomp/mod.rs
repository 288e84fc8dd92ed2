//! The container's seccomp filter: Docker's default profile
//! ([`profile`]), built with libseccomp for the native architecture and
//! its compat ones (x86 and x32 beside x86-64, as Docker does), and loaded
//! in the container's process right before it drops to its user and execs:
//! everything the runtime itself needs (mounts, sethostname, setns) is done
//! by then. The filter stacks on whatever filter the pod already has; a
//! syscall either forbids stays forbidden.
//!
//! libseccomp takes about 10 ms to build the profile, so it is compiled
//! once per process and capability set into a BPF program (cached), which
//! the container's process loads with seccomp(2) itself. The supervisor
//! zygote compiles the program for Docker's default capabilities at start,
//! and every supervisor forked from it inherits it.

mod profile;

use std::io::{Read, Seek};
use std::sync::{Arc, Mutex};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::{Deserialize, Serialize};

/// Which filter a container's processes get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter of ours (`--security-opt seccomp=unconfined`,
    /// `--privileged`).
    Unconfined,
}

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(String);

fn err(what: &str) -> impl Fn(libseccomp::error::SeccompError) -> SeccompError + '_ {
    move |e| SeccompError(format!("{what}: {e}"))
}

/// Builds Docker's default filter for a process holding `capabilities`
/// (`CAP_...` names). Does not load it.
pub fn default_filter(capabilities: &[String]) -> Result<ScmpFilterContext, SeccompError> {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(libc::EPERM))
        .map_err(err("creating the filter"))?;
    // Loading sets no_new_privs unless told not to; Docker's containers do
    // not get it unless asked (the runtime then sets it itself).
    ctx.set_ctl_nnp(false)
        .map_err(err("no_new_privs attribute"))?;
    // A binary tree over syscall numbers instead of one long chain: each
    // syscall the container makes runs a few comparisons, not hundreds.
    ctx.set_filter_attr(libseccomp::ScmpFilterAttr::CtlOptimize, 2)
        .map_err(err("optimization attribute"))?;
    for arch in compat_arches() {
        ctx.add_arch(arch).map_err(err("adding an architecture"))?;
    }
    let mut allowed: Vec<&str> = profile::ALLOWED.to_vec();
    for (cap, names) in profile::BY_CAPABILITY {
        if has(cap) {
            allowed.extend_from_slice(names);
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    for name in &allowed {
        // Unknown to this libseccomp or this architecture: skipped, as
        // Docker's loader does.
        if let Ok(sc) = ScmpSyscall::from_name(name) {
            ctx.add_rule(ScmpAction::Allow, sc)
                .map_err(err(&format!("allowing {name}")))?;
        }
    }
    if !has("CAP_SYS_ADMIN") {
        let clone = ScmpSyscall::from_name("clone").map_err(err("clone"))?;
        ctx.add_rule_conditional(
            ScmpAction::Allow,
            clone,
            &[ScmpArgCompare::new(
                0,
                ScmpCompareOp::MaskedEqual(profile::CLONE_NAMESPACE_FLAGS),
                0,
            )],
        )
        .map_err(err("allowing clone without namespace flags"))?;
        // clone3 passes its flags in memory a filter cannot read: ENOSYS
        // makes libcs fall back to clone.
        if let Ok(clone3) = ScmpSyscall::from_name("clone3") {
            ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), clone3)
                .map_err(err("clone3"))?;
        }
    }
    let personality = ScmpSyscall::from_name("personality").map_err(err("personality"))?;
    for &persona in profile::PERSONALITIES {
        ctx.add_rule_conditional(
            ScmpAction::Allow,
            personality,
            &[ScmpArgCompare::new(0, ScmpCompareOp::Equal, persona)],
        )
        .map_err(err("allowing personality"))?;
    }
    Ok(ctx)
}

/// The architectures a filter covers: the native one and those whose
/// binaries it also runs.
fn compat_arches() -> Vec<ScmpArch> {
    match ScmpArch::native() {
        ScmpArch::X8664 => vec![ScmpArch::X86, ScmpArch::X32],
        ScmpArch::Aarch64 => vec![ScmpArch::Arm],
        _ => Vec::new(),
    }
}

/// A compiled filter.
type Program = Arc<Vec<libc::sock_filter>>;

/// Programs compiled in this process, by the capabilities that shape them.
static PROGRAMS: Mutex<Vec<(Vec<String>, Program)>> = Mutex::new(Vec::new());

/// The capabilities among `capabilities` that change the profile, sorted.
fn profile_key(capabilities: &[String]) -> Vec<String> {
    let mut key: Vec<String> = capabilities
        .iter()
        .filter(|c| profile::BY_CAPABILITY.iter().any(|(cap, _)| cap == c))
        .cloned()
        .collect();
    key.sort_unstable();
    key.dedup();
    key
}

/// The compiled default profile for `capabilities`, from the cache or
/// built now. Call it before forking a container's process, so the fork
/// finds it compiled.
pub fn program(capabilities: &[String]) -> Result<Program, SeccompError> {
    let key = profile_key(capabilities);
    let mut programs = PROGRAMS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = programs.iter().find(|(k, _)| *k == key) {
        return Ok(p.clone());
    }
    let program = Arc::new(compile(&default_filter(capabilities)?)?);
    programs.push((key, program.clone()));
    Ok(program)
}

/// The filter's BPF, through a memfd (libseccomp 2.5 exports to an fd).
fn compile(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let io = |what: &'static str| move |e: std::io::Error| SeccompError(format!("{what}: {e}"));
    let fd = rustix::fs::memfd_create("seccomp-bpf", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SeccompError(format!("memfd_create: {e}")))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file).map_err(err("exporting the filter"))?;
    file.rewind().map_err(io("rewinding the filter"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(io("reading the filter"))?;
    if bytes.len() % 8 != 0 || bytes.is_empty() {
        return Err(SeccompError(format!(
            "a BPF program of {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect())
}

/// Whether the filter `mode` asks for is compiled in this process already
/// (a process forked now finds it without compiling).
pub fn is_prepared(mode: Seccomp, capabilities: &[String]) -> bool {
    match mode {
        Seccomp::Unconfined => true,
        Seccomp::Default => {
            let key = profile_key(capabilities);
            let programs = PROGRAMS.lock().unwrap_or_else(|p| p.into_inner());
            programs.iter().any(|(k, _)| *k == key)
        }
    }
}

/// Compiles the filter a process will load, ahead of the fork.
pub fn prepare(mode: Seccomp, capabilities: &[String]) -> Result<(), SeccompError> {
    match mode {
        Seccomp::Unconfined => Ok(()),
        Seccomp::Default => program(capabilities).map(drop),
    }
}

/// Loads the filter `mode` asks for into the calling process (a container's
/// process that still holds CAP_SYS_ADMIN in its user namespace, or has
/// no_new_privs set).
pub fn apply(mode: Seccomp, capabilities: &[String]) -> Result<(), SeccompError> {
    match mode {
        Seccomp::Unconfined => Ok(()),
        Seccomp::Default => load(&program(capabilities)?),
    }
}

fn load(program: &[libc::sock_filter]) -> Result<(), SeccompError> {
    let len = u16::try_from(program.len())
        .map_err(|_| SeccompError(format!("a BPF program of {} instructions", program.len())))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(2) reads the program `prog` points to, alive across
    // the call, and copies it into the kernel.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(SeccompError(format!(
            "loading the filter: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_builds_with_and_without_sys_admin() -> Result<(), SeccompError> {
        default_filter(&[])?;
        default_filter(&["CAP_SYS_ADMIN".to_string()])?;
        Ok(())
    }

    #[test]
    fn programs_are_compiled_once_per_capability_set() -> Result<(), SeccompError> {
        let a = program(&["CAP_CHOWN".to_string()])?;
        let b = program(&["CAP_KILL".to_string()])?;
        assert!(
            Arc::ptr_eq(&a, &b),
            "neither capability changes the profile"
        );
        let admin = program(&["CAP_SYS_ADMIN".to_string()])?;
        assert!(!Arc::ptr_eq(&a, &admin));
        assert!(a.len() > 100);
        Ok(())
    }

    #[test]
    fn namespaces_and_keys_are_not_in_the_allow_list() {
        for name in [
            "unshare",
            "setns",
            "mount",
            "keyctl",
            "add_key",
            "request_key",
        ] {
            assert!(!profile::ALLOWED.contains(&name), "{name}");
        }
    }
}
