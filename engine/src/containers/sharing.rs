//! `--pid` and `--ipc`: Docker's namespace modes as hutch takes them.
//!
//! A container may share the PID and IPC namespaces of another (the donor),
//! joining its user namespace with them (`runtime::donor`). So both must
//! map IDs the same way (identity mode), and one container can share with
//! one donor only: `--pid` and `--ipc` naming two containers would need two
//! user namespaces. `--ipc host` is the engine's IPC namespace (the pod's).
//! `--pid host` is refused: a container in the pod's PID namespace could
//! signal the engine, and without a cgroup of its own its processes would
//! outlive it.

use crate::runtime::spec::IpcMode;

use super::config::{CreateOptions, UsernsMode};

/// Docker's text for a donor without a shareable /dev/shm.
pub fn non_shareable(id: &str) -> String {
    format!(
        "container {id}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
    )
}

/// What `--pid` and `--ipc` ask for, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sharing {
    /// The donor as given (a name or an ID), when either mode names one.
    pub donor: Option<String>,
    /// Its PID namespace is joined.
    pub pid_ns: bool,
    pub ipc: IpcMode,
    /// `--ipc shareable`: other containers may join this one's IPC.
    pub shareable: bool,
}

/// Reads and checks the modes of `opts`; `Err` is a 400's text.
pub fn parse(opts: &CreateOptions) -> Result<Sharing, String> {
    let pid_donor = match opts.pid_mode.as_str() {
        "" | "private" => None,
        "host" => {
            return Err(
                "--pid host is not supported by hutch: a container in the pod's PID \
                        namespace could signal the engine, and its processes would outlive it; \
                        share another container's with --pid container:<name>"
                    .into(),
            )
        }
        m => Some(container_of(m).ok_or_else(|| format!("invalid PID mode: {m}"))?),
    };
    let (ipc, ipc_donor, shareable) = match opts.ipc_mode.as_str() {
        "" | "private" => (IpcMode::Private, None, false),
        "shareable" => (IpcMode::Private, None, true),
        "none" => (IpcMode::NoShm, None, false),
        "host" => (IpcMode::Host, None, false),
        m => (
            IpcMode::Donor,
            Some(container_of(m).ok_or_else(|| format!("invalid IPC mode: {m}"))?),
            false,
        ),
    };
    let pid_ns = pid_donor.is_some();
    let donor = match (pid_donor, ipc_donor) {
        (Some(p), Some(i)) if p != i => {
            return Err(format!(
                "--pid container:{p} and --ipc container:{i} name two containers: hutch joins \
                 the user namespace of the container it shares with, so both must name the \
                 same one"
            ))
        }
        (p, i) => p.or(i),
    };
    if donor.is_some() && opts.userns_mode == UsernsMode::Private {
        return Err(
            "--pid/--ipc container: cannot be used with --userns-mode private: the \
                    container joins the other container's user namespace and its ID mapping"
                .into(),
        );
    }
    Ok(Sharing {
        pid_ns,
        donor,
        ipc,
        shareable,
    })
}

/// `container:<name|id>` → the name or ID.
fn container_of(mode: &str) -> Option<String> {
    mode.strip_prefix("container:")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pid: &str, ipc: &str) -> CreateOptions {
        CreateOptions {
            pid_mode: pid.into(),
            ipc_mode: ipc.into(),
            ..CreateOptions::default()
        }
    }

    #[test]
    fn docker_modes_are_read() {
        let s = parse(&opts("", "")).expect("default");
        assert_eq!(
            (s.donor, s.pid_ns, s.ipc, s.shareable),
            (None, false, IpcMode::Private, false)
        );
        let s = parse(&opts("", "shareable")).expect("shareable");
        assert!(s.shareable);
        assert_eq!(parse(&opts("", "none")).map(|s| s.ipc), Ok(IpcMode::NoShm));
        assert_eq!(parse(&opts("", "host")).map(|s| s.ipc), Ok(IpcMode::Host));
        let s = parse(&opts("container:db", "container:db")).expect("both");
        assert_eq!(
            (s.donor.as_deref(), s.pid_ns, s.ipc),
            (Some("db"), true, IpcMode::Donor)
        );
        let s = parse(&opts("container:db", "")).expect("pid only");
        assert_eq!(
            (s.donor.as_deref(), s.pid_ns, s.ipc),
            (Some("db"), true, IpcMode::Private)
        );
    }

    #[test]
    fn bad_modes_are_refused_with_dockers_words() {
        let err = |pid: &str, ipc: &str| parse(&opts(pid, ipc)).err().unwrap_or_default();
        assert_eq!(err("bogus", ""), "invalid PID mode: bogus");
        assert_eq!(err("container:", ""), "invalid PID mode: container:");
        assert_eq!(err("", "bogus"), "invalid IPC mode: bogus");
        assert!(err("host", "").contains("--pid host is not supported by hutch"));
        assert!(err("container:a", "container:b").contains("name two containers"));
        let private = CreateOptions {
            userns_mode: UsernsMode::Private,
            ..opts("container:a", "")
        };
        assert!(parse(&private)
            .err()
            .unwrap_or_default()
            .contains("--userns-mode private"));
    }
}
