"""docker-py's images.build against hutch. Run inside the pod with DOCKER_HOST
set; argv: CONTEXT_DIR (with a Dockerfile, and fail/Dockerfile whose RUN
exits 7). Prints one JSON object of what it saw; any failed expectation
raises."""

import json
import sys

import docker

context = sys.argv[1]
client = docker.from_env()
seen = {}

image, logs = client.images.build(
    path=context, tag="py/built:1", rm=True, buildargs={"WHO": "py"}
)
chunks = list(logs)
seen["log"] = "".join(c.get("stream", "") for c in chunks)
aux = [c["aux"]["ID"] for c in chunks if "aux" in c]
seen["id_matches"] = aux == [image.id]
seen["tags"] = image.tags
seen["ran"] = client.containers.run("py/built:1", remove=True).decode()

# A failing RUN raises BuildError with Docker's message.
try:
    client.images.build(path=context, dockerfile="fail/Dockerfile")
    seen["failed"] = "built"
except docker.errors.BuildError as err:
    seen["failed"] = err.msg

# A missing Dockerfile is an API error (a 400 before any step).
try:
    client.images.build(path=context, dockerfile="nothere/Dockerfile")
    seen["broken"] = "built"
except docker.errors.APIError as err:
    seen["broken"] = str(err.explanation)

print(json.dumps(seen))
