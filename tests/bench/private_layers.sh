#!/usr/bin/env bash
# Private ID mode's layer cost, in one run inside the pod simulator: the
# whole `hutch __engine run IMAGE true` (engine open included) for
#   identity        the layers as they are (the baseline);
#   shifted-first   private mode on the disk store, first container of its
#                   ID map: the layers are copied with shifted owners;
#   shifted-cached  the next container of the same map (copies kept);
#   tmpfs           private mode with --private-layers-tmpfs: each engine
#                   process copies to its own tmpfs (a daemon, once).
# On pull.sh's Debian minbase image (121 MB, one layer; run pull.sh once
# first to build it), on a fresh ext4 loop disk. Medians and ratios to
# identity are printed.
#
# Usage (as root): tests/bench/private_layers.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
[ "$(id -u)" -eq 0 ] || { echo "private_layers.sh: the pod simulator needs root" >&2; exit 1; }
CARGO_TARGET_DIR="$(tests/target-dir)"
export CARGO_TARGET_DIR
cargo build --release --bins --quiet
BIN=$CARGO_TARGET_DIR/release
OCI=$CARGO_TARGET_DIR/bench/debian-bookworm-minbase.oci
[ -f "$OCI/index.json" ] || { echo "no $OCI: run tests/bench/pull.sh 1 first" >&2; exit 1; }

W=$(mktemp -d "$CARGO_TARGET_DIR/bench/private.XXXXXX")
chmod 755 "$W"
POD=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "$POD" ] && wait "$POD" 2>/dev/null || true
  mountpoint -q "$W/disk" 2>/dev/null && umount "$W/disk"
  rm -rf "$W"
}
trap cleanup EXIT
tar -C "$OCI" -cf "$W/image.tar" .
chmod 644 "$W/image.tar"
truncate -s 2G "$W/disk.img"
mkfs.ext4 -q -F "$W/disk.img"
mkdir "$W/disk"
mount -o loop "$W/disk.img" "$W/disk"
mkfifo "$W/hold"
"$BIN/podsim" start --state "$W/state" <"$W/hold" >"$W/pod.out" 2>"$W/pod.err" &
POD=$!
exec 3>"$W/hold"
for _ in $(seq 200); do grep -q ready "$W/pod.out" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$W/pod.out" || { cat "$W/pod.err" >&2; exit 1; }
base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base"])' "$W/state/pod.json")
chown "$base:$base" "$W/disk"
D=$W/disk/data

in_pod() { "$BIN/podsim" exec --state "$W/state" -- "$@"; }
engine() { in_pod "$BIN/hutch" --data-root "$D" __engine "$@"; }
in_pod "$BIN/hutch" --data-root "$D" load -i "$W/image.tar" >/dev/null
IMG=$(in_pod "$BIN/hutch" --data-root "$D" images -q | head -n1)
# run ENGINE-OPTS -- RUN-OPTS: milliseconds of one run, then the container goes.
run() {
  local opts=() s e
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  s=$(date +%s%N)
  engine "${opts[@]}" run --name bench "$@" "$IMG" true >"$W/out" 2>&1 || { cat "$W/out" >&2; exit 1; }
  e=$(date +%s%N)
  engine rm bench >/dev/null
  echo $(( (e - s) / 1000000 ))
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ident=() first=() cached=() tmpfs=()
for _ in $(seq "$RUNS"); do
  ident+=("$(run -- )")
  first+=("$(run -- --userns private)")
  cached+=("$(run -- --userns private)")
  tmpfs+=("$(run --private-layers-tmpfs -- --userns private)")
  in_pod rm -rf "$D/shifted-layers"
done
i=$(median "${ident[@]}")
ratio() { awk -v a="$1" -v b="$i" 'BEGIN {printf "%.2f", a / b}'; }
printf 'image: %s MB unpacked; runs: %s (medians, ms; x identity)\n' \
  "$(( $(du -sb "$D/layers" | cut -f1) / 1000000 ))" "$RUNS"
for row in "identity:ident" "shifted-first:first" "shifted-cached:cached" "tmpfs:tmpfs"; do
  name=${row%%:*}; arr="${row#*:}[@]"
  all="${!arr}"
  m=$(median ${all})
  printf '%-15s %6d ms  %6sx   (%s)\n' "$name" "$m" "$(ratio "$m")" "$all"
done
