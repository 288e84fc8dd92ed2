//! The pod simulator, tested against what it promises: each property is
//! checked with an independent tool run inside the pod (or on the host),
//! and every variant passes podsim's own self-check.
//!
//! Runs as host root: `cargo test -p hutch-tests --test podsim`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hutch_tests::podsim::{
    cap_mask, podsim_bin, procscan, Device, NetnsOwner, Pod, PodSpec, DEFAULT_CAPS, ID_RANGE_SIZE,
};

/// Runs a shell script as pod root.
fn sh(pod: &Pod, script: &str) -> Output {
    pod.exec("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("running podsim exec")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Asserts success and returns stdout.
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts failure and returns stderr.
fn fails(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} succeeded but must fail:\nstdout: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn start(spec: &PodSpec) -> Pod {
    Pod::start(spec).expect("starting a pod")
}

fn assert_nothing_left(base: u32, data_dir: &std::path::Path) {
    let left = procscan::live_processes_in_uid_range(base, ID_RANGE_SIZE);
    assert!(
        left.is_empty(),
        "processes left in the pod's uid range: {left:?}"
    );
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
}

fn self_check(args: &[&str]) {
    let out = Command::new(podsim_bin())
        .arg("self-check")
        .args(args)
        .output()
        .expect("running podsim self-check");
    let report = text(&out.stdout);
    assert!(
        out.status.success() && !report.contains("FAIL"),
        "self-check {args:?} failed ({}):\n{report}\n{}",
        out.status,
        text(&out.stderr)
    );
    for property in [
        "uid_map",
        "namespaces",
        "loopback",
        "netns-owner",
        "capabilities",
        "proc-masks",
        "sys-readonly",
        "dev-fuse",
        "data-root",
        "sidecar",
        "teardown",
    ] {
        assert!(
            report.contains(&format!("ok   {property}:")),
            "self-check {args:?} did not check {property}:\n{report}"
        );
    }
}

#[test]
fn self_check_default() {
    self_check(&[]);
}

#[test]
fn self_check_proc_unmasked() {
    self_check(&["--proc-unmasked"]);
}

#[test]
fn self_check_netns_owned_by_node() {
    self_check(&["--netns-owner", "initial"]);
}

#[test]
fn self_check_extra_capabilities() {
    self_check(&["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN"]);
}

#[test]
fn self_check_devices() {
    self_check(&["--device", "fuse", "--device", "tun"]);
}

#[test]
fn self_check_delegated_cgroups() {
    self_check(&["--delegate-cgroups-v1"]);
    self_check(&["--delegate-cgroups-v2"]);
}

/// `--delegate-cgroups-v2`: the pod's own cgroup2 directory on the host,
/// handed to pod root, the root of the pod's cgroup namespace; `exec`
/// places its commands in it; pod root can make and fill sub-cgroups and
/// freeze them; teardown removes it with what the pod made inside.
#[test]
fn delegated_cgroup_v2() {
    let pod = start(&PodSpec::new().delegate_cgroups_v2());
    let host = pod
        .info()
        .cgroup_v2_host
        .clone()
        .expect("pod.json names the delegated cgroup");
    let meta = std::fs::metadata(host.join("cgroup.procs")).expect("the host's cgroup.procs");
    assert_eq!((meta.uid(), meta.gid()), (pod.base(), pod.base()));
    let out = ok(
        sh(
            &pod,
            "cat /proc/self/cgroup | grep '^0::'; mkdir /sys/fs/cgroup/sub; \
             sleep 30 >/dev/null 2>&1 & p=$!; \
             while [ \"$(cat /proc/$p/comm)\" != sleep ]; do sleep 0.02; done; \
             echo $p > /sys/fs/cgroup/sub/cgroup.procs; echo 1 > /sys/fs/cgroup/sub/cgroup.freeze; sleep 0.2; \
             grep frozen /sys/fs/cgroup/sub/cgroup.events; \
             grep -c . /sys/fs/cgroup/sub/cgroup.procs",
        ),
        "using the delegated cgroup",
    );
    assert_eq!(out, "0::/\nfrozen 1\n1", "{out}");
    // The host sees the pod's sub-cgroup where it delegated.
    assert!(host.join("sub").is_dir());
    pod.stop().expect("a clean teardown");
    assert!(!host.exists(), "{} left behind", host.display());
}

#[test]
fn delegated_cgroup_versions_exclude_each_other() {
    let out = Command::new(hutch_tests::podsim::podsim_bin())
        .args([
            "run",
            "--delegate-cgroups-v1",
            "--delegate-cgroups-v2",
            "--",
            "/bin/true",
        ])
        .output()
        .expect("running podsim");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pod_root_is_uid_zero_mapped_to_its_range() {
    let pod = start(&PodSpec::new());
    assert_eq!(pod.base() % ID_RANGE_SIZE, 0);
    let map = ok(
        pod.exec("cat")
            .arg("/proc/self/uid_map")
            .output()
            .expect("cat"),
        "cat uid_map",
    );
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &pod.base().to_string(), "65536"]
    );
    let gid_map = ok(sh(&pod, "cat /proc/self/gid_map"), "cat gid_map");
    assert_eq!(
        gid_map.split_whitespace().nth(1),
        Some(pod.base().to_string().as_str())
    );
    assert_eq!(ok(sh(&pod, "id -u; id -g; id -G"), "id"), "0\n0\n0");
    assert_eq!(ok(sh(&pod, "hostname"), "hostname"), pod.info().hostname);
    // Host files show through, owned by the unmapped host root: nobody.
    assert_eq!(ok(sh(&pod, "stat -c %u /etc/passwd"), "stat"), "65534");
    pod.stop().expect("teardown");
}

#[test]
fn capability_bounding_set_is_kubernetes_default_plus_added() {
    let default = cap_mask(&DEFAULT_CAPS).expect("default caps");
    let pod = start(&PodSpec::new());
    let status = ok(
        sh(&pod, "grep -E '^Cap(Bnd|Eff|Prm|Inh)' /proc/self/status"),
        "grep",
    );
    assert!(
        status.contains(&format!("CapBnd:\t{default:016x}")),
        "{status}"
    );
    assert!(
        status.contains(&format!("CapEff:\t{default:016x}")),
        "{status}"
    );
    assert!(status.contains("CapInh:\t0000000000000000"), "{status}");
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new().cap_add("SYS_ADMIN").cap_add("NET_ADMIN"));
    let with = default | cap_mask(&["SYS_ADMIN", "NET_ADMIN"]).expect("caps");
    let status = ok(sh(&pod, "grep CapBnd /proc/self/status"), "grep");
    assert_eq!(status, format!("CapBnd:\t{with:016x}"));
    pod.stop().expect("teardown");
}

#[test]
fn node_owned_netns_is_out_of_pod_roots_reach() {
    let add = "ip link add v0 type veth peer name v1";
    let pod = start(
        &PodSpec::new()
            .netns_owner(NetnsOwner::Initial)
            .cap_add("NET_ADMIN"),
    );
    let err = fails(sh(&pod, add), "ip link add in a node-owned netns");
    assert!(err.contains("Operation not permitted"), "{err}");
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new());
    fails(sh(&pod, add), "ip link add without NET_ADMIN");
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new().cap_add("NET_ADMIN"));
    ok(
        sh(&pod, add),
        "ip link add in a pod-owned netns with NET_ADMIN",
    );
    let links = ok(sh(&pod, "ip -o link show"), "ip link show");
    assert!(links.contains("v0@v1") && links.contains("lo:"), "{links}");
    assert!(ok(sh(&pod, "ip -o link show lo"), "ip").contains("UP"));
    pod.stop().expect("teardown");
}

const NESTED: &str = "unshare --user --map-root-user --mount --pid --fork --mount-proc true";

#[test]
fn proc_masks_lock_nested_user_namespaces() {
    let pod = start(&PodSpec::new());
    let err = fails(sh(&pod, NESTED), "nested proc mount under masks");
    assert!(err.contains("Operation not permitted"), "{err}");
    let masks = ok(
        sh(
            &pod,
            "awk '$5 ~ \"^/proc/\" {print $5}' /proc/self/mountinfo",
        ),
        "listing masks",
    );
    assert!(
        masks.contains("/proc/sys") && masks.contains("/proc/keys"),
        "{masks}"
    );
    assert_eq!(
        ok(sh(&pod, "wc -c < /proc/keys"), "reading /proc/keys"),
        "0"
    );
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new().proc_unmasked());
    ok(
        sh(&pod, NESTED),
        "nested proc mount with procMount: Unmasked",
    );
    pod.stop().expect("teardown");
}

#[test]
fn pod_root_with_sys_admin_can_lift_the_masks() {
    let lift = format!(
        "unshare --mount sh -c 'for m in $(awk \"\\$5 ~ /^\\/proc\\// {{print \\$5}}\" /proc/self/mountinfo | sort -r); do umount $m || exit 1; done; {NESTED}'"
    );
    let pod = start(&PodSpec::new().cap_add("SYS_ADMIN"));
    fails(sh(&pod, NESTED), "nested proc mount before lifting");
    ok(
        sh(&pod, &lift),
        "lifting the masks, then a nested proc mount",
    );
    // Only in that private mount namespace: the pod's own masks remain.
    fails(sh(&pod, NESTED), "nested proc mount after the private lift");
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new());
    let err = fails(
        sh(&pod, "unshare --mount true"),
        "unshare --mount without SYS_ADMIN",
    );
    assert!(err.contains("Operation not permitted"), "{err}");
    pod.stop().expect("teardown");
}

#[test]
fn proc_sys_and_sys_are_read_only() {
    let write_sysctl = "cat /proc/sys/kernel/shmmax > /proc/sys/kernel/shmmax";
    let pod = start(&PodSpec::new());
    let err = fails(sh(&pod, write_sysctl), "writing a sysctl");
    assert!(err.contains("Read-only file system"), "{err}");
    let err = fails(sh(&pod, "mkdir /sys/podsim-test"), "mkdir in /sys");
    assert!(err.contains("Read-only file system"), "{err}");
    let sys = ok(
        sh(
            &pod,
            "awk '$5 == \"/sys\" {print $6}' /proc/self/mountinfo | tail -1",
        ),
        "awk",
    );
    assert!(sys.starts_with("ro,"), "{sys}");
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new().proc_unmasked());
    ok(
        sh(&pod, write_sysctl),
        "writing an IPC sysctl with procMount: Unmasked",
    );
    fails(sh(&pod, "mkdir /sys/podsim-test"), "mkdir in /sys");
    pod.stop().expect("teardown");
}

#[test]
fn devices_only_when_asked() {
    let pod = start(&PodSpec::new());
    fails(sh(&pod, "test -e /dev/fuse"), "/dev/fuse by default");
    fails(sh(&pod, "test -e /dev/net/tun"), "/dev/net/tun by default");
    ok(
        sh(
            &pod,
            "test -c /dev/null && head -c 4 /dev/zero | od -An -tx1",
        ),
        "/dev/null",
    );
    pod.stop().expect("teardown");

    let pod = start(&PodSpec::new().device(Device::Fuse).device(Device::Tun));
    ok(
        sh(&pod, "test -c /dev/fuse && exec 3<>/dev/fuse"),
        "opening /dev/fuse",
    );
    ok(
        sh(&pod, "test -c /dev/net/tun && exec 3<>/dev/net/tun"),
        "opening /dev/net/tun",
    );
    pod.stop().expect("teardown");
}

#[test]
fn data_root_is_host_ext4_owned_by_the_range() {
    let pod = start(&PodSpec::new());
    assert_eq!(pod.data_root(), std::path::Path::new("/var/lib/hutch"));
    let fs = ok(
        sh(
            &pod,
            "stat -f -c %T /var/lib/hutch; stat -c %u:%g /var/lib/hutch",
        ),
        "stat",
    );
    assert_eq!(fs, "ext2/ext3\n0:0");
    ok(
        sh(&pod, "echo hi > /var/lib/hutch/f && mkdir /var/lib/hutch/d && chown 1000:1001 /var/lib/hutch/d"),
        "writing the data root",
    );
    let f = std::fs::metadata(pod.data_dir_host().join("f")).expect("f on the host");
    assert_eq!((f.uid(), f.gid()), (pod.base(), pod.base()));
    let d = std::fs::metadata(pod.data_dir_host().join("d")).expect("d on the host");
    assert_eq!((d.uid(), d.gid()), (pod.base() + 1000, pod.base() + 1001));
    let scratch = ok(
        sh(&pod, "stat -f -c %T /run /tmp && touch /run/x /tmp/x"),
        "scratch",
    );
    assert_eq!(scratch, "tmpfs\ntmpfs");
    pod.stop().expect("teardown");
}

#[test]
fn sidecar_is_host_root_reachable_on_loopback() {
    let pod = start(&PodSpec::new().netns_owner(NetnsOwner::Initial));
    let mut sidecar = pod
        .sidecar("busybox")
        .args(["nc", "-l", "-p", "7777", "-e", "cat", "/proc/self/uid_map"])
        .spawn()
        .expect("starting the sidecar");
    let reply = ok(
        sh(
            &pod,
            "for i in $(seq 100); do busybox nc 127.0.0.1 7777 && exit 0; sleep 0.05; done; exit 1",
        ),
        "reaching the sidecar",
    );
    assert_eq!(
        reply.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    // Still running on the host side as host root, beside a second sidecar
    // that podsim must kill at teardown.
    let mut lingering = pod.sidecar("sleep").arg("600").spawn().expect("sidecar");
    std::thread::sleep(Duration::from_millis(100));
    let info = procscan::process_info(lingering.id() as i32).expect("sidecar status");
    assert_eq!(info.uids, [0; 4]);
    pod.stop().expect("teardown");
    assert!(!lingering.wait().expect("reaping").success());
    sidecar.wait().expect("reaping the first sidecar");
}

#[test]
fn exec_forwards_status_environment_and_directory() {
    let pod = start(&PodSpec::new());
    assert_eq!(sh(&pod, "exit 7").status.code(), Some(7));
    assert_eq!(sh(&pod, "kill -9 $$").status.code(), Some(137));
    let env = pod
        .exec("sh")
        .args(["-c", "echo $PODSIM_TEST_VAR; pwd"])
        .env("PODSIM_TEST_VAR", "passed through")
        .current_dir("/usr/share")
        .output()
        .expect("exec");
    assert_eq!(ok(env, "env"), "passed through\n/usr/share");
    let missing = pod.exec("/no/such/program").output().expect("exec");
    assert_eq!(missing.status.code(), Some(127));
    pod.stop().expect("teardown");
}

#[test]
fn run_returns_the_commands_status() {
    let status = Command::new(podsim_bin())
        .args(["run", "--", "sh", "-c", "test \"$(id -u)\" = 0 && exit 3"])
        .status()
        .expect("podsim run");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn concurrent_pods_get_distinct_ranges() {
    let pods: Vec<Pod> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| start(&PodSpec::new()))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut bases: Vec<u32> = pods.iter().map(Pod::base).collect();
    bases.sort_unstable();
    bases.dedup();
    assert_eq!(bases.len(), 3, "{bases:?}");
    for pod in pods {
        pod.stop().expect("teardown");
    }
}

#[test]
fn stop_leaves_nothing_behind() {
    let pod = start(&PodSpec::new());
    let (base, data_dir) = (pod.base(), pod.data_dir_host().to_path_buf());
    ok(
        sh(
            &pod,
            "sleep 600 > /dev/null 2>&1 & setsid sleep 600 > /dev/null 2>&1 & echo started",
        ),
        "starting background processes",
    );
    // A command still running in the pod when it stops.
    let mut running = pod.exec("sleep").arg("600").spawn().expect("exec");
    std::thread::sleep(Duration::from_millis(100));
    assert!(procscan::live_processes_in_uid_range(base, ID_RANGE_SIZE).len() >= 4);
    let started = Instant::now();
    pod.stop().expect("teardown");
    eprintln!("teardown took {:?}", started.elapsed());
    assert!(!running.wait().expect("reaping").success());
    assert_nothing_left(base, &data_dir);
}

#[test]
fn dropping_a_pod_cleans_up() {
    let pod = start(&PodSpec::new().netns_owner(NetnsOwner::Initial));
    let (base, data_dir) = (pod.base(), pod.data_dir_host().to_path_buf());
    ok(
        sh(&pod, "sleep 600 > /dev/null 2>&1 &"),
        "background process",
    );
    drop(pod);
    assert_nothing_left(base, &data_dir);
}

#[test]
fn teardown_reports_a_held_netns() {
    let pod = start(&PodSpec::new());
    let holder = File::open(format!("/proc/{}/ns/net", pod.info().init_pid)).expect("netns");
    let err = pod.stop().expect_err("teardown must notice the held netns");
    assert!(
        format!("{err:#}").contains("holds the pod's netns open"),
        "{err:#}"
    );
    drop(holder);
}

/// The test-side holder of a pod may crash: podsim sees EOF on stdin.
#[test]
fn holder_death_cleans_up() {
    let state = tempfile::tempdir().expect("state dir");
    // The only writer of podsim's stdin is a `sleep`; killing it is a crash.
    let mut writer = Command::new("sleep")
        .arg("600")
        .stdout(Stdio::piped())
        .spawn()
        .expect("sleep");
    let pipe = writer.stdout.take().expect("pipe");
    let podsim = Command::new(podsim_bin())
        .arg("start")
        .arg("--state")
        .arg(state.path())
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .spawn()
        .expect("podsim start");
    let pod_json = state.path().join("pod.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pod_json.exists() {
        assert!(Instant::now() < deadline, "the pod never became ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let info = hutch_tests::podsim::PodInfo::read(state.path()).expect("pod.json");
    assert!(!procscan::live_processes_in_uid_range(info.base, ID_RANGE_SIZE).is_empty());

    writer.kill().expect("killing the holder");
    writer.wait().expect("reaping the holder");
    let out = podsim.wait_with_output().expect("podsim");
    assert!(out.status.success(), "teardown: {}", text(&out.stdout));
    assert!(
        text(&out.stdout).ends_with("teardown: ok"),
        "{}",
        text(&out.stdout)
    );
    assert_nothing_left(info.base, &info.data_dir_host);
}

#[test]
fn sigterm_cleans_up() {
    let state = tempfile::tempdir().expect("state dir");
    let mut podsim = Command::new(podsim_bin())
        .arg("start")
        .arg("--state")
        .arg(state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("podsim start");
    let mut line = String::new();
    let mut stdout = std::io::BufReader::new(podsim.stdout.take().expect("stdout"));
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("ready line");
    assert_eq!(line.trim(), "ready");
    let info = hutch_tests::podsim::PodInfo::read(state.path()).expect("pod.json");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(podsim.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = podsim.wait().expect("podsim");
    assert!(status.success(), "{status}");
    assert_nothing_left(info.base, &info.data_dir_host);
    assert!(!state.path().join("pod.json").exists());
}
