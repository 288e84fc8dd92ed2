"""testcontainers-python against hutch: a GenericContainer (DockerContainer)
with an exposed port, waited for by its log, reached on the host and port
testcontainers reports. Run inside the pod with DOCKER_HOST set and busybox
loaded; prints ALL OK."""

import time
import urllib.request

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

container = (
    DockerContainer("busybox")
    .with_exposed_ports(80)
    .waiting_for(LogMessageWaitStrategy("serving"))
    .with_command(
        ["sh", "-c", "mkdir -p /www && echo tc-ok > /www/index.html && echo serving && exec httpd -f -p 80 -h /www"]
    )
)
with container:
    host = container.get_container_host_ip()
    port = int(container.get_exposed_port(80))
    url = f"http://{host}:{port}/"
    for i in range(50):
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                body = r.read().decode().strip()
            break
        except OSError:
            if i == 49:
                raise
            time.sleep(0.2)
    if body != "tc-ok":
        raise AssertionError(f"{url} answered {body!r}")
    print(f"reached {url}")
print("ALL OK")
