//! The container runtime inside the pod simulator: `hutch __runtime run`
//! as pod root, over the busybox test image, in the default pod (masked
//! /proc: degraded mode), the `procMount: Unmasked` pod, and a pod with
//! CAP_SYS_ADMIN (hutch lifts the /proc masks).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use hutch_engine::bootstrap::DEGRADED_PROC_WARNING;
use hutch_engine::runtime::ContainerSpec;
use hutch_tests::podsim::PodSpec;
use hutch_tests::runtime::{Rig, Run, TMPFS_STORE};

/// Docker's default capability set as /proc/PID/status prints it.
const DOCKER_DEFAULT_CAPS: &str = "00000000a80425fb";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Masked /proc, no CAP_SYS_ADMIN: containers run in degraded proc mode.
    Default,
    /// `procMount: Unmasked`.
    Unmasked,
    /// Masked /proc with CAP_SYS_ADMIN: hutch lifts the masks.
    SysAdmin,
}

impl Variant {
    fn pod(self) -> PodSpec {
        match self {
            Variant::Default => PodSpec::new(),
            Variant::Unmasked => PodSpec::new().proc_unmasked(),
            Variant::SysAdmin => PodSpec::new().cap_add("SYS_ADMIN"),
        }
    }

    /// Whether containers get their own PID namespace and procfs.
    fn fresh_proc(self) -> bool {
        self != Variant::Default
    }

    fn rig(self) -> anyhow::Result<Rig> {
        Rig::start(&self.pod())
    }
}

/// One `#[test]` per variant for a check `fn(Variant) -> anyhow::Result<()>`.
macro_rules! in_variants {
    ($check:ident: $($name:ident => $variant:ident),+) => {
        mod $check {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$check(super::Variant::$variant)
                }
            )+
        }
    };
}

fn sh(rig: &Rig, id: &str, script: &str) -> ContainerSpec {
    rig.spec(id, &["sh", "-c", script])
}

fn expect_value(run: &Run, key: &str, want: &str) -> anyhow::Result<()> {
    let got = run.value(key);
    ensure!(
        got == Some(want),
        "{key}: want {want:?}, got {got:?} in {run:#?}"
    );
    Ok(())
}

/// Waits until the container `id` has written `name` in its rootfs (the
/// file lands in its upper dir, which the test sees on the host).
fn wait_for_file(rig: &Rig, id: &str, name: &str) -> anyhow::Result<()> {
    let path = rig
        .pod
        .data_dir_host()
        .join(format!("containers/{id}/upper/{name}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        ensure!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn kill9(rig: &Rig, pid: u32) -> anyhow::Result<()> {
    rig.pod_sh(&format!("kill -9 {pid}")).map(drop)
}

const BASICS: &str = r#"
echo uid=$(id -u)
echo hostname=$(hostname)
echo capeff=$(awk '/^CapEff/{print $2}' /proc/self/status)
echo capbnd=$(awk '/^CapBnd/{print $2}' /proc/self/status)
echo interrupts=$(stat -c %t:%T /proc/interrupts)
echo acpi=$(stat -f -c %T /proc/acpi):$(ls -A /proc/acpi | wc -l)
echo timer_list=$(stat -c %t:%T /proc/timer_list)
echo procsys=$(awk '$5=="/proc/sys"{split($6,o,",");print o[1]}' /proc/self/mountinfo | tail -1)
echo sys=$(awk '$5=="/sys"{split($6,o,",");print o[1]}' /proc/self/mountinfo | tail -1)
echo pid=$$
mount -t tmpfs t /mnt 2>/dev/null && echo mount=allowed || echo mount=denied
"#;

/// Root inside, Docker's capabilities, /proc masks and read-only paths, a
/// read-only /sys, no mounting without CAP_SYS_ADMIN, and the degraded-mode
/// warning exactly where /proc cannot be fresh.
fn basics(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let run = rig.run(&[&sh(&rig, "basics0123456789", BASICS)], &[])?;
    ensure!(run.code == 0, "{run:#?}");
    expect_value(&run, "uid", "0")?;
    expect_value(&run, "hostname", "basics012345")?;
    expect_value(&run, "capeff", DOCKER_DEFAULT_CAPS)?;
    expect_value(&run, "capbnd", DOCKER_DEFAULT_CAPS)?;
    // Masked files are /dev/null (char 1:3) bound over them.
    expect_value(&run, "interrupts", "1:3")?;
    expect_value(&run, "timer_list", "1:3")?;
    // Masked directories get an empty tmpfs.
    expect_value(&run, "acpi", "tmpfs:0")?;
    expect_value(&run, "procsys", "ro")?;
    expect_value(&run, "sys", "ro")?;
    expect_value(&run, "mount", "denied")?;
    // Every container has its own PID namespace, the degraded mode too.
    expect_value(&run, "pid", "1")?;
    let warned = run.stderr.contains(DEGRADED_PROC_WARNING);
    if variant.fresh_proc() {
        ensure!(!warned, "no degraded-mode warning: {run:#?}");
    } else {
        ensure!(warned, "the degraded mode is announced: {run:#?}");
    }
    Ok(())
}
in_variants!(basics: default => Default, unmasked => Unmasked, sys_admin => SysAdmin);

/// Docker's exit codes and messages for commands that cannot run.
fn exit_codes(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let run = rig.run(&[&rig.spec("missing", &["no-such-command", "x"])], &[])?;
    ensure!(run.code == 127, "{run:#?}");
    ensure!(
        run.stderr
            .contains("exec: \"no-such-command\": executable file not found in $PATH"),
        "{run:#?}"
    );
    let run = rig.run(&[&rig.spec("noexec", &["/etc/passwd"])], &[])?;
    ensure!(run.code == 126, "{run:#?}");
    ensure!(
        run.stderr
            .contains("exec: \"/etc/passwd\": permission denied"),
        "{run:#?}"
    );
    let run = rig.run(&[&sh(&rig, "three", "exit 3")], &[])?;
    ensure!(run.code == 3, "{run:#?}");
    Ok(())
}
in_variants!(exit_codes: default => Default, unmasked => Unmasked);

/// `--user` by uid:gid and by name (supplementary groups from the image's
/// /etc/group, HOME from /etc/passwd), and a missing working directory.
fn users_and_workdir(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let script = "echo id=$(id); echo home=$HOME; echo pwd=$(pwd); echo groups=$(id -G)";
    let mut numeric = sh(&rig, "numeric", script);
    numeric.process.user.name = "1000:1000".into();
    let run = rig.run(&[&numeric], &[])?;
    ensure!(run.code == 0, "{run:#?}");
    expect_value(&run, "id", "uid=1000(app) gid=1000(app) groups=1000(app)")?;

    let mut named = sh(&rig, "named", script);
    named.process.user.name = "app".into();
    named.process.user.group_add = vec!["audio".into()];
    named.process.cwd = "/srv/made/for/app".into();
    let run = rig.run(&[&named], &[])?;
    ensure!(run.code == 0, "{run:#?}");
    expect_value(&run, "groups", "1000 2000 2001")?;
    expect_value(&run, "home", "/home/app")?;
    expect_value(&run, "pwd", "/srv/made/for/app")?;
    Ok(())
}
in_variants!(users_and_workdir: default => Default, unmasked => Unmasked);

/// `--read-only`: the rootfs refuses writes, /dev/shm does not, and a
/// missing working directory is still created.
fn read_only(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let mut spec = sh(
        &rig,
        "readonly",
        "touch /x 2>/dev/null && echo root=rw || echo root=ro; \
         touch /dev/shm/y && echo shm=rw; echo pwd=$(pwd)",
    );
    spec.rootfs.readonly = true;
    spec.process.cwd = "/made/on/ro".into();
    let run = rig.run(&[&spec], &[])?;
    ensure!(run.code == 0, "{run:#?}");
    expect_value(&run, "root", "ro")?;
    expect_value(&run, "shm", "rw")?;
    expect_value(&run, "pwd", "/made/on/ro")?;
    Ok(())
}
in_variants!(read_only: default => Default, unmasked => Unmasked);

/// Only fds 0, 1 and 2 are open in the container's first process, and a
/// container killed with SIGKILL from outside exits 137.
fn fds_and_sigkill(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let running = rig.spawn(&[&rig.spec("sleeper", &["sleep", "60"])], &[])?;
    let pid = running.pids[0];
    let fds = rig.pod_ls(&format!("/proc/{pid}/fd"))?;
    ensure!(fds == ["0", "1", "2"], "open fds of the container: {fds:?}");
    kill9(&rig, pid)?;
    let run = running.finish()?;
    ensure!(run.code == 137, "{run:#?}");
    Ok(())
}
in_variants!(fds_and_sigkill: default => Default, unmasked => Unmasked);

/// The engine IDs of a uid_map, as ranges.
fn engine_ranges(uid_map: &str) -> anyhow::Result<Vec<(u32, u32, u32)>> {
    uid_map
        .lines()
        .map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
            ensure!(f.len() == 3, "uid_map line {l:?}");
            Ok((f[0], f[1], f[2]))
        })
        .collect()
}

fn private_script(name: &str) -> String {
    format!(
        "echo {name}.uid=$(id -u); \
         touch /f && chown 65534:65534 /f && echo {name}.owner=$(stat -c %u:%g /f); \
         echo {name}.nobody=$(su -s /bin/sh -c 'id -u' nobody); \
         echo {name}.busybox=$(stat -c %u:%g /bin/busybox); \
         touch /ready; exec sleep 60"
    )
}

/// Private mode on the engine's tmpfs store: two containers get disjoint
/// ID ranges, each is root inside while the pod sees its mapped ID, image
/// files belong to each container's root, and 65534 works in both.
fn private_mode(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let a = rig.spec_on(TMPFS_STORE, "priva", &["sh", "-c", &private_script("a")]);
    let b = rig.spec_on(TMPFS_STORE, "privb", &["sh", "-c", &private_script("b")]);
    let mut args = vec!["--userns-mode".to_string(), "private".to_string()];
    args.extend(rig.tmpfs_store_args());
    let running = rig.spawn(&[&a, &b], &args)?;
    wait_for_file(&rig, "priva", "ready")?;
    wait_for_file(&rig, "privb", "ready")?;

    let mut maps = Vec::new();
    for &pid in &running.pids {
        let map = engine_ranges(&rig.pod_read(&format!("/proc/{pid}/uid_map"))?)?;
        let root = map
            .iter()
            .find(|(inside, _, _)| *inside == 0)
            .map(|(_, outside, _)| *outside)
            .context("root is mapped")?;
        ensure!(
            root != 0,
            "a private container's root is not the engine's: {map:?}"
        );
        let status = rig.pod_read(&format!("/proc/{pid}/status"))?;
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .context("Uid")?;
        let uids: BTreeSet<&str> = uid_line.split_whitespace().skip(1).collect();
        ensure!(
            uids == BTreeSet::from([root.to_string().as_str()]),
            "the pod sees the container's root as {root}: {uid_line}"
        );
        ensure!(
            map.iter()
                .any(|&(inside, _, count)| inside == 65534 && count == 1),
            "65534 is mapped alone: {map:?}"
        );
        maps.push(map);
    }
    let used = |map: &[(u32, u32, u32)]| -> BTreeSet<u32> {
        map.iter().flat_map(|&(_, o, c)| o..o + c).collect()
    };
    let (ids_a, ids_b) = (used(&maps[0]), used(&maps[1]));
    ensure!(
        ids_a.is_disjoint(&ids_b),
        "private ranges overlap: {maps:?}"
    );
    for &pid in &running.pids {
        kill9(&rig, pid)?;
    }
    let run = running.finish()?;
    ensure!(run.code == 137, "{run:#?}");
    for name in ["a", "b"] {
        expect_value(&run, &format!("{name}.uid"), "0")?;
        expect_value(&run, &format!("{name}.owner"), "65534:65534")?;
        expect_value(&run, &format!("{name}.nobody"), "65534")?;
        expect_value(&run, &format!("{name}.busybox"), "0:0")?;
    }
    Ok(())
}
in_variants!(private_mode: default => Default, unmasked => Unmasked);

/// A private-mode spec that asks for idmapped layers on the pod's disk,
/// which the kernel will not idmap for the engine, fails with a message
/// that says so (the engine gives such containers shifted copies instead:
/// `tests/tests/engine.rs` `private_mode`; the runtime alone has none).
#[test]
fn idmapped_layers_are_refused_on_a_disk_store() -> anyhow::Result<()> {
    let rig = Variant::Unmasked.rig()?;
    let spec = sh(&rig, "ondisk", "true");
    let run = rig.run(&[&spec], &["--userns-mode".into(), "private".into()])?;
    ensure!(run.code == 125, "{run:#?}");
    ensure!(
        run.stderr
            .contains("idmapped layers need a filesystem the engine owns")
            && run.stderr.contains("is on ext4"),
        "{run:#?}"
    );
    Ok(())
}

/// With its own PID namespace a container cannot signal another container's
/// processes, and with a fresh /proc it sees only its own (in the degraded
/// mode the pod's /proc lists the others, under PIDs it cannot name); even
/// with CAP_SYS_ADMIN its mounts stay in its own mount namespace, away from
/// the engine's.
fn isolation(variant: Variant) -> anyhow::Result<()> {
    let rig = variant.rig()?;
    let running = rig.spawn(&[&sh(&rig, "victim", "touch /ready; exec sleep 60")], &[])?;
    wait_for_file(&rig, "victim", "ready")?;
    let victim = running.pids[0];
    let helper = rig
        .pod_read(&format!("/proc/{victim}/status"))?
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .context("PPid")?
        .trim()
        .to_string();

    let mut attacker = sh(
        &rig,
        "attacker",
        &format!(
            "echo pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '); \
             kill -9 {victim} 2>/dev/null && echo direct=sent || echo direct=failed; \
             kill -9 -1; \
             mount -t tmpfs evil-etc /etc && echo mount=done; \
             mount -t tmpfs evil-root / && echo mount_root=done; \
             echo visible=$(ls /var/lib/hutch 2>&1 | head -1)"
        ),
    );
    attacker
        .process
        .capabilities
        .push("CAP_SYS_ADMIN".to_string());
    let run = rig.run(&[&attacker], &[])?;
    ensure!(run.code == 0, "{run:#?}");
    let pids = run.value("pids").context("pids")?;
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if variant.fresh_proc() {
        ensure!(
            pids.contains(&1) && pids.iter().all(|&p| p < 100),
            "only the container's own processes are visible: {pids:?}"
        );
    } else {
        ensure!(
            pids.contains(&victim),
            "the pod's /proc lists the other container: {pids:?}"
        );
    }
    expect_value(&run, "direct", "failed")?;
    expect_value(&run, "mount", "done")?;
    ensure!(
        run.value("visible")
            .is_some_and(|v| v.contains("No such file")),
        "the engine's data root is not in the container: {run:#?}"
    );

    let victim_status = rig.pod_read(&format!("/proc/{victim}/status"))?;
    ensure!(
        victim_status.contains("State:\tS"),
        "the other container still sleeps: {victim_status}"
    );
    for mountinfo in [
        rig.pod_read(&format!("/proc/{helper}/mountinfo"))?,
        rig.pod_read("/proc/self/mountinfo")?,
    ] {
        ensure!(
            !mountinfo.contains("evil-"),
            "a container's mount leaked out: {mountinfo}"
        );
    }
    kill9(&rig, victim)?;
    let run = running.finish()?;
    ensure!(run.code == 137, "{run:#?}");
    Ok(())
}
in_variants!(isolation: default => Default, unmasked => Unmasked, sys_admin => SysAdmin);
