//! `podsim __check-inside`: self-check's probes, run as pod root inside the
//! pod. Each looks at one promised property with the kernel's own answers
//! (/proc, statfs, ioctls, trial mounts in forked children).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hutch_tests::podsim::{procscan, Device, NetnsOwner, DATA_ROOT, ID_RANGE_SIZE};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getgroups, getpid, getresgid, getresuid, ForkResult, Gid};

use super::{Check, Expect};
use crate::mounts::{MASKED_PATHS, READONLY_PATHS};
use crate::{net, sys};

/// Runs every inside check and prints one line each; 1 if any failed.
pub fn run(expect: &str) -> anyhow::Result<i32> {
    let expect: Expect = serde_json::from_str(expect).context("parsing expectations")?;
    let mounts = Mounts::read()?;
    let checks = [
        id_map("uid_map", &expect),
        id_map("gid_map", &expect),
        setgroups(),
        credentials(),
        namespaces(&expect),
        own_proc(),
        hostname(&expect),
        loopback(),
        netns_owner(&expect),
        capabilities(&expect),
        proc_masks(&expect, &mounts),
        proc_readonly(&expect, &mounts),
        nested_proc(&expect),
        lift_masks(&expect),
        sys_readonly(&expect, &mounts),
        dev(&mounts),
        device(&expect, Device::Fuse),
        device(&expect, Device::Tun),
        data_root(&expect),
        scratch_tmpfs("run", "/run"),
        scratch_tmpfs("tmp", "/tmp"),
        host_files(),
        sidecar(&expect),
    ];
    let mut out = std::io::stdout().lock();
    for check in &checks {
        writeln!(out, "{check}").context("writing to stdout")?;
    }
    Ok(if checks.iter().all(|c| c.ok) { 0 } else { 1 })
}

/// Turns a probe's error into a failed check.
fn checked(name: &str, probe: impl FnOnce() -> anyhow::Result<Check>) -> Check {
    probe().unwrap_or_else(|e| Check::fail(name, format!("{e:#}")))
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn id_map(file: &str, expect: &Expect) -> Check {
    checked(file, || {
        let map = squeeze(&std::fs::read_to_string(format!("/proc/self/{file}"))?);
        let want = format!("0 {} {ID_RANGE_SIZE}", expect.base);
        Ok(Check::verdict(file, map == want, map))
    })
}

fn setgroups() -> Check {
    checked("setgroups", || {
        let value = std::fs::read_to_string("/proc/self/setgroups")?;
        Ok(Check::verdict(
            "setgroups",
            value.trim() == "allow",
            value.trim(),
        ))
    })
}

fn credentials() -> Check {
    checked("credentials", || {
        let uids = getresuid()?;
        let gids = getresgid()?;
        let groups = getgroups()?;
        let all_zero = [uids.real, uids.effective, uids.saved]
            .iter()
            .all(|u| u.is_root())
            && [gids.real, gids.effective, gids.saved]
                .iter()
                .all(|g| g.as_raw() == 0)
            && groups == [Gid::from_raw(0)];
        Ok(Check::verdict(
            "credentials",
            all_zero,
            format!(
                "uid {} gid {} groups {:?}",
                uids.effective,
                gids.effective,
                groups.iter().map(|g| g.as_raw()).collect::<Vec<_>>()
            ),
        ))
    })
}

fn namespaces(expect: &Expect) -> Check {
    checked("namespaces", || {
        let host = &expect.host_namespaces;
        let kinds = [
            ("user", host.user),
            ("mnt", host.mnt),
            ("pid", host.pid),
            ("net", host.net),
            ("uts", host.uts),
            ("ipc", host.ipc),
            ("cgroup", host.cgroup),
        ];
        let mut shared = Vec::new();
        for (kind, host_inode) in kinds {
            if procscan::ns_inode_of(Path::new(&format!("/proc/self/ns/{kind}")))? == host_inode {
                shared.push(kind);
            }
        }
        Ok(if shared.is_empty() {
            Check::ok(
                "namespaces",
                "user mnt pid net uts ipc cgroup all differ from the host's",
            )
        } else {
            Check::fail(
                "namespaces",
                format!("shared with the host: {}", shared.join(" ")),
            )
        })
    })
}

/// The pid namespace has its own /proc, and pid 1 is pod init.
fn own_proc() -> Check {
    checked("pid-namespace", || {
        let me = getpid().as_raw();
        let proc_self = std::fs::read_link("/proc/self")?;
        let init = std::fs::read("/proc/1/cmdline")?;
        let init = String::from_utf8_lossy(&init).replace('\0', " ");
        Ok(Check::verdict(
            "pid-namespace",
            proc_self.to_string_lossy() == me.to_string() && init.contains("__pod-init"),
            format!(
                "I am pid {me}, /proc/self -> {}, pid 1 is {}",
                proc_self.display(),
                init.trim()
            ),
        ))
    })
}

fn hostname(expect: &Expect) -> Check {
    let uname = nix::sys::utsname::uname();
    match uname {
        Ok(u) => {
            let name = u.nodename().to_string_lossy().into_owned();
            Check::verdict("hostname", name == expect.hostname, name)
        }
        Err(e) => Check::fail("hostname", e.to_string()),
    }
}

fn loopback() -> Check {
    checked("loopback", || {
        let up = net::loopback_is_up()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
        Ok(Check::verdict(
            "loopback",
            up && connected,
            format!(
                "lo is {}; TCP to {addr} {}",
                if up { "up" } else { "DOWN" },
                if connected { "works" } else { "FAILS" }
            ),
        ))
    })
}

/// NS_GET_USERNS on our own netns: our own user namespace when the pod owns
/// it; EPERM when the owner lies outside our user namespace (the node's).
fn netns_owner(expect: &Expect) -> Check {
    checked("netns-owner", || {
        let netns = File::open("/proc/self/ns/net")?;
        let own_user = procscan::ns_inode_of(Path::new("/proc/self/ns/user"))?;
        let owner = sys::owning_userns_inode(netns.as_fd());
        Ok(match (expect.netns_owner, owner) {
            (NetnsOwner::Pod, Ok(inode)) => Check::verdict(
                "netns-owner",
                inode == own_user,
                format!("the netns is owned by user ns {inode}; ours is {own_user}"),
            ),
            (NetnsOwner::Initial, Err(Errno::EPERM)) => Check::ok(
                "netns-owner",
                "NS_GET_USERNS on our netns: EPERM, its owner is outside our user namespace",
            ),
            (want, got) => Check::fail(
                "netns-owner",
                format!("wanted an owner like {want}, NS_GET_USERNS gave {got:?}"),
            ),
        })
    })
}

fn capabilities(expect: &Expect) -> Check {
    checked("capabilities", || {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .with_context(|| format!("no {name} in /proc/self/status"))?;
            u64::from_str_radix(line.trim(), 16).context("parsing a capability mask")
        };
        let (bnd, prm, eff, inh, amb) = (
            field("CapBnd:")?,
            field("CapPrm:")?,
            field("CapEff:")?,
            field("CapInh:")?,
            field("CapAmb:")?,
        );
        Ok(Check::verdict(
            "capabilities",
            bnd == expect.cap_mask && prm == bnd && eff == bnd && inh == 0 && amb == 0,
            format!(
                "CapBnd {bnd:016x} (want {:016x}), CapPrm {prm:016x}, CapEff {eff:016x}, CapInh {inh:016x}, CapAmb {amb:016x}",
                expect.cap_mask
            ),
        ))
    })
}

/// This process's mount table.
struct Mounts(Vec<MountEntry>);

struct MountEntry {
    mount_point: String,
    options: String,
    fstype: String,
}

impl Mounts {
    fn read() -> anyhow::Result<Mounts> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
        let mut entries = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|&f| f == "-");
            if let (Some(sep), Some(mp), Some(opts)) = (sep, fields.get(4), fields.get(5)) {
                entries.push(MountEntry {
                    mount_point: mp.replace("\\040", " "),
                    options: opts.to_string(),
                    fstype: fields.get(sep + 1).unwrap_or(&"").to_string(),
                });
            }
        }
        Ok(Mounts(entries))
    }

    /// The topmost mount at exactly `path`.
    fn at(&self, path: &str) -> Option<&MountEntry> {
        self.0.iter().rev().find(|m| m.mount_point == path)
    }

    /// Mount points strictly below `dir`.
    fn below(&self, dir: &str) -> Vec<&str> {
        let prefix = format!("{dir}/");
        self.0
            .iter()
            .filter(|m| m.mount_point.starts_with(&prefix))
            .map(|m| m.mount_point.as_str())
            .collect()
    }
}

impl MountEntry {
    fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

fn is_dev_null(path: &str) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == nix::sys::stat::makedev(1, 3))
        .unwrap_or(false)
}

fn fs_type(path: &str) -> Option<FsType> {
    statfs(path).ok().map(|s| s.filesystem_type())
}

/// containerd's masked paths: masked unless procMount is Unmasked.
fn proc_masks(expect: &Expect, mounts: &Mounts) -> Check {
    let present: Vec<&str> = MASKED_PATHS
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    if expect.proc_unmasked {
        let mut over: Vec<&str> = mounts.below("/proc");
        over.extend(present.iter().filter(|p| mounts.at(p).is_some()));
        over.sort_unstable();
        over.dedup();
        return Check::verdict(
            "proc-masks",
            over.is_empty(),
            if over.is_empty() {
                "none (procMount: Unmasked): nothing is mounted over /proc or the masked /sys paths"
                    .to_string()
            } else {
                format!("unexpected mounts: {}", over.join(" "))
            },
        );
    }
    let mut unmasked = Vec::new();
    for path in &present {
        let masked = match mounts.at(path) {
            Some(m) if m.fstype == "tmpfs" => m.read_only() && fs_type(path) == Some(TMPFS_MAGIC),
            Some(_) => is_dev_null(path),
            None => false,
        };
        if !masked {
            unmasked.push(*path);
        }
    }
    let absent: Vec<&str> = MASKED_PATHS
        .into_iter()
        .filter(|p| !present.contains(p))
        .collect();
    Check::verdict(
        "proc-masks",
        unmasked.is_empty(),
        if unmasked.is_empty() {
            format!(
                "masked: {} (not in this kernel: {})",
                present.join(" "),
                absent.join(" ")
            )
        } else {
            format!("NOT masked: {}", unmasked.join(" "))
        },
    )
}

/// containerd's read-only paths, and a real write to /proc/sys (shmmax is
/// writable by the IPC namespace's root, so only the mount stops it).
fn proc_readonly(expect: &Expect, mounts: &Mounts) -> Check {
    checked("proc-readonly", || {
        let value = std::fs::read_to_string("/proc/sys/kernel/shmmax")?;
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/sys/kernel/shmmax")
            .and_then(|mut f| f.write_all(value.as_bytes()));
        let present: Vec<&str> = READONLY_PATHS
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_ok())
            .collect();
        if expect.proc_unmasked {
            return Ok(Check::verdict(
                "proc-readonly",
                write.is_ok(),
                format!(
                    "/proc/sys is writable (procMount: Unmasked): writing kernel.shmmax: {write:?}"
                ),
            ));
        }
        let writable: Vec<&str> = present
            .iter()
            .copied()
            .filter(|p| !mounts.at(p).map(MountEntry::read_only).unwrap_or(false))
            .collect();
        let erofs = matches!(&write, Err(e) if e.raw_os_error() == Some(libc::EROFS));
        Ok(Check::verdict(
            "proc-readonly",
            writable.is_empty() && erofs,
            format!(
                "read-only: {}; writing kernel.shmmax: {}",
                present.join(" "),
                match &write {
                    Ok(()) => "succeeded".to_string(),
                    Err(e) => e.to_string(),
                }
            ),
        ))
    })
}

/// Runs `f` in a forked child and returns its verdict (an errno or success).
fn in_child(f: impl FnOnce() -> Result<(), Errno>) -> Result<(), Errno> {
    // SAFETY: __check-inside is single-threaded.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let code = match f() {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            sys::exit_now(code)
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, code) => Err(Errno::from_raw(code)),
            _ => Err(Errno::EINTR),
        },
    }
}

/// What a nested runtime does: a new user, mount and pid namespace, then a
/// fresh /proc for the new pid namespace.
fn try_nested_proc_mount() -> Result<(), Errno> {
    in_child(|| {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID)?;
        in_child(|| {
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
        })
    })
}

/// The masks are locked in any nested user namespace: proc cannot be
/// mounted there unless procMount is Unmasked.
fn nested_proc(expect: &Expect) -> Check {
    let result = try_nested_proc_mount();
    if expect.proc_unmasked {
        Check::verdict(
            "nested-proc",
            result.is_ok(),
            format!("mounting proc in a nested user+mount+pid namespace: {result:?} (want Ok: /proc is unmasked)"),
        )
    } else {
        Check::verdict(
            "nested-proc",
            result == Err(Errno::EPERM),
            format!("mounting proc in a nested user+mount+pid namespace: {result:?} (want EPERM: the masks are locked there)"),
        )
    }
}

/// The masks are not locked for pod root itself: with CAP_SYS_ADMIN it can
/// unmount them in a private mount namespace, after which the nested proc
/// mount works. Without CAP_SYS_ADMIN it cannot even make that namespace.
fn lift_masks(expect: &Expect) -> Check {
    if expect.proc_unmasked {
        return Check::ok("lift-masks", "nothing to lift (procMount: Unmasked)");
    }
    let sys_admin = expect.cap_mask & caps::Capability::CAP_SYS_ADMIN.bitmask() != 0;
    let result = in_child(|| {
        unshare(CloneFlags::CLONE_NEWNS)?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        let mounts = Mounts::read().map_err(|_| Errno::EIO)?;
        let mut below = mounts.below("/proc");
        below.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in below {
            umount2(path, MntFlags::empty())?;
        }
        try_nested_proc_mount()
    });
    if sys_admin {
        Check::verdict(
            "lift-masks",
            result.is_ok(),
            format!("with CAP_SYS_ADMIN, unmounting the masks in a private mount ns, then a nested proc mount: {result:?} (want Ok)"),
        )
    } else {
        Check::verdict(
            "lift-masks",
            result == Err(Errno::EPERM),
            format!("without CAP_SYS_ADMIN, unshare(CLONE_NEWNS): {result:?} (want EPERM)"),
        )
    }
}

fn sys_readonly(expect: &Expect, mounts: &Mounts) -> Check {
    checked("sys-readonly", || {
        let ro = statvfs("/sys")?.flags().contains(FsFlags::ST_RDONLY);
        let mkdir = std::fs::create_dir("/sys/podsim-probe");
        let erofs = matches!(&mkdir, Err(e) if e.raw_os_error() == Some(libc::EROFS));
        let cgroup = mounts.at("/sys/fs/cgroup");
        let cgroup_ro = cgroup.map(MountEntry::read_only).unwrap_or(false);
        let owned = |p: &str| std::fs::metadata(p).is_ok_and(|m| m.uid() == 0);
        let cgroup_ok = match expect.cgroups.as_str() {
            // Delegated v2: writable, ours, the root of our cgroup namespace.
            "v2" => {
                !cgroup_ro
                    && fs_type("/sys/fs/cgroup") == Some(CGROUP2_SUPER_MAGIC)
                    && owned("/sys/fs/cgroup/cgroup.procs")
                    && std::fs::read_to_string("/proc/self/cgroup")?
                        .lines()
                        .any(|l| l == "0::/")
            }
            // Delegated v1: a tmpfs with the hierarchies' directories, ours.
            "v1" => {
                fs_type("/sys/fs/cgroup") == Some(TMPFS_MAGIC)
                    && crate::cgroups::CONTROLLERS
                        .iter()
                        .all(|c| owned(&format!("/sys/fs/cgroup/{c}/cgroup.procs")))
            }
            _ => cgroup_ro && fs_type("/sys/fs/cgroup") == Some(CGROUP2_SUPER_MAGIC),
        };
        Ok(Check::verdict(
            "sys-readonly",
            ro && erofs && cgroup_ok,
            format!(
                "/sys {} ({}); mkdir in it: {}; /sys/fs/cgroup: {}",
                if ro { "read-only" } else { "WRITABLE" },
                mounts.at("/sys").map(|m| m.fstype.as_str()).unwrap_or("?"),
                match &mkdir {
                    Ok(()) => "succeeded".to_string(),
                    Err(e) => e.to_string(),
                },
                match (expect.cgroups.as_str(), cgroup_ok) {
                    ("v2", true) => "cgroup2, read-write, delegated, our cgroup namespace's root",
                    ("v2", false) => "NOT a delegated cgroup2",
                    ("v1", true) => "tmpfs with the delegated v1 hierarchies",
                    ("v1", false) => "NOT the delegated v1 hierarchies",
                    (_, true) => "cgroup2, read-only",
                    (_, false) => "NOT a read-only cgroup2",
                }
            ),
        ))
    })
}

fn dev(mounts: &Mounts) -> Check {
    checked("dev", || {
        let mut wrong = Vec::new();
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            let path = format!("/dev/{name}");
            let ok = std::fs::metadata(&path)
                .map(|m| {
                    m.file_type().is_char_device()
                        && m.rdev() == nix::sys::stat::makedev(major, minor)
                })
                .unwrap_or(false);
            if !ok {
                wrong.push(path);
            }
        }
        for (path, fstype) in [
            ("/dev", "tmpfs"),
            ("/dev/pts", "devpts"),
            ("/dev/shm", "tmpfs"),
            ("/dev/mqueue", "mqueue"),
        ] {
            if mounts.at(path).map(|m| m.fstype.as_str()) != Some(fstype) {
                wrong.push(format!("{path} (not {fstype})"));
            }
        }
        let mut zero = [1u8; 8];
        File::open("/dev/zero")?.read_exact(&mut zero)?;
        if zero != [0u8; 8] {
            wrong.push("/dev/zero reads non-zero".to_string());
        }
        let ptmx = std::fs::read_link("/dev/ptmx").map(|t| t == Path::new("pts/ptmx"));
        if !matches!(ptmx, Ok(true)) {
            wrong.push("/dev/ptmx".to_string());
        }
        Ok(if wrong.is_empty() {
            Check::ok(
                "dev",
                "tmpfs with null zero full random urandom tty, devpts, shm, mqueue, ptmx",
            )
        } else {
            Check::fail("dev", format!("wrong: {}", wrong.join(", ")))
        })
    })
}

fn device(expect: &Expect, dev: Device) -> Check {
    let name = format!("dev-{}", dev.as_str());
    let wanted = expect.devices.contains(&dev);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev.path());
    match (wanted, opened) {
        (true, Ok(_)) => Check::ok(
            &name,
            format!("{} present and opens read-write", dev.path()),
        ),
        (false, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Check::ok(&name, format!("{} absent (not asked for)", dev.path()))
        }
        (true, Err(e)) => Check::fail(&name, format!("{} asked for, but: {e}", dev.path())),
        (false, result) => Check::fail(
            &name,
            format!("{} not asked for, but there: {result:?}", dev.path()),
        ),
    }
}

fn data_root(expect: &Expect) -> Check {
    checked("data-root", || {
        let meta = std::fs::metadata(DATA_ROOT)?;
        let ext4 = fs_type(DATA_ROOT) == Some(EXT4_SUPER_MAGIC);
        let marker = Path::new(DATA_ROOT).join(&expect.marker);
        let wrote = std::fs::write(&marker, "written by podsim self-check\n");
        Ok(Check::verdict(
            "data-root",
            meta.uid() == 0 && meta.gid() == 0 && ext4 && wrote.is_ok(),
            format!(
                "{DATA_ROOT} owned {}:{}, {}, write: {}",
                meta.uid(),
                meta.gid(),
                if ext4 { "ext4" } else { "NOT ext4" },
                match &wrote {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.to_string(),
                }
            ),
        ))
    })
}

fn scratch_tmpfs(name: &str, path: &str) -> Check {
    checked(name, || {
        let tmpfs = fs_type(path) == Some(TMPFS_MAGIC);
        let probe = Path::new(path).join(".podsim-probe");
        let wrote = std::fs::write(&probe, "x").and_then(|()| std::fs::remove_file(&probe));
        Ok(Check::verdict(
            name,
            tmpfs && wrote.is_ok(),
            format!(
                "{path}: {}, write: {}",
                if tmpfs { "tmpfs" } else { "NOT tmpfs" },
                match &wrote {
                    Ok(()) => "ok".to_string(),
                    Err(e) => e.to_string(),
                }
            ),
        ))
    })
}

/// The host's files show through, owned by the overflow uid (host root is
/// not mapped in the pod).
fn host_files() -> Check {
    checked("host-files", || {
        let meta = std::fs::metadata("/etc/passwd")?;
        let readable = std::fs::read_to_string("/etc/passwd").is_ok();
        Ok(Check::verdict(
            "host-files",
            meta.uid() == 65534 && readable,
            format!(
                "/etc/passwd owned by uid {}, readable: {readable}",
                meta.uid()
            ),
        ))
    })
}

fn sidecar(expect: &Expect) -> Check {
    checked("sidecar", || {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, expect.probe_port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to the sidecar on {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        let reply = squeeze(&reply);
        Ok(Check::verdict(
            "sidecar",
            reply == "0 0 4294967295",
            format!("sidecar on {addr} reports uid_map \"{reply}\" (host root)"),
        ))
    })
}
