//! Container networking inside the pod simulator, in both pod variants:
//! a pod whose netns the engine may not touch (the layer-4 relay uplink)
//! and a containerd 2.x pod with NET_ADMIN (the kernel uplink). Neither
//! has /dev/net/tun. A third pod, given /dev/net/tun, runs the slirp4netns
//! uplink users may ask for.

use std::time::Duration;

use anyhow::{ensure, Context};
use hutch_tests::network::{
    self, Session, POD_DNS_ANSWER, POD_HTTP_BODY, POD_HTTP_PORT, POD_IP, POD_UDP_ECHO_PORT,
    POD_UDP_ECHO_PORT2,
};
use hutch_tests::runtime::Rig;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

use hutch_tests::in_variants;
use hutch_tests::network::Variant;

fn sh(rig: &Rig, id: &str, script: &str) -> hutch_engine::runtime::ContainerSpec {
    rig.spec(id, &["sh", "-c", script])
}

/// `wget` of the pod's 127.0.0.1:`port`, retried for a few seconds while the
/// container behind it starts.
fn retry_pod_get(rig: &Rig, port: u16) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rig.pod_sh(&format!("busybox wget -qO- http://127.0.0.1:{port}/")) {
            Ok(got) => return Ok(got),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
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
        "mkdir -p /www/cgi-bin && echo web-ok > /www/index.html && \
         printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' \
           > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer && exec httpd -f -p 80 -h /www",
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
    peer_addresses(&rig, variant, net)?;
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
    // The container was started again just now: its httpd may not listen yet.
    let got = retry_pod_get(&rig, random)?;
    ensure!(
        got.trim() == "web-ok",
        "localhost:{random} after restart: {got:?}"
    );

    // Removal leaves no links, addresses or nftables rules behind.
    for id in ["web", "client"] {
        s.call(json!({"op": "stop", "id": id}))?;
        s.call(json!({"op": "forget", "id": id}))?;
    }
    if variant == Variant::Kernel {
        // Stopped containers' ports are no longer DNATed or routed.
        let pod = rig
            .pod
            .sidecar("sh")
            .args(["-c", "nft list table ip hutch; ip route"])
            .output()?;
        let pod = String::from_utf8_lossy(&pod.stdout);
        ensure!(
            !pod.contains("dnat to") && !pod.contains(ip),
            "published ports left in the pod netns: {pod}"
        );
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

/// Who a container with a published port (18080, a CGI printing
/// REMOTE_ADDR) sees as its client. Through the kernel uplink the pod's
/// netns DNATs the port: the pod's own connections to 127.0.0.1 arrive
/// from the uplink's pod side, and another host's keep their address.
/// Through the relay, the proxy connects from the network's gateway.
fn peer_addresses(rig: &Rig, variant: Variant, net: &Value) -> anyhow::Result<()> {
    const REMOTE: &str = "10.244.7.9";
    let local = rig.pod_sh("busybox wget -qO- http://127.0.0.1:18080/cgi-bin/peer")?;
    let gateway = net["Gateway"].as_str().context("gateway")?;
    // A host outside the pod: the pod link's peer, moved into a netns of
    // its own, then moved back so the pod keeps its address.
    let script = format!(
        "unshare -n sleep 60 & p=$!
         while [ \"$(readlink /proc/$p/ns/net)\" = \"$(readlink /proc/self/ns/net)\" ]; do sleep 0.01; done
         ip link set eth0p netns $p
         nsenter -t $p -n sh -c 'ip addr add {REMOTE}/24 dev eth0p && ip link set eth0p up &&
           busybox wget -qO- http://{POD_IP}:18080/cgi-bin/peer'
         s=$?
         nsenter -t $p -n ip link set eth0p netns $$
         ip link set eth0p up
         kill $p
         exit $s"
    );
    let out = rig.pod.sidecar("sh").args(["-c", &script]).output()?;
    ensure!(
        out.status.success(),
        "from another host: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remote = String::from_utf8(out.stdout)?;
    // httpd listens on IPv6 too: it prints v4 peers as [::ffff:a.b.c.d].
    let v4 = |s: &str| {
        s.trim()
            .trim_start_matches("[::ffff:")
            .trim_end_matches(']')
            .to_string()
    };
    let (local, remote) = (v4(&local), v4(&remote));
    let (want_local, want_remote) = match variant {
        Variant::Kernel => ("169.254.213.1", REMOTE),
        Variant::Relay => (gateway, gateway),
    };
    ensure!(
        local == want_local,
        "the pod's own client seen as {local:?}, not {want_local}"
    );
    ensure!(
        remote == want_remote,
        "another host seen as {remote:?}, not {want_remote}"
    );
    if variant == Variant::Kernel {
        let table = rig
            .pod
            .sidecar("nft")
            .args(["list", "table", "ip", "hutch"])
            .output()?;
        let table = String::from_utf8_lossy(&table.stdout);
        ensure!(
            table.contains("fib daddr type local") && table.contains("dnat to"),
            "the pod's DNAT of published ports: {table}"
        );
    }
    Ok(())
}

/// UDP both ways, with neither NET_ADMIN over the pod (relay variant) nor
/// tun: a container's datagrams to a UDP service in the pod and to the
/// pod's resolver (directly, through the default bridge's resolv.conf, and
/// forwarded by the embedded DNS server); datagrams to a container's UDP
/// server through published ports on the pod's localhost, fixed and random.
fn udp_both_ways(variant: Variant) -> anyhow::Result<()> {
    let rig = Rig::start(&variant.pod())?;
    let httpd = network::pod_network(&rig)?;
    let (resolv, fixtures) = network::pod_dns(&rig)?;
    let tools = network::tools_layer(&rig, "udp", &[network::net_tool()])?;
    let with_tools = |id: &str, script: &str| {
        let mut spec = sh(&rig, id, script);
        spec.rootfs.lower.insert(0, tools.clone());
        spec
    };
    let mut s = Session::start_with(&rig, "auto", &["--resolv-conf", &resolv])?;
    let info = s.call(json!({"op": "info"}))?;
    ensure!(info["uplink"] == variant.uplink(), "uplink: {info}");
    s.call(json!({"op": "create", "name": "udpnet"}))?;

    let echo = with_tools("udpecho", "exec net-tool echo 5353");
    let settings = s.run(
        &echo,
        json!({"networks": ["udpnet"], "publish": ["15353:5353/udp", "5353/udp"]}),
    )?;
    let ports: Vec<u16> = settings["Ports"]["5353/udp"]
        .as_array()
        .with_context(|| format!("no 5353/udp bindings in {settings}"))?
        .iter()
        .filter_map(|b| b["HostPort"].as_str()?.parse().ok())
        .collect();
    ensure!(
        ports.len() == 2 && ports[0] == 15353 && ports[1] != 0,
        "5353/udp bindings: {settings}"
    );

    let client = with_tools(
        "uclient",
        &format!(
            "net-tool send {POD_IP}:{POD_UDP_ECHO_PORT} ping-from-container > /r-echo 2>&1; \
             net-tool send-each two-flows {POD_IP}:{POD_UDP_ECHO_PORT} \
               {POD_IP}:{POD_UDP_ECHO_PORT2} > /r-each 2>&1; \
             nslookup direct.test {POD_IP} > /r-direct 2>&1; \
             nslookup forwarded.test > /r-fwd 2>&1; touch /done"
        ),
    );
    s.run(&client, json!({"networks": ["udpnet"]}))?;
    let bridged = with_tools(
        "bclient",
        "cat /etc/resolv.conf > /r-resolv; nslookup viabridge.test > /r-bridge 2>&1; touch /done",
    );
    s.run(&bridged, json!({}))?;
    network::wait_file(&rig, "uclient", "done", WAIT)?;
    network::wait_file(&rig, "bclient", "done", WAIT)?;
    let read = |id: &str, name: &str| network::wait_file(&rig, id, name, Duration::ZERO);
    let echoed = read("uclient", "r-echo")?;
    ensure!(
        echoed.trim() == "ping-from-container",
        "UDP echo in the pod, from a container: {echoed:?}"
    );
    // One client socket, two destinations at once: each flow keeps its
    // own reply tuple (the relay's UDP port range) and replies come from
    // the address asked.
    let each = read("uclient", "r-each")?;
    ensure!(
        each.trim() == "all answered",
        "two flows from one socket: {each:?}"
    );
    for (id, file, what) in [
        ("uclient", "r-direct", "the pod's resolver, asked directly"),
        ("uclient", "r-fwd", "forwarded by the embedded DNS server"),
        (
            "bclient",
            "r-bridge",
            "the pod's resolver from the default bridge",
        ),
    ] {
        let got = read(id, file)?;
        ensure!(
            got.contains(&format!("Address: {POD_DNS_ANSWER}")),
            "{what}: {got:?} (resolv.conf: {:?})",
            read("bclient", "r-resolv")
        );
    }

    for port in ports {
        let out = rig
            .pod
            .exec(network::net_tool())
            .args([
                "send",
                &format!("127.0.0.1:{port}"),
                &format!("hello-{port}"),
            ])
            .output()?;
        let got = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && got.trim() == format!("hello-{port}"),
            "published UDP port {port}: {got:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    for id in ["udpecho", "uclient", "bclient"] {
        s.call(json!({"op": "stop", "id": id}))?;
        s.call(json!({"op": "forget", "id": id}))?;
    }
    s.call(json!({"op": "rm", "name": "udpnet"}))?;
    let k = s.call(json!({"op": "kernel"}))?;
    let links = k["bridge"]["links"].to_string();
    ensure!(!links.contains("veth"), "links left: {links}");
    s.shutdown()?;
    let tables = rig.pod.sidecar("nft").args(["list", "tables"]).output()?;
    let tables = String::from_utf8_lossy(&tables.stdout);
    ensure!(!tables.contains("hutch"), "nftables table left: {tables}");
    // Nothing listens on the published ports once the container is gone.
    let out = rig
        .pod
        .exec(network::net_tool())
        .args(["send", "127.0.0.1:15353", "anyone"])
        .output()?;
    ensure!(
        !out.status.success(),
        "15353/udp still answers after removal"
    );
    for mut child in fixtures.into_iter().chain([httpd]) {
        let _ = child.kill();
        let _ = child.wait();
    }
    rig.pod.stop()
}
in_variants!(udp_both_ways);

/// `--network-uplink slirp4netns` in a pod given /dev/net/tun (and no
/// NET_ADMIN): containers reach the pod's HTTP server by the pod's address
/// and by host.docker.internal through slirp4netns, a published port
/// answers on the pod's localhost, and shutdown leaves no slirp4netns.
#[test]
fn slirp4netns_on_request() -> anyhow::Result<()> {
    ensure!(
        std::path::Path::new("/dev/net/tun").exists(),
        "this test needs /dev/net/tun on the machine (modprobe tun)"
    );
    let rig =
        Rig::start(&hutch_tests::podsim::PodSpec::new().device(hutch_tests::podsim::Device::Tun))?;
    let mut httpd = network::pod_network(&rig)?;
    let mut s = Session::start(&rig, "slirp4netns")?;
    let info = s.call(json!({"op": "info"}))?;
    ensure!(info["uplink"] == "slirp4netns", "uplink: {info}");
    s.call(json!({"op": "create", "name": "slirpnet"}))?;
    let web = sh(
        &rig,
        "web",
        "mkdir -p /www && echo web-ok > /www/index.html && exec httpd -f -p 80 -h /www",
    );
    s.run(
        &web,
        json!({"networks": ["slirpnet"], "publish": ["18080:80"]}),
    )?;
    let client = sh(
        &rig,
        "client",
        &format!(
            "wget -qO /r-podip http://{POD_IP}:{POD_HTTP_PORT}/; \
             wget -qO /r-hdi http://host.docker.internal:{POD_HTTP_PORT}/; touch /done"
        ),
    );
    s.run(
        &client,
        json!({"networks": ["slirpnet"], "add_host": ["host.docker.internal:host-gateway"]}),
    )?;
    network::wait_file(&rig, "client", "done", WAIT)?;
    let read = |name: &str| network::wait_file(&rig, "client", name, Duration::ZERO);
    ensure!(read("r-podip")?.trim() == POD_HTTP_BODY, "pod by address");
    ensure!(
        read("r-hdi")?.trim() == POD_HTTP_BODY,
        "host.docker.internal"
    );
    let got = retry_pod_get(&rig, 18080)?;
    ensure!(
        got.trim() == "web-ok",
        "localhost:18080 in the pod: {got:?}"
    );
    for id in ["web", "client"] {
        s.call(json!({"op": "stop", "id": id}))?;
        s.call(json!({"op": "forget", "id": id}))?;
    }
    s.call(json!({"op": "rm", "name": "slirpnet"}))?;
    let slirps = || -> anyhow::Result<usize> {
        let procs =
            rig.pod_sh("for c in /proc/[0-9]*/comm; do cat $c; done 2>/dev/null || true")?;
        Ok(procs.lines().filter(|l| l.trim() == "slirp4netns").count())
    };
    ensure!(slirps()? == 1, "one slirp4netns while the engine runs");
    s.shutdown()?;
    ensure!(slirps()? == 0, "slirp4netns left running");
    let _ = httpd.kill();
    let _ = httpd.wait();
    rig.pod.stop()
}
