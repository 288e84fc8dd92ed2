"""testcontainers-python against hutch. Run inside the pod with DOCKER_HOST
set and busybox loaded; prints ALL OK.

1. A DockerContainer with an exposed port, waited for by its log, reached on
   the host and port testcontainers reports.
2. Files copied in between create and start (`with_copy_into_container`,
   i.e. PUT /archive on a created container), waited for by an exec
   (ExecWaitStrategy) and then by HTTP on the published port
   (HttpWaitStrategy), checked with `exec`, and copied out again
   (`copy_from_container`)."""

import pathlib
import tempfile
import time
import urllib.request

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import (
    ExecWaitStrategy,
    HttpWaitStrategy,
    LogMessageWaitStrategy,
)


def get(url):
    for i in range(50):
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return r.read().decode().strip()
        except OSError:
            if i == 49:
                raise
            time.sleep(0.2)


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
    body = get(url)
    if body != "tc-ok":
        raise AssertionError(f"{url} answered {body!r}")
    print(f"reached {url}")

# The page and a script are copied in before the container starts; the
# container waits for the script's mark before serving.
page = b"copied-in-before-start\n"
script = b"#!/bin/sh\ntouch /tmp/ready\n"
files = (
    DockerContainer("busybox")
    .with_exposed_ports(80)
    .with_copy_into_container(page, "/www/index.html")
    .with_copy_into_container(script, "/opt/mark.sh", 0o755)
    .with_command(["sh", "-c", "/opt/mark.sh && exec httpd -f -p 80 -h /www"])
    .waiting_for(ExecWaitStrategy(["test", "-f", "/tmp/ready"]))
)
with files:
    HttpWaitStrategy(80).for_response_predicate(lambda b: "copied-in" in b).wait_until_ready(files)
    host = files.get_container_host_ip()
    port = int(files.get_exposed_port(80))
    body = get(f"http://{host}:{port}/")
    if body != page.decode().strip():
        raise AssertionError(f"the copied page answered {body!r}")
    result = files.exec(["stat", "-c", "%a %s", "/opt/mark.sh"])
    if result.exit_code != 0 or result.output.decode().split() != ["755", str(len(script))]:
        raise AssertionError(f"exec stat: {result}")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "page"
        files.copy_from_container("/www/index.html", out)
        if out.read_bytes() != page:
            raise AssertionError(f"copied out: {out.read_bytes()!r}")
    print("copied in before start, exec, copied out")
print("ALL OK")
