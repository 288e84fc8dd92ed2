"""docker-py's attach over a WebSocket (`attach_socket(..., ws=True)`, which
uses the `websocket-client` package) against hutch. docker-py builds a
ws:// URL from its base URL, so DOCKER_HOST must be tcp://. Run inside the
pod with the image loaded; argv: REFERENCE. Prints one JSON object of what
it saw; any failed expectation raises."""

import json
import os
import sys
import time

import docker
import websocket

reference = sys.argv[1]
client = docker.from_env()
api = client.api
seen = {}


def read(ws, needle, timeout=10):
    """Messages until `needle` has arrived: (payload bytes, opcodes seen)."""
    ws.settimeout(timeout)
    data, opcodes = b"", []
    deadline = time.time() + timeout
    while needle not in data and time.time() < deadline:
        opcode, payload = ws.recv_data()
        opcodes.append(opcode)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        data += payload
    return data, opcodes


def until_closed(ws, timeout=10):
    """Everything up to the server's Close: (payload bytes, close code)."""
    ws.settimeout(timeout)
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        opcode, payload = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            return data, code
        data += payload
    raise AssertionError(f"no Close within {timeout}s; got {data!r}")


def wait_running(c):
    for _ in range(100):
        c.reload()
        if c.status == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"{c.id} not running: {c.status}")


ALL = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}

# Echo through `cat` (OpenStdin without StdinOnce, as `docker create -i`
# makes it; docker-py's stdin_open always sets StdinOnce): binary and text
# messages in, raw binary messages out.
created = api._result(
    api._post_json(
        api._url("/containers/create"),
        data={"Image": reference, "Cmd": ["cat"], "OpenStdin": True, "StdinOnce": False},
    ),
    True,
)
cat = client.containers.get(created["Id"])
cat.start()
wait_running(cat)
ws = api.attach_socket(cat.id, params=ALL, ws=True)
ws.send_binary(b"binary-in\n")
data, opcodes = read(ws, b"binary-in\n")
seen["echo_binary"] = data.decode()
seen["echo_opcodes"] = sorted(set(opcodes))
ws.send("text-in\n")
data, _ = read(ws, b"text-in\n")
seen["echo_text"] = data.decode()

# A client that vanishes mid-stream (no Close frame): the container runs
# on, its stdin still open, and a new attach is served.
ws.sock.shutdown(2)
ws.sock.close()
time.sleep(0.5)
cat.reload()
seen["after_drop_status"] = cat.status
ws = api.attach_socket(cat.id, params=ALL, ws=True)
ws.send_binary(b"again\n")
data, _ = read(ws, b"again\n")
seen["after_drop_echo"] = data.decode()
# A polite close: still running.
ws.close()
time.sleep(0.5)
cat.reload()
seen["after_close_status"] = cat.status

# Output-only attach to a ticker, dropped mid-stream: it ticks on.
ticker = client.containers.run(
    reference, ["sh", "-c", "while true; do echo tick; sleep 0.1; done"], detach=True
)
wait_running(ticker)
ws = api.attach_socket(ticker.id, params={"stdout": 1, "stream": 1}, ws=True)
data, _ = read(ws, b"tick\n")
seen["ticker_first"] = data.decode()[:5]
ws.sock.shutdown(2)
ws.sock.close()
time.sleep(0.5)
ticker.reload()
seen["ticker_after_drop"] = ticker.status
ws = api.attach_socket(ticker.id, params={"stdout": 1, "stream": 1}, ws=True)
data, _ = read(ws, b"tick\n")
seen["ticker_again"] = data.decode()[:5]
ws.close()
ticker.kill()

# stdout and stderr both raw (no 8-byte headers), and each on its own when
# asked for alone (API >= 1.42 honours stdout/stderr).
both = client.containers.run(
    reference,
    ["sh", "-c", 'while read l; do echo "out:$l"; echo "err:$l" >&2; done'],
    stdin_open=True,
    detach=True,
)
wait_running(both)
ws = api.attach_socket(both.id, params=ALL, ws=True)
ws.send_binary(b"x\n")
data, _ = read(ws, b"err:x\n")
data2 = b""
if b"out:x\n" not in data:
    data2, _ = read(ws, b"out:x\n")
seen["both_streams"] = sorted((data + data2).decode().splitlines())
ws.close()
ws = api.attach_socket(both.id, params={"stdin": 1, "stderr": 1, "stream": 1}, ws=True)
ws.send_binary(b"y\n")
data, _ = read(ws, b"err:y\n")
time.sleep(0.3)
ws.settimeout(0.5)
try:
    _, more = ws.recv_data()
    data += more
except websocket.WebSocketTimeoutException:
    pass
seen["stderr_only"] = data.decode()
ws.close()
both.kill()

# The output ends when the process does: the server sends a normal Close.
once = client.containers.run(reference, ["sh", "-c", 'read l; echo "bye:$l"'], stdin_open=True, detach=True)
wait_running(once)
ws = api.attach_socket(once.id, params=ALL, ws=True)
ws.send_binary(b"z\n")
data, code = until_closed(ws)
seen["exit_output"] = data.decode()
seen["exit_close_code"] = code
seen["exit_wait"] = once.wait(timeout=20)["StatusCode"]

# StdinOnce (docker-py's stdin_open sets it): the client's Close ends the process's stdin, so `cat` exits.
stdin_once = api.create_container(reference, ["cat"], stdin_open=True)["Id"]
api.start(stdin_once)
ws = api.attach_socket(stdin_once, params=ALL, ws=True)
ws.send_binary(b"last\n")
data, _ = read(ws, b"last\n")
seen["stdin_once_echo"] = data.decode()
ws.close()
seen["stdin_once_wait"] = api.wait(stdin_once, timeout=20)["StatusCode"]

# logs=1 alone replays what was logged (both streams), then closes.
logged = client.containers.run(reference, ["sh", "-c", "echo first; echo second >&2"], detach=True)
logged.wait(timeout=20)
ws = api.attach_socket(logged.id, params={"logs": 1, "stdout": 1, "stderr": 1}, ws=True)
data, code = until_closed(ws)
seen["logs_replay"] = data.decode()
seen["logs_close_code"] = code
ws = api.attach_socket(logged.id, params={"logs": 1, "stdout": 1}, ws=True)
data, _ = until_closed(ws)
seen["logs_stdout_only"] = data.decode()

# logs=1&stream=1 on a running container: the log first, then live output.
live = client.containers.run(reference, ["sh", "-c", "echo before; cat"], stdin_open=True, detach=True)
for _ in range(100):
    if b"before" in live.logs():
        break
    time.sleep(0.05)
ws = api.attach_socket(live.id, params=dict(ALL, logs=1), ws=True)
ws.send_binary(b"after\n")
data, _ = read(ws, b"after\n")
seen["logs_then_stream"] = data.decode()
ws.close()

# Before API 1.28 moby sends text messages (and, before 1.42, every stream).
old = docker.APIClient(base_url=os.environ["DOCKER_HOST"], version="1.27")
ws = old.attach_socket(cat.id, params={"stream": 1}, ws=True)
ws.send_binary(b"old\n")
data, opcodes = read(ws, b"old\n")
seen["old_echo"] = data.decode()
seen["old_opcodes"] = sorted(set(opcodes))
ws.close()

# Errors: a missing container is a 404 before the handshake; a request that
# does not ask for the upgrade is a 400 that says so.
try:
    api.attach_socket("no-such-container", params=ALL, ws=True)
    seen["missing"] = "no error"
except websocket.WebSocketBadStatusException as e:
    seen["missing"] = e.status_code
plain = api._get(api._url("/containers/{0}/attach/ws", cat.id), params={"stream": 1})
seen["plain_status"] = plain.status_code
seen["plain_message"] = plain.json().get("message", "")

# The daemon serves on, and the echo container is still there.
seen["ping"] = client.ping()
cat.reload()
seen["final_status"] = cat.status
for c in client.containers.list(all=True):
    c.remove(force=True)
print(json.dumps(seen))
