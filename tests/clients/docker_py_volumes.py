"""docker-py (PyPI `docker`) against hutch: the volume calls and
containers.run(volumes=...). Run inside the pod with DOCKER_HOST set, the
volumes test image loaded; argv: REFERENCE. Prints one JSON object of what
it saw; any failed expectation raises."""

import json
import os
import sys

import docker

reference = sys.argv[1]
client = docker.from_env()
seen = {}

vol = client.volumes.create(name="pyvol", driver="local", labels={"k": "v"})
seen["created"] = vol.name
seen["labels"] = vol.attrs["Labels"]
seen["listed"] = [v.name for v in client.volumes.list()]
seen["got"] = client.volumes.get("pyvol").name

# A named volume in the dict form, populated from the image's /data.
out = client.containers.run(
    reference,
    ["sh", "-c", "cat /data/hello; echo written > /data/w; cat /data/w"],
    volumes={"pyvol": {"bind": "/data", "mode": "rw"}},
    remove=True,
)
seen["run_output"] = out.decode()

# A bind in the list form.
os.makedirs("/tmp/pybind", exist_ok=True)
with open("/tmp/pybind/f", "w") as f:
    f.write("via bind\n")
out = client.containers.run(reference, ["cat", "/b/f"], volumes=["/tmp/pybind:/b:ro"], remove=True)
seen["bind_output"] = out.decode()

holder = client.containers.create(reference, ["true"], volumes={"pyvol": {"bind": "/d"}})
try:
    vol.remove()
    seen["in_use_status"] = 0
except docker.errors.APIError as e:
    seen["in_use_status"] = e.status_code
holder.remove(v=True)
vol.remove()
seen["removed"] = "pyvol" not in [v.name for v in client.volumes.list()]
try:
    client.volumes.get("pyvol")
    seen["missing_status"] = 0
except docker.errors.NotFound as e:
    seen["missing_status"] = e.status_code

# prune: an unused anonymous volume goes, a named one stays.
anon = client.volumes.create()
client.volumes.create(name="pykeep")
pruned = client.volumes.prune()
seen["pruned_anon"] = anon.name in (pruned.get("VolumesDeleted") or [])
seen["kept_named"] = "pykeep" in [v.name for v in client.volumes.list()]

print(json.dumps(seen))
