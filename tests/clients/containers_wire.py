"""Raw-socket clients for the container endpoints' wire details, standard
library only (Debian's python3), run inside the pod. The socket is
$HUTCH_SOCKET; argv: SUBCOMMAND IMAGE. Each subcommand prints one JSON
object of what it observed."""

import json
import os
import socket
import struct
import sys
import time

SOCKET = os.environ.get("HUTCH_SOCKET", "/run/hutch/hutch.sock")


def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCKET)
    s.settimeout(20)
    return s


def dechunk(body):
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def call(method, path, body=None):
    """One request on its own connection: (status, body parsed as JSON or None)."""
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    with connect() as s:
        s.sendall(head.encode() + b"\r\n" + data)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        payload = dechunk(payload)
    status = int(head.split(b" ")[1])
    try:
        return status, json.loads(payload) if payload.strip() else None
    except ValueError:
        return status, payload.decode(errors="replace")


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, rest


def read_all(s, rest=b""):
    data = rest
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def frames(data):
    """Docker's multiplexed frames: [(type, payload)]."""
    out = []
    while len(data) >= 8:
        kind, size = data[0], struct.unpack(">I", data[4:8])[0]
        assert data[1:4] == b"\0\0\0", data[:8]
        out.append((kind, data[8 : 8 + size].decode(errors="replace")))
        data = data[8 + size :]
    assert not data, f"trailing bytes: {data!r}"
    return out


def create(image, cmd, **config):
    body = {"Image": image, "Cmd": cmd, **config}
    status, reply = call("POST", "/v1.50/containers/create", body)
    assert status == 201, (status, reply)
    return reply["Id"]


def hijack(path, upgrade=True):
    s = connect()
    extra = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: d\r\n{extra}\r\n".encode())
    return s


def upgrade(image):
    """101 on request, the frame format, and 200 streaming without it."""
    seen = {}
    cid = create(image, ["sh", "-c", "echo out; echo err >&2"])
    s = hijack(f"/v1.50/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    status, headers, rest = read_head(s)
    seen["status_line"] = status
    seen["connection"] = headers.get("connection")
    seen["upgrade"] = headers.get("upgrade")
    seen["content_type"] = headers.get("content-type")
    assert call("POST", f"/v1.50/containers/{cid}/start")[0] == 204
    seen["frames"] = sorted(frames(read_all(s, rest)))
    s.close()

    cid2 = create(image, ["sh", "-c", "echo plain"])
    s = hijack(f"/v1.50/containers/{cid2}/attach?stream=1&stdout=1&stderr=1", upgrade=False)
    status, headers, rest = read_head(s)
    seen["plain_status_line"] = status
    assert call("POST", f"/v1.50/containers/{cid2}/start")[0] == 204
    body = read_all(s, rest)
    if "chunked" in headers.get("transfer-encoding", ""):
        body = dechunk(body)
    seen["plain_frames"] = frames(body)
    s.close()

    cid3 = create(image, ["sh", "-c", "echo tty"], Tty=True)
    s = hijack(f"/v1.50/containers/{cid3}/attach?stream=1&stdout=1&stderr=1")
    status, headers, rest = read_head(s)
    seen["tty_content_type"] = headers.get("content-type")
    assert call("POST", f"/v1.50/containers/{cid3}/start")[0] == 204
    seen["tty_raw"] = read_all(s, rest).decode(errors="replace")
    s.close()
    for c in (cid, cid2, cid3):
        status, reply = call("DELETE", f"/containers/{c}?force=1")
        assert status == 204, (status, reply)
    return seen


def wait_headers(image):
    """/wait answers its headers before the container even starts."""
    seen = {}
    cid = create(image, ["sh", "-c", "sleep 0.5; exit 3"])
    s = connect()
    s.sendall(f"POST /v1.50/containers/{cid}/wait?condition=next-exit HTTP/1.1\r\nHost: d\r\n\r\n".encode())
    s.settimeout(5)
    t0 = time.time()
    status, headers, rest = read_head(s)
    seen["head_seconds"] = time.time() - t0
    seen["status_line"] = status
    # Only now start it: a server that held the headers would deadlock here.
    assert call("POST", f"/v1.50/containers/{cid}/start")[0] == 204
    t1 = time.time()
    s.settimeout(20)
    body = rest
    while b"}" not in dechunk(body) if "chunked" in headers.get("transfer-encoding", "") else b"}" not in body:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    seen["body_seconds"] = time.time() - t1
    text = dechunk(body) if "chunked" in headers.get("transfer-encoding", "") else body
    seen["body"] = json.loads(text)
    s.close()
    call("DELETE", f"/containers/{cid}?force=1")
    return seen


def half_close(image):
    """stdin EOF (shutdown SHUT_WR) closes cat's stdin; its output arrives."""
    seen = {}
    cid = create(image, ["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True)
    s = hijack(f"/v1.50/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    status, headers, rest = read_head(s)
    seen["status_line"] = status
    assert call("POST", f"/v1.50/containers/{cid}/start")[0] == 204
    s.sendall(b"first line\nsecond line\n")
    s.shutdown(socket.SHUT_WR)
    out = frames(read_all(s, rest))
    seen["output"] = "".join(p for k, p in out if k == 1)
    s.close()
    status, waited = call("POST", f"/v1.50/containers/{cid}/wait")
    seen["exit"] = waited["StatusCode"]
    # The same through exec: cat in a running container.
    host = create(image, ["sleep", "30"])
    assert call("POST", f"/v1.50/containers/{host}/start")[0] == 204
    status, ex = call("POST", f"/v1.50/containers/{host}/exec",
                      {"Cmd": ["cat"], "AttachStdin": True, "AttachStdout": True})
    assert status == 201, (status, ex)
    s = connect()
    body = json.dumps({"Detach": False, "Tty": False}).encode()
    s.sendall((f"POST /v1.50/exec/{ex['Id']}/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
               f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    status, headers, rest = read_head(s)
    seen["exec_status_line"] = status
    s.sendall(b"via exec\n")
    s.shutdown(socket.SHUT_WR)
    out = frames(read_all(s, rest))
    seen["exec_output"] = "".join(p for k, p in out if k == 1)
    s.close()
    seen["exec_inspect"] = call("GET", f"/v1.50/exec/{ex['Id']}/json")[1]
    call("DELETE", f"/containers/{cid}?force=1")
    call("DELETE", f"/containers/{host}?force=1")
    return seen


def tasks():
    return call("GET", "/v1.50/info")[1]["NGoroutines"]


def hangups(image):
    """Clients that vanish mid-attach, mid-logs and mid-exec leave nothing
    behind: the task count returns, the container still runs, the daemon
    serves."""
    seen = {}
    cid = create(image, ["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    assert call("POST", f"/v1.50/containers/{cid}/start")[0] == 204
    time.sleep(0.3)
    seen["tasks_before"] = tasks()
    for _ in range(5):
        s = hijack(f"/v1.50/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
        read_head(s)
        s.recv(100)
        s.close()
        s = connect()
        s.sendall(f"GET /v1.50/containers/{cid}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n".encode())
        read_head(s)
        s.recv(100)
        s.close()
        status, ex = call("POST", f"/v1.50/containers/{cid}/exec",
                          {"Cmd": ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo e; sleep 0.1; done"],
                           "AttachStdout": True})
        s = connect()
        body = b'{"Detach":false}'
        s.sendall((f"POST /v1.50/exec/{ex['Id']}/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                   f"Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
        read_head(s)
        s.recv(100)
        s.close()
    # Give the sessions a moment to notice (the container prints every 50 ms).
    deadline = time.time() + 10
    while time.time() < deadline:
        time.sleep(0.3)
        seen["tasks_after"] = tasks()
        if seen["tasks_after"] <= seen["tasks_before"]:
            break
    status, listed = call("GET", "/v1.50/containers/json")
    seen["running"] = [c["Id"] for c in listed]
    seen["cid"] = cid
    seen["state"] = call("GET", f"/v1.50/containers/{cid}/json")[1]["State"]["Status"]
    call("DELETE", f"/containers/{cid}?force=1")
    seen["after_remove"] = call("GET", "/v1.50/containers/json?all=1")[1]
    return seen


if __name__ == "__main__":
    command, image = sys.argv[1], sys.argv[2]
    print(json.dumps(globals()[command](image)))
