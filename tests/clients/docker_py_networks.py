"""docker-py (PyPI `docker`) against hutch: the common network calls.
Run inside the pod with DOCKER_HOST set and busybox loaded. Any failed
expectation raises; prints ALL OK at the end."""

import time
import urllib.request

import docker

client = docker.from_env()


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def get(url, tries=50):
    for i in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode()
        except OSError:
            if i == tries - 1:
                raise
            time.sleep(0.2)


names = [n.name for n in client.networks.list()]
expect({"bridge", "host", "none"} <= set(names), f"predefined networks: {names}")
net = client.networks.create("pynet", driver="bridge", labels={"suite": "py"})
expect(net.attrs["Driver"] == "bridge", net.attrs)
expect(client.networks.list(filters={"label": "suite=py"})[0].id == net.id, "label filter")
try:
    client.networks.create("pynet")
    raise AssertionError("duplicate network created")
except docker.errors.APIError as e:
    expect(e.status_code == 409, f"duplicate: {e}")
try:
    client.networks.get("nosuch")
    raise AssertionError("found a missing network")
except docker.errors.NotFound:
    pass

server = client.containers.run(
    "busybox",
    ["sh", "-c", "mkdir -p /www && echo py-ok > /www/index.html && exec httpd -f -p 80 -h /www"],
    detach=True,
    name="pyweb",
    network="pynet",
    ports={"80/tcp": None, "81/tcp": 18181},
)
server.reload()
ports = server.ports
expect(ports["81/tcp"][0]["HostPort"] == "18181", ports)
random_port = int(ports["80/tcp"][0]["HostPort"])
expect(random_port > 0, ports)
expect(get(f"http://127.0.0.1:{random_port}/").strip() == "py-ok", "published port")
ip = server.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"]
expect(ip, server.attrs["NetworkSettings"])

out = client.containers.run("busybox", ["wget", "-qO-", "http://pyweb/"], network="pynet", remove=True)
expect(out.decode().strip() == "py-ok", f"by name: {out!r}")

other = client.containers.run("busybox", ["sleep", "300"], detach=True, name="pyother")
net.connect(other, aliases=["pyalias"])
net.reload()
expect(other.id in net.attrs["Containers"], net.attrs["Containers"])
got = other.exec_run(["wget", "-qO-", "http://pyweb/"])
expect(got.output.decode().strip() == "py-ok", f"connected: {got}")
net.disconnect(other)

for c in (server, other):
    c.remove(force=True)
net.remove()
expect("pynet" not in [n.name for n in client.networks.list()], "removed")
print("ALL OK")
