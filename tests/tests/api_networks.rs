//! Networking through `hutch daemon` and real clients (the docker CLI,
//! docker-py, docker-compose) inside the pod simulator, in both pod
//! variants: without NET_ADMIN (the layer-4 relay uplink) and with it (the
//! kernel uplink). Neither has /dev/net/tun.
//!
//! Needs the `hutch` and `podsim` binaries built first, the docker-py venv
//! and docker-compose (`tests/run` and `tests/install-deps` do these).

use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon, DOCKER_HOST};
use hutch_tests::network::{pod_get, pod_network_in, POD_HTTP_BODY, POD_HTTP_PORT, POD_IP};
use hutch_tests::podsim::Pod;
use hutch_tests::testimages;
use serde_json::Value;

use hutch_tests::in_variants;
use hutch_tests::network::Variant;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The daemon, with busybox loaded.
fn setup(pod: &Pod) -> Result<Daemon<'_>> {
    let image = testimages::busybox()?;
    let daemon = Daemon::start(pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    // Compose files and scripts say `busybox`.
    daemon.docker_ok(&["tag", &image.reference, "busybox:latest"])?;
    Ok(daemon)
}

/// The links, addresses and nftables tables of the daemon's bridge netns
/// (found as the netns of a daemon thread that is not the pod's), and the
/// pod's links and tables.
fn kernel_state(pod: &Pod) -> Result<String> {
    let script = format!(
        r#"{FIND_BRIDGE_NETNS}
        if [ -n "$bridge_ns" ]; then
          echo "== bridge"; nsenter --net=$bridge_ns ip -o link | awk '{{print $2}}'
          nsenter --net=$bridge_ns ip -o -4 addr | awk '{{print $4}}'
          nsenter --net=$bridge_ns nft list tables
        fi
        echo "== pod"; ip -o link | awk '{{print $2}}'; nft list tables
    "#
    );
    let out = pod.sidecar("sh").args(["-c", &script]).output()?;
    ok(&out, "reading the kernel's state")
}

/// Shell that sets `$bridge_ns` to a path of the daemon's bridge netns:
/// the netns of a daemon thread that is not the pod's.
const FIND_BRIDGE_NETNS: &str = r#"
    me=$(readlink /proc/self/ns/net); bridge_ns=
    for p in $(pgrep -f 'hutch.* daemon'); do
      [ "$(readlink /proc/$p/ns/net 2>/dev/null)" = "$me" ] || continue
      for t in /proc/$p/task/*; do
        n=$(readlink $t/ns/net 2>/dev/null) || continue
        if [ "$n" != "$me" ]; then bridge_ns=$t/ns/net; break 2; fi
      done
    done
"#;

/// Runs `command` in the daemon's bridge netns.
fn in_bridge_netns(pod: &Pod, command: &str) -> Result<String> {
    let script = format!(
        "{FIND_BRIDGE_NETNS}\n[ -n \"$bridge_ns\" ] || exit 1; nsenter --net=$bridge_ns sh -c '{command}'"
    );
    let out = pod.sidecar("sh").args(["-c", &script]).output()?;
    ok(&out, command)
}

fn bridge_part(state: &str) -> &str {
    state.split("== pod").next().unwrap_or_default()
}

/// The docker CLI: user-defined networks with names and aliases, the
/// pod by address and host.docker.internal, published ports (fixed and
/// random, `docker port`, ps, inspect), internal networks, errors, and a
/// daemon restart.
fn docker_cli(variant: Variant) -> Result<()> {
    let pod = Pod::start(&variant.pod())?;
    let mut httpd = pod_network_in(&pod)?;
    let daemon = setup(&pod)?;
    let info = json(&ok(
        &daemon.curl(&["-sf", "http://d/v1.50/info"]).output()?,
        "curl /info",
    )?)?;
    ensure!(
        info["Hutch"]["Network"]["Uplink"] == variant.uplink(),
        "uplink in /info: {}",
        info["Hutch"]
    );

    // Predefined networks, create, duplicates and bad input.
    let names = daemon.docker_ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])?;
    for want in ["bridge bridge", "host host", "none null"] {
        ensure!(names.lines().any(|l| l == want), "network ls: {names}");
    }
    let app_id = daemon
        .docker_ok(&["network", "create", "app"])?
        .trim()
        .to_string();
    ensure!(app_id.len() == 64, "network id: {app_id}");
    let dup = daemon
        .docker()
        .args(["network", "create", "app"])
        .output()?;
    ensure!(
        !dup.status.success() && text(&dup).contains("already exists"),
        "duplicate: {}",
        text(&dup)
    );
    let bad = daemon
        .docker()
        .args(["network", "create", "--subnet", "10.1.2.300/24", "bad"])
        .output()?;
    ensure!(!bad.status.success(), "bad subnet accepted: {}", text(&bad));
    let post = |body: &str| daemon.post_json("/v1.50/networks/create", body);
    let reply = post(r#"{"Name":"app","CheckDuplicate":true}"#)?;
    ensure!(reply.status == 409, "duplicate status: {reply}");
    let reply = post(r#"{"Name":"bad","IPAM":{"Config":[{"Subnet":"10.1.2.0/33"}]}}"#)?;
    ensure!(reply.status == 400, "bad subnet status: {reply}");
    let reply = post(r#"{"Name":"bad","IPAM":{"Config":[{"Subnet":"172.17.5.0/24"}]}}"#)?;
    ensure!(reply.status == 400, "overlapping subnet status: {reply}");
    let since = unix_now();
    daemon.docker_ok(&["network", "create", "--label", "k=v", "tmpnet"])?;
    let labelled = daemon.docker_ok(&["network", "ls", "-q", "--filter", "label=k=v"])?;
    ensure!(labelled.lines().count() == 1, "label filter: {labelled}");
    daemon.docker_ok(&["network", "rm", "tmpnet"])?;
    let overlay = daemon
        .docker()
        .args(["network", "create", "-d", "overlay", "ov"])
        .output()?;
    ensure!(
        !overlay.status.success() && text(&overlay).contains("not supported"),
        "overlay: {}",
        text(&overlay)
    );
    let missing = daemon
        .docker()
        .args(["run", "--rm", "--network", "nosuch", "busybox", "true"])
        .output()?;
    ensure!(
        !missing.status.success() && text(&missing).contains("nosuch not found"),
        "unknown network: {}",
        text(&missing)
    );
    let reply = daemon.request("GET", "/networks/nosuch", &[])?;
    ensure!(reply.status == 404, "{reply}");

    // Names and aliases on a user-defined network; the pod's server.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "--network-alias",
        "webalias",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo web-ok > /www/index.html && exec httpd -f -p 80 -h /www",
    ])?;
    let script = format!(
        "wget -qO- http://web/ && wget -qO- http://webalias/ && nslookup web && \
         wget -qO- http://{POD_IP}:{POD_HTTP_PORT}/ && \
         wget -qO- http://host.docker.internal:{POD_HTTP_PORT}/ && cat /etc/resolv.conf"
    );
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--add-host",
        "host.docker.internal:host-gateway",
        "busybox",
        "sh",
        "-c",
        &script,
    ])?;
    let inspect = json(&daemon.docker_ok(&["inspect", "web"])?)?;
    let web = &inspect[0]["NetworkSettings"]["Networks"]["app"];
    let web_ip = web["IPAddress"].as_str().context("web's address")?;
    ensure!(web["NetworkID"] == app_id.as_str(), "{web}");
    ensure!(
        web["Aliases"].to_string().contains("webalias")
            && web["DNSNames"].to_string().contains("web"),
        "{web}"
    );
    ensure!(
        out.matches("web-ok").count() == 2,
        "by name and alias: {out}"
    );
    ensure!(out.contains(web_ip), "nslookup: {out}");
    ensure!(out.matches(POD_HTTP_BODY).count() == 2, "the pod: {out}");
    ensure!(out.contains("nameserver 127.0.0.11"), "resolv.conf: {out}");
    // Before API 1.45 the short ID was among the Aliases (compose 1.x
    // looks there); since then it is in DNSNames only.
    let old_api = json(&ok(
        &daemon
            .curl(&["-sf", "http://d/v1.38/containers/web/json"])
            .output()?,
        "inspect at 1.38",
    )?)?;
    let short = &inspect[0]["Id"].as_str().unwrap_or_default()[..12];
    ensure!(
        old_api["NetworkSettings"]["Networks"]["app"]["Aliases"]
            .to_string()
            .contains(short)
            && !web["Aliases"].to_string().contains(short),
        "aliases by API version: {} vs {web}",
        old_api["NetworkSettings"]["Networks"]["app"]
    );
    let members = json(&daemon.docker_ok(&["network", "inspect", "app"])?)?;
    let web_id = inspect[0]["Id"].as_str().context("id")?;
    ensure!(
        members[0]["Containers"][web_id]["Name"] == "web",
        "network inspect: {members}"
    );

    // The other modes, and the files and names a container is given.
    let joined = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "busybox",
        "wget",
        "-qO-",
        "http://127.0.0.1/",
    ])?;
    ensure!(joined.trim() == "web-ok", "container:web: {joined}");
    let none = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ])?;
    ensure!(
        none.lines().count() == 1 && none.contains("lo:"),
        "--network none: {none}"
    );
    let host = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "addr",
    ])?;
    ensure!(host.contains(POD_IP), "--network host sees the pod: {host}");
    let files = daemon.docker_ok(&[
        "run",
        "--rm",
        "--hostname",
        "h1",
        "--dns",
        "10.9.9.9",
        "--dns-search",
        "corp.test",
        "--dns-option",
        "ndots:2",
        "--add-host",
        "db.test:10.0.0.9",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf /etc/hosts; hostname; ip -o -4 addr show eth0",
    ])?;
    for want in [
        "nameserver 10.9.9.9",
        "search corp.test",
        "options ndots:2",
        "10.0.0.9\tdb.test",
        "h1",
        "172.17.",
    ] {
        ensure!(files.contains(want), "{want:?} missing: {files}");
    }

    // A user subnet and gateway; --ip and --mac-address.
    daemon.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--gateway",
        "10.77.0.254",
        "fixed",
    ])?;
    let fixed_net = json(&daemon.docker_ok(&["network", "inspect", "fixed"])?)?;
    ensure!(
        fixed_net[0]["IPAM"]["Config"][0]["Subnet"] == "10.77.0.0/24"
            && fixed_net[0]["IPAM"]["Config"][0]["Gateway"] == "10.77.0.254",
        "IPAM: {fixed_net}"
    );
    let addr = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "fixed",
        "--ip",
        "10.77.0.50",
        "--mac-address",
        "02:42:0a:4d:00:99",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip link show eth0; ip route; echo v6:; ip -o -6 addr show eth0",
    ])?;
    for want in [
        "10.77.0.50/24",
        "02:42:0a:4d:00:99",
        "default via 10.77.0.254",
    ] {
        ensure!(addr.contains(want), "{want:?} missing: {addr}");
    }
    // As Docker on a network without IPv6: no link-local address either.
    let v6 = addr.split("v6:").nth(1).unwrap_or_default();
    ensure!(v6.trim().is_empty(), "eth0 has IPv6 addresses: {addr}");
    daemon.docker_ok(&["network", "rm", "fixed"])?;

    // Published ports: fixed, random (-P with --expose), ps, port, inspect.
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        "18080:80",
        "--expose",
        "8000",
        "-P",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo pub-ok > /www/index.html && httpd -p 8000 -h /www && \
         exec httpd -f -p 80 -h /www",
    ])?;
    let fixed = pod_get(&pod, "http://127.0.0.1:18080/").with_context(|| {
        format!(
            "inspect: {}\nlogs: {}\ndaemon: {}",
            daemon
                .docker_ok(&["inspect", "pub"])
                .unwrap_or_else(|e| e.to_string()),
            daemon
                .docker_ok(&["logs", "pub"])
                .unwrap_or_else(|e| e.to_string()),
            daemon.log()
        )
    })?;
    ensure!(fixed.trim() == "pub-ok", "fixed port: {fixed}");
    let port = daemon.docker_ok(&["port", "pub", "8000"])?;
    let random: u16 = port
        .lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("docker port: {port}"))?;
    ensure!(
        pod_get(&pod, &format!("http://127.0.0.1:{random}/"))?.trim() == "pub-ok",
        "random port"
    );
    let pub_inspect = json(&daemon.docker_ok(&["inspect", "pub"])?)?;
    let settings = &pub_inspect[0]["NetworkSettings"];
    ensure!(
        settings["Ports"]["8000/tcp"][0]["HostPort"] == random.to_string().as_str()
            && settings["Ports"]["80/tcp"][0]["HostPort"] == "18080"
            && settings["Ports"]["80/tcp"][0]["HostIp"] == "0.0.0.0",
        "Ports: {settings}"
    );
    let bridge_id = daemon
        .docker_ok(&["network", "inspect", "-f", "{{.Id}}", "bridge"])?
        .trim()
        .to_string();
    ensure!(
        settings["Networks"]["bridge"]["NetworkID"] == bridge_id.as_str()
            && settings["IPAddress"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("172.17."))
            && settings["Gateway"] == "172.17.0.1"
            && settings["MacAddress"]
                .as_str()
                .is_some_and(|m| m.starts_with("02:42:")),
        "bridge settings: {settings}"
    );
    ensure!(
        pub_inspect[0]["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == "18080"
            && pub_inspect[0]["HostConfig"]["NetworkMode"] == "bridge",
        "HostConfig: {}",
        pub_inspect[0]["HostConfig"]
    );
    let ps = daemon.docker_ok(&["ps", "--filter", "name=pub", "--format", "{{.Ports}}"])?;
    ensure!(ps.contains("0.0.0.0:18080->80/tcp"), "ps: {ps}");
    ensure!(
        ps.contains(&format!("0.0.0.0:{random}->8000/tcp")),
        "ps: {ps}"
    );

    // A restart-policy restart plugs the container again (same port).
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "rp",
        "--restart",
        "on-failure:2",
        "-p",
        "18082:80",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo rp-ok > /www/index.html; \
         if [ ! -f /ran ]; then touch /ran; exit 3; fi; exec httpd -f -p 80 -h /www",
    ])?;
    ensure!(
        pod_get(&pod, "http://127.0.0.1:18082/")?.trim() == "rp-ok",
        "published port after a restart-policy restart"
    );
    let rp = json(&daemon.docker_ok(&["inspect", "rp"])?)?;
    ensure!(
        rp[0]["RestartCount"] == 1,
        "restart count: {}",
        rp[0]["RestartCount"]
    );
    daemon.docker_ok(&["rm", "-f", "rp"])?;

    // A stale host end of an endpoint (a plug whose teardown never ran,
    // say the daemon died first) is replaced by the next plug, which does
    // not look for one before it creates the veth.
    daemon.docker_ok(&["run", "-d", "--name", "stale", "busybox", "sleep", "60"])?;
    let endpoint = daemon.docker_ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.bridge.EndpointID}}",
        "stale",
    ])?;
    let host_if = format!("veth{}", endpoint.trim().get(..8).unwrap_or_default());
    daemon.docker_ok(&["stop", "-t", "0", "stale"])?;
    let mut gone = false;
    for _ in 0..100 {
        let links = in_bridge_netns(&pod, "ip -o link")?;
        if !links.contains(&format!(" {host_if}@")) {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ensure!(gone, "{host_if} outlived its container's stop");
    in_bridge_netns(
        &pod,
        &format!("ip link add {host_if} type veth peer name stalepeer"),
    )?;
    daemon.docker_ok(&["start", "stale"])?;
    let eth0 = daemon.docker_ok(&["exec", "stale", "ip", "-o", "-4", "addr", "show", "eth0"])?;
    ensure!(eth0.contains("inet "), "eth0 after a stale end: {eth0}");
    let links = in_bridge_netns(&pod, "ip -o link")?;
    ensure!(
        links
            .lines()
            .any(|l| l.contains(&format!(" {host_if}@")) && l.contains("master"))
            && !links.contains("stalepeer"),
        "the stale end was not replaced: {links}"
    );
    daemon.docker_ok(&["rm", "-f", "stale"])?;

    // A port already allocated: a clear error, nothing leaked.
    let before = kernel_state(&pod)?;
    let clash = daemon
        .docker()
        .args([
            "run", "-d", "--name", "clash", "-p", "18080:80", "busybox", "sleep", "60",
        ])
        .output()?;
    ensure!(
        !clash.status.success() && text(&clash).contains("18080"),
        "port clash: {}",
        text(&clash)
    );
    // Nothing new (links of containers removed just before may still be
    // on their way out: they are deleted in the background).
    let after = kernel_state(&pod)?;
    ensure!(
        after.lines().all(|l| before.lines().any(|b| b == l)),
        "a failed start leaked: {before} vs {after}"
    );
    daemon.docker_ok(&["rm", "clash"])?;

    // Internal networks have no uplink.
    daemon.docker_ok(&["network", "create", "--internal", "inner"])?;
    let blocked = daemon
        .docker()
        .args([
            "run",
            "--rm",
            "--network",
            "inner",
            "busybox",
            "wget",
            "-T",
            "3",
            "-qO-",
            &format!("http://{POD_IP}:{POD_HTTP_PORT}/"),
        ])
        .output()?;
    ensure!(
        !blocked.status.success(),
        "internal network reached the pod"
    );

    // connect/disconnect, running and stopped.
    daemon.docker_ok(&["run", "-d", "--name", "probe", "busybox", "sleep", "600"])?;
    daemon.docker_ok(&[
        "network",
        "connect",
        "--alias",
        "probealias",
        "app",
        "probe",
    ])?;
    let got = daemon.docker_ok(&["exec", "probe", "wget", "-qO-", "http://web/"])?;
    ensure!(got.trim() == "web-ok", "connected probe: {got}");
    let by_alias = daemon.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "nslookup",
        "probealias",
    ])?;
    let probe = json(&daemon.docker_ok(&["inspect", "probe"])?)?;
    let probe_ip = probe[0]["NetworkSettings"]["Networks"]["app"]["IPAddress"]
        .as_str()
        .context("probe on app")?
        .to_string();
    ensure!(
        by_alias.contains(&probe_ip),
        "alias of a connected container: {by_alias}"
    );
    daemon.docker_ok(&["network", "disconnect", "app", "probe"])?;
    let gone = daemon
        .docker()
        .args(["exec", "probe", "wget", "-T", "2", "-qO-", "http://web/"])
        .output()?;
    ensure!(
        !gone.status.success(),
        "disconnected probe still reaches web"
    );
    // The network events so far (the CLI returns once `until` is past).
    std::thread::sleep(Duration::from_millis(1100));
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &unix_now().to_string(),
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ])?;
    for want in [
        "create tmpnet",
        "destroy tmpnet",
        "connect app",
        "disconnect app",
    ] {
        ensure!(
            events.contains(want),
            "{want:?} not in the events: {events}"
        );
    }
    // A container's start and exit connect and disconnect it, as events.
    let evt = daemon
        .docker_ok(&["run", "-d", "--network", "app", "busybox", "true"])?
        .trim()
        .to_string();
    let mut seen = String::new();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        seen = daemon.docker_ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &unix_now().to_string(),
            "--filter",
            "type=network",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.container}}",
        ])?;
        if seen.contains(&format!("disconnect app {evt}")) {
            break;
        }
    }
    let mine: Vec<&str> = seen.lines().filter(|l| l.ends_with(&evt)).collect();
    ensure!(
        mine == [
            format!("connect app {evt}"),
            format!("disconnect app {evt}")
        ],
        "network events of a run: {seen}"
    );
    daemon.docker_ok(&["rm", &evt])?;
    daemon.docker_ok(&["stop", "-t", "0", "probe"])?;
    daemon.docker_ok(&["network", "connect", "app", "probe"])?;
    daemon.docker_ok(&["start", "probe"])?;
    let got = daemon.docker_ok(&["exec", "probe", "wget", "-qO-", "http://web/"])?;
    ensure!(got.trim() == "web-ok", "connected while stopped: {got}");
    let in_use = daemon.docker().args(["network", "rm", "app"]).output()?;
    ensure!(!in_use.status.success(), "removed a network in use");
    let predefined = daemon.docker().args(["network", "rm", "bridge"]).output()?;
    ensure!(
        !predefined.status.success() && text(&predefined).contains("pre-defined"),
        "{}",
        text(&predefined)
    );

    // A daemon restart keeps addresses and resolved ports: a container
    // started again gets them back (the daemon's stop stopped those that
    // were running, as dockerd does; tests/tests/api_restart.rs has the
    // restart policies).
    let pub_ip = settings["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    daemon.docker_ok(&["stop", "-t", "0", "web"])?;
    ensure!(daemon.stop()?.success(), "daemon stop");
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["start", "web"])?;
    daemon.docker_ok(&["restart", "-t", "0", "pub", "probe"])?;
    ensure!(
        pod_get(&pod, &format!("http://127.0.0.1:{random}/"))?.trim() == "pub-ok",
        "random port after a daemon restart"
    );
    let again = json(&daemon.docker_ok(&["inspect", "web", "pub"])?)?;
    ensure!(
        again[0]["NetworkSettings"]["Networks"]["app"]["IPAddress"] == web_ip
            && again[1]["NetworkSettings"]["IPAddress"] == pub_ip.as_str()
            && again[1]["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
                == random.to_string().as_str(),
        "after restart: {again}"
    );
    let got = daemon.docker_ok(&["exec", "probe", "wget", "-qO-", "http://web/"])?;
    ensure!(
        got.trim() == "web-ok",
        "names after a daemon restart: {got}"
    );

    // Removal leaves nothing behind.
    daemon.docker_ok(&["rm", "-f", "web", "pub", "probe"])?;
    let pruned = daemon.docker_ok(&["network", "prune", "-f"])?;
    ensure!(
        pruned.contains("app") && pruned.contains("inner"),
        "prune: {pruned}"
    );
    let left = daemon.docker_ok(&["network", "ls", "--format", "{{.Name}}"])?;
    ensure!(left.lines().count() == 3, "networks left: {left}");
    let state = kernel_state(&pod)?;
    let bridge = bridge_part(&state);
    ensure!(
        bridge.contains("== bridge"),
        "bridge netns not found: {state}"
    );
    ensure!(
        !bridge.contains("veth") && !bridge.contains("br-") && !bridge.contains("172.18."),
        "left in the bridge netns: {state}"
    );
    ensure!(daemon.stop()?.success(), "daemon stop");
    let state = kernel_state(&pod)?;
    ensure!(
        !state.contains("hutch0") && !state.contains("table ip hutch"),
        "left in the pod after the daemon stopped: {state}"
    );
    let _ = httpd.kill();
    let _ = httpd.wait();
    pod.stop()
}
in_variants!(docker_cli);

/// docker-py: networks.create, containers.run with a network and ports,
/// container.ports.
fn docker_py(variant: Variant) -> Result<()> {
    let pod = Pod::start(&variant.pod())?;
    let daemon = setup(&pod)?;
    let out = daemon
        .venv_python()
        .arg(client_script("docker_py_networks.py"))
        .output()?;
    let printed = ok(&out, "docker_py_networks.py")?;
    ensure!(printed.contains("ALL OK"), "{printed}");
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
in_variants!(docker_py);

/// docker-compose 1.29 (Debian's): web → api → db by service names, a
/// published port reached from the pod, `down` cleans up.
fn docker_compose(variant: Variant) -> Result<()> {
    let compose = std::path::Path::new("/usr/bin/docker-compose");
    ensure!(
        compose.exists(),
        "docker-compose is not installed (tests/install-deps installs it)"
    );
    let pod = Pod::start(&variant.pod())?;
    let daemon = setup(&pod)?;
    let file = client_script("compose-three-tier.yml");
    let project = ["-p", "tier", "-f"];
    let run = |args: &[&str]| -> Result<String> {
        let out = pod
            .exec(compose)
            .args(project)
            .arg(&file)
            .args(args)
            .env("DOCKER_HOST", DOCKER_HOST)
            .env("HOME", "/tmp")
            .output()?;
        ok(&out, &format!("docker-compose {}", args.join(" ")))
    };
    let since = unix_now();
    run(&["up", "-d"])?;
    let page = pod_get(&pod, "http://127.0.0.1:18090/cgi-bin/chain")?;
    // compose speaks API 1.50 here (docker-py negotiates it): the short ID
    // is in DNSNames, not in Aliases, so compose disconnects and reconnects
    // each container before starting it, as it does with Docker 28.
    std::thread::sleep(Duration::from_millis(1100));
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &unix_now().to_string(),
        "--filter",
        "type=network",
        "--format",
        "{{.Action}}",
    ])?;
    ensure!(
        events.lines().filter(|l| *l == "connect").count() == 3,
        "network events of up: {events}"
    );
    ensure!(
        page.contains("web>") && page.contains("api>") && page.contains("db-row-42"),
        "the chain through service names: {page}"
    );
    let nets = daemon.docker_ok(&["network", "ls", "--format", "{{.Name}}"])?;
    ensure!(nets.contains("tier_default"), "{nets}");
    run(&["down"])?;
    let nets = daemon.docker_ok(&["network", "ls", "--format", "{{.Name}}"])?;
    ensure!(!nets.contains("tier_default"), "after down: {nets}");
    let ps = daemon.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure!(ps.trim().is_empty(), "containers after down: {ps}");
    let state = kernel_state(&pod)?;
    ensure!(
        !bridge_part(&state).contains("veth") && !bridge_part(&state).contains("br-"),
        "left after down: {state}"
    );
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
in_variants!(docker_compose);

/// testcontainers-python (PyPI `testcontainers`, in the docker-py venv):
/// a generic container with an exposed port, reached where it says; files
/// copied in before start, exec and HTTP wait strategies, a copy out.
fn testcontainers(variant: Variant) -> Result<()> {
    let pod = Pod::start(&variant.pod())?;
    let daemon = setup(&pod)?;
    let out = daemon
        .venv_python()
        .arg(client_script("testcontainers_generic.py"))
        // Ryuk, the reaper, is an image from Docker Hub: tests are offline.
        .env("TESTCONTAINERS_RYUK_DISABLED", "true")
        // This test machine is itself a Docker container: its /.dockerenv,
        // which the pod sees, would make testcontainers connect through
        // the container's gateway as in docker-in-docker. In a pod (no
        // /.dockerenv) it picks `docker_host`, i.e. localhost, by itself.
        .env("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
        .output()?;
    let printed = ok(&out, "testcontainers_generic.py")?;
    ensure!(printed.contains("ALL OK"), "{printed}");
    let left = daemon.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure!(left.trim().is_empty(), "left behind: {left}");
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}
in_variants!(testcontainers);
