"""docker-py (PyPI `docker`) against hutch: version, images and the low-level
API. Run inside the pod with DOCKER_HOST set; argv: ARCHIVE REFERENCE ID.
Prints one JSON object of what it saw; any failed expectation raises."""

import json
import sys

import docker

archive, reference, image_id = sys.argv[1:4]
client = docker.from_env()
seen = {}

version = client.version()
seen["api_version"] = version["ApiVersion"]
seen["platform"] = version["Platform"]["Name"]
assert client.ping() is True

with open(archive, "rb") as f:
    loaded = client.images.load(f.read())
seen["loaded"] = [tag for image in loaded for tag in image.tags]
assert loaded[0].id == image_id, loaded[0].id

seen["listed"] = sorted(tag for image in client.images.list() for tag in image.tags)
image = client.images.get(reference)
assert image.id == image_id, image.id
seen["cmd"] = image.attrs["Config"]["Cmd"]
seen["labels"] = image.labels

assert image.tag("py/tagged", "t1") is True
low = client.api.inspect_image("py/tagged:t1")
seen["tags_after_tag"] = sorted(low["RepoTags"])
seen["history_top"] = image.history()[0]["Id"]

# The docker-py low-level call and the high-level filter both reach /images/json.
seen["filtered"] = [i.id for i in client.images.list(filters={"reference": "py/*"})]

client.images.remove("py/tagged:t1")
seen["tags_after_remove"] = client.images.get(reference).tags

try:
    client.images.get("nope:latest")
    seen["missing"] = "found"
except docker.errors.ImageNotFound as err:
    seen["missing"] = str(err.explanation)

seen["df_layers_size"] = client.df()["LayersSize"]
seen["info_images"] = client.info()["Images"]
pruned = client.images.prune(filters={"dangling": False})
seen["pruned"] = pruned.get("ImagesDeleted") or []
seen["after_prune"] = [i.id for i in client.images.list()]
print(json.dumps(seen))
