//! Container networking inside the pod simulator, in both pod variants:
//! a pod whose netns the engine may not touch (the layer-4 relay uplink)
//! and a containerd 2.x pod with NET_ADMIN (the kernel uplink). Neither
//! has /dev/net/tun.

use std::time::Duration;

use anyhow::{ensure, Context};
use hutch_tests::network::{self, Session, POD_HTTP_BODY, POD_HTTP_PORT, POD_IP};
use hutch_tests::podsim::PodSpec;
use hutch_tests::runtime::Rig;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Default pod: no NET_ADMIN.
    Relay,
    /// NET_ADMIN over a pod-owned netns.
    Kernel,
}

impl Variant {
    fn pod(self) -> PodSpec {
        match self {
            Variant::Relay => PodSpec::new(),
            Variant::Kernel => PodSpec::new().cap_add("NET_ADMIN"),
        }
    }

    fn uplink(self) -> &'static str {
        match self {
            Variant::Relay => "l4-relay",
            Variant::Kernel => "kernel-veth-nat",
        }
    }
}

macro_rules! in_variants {
    ($check:ident) => {
        mod $check {
            #[test]
            fn relay() -> anyhow::Result<()> {
                super::$check(super::Variant::Relay)
            }
            #[test]
            fn kernel() -> anyhow::Result<()> {
                super::$check(super::Variant::Kernel)
            }
        }
    };
}

fn sh(rig: &Rig, id: &str, script: &str) -> hutch_engine::runtime::ContainerSpec {
    rig.spec(id, &["sh", "-c", script])
}

fn host_port(settings: &Value, key: &str) -> anyhow::Result<u16> {
    settings["Ports"][key][0]["HostPort"]
        .as_str()
        .with_context(|| format!("no {key} binding in {settings}"))?
        .parse()
        .context("host port")
}

/// Two containers on a user-defined network, the pod's HTTP server, and
/// published ports: names, aliases, the pod by address and by
/// host.docker.internal, localhost:<port> in the pod, a random port.
fn names_uplink_and_ports(variant: Variant) -> anyhow::Result<()> {
    let rig = Rig::start(&variant.pod())?;
    let mut httpd = network::pod_network(&rig)?;
    let mut s = Session::start(&rig, "auto")?;
    let info = s.call(json!({"op": "info"}))?;
    ensure!(info["uplink"] == variant.uplink(), "uplink: {info}");
    s.call(json!({"op": "create", "name": "appnet"}))?;

    let web = sh(
        &rig,
        "web",
        "mkdir -p /www && echo web-ok > /www/index.html && exec httpd -f -p 80 -h /www",
    );
    let settings = s.run(
        &web,
        json!({"networks": ["appnet"], "aliases": ["webalias"], "publish": ["18080:80", "80"]}),
    )?;
    let net = &settings["Networks"]["appnet"];
    let ip = net["IPAddress"].as_str().context("web's address")?;
    ensure!(ip.starts_with("172.18."), "web's address: {settings}");
    let mac = net["MacAddress"].as_str().context("web's MAC")?;
    let octets: Vec<String> = ip
        .split('.')
        .map(|o| format!("{:02x}", o.parse::<u8>().unwrap_or(0)))
        .collect();
    ensure!(
        mac == format!("02:42:{}", octets.join(":")),
        "Docker's MAC for {ip}: {mac}"
    );
    let random = host_port(&settings, "80/tcp")?;

    let client = sh(
        &rig,
        "client",
        &format!(
            "sleep 0.3; wget -qO /r-name http://web/; wget -qO /r-alias http://webalias/; \
             nslookup web > /r-dns 2>&1; cat /etc/resolv.conf > /r-resolv; touch /names-done; wget -qO /r-podip http://{POD_IP}:{POD_HTTP_PORT}/; \
             wget -qO /r-hdi http://host.docker.internal:{POD_HTTP_PORT}/; \
             touch /done"
        ),
    );
    s.run(
        &client,
        json!({"networks": ["appnet"], "add_host": ["host.docker.internal:host-gateway"]}),
    )?;
    network::wait_file(&rig, "client", "names-done", WAIT)?;
    let outbound = true;
    if outbound {
        network::wait_file(&rig, "client", "done", WAIT)?;
    }
    let read = |name: &str| network::wait_file(&rig, "client", name, Duration::ZERO);
    ensure!(
        read("r-name")?.trim() == "web-ok",
        "by name: {:?}",
        read("r-name")
    );
    ensure!(read("r-alias")?.trim() == "web-ok", "by alias");
    ensure!(read("r-dns")?.contains(ip), "nslookup: {}", read("r-dns")?);
    ensure!(
        read("r-resolv")?.contains("nameserver 127.0.0.11"),
        "resolv.conf"
    );
    if outbound {
        ensure!(read("r-podip")?.trim() == POD_HTTP_BODY, "pod by address");
        ensure!(
            read("r-hdi")?.trim() == POD_HTTP_BODY,
            "host.docker.internal"
        );
    }

    for port in [18080, random] {
        let got = rig.pod_sh(&format!("busybox wget -qO- http://127.0.0.1:{port}/"))?;
        ensure!(
            got.trim() == "web-ok",
            "localhost:{port} in the pod: {got:?}"
        );
    }
    // internal networks have no uplink.
    s.call(json!({"op": "create", "name": "intnet", "internal": true}))?;
    let inner = sh(
        &rig,
        "inner",
        &format!(
            "if wget -qO /r-out http://{POD_IP}:{POD_HTTP_PORT}/; then touch /reached; \
             else touch /blocked; fi"
        ),
    );
    s.run(&inner, json!({"networks": ["intnet"]}))?;
    network::wait_file(&rig, "inner", "blocked", WAIT)?;
    s.call(json!({"op": "stop", "id": "inner"}))?;
    s.call(json!({"op": "forget", "id": "inner"}))?;

    // A daemon restart keeps addresses and resolved ports.
    s.shutdown()?;
    let mut s = Session::start(&rig, "auto")?;
    let again = s.run(
        &web,
        json!({"networks": ["appnet"], "aliases": ["webalias"], "publish": ["18080:80", "80"]}),
    )?;
    ensure!(
        again["Networks"]["appnet"]["IPAddress"] == ip,
        "address after restart: {again}"
    );
    ensure!(
        host_port(&again, "80/tcp")? == random,
        "random port after restart: {again}"
    );
    let got = rig.pod_sh(&format!("busybox wget -qO- http://127.0.0.1:{random}/"))?;
    ensure!(
        got.trim() == "web-ok",
        "localhost:{random} after restart: {got:?}"
    );

    // Removal leaves no links, addresses or nftables rules behind.
    for id in ["web", "client"] {
        s.call(json!({"op": "stop", "id": id}))?;
        s.call(json!({"op": "forget", "id": id}))?;
    }
    s.call(json!({"op": "rm", "name": "appnet"}))?;
    s.call(json!({"op": "rm", "name": "intnet"}))?;
    let k = s.call(json!({"op": "kernel"}))?;
    let links: Vec<&str> = k["bridge"]["links"]
        .as_array()
        .context("links")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        links
            .iter()
            .all(|l| ["lo", "docker0", "uplink0"].contains(l)),
        "links left in the bridge netns: {links:?}"
    );
    let addrs = k["bridge"]["addresses"].to_string();
    ensure!(
        !addrs.contains("172.18.") && !addrs.contains("172.19."),
        "addresses left: {addrs}"
    );
    s.shutdown()?;
    let pod_links = rig.pod.sidecar("ip").args(["-o", "link"]).output()?;
    let pod_links = String::from_utf8_lossy(&pod_links.stdout);
    ensure!(
        !pod_links.contains("hutch0"),
        "uplink left in the pod: {pod_links}"
    );
    let tables = rig.pod.sidecar("nft").args(["list", "tables"]).output()?;
    let tables = String::from_utf8_lossy(&tables.stdout);
    ensure!(
        !tables.contains("hutch"),
        "nftables table left in the pod: {tables}"
    );
    let _ = httpd.kill();
    let _ = httpd.wait();
    rig.pod.stop()
}
in_variants!(names_uplink_and_ports);
