"""docker-py (PyPI `docker`) against hutch: the common container calls.
Run inside the pod with DOCKER_HOST set, the image loaded; argv: REFERENCE.
Prints one JSON object of what it saw; any failed expectation raises."""

import json
import sys
import time

import docker

reference = sys.argv[1]
client = docker.from_env()
seen = {}

# run(remove=True): output from the json-file log, container gone after.
out = client.containers.run(reference, ["sh", "-c", "echo out; echo err >&2"], remove=True)
seen["run_output"] = out.decode()
seen["left_after_remove"] = len(client.containers.list(all=True))

# run(detach=True) + logs + wait + remove.
c = client.containers.run(
    reference,
    ["sh", "-c", "echo started; sleep 0.3; echo done; exit 7"],
    detach=True,
    name="py-detached",
    labels={"suite": "py"},
)
seen["status_running"] = c.status
seen["wait"] = c.wait(timeout=20)
seen["logs"] = c.logs().decode()
c.reload()
seen["status_after"] = c.status
seen["log_type"] = c.attrs["HostConfig"]["LogConfig"]["Type"]
seen["name"] = c.attrs["Name"]
c.remove()

# exec_run, filters.
keep = client.containers.run(reference, ["sleep", "30"], detach=True, labels={"suite": "py", "role": "keep"})
code, output = keep.exec_run(["sh", "-c", "echo in-exec; exit 3"])
seen["exec_code"] = code
seen["exec_output"] = output.decode()
code, output = keep.exec_run("echo string-cmd", environment={"X": "1"})
seen["exec_string"] = output.decode()
seen["filter_label"] = [x.id for x in client.containers.list(filters={"label": "role=keep"})]
seen["filter_status"] = [x.id for x in client.containers.list(all=True, filters={"status": "running"})]
seen["keep_id"] = keep.id

# attach socket: send input to `cat`, read it back framed.
cat = client.containers.create(reference, ["cat"], stdin_open=True)
sock = client.api.attach_socket(cat.id, params={"stdin": 1, "stdout": 1, "stream": 1})
cat.start()
raw = sock._sock
raw.sendall(b"through-attach\n")
data = b""
deadline = time.time() + 10
while b"through-attach" not in data and time.time() < deadline:
    chunk = raw.recv(4096)
    if not chunk:
        break
    data += chunk
seen["attach_frame_type"] = data[0] if data else None
seen["attach_payload"] = data[8:].decode(errors="replace")
sock.close()
cat.kill()
cat.remove(force=True)

keep.kill()
seen["keep_wait"] = keep.wait(timeout=20)["StatusCode"]
keep.remove()
seen["left"] = len(client.containers.list(all=True))
print(json.dumps(seen))
