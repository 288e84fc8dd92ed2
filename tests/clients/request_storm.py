"""A seeded storm of malformed Docker API requests, standard library only
(Debian's python3), run inside the pod against $HUTCH_SOCKET.

Every route of the daemon's table (one `METHOD /path` per line on stdin)
gets hostile path parameters, query strings and bodies: broken and deeply
nested JSON, wrong types in every field of valid create bodies, random
bytes, absurd numbers, path tricks, bad X-Registry-Auth headers.

Prints one JSON object: how many requests went out, and what looked wrong:
  - an answer that is not HTTP, or none at all (the handler died);
  - an error without Docker's {"message": ...} body;
  - a 5xx on a route outside `--server-side` (a malformed request is the
    client's fault: 4xx), or a 5xx without a message anywhere;
  - a non-streaming request that hung;
  - a daemon that no longer answers /_ping.

Usage: request_storm.py SEED COUNT --server-side PREFIX,PREFIX,... < routes
"""

import json
import random
import socket
import os
import sys
import time

SOCKET = os.environ.get("HUTCH_SOCKET", "/run/hutch/hutch.sock")

# Path parameters: the names the test set up (c1, c2, n1, v1, busybox),
# and shapes a parser could trip on.
IDS = ["c1", "c2", "busybox", "hutch-test/busybox:latest", "n1", "v1", "bridge", "",
       "..", "../../etc/passwd", "%2e%2e", "a" * 300, "%00", "%ff%fe", "sha256:", "sha256:zz",
       "sha256:" + "0" * 64, "0" * 64, "c1/../c2", "x:y:z", "UPPER", "-1", "%F0%9F%99%82"]
KEYS = ["filters", "all", "force", "v", "t", "signal", "name", "tag", "fromImage", "repo",
        "follow", "stdout", "stderr", "since", "until", "tail", "timestamps", "stream",
        "size", "limit", "path", "noOverwriteDirToNonDir", "copyUIDGID", "condition",
        "detachKeys", "h", "w", "platform", "dangling", "q", "dockerfile", "buildargs",
        "labels", "target", "nocache", "pull", "rm", "forcerm", "memory", "cpusetcpus",
        "networkmode", "shmsize", "cachefrom", "outputs", "term", "changes", "comment",
        "author", "pause", "names", "noprune", "quiet", "digests", "logs", "link",
        "keep-storage", "ps_args", "one-shot", "fromSrc", "message", "ulimits", "extrahosts"]
VALUES = ["", "1", "0", "true", "false", "maybe", "-1", "99999999999999999999999", "1e9",
          "NaN", "{}", "[]", "%7B%22a%22%3A1%7D", "%7B%22label%22%3A%7B%22x%22%3Atrue%7D%7D",
          "%7B%22dangling%22%3A%5B%22x%22%5D%7D", "%7B%22until%22%3A%5B%22bogus%22%5D%7D",
          "%7B%22before%22%3A%5B%22nope%22%5D%7D", "%7B%22reference%22%3A%5B%22%5B%22%5D%7D",
          "%7B%22reference%22%3A%22str%22%7D", "%7B", "null", "%", "%zz", "/", "/etc", "../..",
          "a" * 5000, "SIGKILL", "SIGFOO", "999", "linux/arm64", "windows", "linux/amd64/v99/x",
          "%F0%9F%99%82", "[1,2]", "%22s%22", "%5B%7B%22Name%22%3A1%7D%5D"]

BODY_SEEDS = [
    {"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"], "Env": ["A=1"], "Labels": {"a": "b"},
     "ExposedPorts": {"80/tcp": {}}, "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000},
     "HostConfig": {"Binds": ["/tmp:/x:ro"], "PortBindings": {"80/tcp": [{"HostPort": "0"}]},
                    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                    "Memory": 1 << 26, "CapAdd": ["NET_ADMIN"], "Tmpfs": {"/t": "size=1m"},
                    "Mounts": [{"Type": "volume", "Source": "v1", "Target": "/v"}],
                    "LogConfig": {"Type": "json-file", "Config": {}},
                    "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n"}],
                    "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}]},
     "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["x"],
                                                     "IPAMConfig": {"IPv4Address": "10.0.0.5"}}}}},
    {"AttachStdout": True, "Cmd": ["echo", "hi"], "Env": ["X=1"], "User": "0:0", "WorkingDir": "/", "Tty": False},
    {"Name": "n2", "Driver": "bridge", "IPAM": {"Config": [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.1"}]},
     "Options": {"a": "b"}, "Labels": {"x": "y"}, "Internal": True},
    {"Name": "v2", "Driver": "local", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}},
    {"Container": "c1", "EndpointConfig": {"Aliases": ["a"]}},
    {"Memory": 1 << 27, "CpuShares": 10, "RestartPolicy": {"Name": "always"}},
    {"Detach": False, "Tty": False, "ConsoleSize": [10, 10]},
    {"username": "u", "password": "p", "serveraddress": "127.0.0.1:1"},
]

# Routes that stream or wait on purpose: a quiet end is not a hang.
STREAMING = ("logs", "attach", "stats", "events", "wait", "/build", "archive", "export",
             "/get", "/exec/", "/images/create", "/push", "/load")


def mutate(rng, value, depth=0):
    r = rng.random()
    if r < 0.12:
        return rng.choice([None, True, -1, 2**70, 1.5, "", "x" * 100, [], {}, [None], {"": None}])
    if isinstance(value, dict):
        out = {k: (mutate(rng, v, depth + 1) if depth < 6 else v)
               for k, v in value.items() if rng.random() >= 0.1}
        if rng.random() < 0.1:
            out[rng.choice(["Bogus", "HostConfig", "Env", "Cmd", "Labels", ""])] = rng.choice(
                [None, 1, "s", [1], {"a": {"b": []}}])
        return out
    if isinstance(value, list):
        out = [mutate(rng, v, depth + 1) for v in value]
        if rng.random() < 0.1:
            out.append(rng.choice([None, 1, "=", "a=b", {}, []]))
        return out
    if isinstance(value, str) and r < 0.3:
        return rng.choice(["", "a" * 1000, "../../x", "\u0000", "=", "1:2:3:4", "-1", "\U0001F642",
                           "/dev/null", "tcp", "65536/tcp", "0.0.0.0:-1:80", "host", "none",
                           "container:nope", "private", "on-failure:-5", "%s%n"])
    if isinstance(value, int) and not isinstance(value, bool) and r < 0.3:
        return rng.choice([-1, 0, 2**63, -2**63, 2**64, 1 << 40])
    return value


def body(rng):
    r = rng.random()
    if r < 0.5:
        return json.dumps(mutate(rng, rng.choice(BODY_SEEDS))).encode()
    if r < 0.6:
        return b"{" * rng.randint(1, 20000)
    if r < 0.7:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))
    if r < 0.8:
        return b"[" + b"1," * 1000 + b"1]"
    if r < 0.9:
        return b'{"Image": "busybox", "Cmd": "' + b"\\u0000" * 50 + b'"}'
    return b""


def exchange(method, path, payload, headers, limit):
    """Sends one request (Connection: close); returns what came back within
    `limit` seconds, and whether the answer was complete by then."""
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(limit)
        s.connect(SOCKET)
        head = [f"{method} {path} HTTP/1.1", "Host: d", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if payload is not None:
            head.append(f"Content-Length: {len(payload)}")
        try:
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (payload or b""))
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the body was read: the answer counts
        data = b""
        try:
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    return data, True
                data += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            # A unix socket closed with our body unread: what came first counts.
            if not data:
                raise
            return data, True
        return data, False


def judge(method, pattern, data, server_side):
    """What is wrong with this answer (None: nothing)."""
    if not data.startswith(b"HTTP/1.1 "):
        return "no HTTP answer"
    status = int(data[9:12])
    if status < 400 or method == "HEAD":  # a HEAD answer has no body
        return None
    head, _, text = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        return None  # a stream that failed part-way reports in-band
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    if not message:
        return f"{status} without Docker's error body"
    if status >= 500 and status not in (501, 503) and not pattern.startswith(server_side):
        return f"{status} for a client's mistake: {message}"
    return None


def main():
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    server_side = tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 else ()
    routes = [line.split(None, 1) for line in sys.stdin.read().splitlines() if line.strip()]
    rng = random.Random(seed)
    flagged = []
    sent = 0
    for _ in range(count):
        method, pattern = rng.choice(routes)
        path = pattern
        while "{" in path:
            a, b = path.index("{"), path.index("}")
            path = path[:a] + rng.choice(IDS) + path[b + 1:]
        if rng.random() < 0.3:
            path = f"/v{rng.choice(['1.24', '1.41', '1.44', '1.50', '1.51', '0.1', 'x'])}{path}"
        query = [f"{rng.choice(KEYS)}={rng.choice(VALUES)}" for _ in range(rng.randint(0, 4))]
        if query:
            path += "?" + "&".join(query)
        payload = body(rng) if method in ("POST", "PUT") and rng.random() < 0.9 else None
        headers = {"Content-Type": rng.choice(["application/json", "application/x-tar", "text/plain"])}
        if rng.random() < 0.2:
            headers["X-Registry-Auth"] = rng.choice(["", "!!!", "eyJ9", "e30=", "a" * 10000])
        streaming = any(s in pattern for s in STREAMING)
        sent += 1
        what = f"{method} {path[:300]}" + (f" body {payload[:120]!r}" if payload else "")
        try:
            data, complete = exchange(method, path, payload, headers, 2.0 if streaming else 30.0)
        except OSError as e:
            flagged.append(f"{e!r}: {what}")
            continue
        if not complete and not streaming:
            flagged.append(f"hung: {what}")
        elif not complete and not data.startswith(b"HTTP/1.1 "):
            flagged.append(f"no answer head within 2 s: {what}")
        elif (wrong := judge(method, pattern, data, server_side)) is not None:
            flagged.append(f"{wrong}: {what}")
        try:
            answer, complete = exchange("GET", "/_ping", None, {}, 10.0)
            alive = complete and answer.endswith(b"OK")
        except OSError as e:
            alive = False
            flagged.append(f"/_ping failed ({e!r}) after {what}")
        if not alive:
            flagged.append(f"the daemon stopped answering after {what}")
            break
    print(json.dumps({"sent": sent, "flagged": flagged}))


main()
