"""Raw HTTP/1.1 clients for the API's wire-level tests, standard library
only (Debian's python3), run inside the pod. The socket is $HUTCH_SOCKET.
Each subcommand prints one JSON object of what it observed."""

import asyncio
import json
import os
import resource
import socket
import sys
import time

SOCKET = os.environ.get("HUTCH_SOCKET", "/run/hutch/hutch.sock")


def request(method, path):
    return f"{method} {path} HTTP/1.1\r\nHost: d\r\n\r\n".encode()


def read_head(sock):
    """Reads up to the end of the response head; returns (status, rest)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, rest


def get_json(path):
    """A one-shot GET (Connection: close), body parsed as JSON."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(SOCKET)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return json.loads(body)


async def one_ping(conn):
    reader, writer = conn
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length)
    writer.close()
    return head.startswith(b"HTTP/1.1 200") and body == b"OK"


async def concurrent(n):
    """Opens n connections first, then sends a ping on each: all n requests
    are in flight together."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = await asyncio.gather(
        *[asyncio.open_unix_connection(SOCKET) for _ in range(n)], return_exceptions=True
    )
    errors = [repr(c) for c in conns if isinstance(c, BaseException)]
    live = [c for c in conns if not isinstance(c, BaseException)]
    for _, writer in live:
        writer.write(request("GET", "/_ping"))
    await asyncio.gather(*[w.drain() for _, w in live])
    results = await asyncio.gather(*[one_ping(c) for c in live], return_exceptions=True)
    ok = sum(1 for r in results if r is True)
    errors += [repr(r) for r in results if isinstance(r, BaseException)]
    return {"opened": len(live), "ok": ok, "errors": errors[:5]}


def disconnect_events():
    """Subscribes to /events, checks the 200 head arrives with no event to
    push it out, then hangs up."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(SOCKET)
        s.sendall(request("GET", "/events"))
        start = time.monotonic()
        status, _ = read_head(s)
        waited = time.monotonic() - start
        during = get_json("/info")["NEventsListener"]
    # Give the daemon a moment to notice the hangup.
    after = during
    for _ in range(100):
        after = get_json("/info")["NEventsListener"]
        if after == 0:
            break
        time.sleep(0.02)
    return {"status": status, "head_seconds": waited, "listeners_during": during,
            "listeners_after": after}


def disconnect_save(name):
    """Starts a save, reads a little of the tar, then hangs up."""
    with socket.socket(socket.AF_UNIX) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(SOCKET)
        s.sendall(request("GET", f"/images/{name}/get"))
        status, rest = read_head(s)
        got = len(rest)
        while got < 1024:
            got += len(s.recv(1024))
    time.sleep(0.3)
    return {"status": status, "read": got, "fds_after": get_json("/info")["NFd"]}


def main():
    cmd = sys.argv[1]
    if cmd == "concurrent":
        result = asyncio.run(concurrent(int(sys.argv[2])))
    elif cmd == "disconnect-events":
        result = disconnect_events()
    elif cmd == "disconnect-save":
        result = disconnect_save(sys.argv[2])
    elif cmd == "info":
        result = get_json("/info")
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(result))


main()
