//! Container networking throughput and connection set-up in the pod
//! simulator, against baselines measured in the same run:
//!
//! * veth: iperf3 between two network namespaces joined by one veth pair
//!   (made beside a plain pod, in its netns, by host root) — the floor any
//!   container network pays at least once;
//! * kernel uplink (a NET_ADMIN pod) and layer-4 relay (a plain pod): iperf3
//!   from a container to a server in the pod's netns ("container → pod"),
//!   and from the pod's 127.0.0.1 to a container's published port
//!   ("pod → published"), through `hutch __net`;
//! * slirp4netns (a pod given /dev/net/tun): the same two paths from a
//!   netns that slirp4netns connects (outbound, and an API `add_hostfwd`),
//!   once with `--mtu=65520` as podman runs it for rootless containers and
//!   once with slirp4netns's own default MTU (1500);
//! * connection set-up through a published TCP port (connect, one byte
//!   there and back), p50 and p99, against the same exchange with the echo
//!   server run directly in the pod's netns.
//!
//! Prints figures and ratios (targets from issue 6: kernel ≥ 0.8× veth,
//! relay ≥ 0.5× veth, both ≥ 3× slirp4netns); asserts nothing about speed,
//! but fails when a path does not work.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use hutch_tests::network::{self, Session, POD_IP};
use hutch_tests::podsim::{Device, PodSpec};
use hutch_tests::runtime::Rig;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Container networking throughput and connection set-up in the pod simulator")]
struct Cli {
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Connections for the set-up latency figures.
    #[arg(long, default_value_t = 500)]
    connects: usize,
    /// Leave out slirp4netns (when the machine has no /dev/net/tun).
    #[arg(long)]
    no_slirp: bool,
}

/// The iperf3 port in every netns.
const IPERF: u16 = 5201;
/// iperf3's client on CPU 0 and its server on CPU 1, in every path: one
/// stream moves about 20 Gbit/s on two cores when the two land on
/// different CPUs and half that when the scheduler puts them on one, which
/// made single samples (the veth baseline's too) swing twofold.
const PIN: &str = "-A0,1";

/// Where published ports appear on the pod's 127.0.0.1.
const PUB_IPERF: u16 = 15201;
const ECHO: u16 = 7000;
const PUB_ECHO: u16 = 17000;

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("net-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Mode {
    to_pod: f64,
    published: f64,
    connect_us: Option<(f64, f64)>,
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let iperf3 = which("iperf3")?;
    let started = Instant::now();

    // The machine may be busy: the veth floor is measured at the start and
    // again after the engine's paths, and the mean taken.
    let plain = Rig::start(&PodSpec::new())?;
    let veth_first = veth_baseline(&plain, &iperf3, cli)?;
    let direct = direct_connects(&plain, cli)?;
    let relay = engine_mode(&plain, &iperf3, cli, "l4-relay")?;
    plain.pod.stop()?;

    let admin = Rig::start(&PodSpec::new().cap_add("NET_ADMIN"))?;
    let kernel = engine_mode(&admin, &iperf3, cli, "kernel-veth-nat")?;
    let veth_again = veth_baseline(&admin, &iperf3, cli)?;
    admin.pod.stop()?;
    let veth = (veth_first + veth_again) / 2.0;

    let slirp = if cli.no_slirp {
        None
    } else if !Path::new("/dev/net/tun").exists() {
        println!("net-bench: no /dev/net/tun on this machine: slirp4netns left out");
        None
    } else {
        // Podman's setting (containers.conf's default for rootless
        // networks), then slirp4netns's own default; a pod each.
        let run = |mtu: u32| -> anyhow::Result<Mode> {
            let tun = Rig::start(&PodSpec::new().device(Device::Tun))?;
            let m = slirp(&tun, &iperf3, cli, mtu)?;
            tun.pod.stop()?;
            Ok(m)
        };
        Some((run(65520)?, run(1500)?))
    };

    println!(
        "net-bench: iperf3 TCP, one stream, {} s per run (Gbit/s; ratio to veth-to-veth{})",
        cli.seconds,
        if slirp.is_some() {
            " / to slirp4netns with podman's --mtu=65520 / with its default MTU 1500"
        } else {
            ""
        }
    );
    println!(
        "  veth-to-veth             {veth:7.2}  (mean of {veth_first:.2} and {veth_again:.2})"
    );
    let row = |name: &str, v: f64, target: f64, slirp_v: Option<(f64, f64)>| {
        let vs_slirp = slirp_v.map_or(String::new(), |(tuned, plain)| {
            format!(
                "  {:6.2}x / {:6.2}x slirp4netns (target 3x)",
                v / tuned,
                v / plain
            )
        });
        let verdict = if v / veth >= target { "ok" } else { "below" };
        println!(
            "  {name:<24} {v:7.2}  {:5.2}x veth (target {target}x: {verdict}){vs_slirp}",
            v / veth
        );
    };
    row(
        "kernel: container→pod",
        kernel.to_pod,
        0.8,
        slirp.as_ref().map(|(t, p)| (t.to_pod, p.to_pod)),
    );
    row(
        "kernel: pod→published",
        kernel.published,
        0.8,
        slirp.as_ref().map(|(t, p)| (t.published, p.published)),
    );
    row(
        "relay: container→pod",
        relay.to_pod,
        0.5,
        slirp.as_ref().map(|(t, p)| (t.to_pod, p.to_pod)),
    );
    row(
        "relay: pod→published",
        relay.published,
        0.5,
        slirp.as_ref().map(|(t, p)| (t.published, p.published)),
    );
    for (mtu, s) in slirp.iter().flat_map(|(t, p)| [(65520, t), (1500, p)]) {
        println!(
            "  slirp4netns {mtu:>5}: →pod  {:7.2}  {:5.2}x veth",
            s.to_pod,
            s.to_pod / veth
        );
        println!(
            "  slirp4netns {mtu:>5}: publ. {:7.2}  {:5.2}x veth",
            s.published,
            s.published / veth
        );
    }
    println!(
        "net-bench: TCP connection set-up (connect + 1-byte echo), {} connections, p50 / p99 in µs",
        cli.connects
    );
    println!(
        "  direct in the pod netns  {:7.0} / {:7.0}",
        direct.0, direct.1
    );
    for (name, m) in [
        ("kernel: published port", &kernel),
        ("relay: published port", &relay),
    ] {
        if let Some((p50, p99)) = m.connect_us {
            println!(
                "  {name:<24} {p50:7.0} / {p99:7.0}  ({:.1}x / {:.1}x direct)",
                p50 / direct.0,
                p99 / direct.1
            );
        }
    }
    println!("net-bench: {:.1} s in all", started.elapsed().as_secs_f64());
    Ok(())
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(program);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{program} is not installed (tests/install-deps installs it)")
}

/// iperf3's receiver throughput in Gbit/s from its JSON report.
fn gbits(report: &str) -> anyhow::Result<f64> {
    let v: Value = serde_json::from_str(report).with_context(|| {
        format!(
            "iperf3 report: {}",
            report.chars().take(400).collect::<String>()
        )
    })?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no receiver throughput in {v}"))?;
    Ok(bps / 1e9)
}

/// Runs an iperf3 client command until the server answers (it may still be
/// starting), returning its report.
fn iperf_client(mut make: impl FnMut() -> Command) -> anyhow::Result<String> {
    let mut last = String::new();
    for _ in 0..25 {
        let out = make().stdin(Stdio::null()).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Through a published port the proxy accepts before the server in
        // the container listens; iperf3 then reports an error (sometimes
        // with exit status 0).
        let failed =
            serde_json::from_str::<Value>(&text).map_or(true, |v| v.get("error").is_some());
        if out.status.success() && !failed {
            return Ok(text);
        }
        last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("iperf3 client failed: {last}")
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn percentiles(report: &str) -> anyhow::Result<(f64, f64)> {
    let v: Value = serde_json::from_str(report).context("connect-times report")?;
    let mut us: Vec<f64> = v["micros"]
        .as_array()
        .context("micros")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    ensure!(!us.is_empty(), "no connections measured");
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1];
    Ok((at(0.50), at(0.99)))
}

fn connect_times(rig: &Rig, port: u16, n: usize) -> anyhow::Result<(f64, f64)> {
    let out = rig
        .pod
        .exec(network::net_tool())
        .args([
            "connect-times",
            &format!("127.0.0.1:{port}"),
            &n.to_string(),
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "connect-times: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    percentiles(&String::from_utf8_lossy(&out.stdout))
}

/// Two netns joined by a veth pair, beside the pod (host root in its netns).
fn veth_baseline(rig: &Rig, iperf3: &Path, cli: &Cli) -> anyhow::Result<f64> {
    let script = format!(
        r#"set -e
unshare --net sleep 300 &
P=$!
while [ "$(readlink /proc/$P/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.02; done
ip link add vb0 type veth peer name vb1 netns /proc/$P/ns/net
ip addr add 10.99.0.1/30 dev vb0
ip link set vb0 up
nsenter -t $P -n sh -c 'ip addr add 10.99.0.2/30 dev vb1 && ip link set vb1 up && ip link set lo up'
nsenter -t $P -n {iperf3} -s -p {IPERF} >/dev/null 2>&1 &
S=$!
for i in $(seq 100); do nsenter -t $P -n ss -Hltn | grep -q ":{IPERF} " && break; sleep 0.05; done
{iperf3} -c 10.99.0.2 -p {IPERF} -t {secs} {PIN} -J || true
kill $S $P
ip link del vb0 2>/dev/null || true
"#,
        iperf3 = iperf3.display(),
        secs = cli.seconds,
    );
    let out = rig.pod.sidecar("/bin/sh").args(["-c", &script]).output()?;
    ensure!(
        out.status.success(),
        "veth baseline: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    gbits(&String::from_utf8_lossy(&out.stdout)).context("veth baseline")
}

/// The echo exchange with the server in the pod's own netns.
fn direct_connects(rig: &Rig, cli: &Cli) -> anyhow::Result<(f64, f64)> {
    let server = rig
        .pod
        .exec(network::net_tool())
        .args(["tcp-echo", &(ECHO + 1).to_string()])
        .stdin(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let r = connect_times(rig, ECHO + 1, cli.connects);
    kill(server);
    r
}

/// container → pod and pod → published port through `hutch __net`.
fn engine_mode(rig: &Rig, iperf3: &Path, cli: &Cli, expect: &str) -> anyhow::Result<Mode> {
    let httpd = network::pod_network(rig)?;
    let tools = network::tools_layer(rig, "bench", &[iperf3.to_owned(), network::net_tool()])?;
    let spec = |id: &str, script: &str| {
        let mut s = rig.spec(id, &["sh", "-c", script]);
        s.rootfs.lower.insert(0, tools.clone());
        s
    };
    let mut s = Session::start(rig, "auto")?;
    let info = s.call(json!({"op": "info"}))?;
    ensure!(info["uplink"] == expect, "uplink: {info}");
    s.call(json!({"op": "create", "name": "benchnet"}))?;

    let server = rig
        .pod
        .exec(iperf3)
        .args(["-s", "-p", &IPERF.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let client = spec(
        "iperfc",
        &format!(
            "for i in $(seq 50); do iperf3 -c {POD_IP} -p {IPERF} -t {} {PIN} -J > /r.json && break; \
             sleep 0.1; done; touch /done",
            cli.seconds
        ),
    );
    s.run(&client, json!({"networks": ["benchnet"]}))?;
    let waited = network::wait_file(
        rig,
        "iperfc",
        "done",
        Duration::from_secs(u64::from(cli.seconds) + 30),
    );
    kill(server);
    waited?;
    let to_pod = gbits(&network::wait_file(
        rig,
        "iperfc",
        "r.json",
        Duration::ZERO,
    )?)
    .context("container → pod")?;
    s.call(json!({"op": "stop", "id": "iperfc"}))?;
    s.call(json!({"op": "forget", "id": "iperfc"}))?;

    let servers = spec(
        "iperfs",
        &format!("net-tool tcp-echo {ECHO} & exec iperf3 -s -p {IPERF}"),
    );
    s.run(
        &servers,
        json!({"networks": ["benchnet"],
               "publish": [format!("{PUB_IPERF}:{IPERF}"), format!("{PUB_ECHO}:{ECHO}")]}),
    )?;
    let report = iperf_client(|| {
        let mut c = rig.pod.exec(iperf3);
        c.args([
            "-c",
            "127.0.0.1",
            "-p",
            &PUB_IPERF.to_string(),
            "-t",
            &cli.seconds.to_string(),
            PIN,
            "-J",
        ]);
        c
    })?;
    let published = gbits(&report).context("pod → published")?;
    let connect_us = Some(connect_times(rig, PUB_ECHO, cli.connects)?);
    s.call(json!({"op": "stop", "id": "iperfs"}))?;
    s.call(json!({"op": "forget", "id": "iperfs"}))?;
    s.call(json!({"op": "rm", "name": "benchnet"}))?;
    s.shutdown()?;
    kill(httpd);
    Ok(Mode {
        to_pod,
        published,
        connect_us,
    })
}

/// The same two paths through slirp4netns, run by pod root for a user and
/// network namespace of its own.
fn slirp(rig: &Rig, iperf3: &Path, cli: &Cli, mtu: u32) -> anyhow::Result<Mode> {
    let httpd = network::pod_network(rig)?;
    let dir = rig.pod.data_root().display().to_string();
    let hostfwd = format!(
        r#"{{"execute": "add_hostfwd", "arguments": {{"proto": "tcp", "host_addr": "127.0.0.1", "host_port": {PUB_IPERF}, "guest_port": {IPERF}}}}}"#
    );
    let script = format!(
        r#"set -e
unshare --user --map-root-user --net sleep 300 &
P=$!
while [ "$(readlink /proc/$P/ns/net)" = "$(readlink /proc/self/ns/net)" ]; do sleep 0.02; done
in_ns() {{ nsenter -t $P -U -n --preserve-credentials "$@"; }}
slirp4netns --configure --mtu={mtu} --api-socket {dir}/slirp.sock $P tap0 > {dir}/slirp.log 2>&1 &
S=$!
for i in $(seq 100); do in_ns ip -4 addr show tap0 2>/dev/null | grep -q 10.0.2.100 && break; sleep 0.05; done
{iperf3} -s -p {IPERF} > {dir}/slirp-iperf-s.log 2>&1 &
I=$!
for i in $(seq 100); do ss -Hltn | grep -q ":{IPERF} " && break; sleep 0.05; done
in_ns {iperf3} -c {POD_IP} -p {IPERF} -t {secs} {PIN} -J > {dir}/slirp-out.json || true
kill $I
in_ns {iperf3} -s -p {IPERF} > /dev/null 2>&1 &
I=$!
for i in $(seq 100); do in_ns ss -Hltn | grep -q ":{IPERF} " && break; sleep 0.05; done
{net_tool} unix-request {dir}/slirp.sock '{hostfwd}' > {dir}/slirp-fwd.json
{iperf3} -c 127.0.0.1 -p {PUB_IPERF} -t {secs} {PIN} -J > {dir}/slirp-in.json || true
kill $I $S $P
"#,
        iperf3 = iperf3.display(),
        net_tool = network::net_tool().display(),
        secs = cli.seconds,
    );
    let out = rig.pod.exec("/bin/sh").args(["-c", &script]).output()?;
    kill(httpd);
    let host = rig.pod.data_dir_host().to_owned();
    let read = |name: &str| std::fs::read_to_string(host.join(name)).unwrap_or_default();
    ensure!(
        out.status.success(),
        "slirp4netns run: {} (slirp4netns: {}; hostfwd: {})",
        String::from_utf8_lossy(&out.stderr),
        read("slirp.log"),
        read("slirp-fwd.json")
    );
    Ok(Mode {
        to_pod: gbits(&read("slirp-out.json")).with_context(|| {
            format!(
                "slirp4netns → pod (server: {}; slirp4netns: {})",
                read("slirp-iperf-s.log"),
                read("slirp.log")
            )
        })?,
        published: gbits(&read("slirp-in.json")).context("slirp4netns published")?,
        connect_us: None,
    })
}
