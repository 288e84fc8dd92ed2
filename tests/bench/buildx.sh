#!/usr/bin/env bash
# docker build through buildx (BuildKit's API: the context goes by fsutil
# DiffCopy over the session) against docker build through the classic API
# (the context as one tar in the request body), same daemon, same context,
# same Dockerfile (FROM scratch, COPY . /c/: the transfer and the layer are
# the whole build), interleaved runs with --no-cache, medians, in one pod.
# Also `hutch build` of the same directory (no daemon, no transfer) for
# scale: not a true floor, since it remembers the directory's file hashes
# by stat and finds the layer already stored. The context: 2000 small files and one 64 MiB file,
# made once under target/bench/.
#
# Usage (as root): tests/bench/buildx.sh [RUNS]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
if [ "$(id -u)" -ne 0 ]; then
  echo "buildx.sh: the pod simulator needs root" >&2
  exit 1
fi
tests/install-deps
CARGO_TARGET_DIR="$(tests/target-dir)"
export CARGO_TARGET_DIR
cargo build --release --bins --quiet
BIN=$CARGO_TARGET_DIR/release
CACHE=$CARGO_TARGET_DIR/bench
CTX=$CACHE/buildx-context
if [ ! -f "$CTX/Dockerfile" ]; then
  rm -rf "$CTX"
  mkdir -p "$CTX/many"
  for i in $(seq 2000); do head -c $(( (i * 37) % 8192 )) /dev/urandom >"$CTX/many/f$i"; done
  head -c $(( 64 << 20 )) /dev/urandom >"$CTX/big.bin"
  printf 'FROM scratch\nCOPY . /c/\n' >"$CTX/Dockerfile"
  chmod -R a+rX "$CACHE"
fi
PLUGINS=${HUTCH_TEST_BUILDX:-/opt/hutch-test-buildx}/cli-plugins

RUN=$(mktemp -d /var/tmp/buildx-bench.XXXXXX)
STATE=$RUN/pod
mkfifo "$RUN/hold"
POD=""
cleanup() {
  # The pod ends when its processes do: the daemon first.
  [ -n "$POD" ] && in_pod sh -c 'kill $(cat /tmp/daemon.pid)' 2>/dev/null || true
  exec 3>&- 2>/dev/null || true
  [ -n "$POD" ] && wait "$POD" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT
"$BIN/podsim" start --state "$STATE" <"$RUN/hold" >"$RUN/podsim.out" 2>"$RUN/podsim.err" &
POD=$!
exec 3>"$RUN/hold"
for _ in $(seq 200); do grep -q ready "$RUN/podsim.out" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$RUN/podsim.out" || { cat "$RUN/podsim.err" >&2; exit 1; }
in_pod() { "$BIN/podsim" exec --state "$STATE" -- "$@"; }
in_pod sh -c "mkdir -p /run/hutch /tmp/dc && ln -s $PLUGINS /tmp/dc/cli-plugins && \
  (HUTCH_LOG=warn $BIN/hutch daemon -H unix:///run/hutch/hutch.sock >/tmp/daemon.log 2>&1 & \
   echo \$! >/tmp/daemon.pid)"
for _ in $(seq 200); do
  in_pod curl -sf --unix-socket /run/hutch/hutch.sock http://d/_ping >/dev/null 2>&1 && break
  sleep 0.05
done

# Milliseconds one command takes in the pod.
timed() {
  in_pod env DOCKER_HOST=unix:///run/hutch/hutch.sock DOCKER_CONFIG=/tmp/dc bash -c '
    s=$(date +%s%N); "$@" >/dev/null 2>/tmp/err || { cat /tmp/err >&2; exit 1; }
    echo $(( ($(date +%s%N) - s) / 1000000 ))' bash "$@"
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One warm-up of each (page cache, first-use costs).
timed docker build -q --no-cache -t bx "$CTX" >/dev/null
timed env DOCKER_BUILDKIT=0 docker build -q --no-cache -t legacy "$CTX" >/dev/null
bx=() legacy=() direct=()
for _ in $(seq "$RUNS"); do
  bx+=("$(timed docker build -q --no-cache -t bx "$CTX")")
  legacy+=("$(timed env DOCKER_BUILDKIT=0 docker build -q --no-cache -t legacy "$CTX")")
  direct+=("$(timed "$BIN/hutch" build -q --no-cache -t direct "$CTX")")
done
B=$(median "${bx[@]}") L=$(median "${legacy[@]}") D=$(median "${direct[@]}")
echo "context: 2000 files + 64 MiB; medians of $RUNS"
echo "docker build, buildx (BuildKit API):  $B ms   (${bx[*]})"
echo "docker build, classic API:            $L ms   (${legacy[*]})"
echo "hutch build (no daemon, hashes known): $D ms   (${direct[*]})"
awk -v b="$B" -v l="$L" -v d="$D" 'BEGIN {
  printf "buildx / classic = %.2f   buildx / hutch build = %.2f   classic / hutch build = %.2f\n", b / l, b / d, l / d }'
