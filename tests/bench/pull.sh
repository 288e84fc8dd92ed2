#!/usr/bin/env bash
# Pull benchmark, in one run and inside the pod simulator:
#   1. cold `hutch pull` (download + verify + unpack) vs `skopeo copy` of the
#      same image from the same local registry to an OCI directory;
#   2. unpacking the layer alone (hutch's unpacker) vs `tar -xzf` of it;
#   3. the floor: skopeo copy's own CPU time plus the work a verifying,
#      unpacking pull does beyond it (inflating the layer and hashing its
#      diff, timed alone in one process; creating its files, the CPU time of
#      tar -xf of the uncompressed tar), spread over the two cores, set
#      against skopeo copy's time;
#   4. the peers' whole pulls: `podman pull` (download + unpack into its
#      overlay store, as root in the pod), and skopeo copy + tar -xzf.
# The image is Debian bookworm minbase from debootstrap (apt's configured
# mirror), packed as a one-layer gzip OCI image. The rootfs tarball and the
# image are cached under target/bench/ and built once.
#
# Usage (as root): tests/bench/pull.sh [RUNS]     (default 5; medians printed)
# HUTCH_STORE_SYNC=1 measures hutch with its store in full-durability mode.
# BASELINE_BIN=DIR also measures DIR/hutch and DIR/unpack-timer (another
# build, e.g. main's target/release) in the same runs, for before/after.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}

if [ "$(id -u)" -ne 0 ]; then
  echo "pull.sh: the pod simulator needs root" >&2
  exit 1
fi

tests/install-deps
# The peer a pull is compared with (not needed by the tests).
if ! command -v podman >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman >/dev/null
fi
# The build where the pod can read it (see tests/target-dir).
CARGO_TARGET_DIR="$(tests/target-dir)"
export CARGO_TARGET_DIR
cargo build --release --bins --quiet
BIN=$CARGO_TARGET_DIR/release
CACHE=$CARGO_TARGET_DIR/bench
mkdir -p "$CACHE"
chmod 755 "$CACHE"

# --- the image --------------------------------------------------------------
ROOTFS_TAR=$CACHE/debian-bookworm-minbase.tar
OCI=$CACHE/debian-bookworm-minbase.oci
TAG=bookworm

apt_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -v security | head -n1 | awk '{print ($1 == "deb") ? $2 : $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ ! -s "$ROOTFS_TAR" ]; then
  work=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
  mirror=$(apt_mirror)
  echo "building Debian bookworm minbase with debootstrap from $mirror (once)..."
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/log" 2>&1 || {
    tail -n 20 "$work/log" >&2; echo "debootstrap failed (no mirror reachable?)" >&2; exit 1; }
  # As the official image: no package caches or apt lists.
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  # Device nodes cannot be created in a user namespace (nor does Docker's
  # debian image have any): /dev stays, empty.
  tar --numeric-owner --sort=name --exclude='./dev/*' -C "$work/rootfs" -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$work"
fi

sha() { sha256sum "$1" | cut -d' ' -f1; }
blob() { # FILE -> moves it into the layout, prints its digest hex
  local hex; hex=$(sha "$1"); mv "$1" "$OCI.tmp/blobs/sha256/$hex"; echo "$hex"
}
if [ ! -f "$OCI/index.json" ] || [ "$ROOTFS_TAR" -nt "$OCI/index.json" ]; then
  echo "packing the rootfs as a one-layer gzip OCI image (once)..."
  rm -rf "$OCI" "$OCI.tmp"
  mkdir -p "$OCI.tmp/blobs/sha256"
  diff_id=$(sha "$ROOTFS_TAR")
  gzip -6 -n -c "$ROOTFS_TAR" > "$OCI.tmp/layer"
  layer_size=$(stat -c %s "$OCI.tmp/layer")
  layer=$(blob "$OCI.tmp/layer")
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"debootstrap --variant=minbase bookworm"}]}' \
    "$diff_id" > "$OCI.tmp/config"
  config_size=$(stat -c %s "$OCI.tmp/config")
  config=$(blob "$OCI.tmp/config")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" > "$OCI.tmp/manifest"
  manifest_size=$(stat -c %s "$OCI.tmp/manifest")
  manifest=$(blob "$OCI.tmp/manifest")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$TAG" > "$OCI.tmp/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$OCI.tmp/oci-layout"
  chmod -R a+rX "$OCI.tmp"
  mv "$OCI.tmp" "$OCI"
fi
LAYER=$(ls -S "$OCI"/blobs/sha256/* | head -n1)
printf 'image: %s MB unpacked, %s MB gzip layer\n' \
  "$(( $(stat -c %s "$ROOTFS_TAR") / 1000000 ))" "$(( $(stat -c %s "$LAYER") / 1000000 ))"

# --- the pod and its registry -----------------------------------------------
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
chmod 755 "$RUN"
STATE=$RUN/state
mkfifo "$RUN/hold"
POD=""
DISK=$RUN/disk
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "$POD" ] && wait "$POD" 2>/dev/null || true
  if mountpoint -q "$DISK" 2>/dev/null; then umount "$DISK"; fi
  rm -rf "$RUN"
}
trap cleanup EXIT
# The measurements write to a fresh ext4 filesystem of their own (a loop
# image) mounted before the pod starts, so the pod sees it: on a shared disk
# other processes' deletions make ext4 file creation several times slower
# for ~30 s (its inode allocator skips recently deleted inodes), which made
# figures swing 5x between runs. BENCH_DISK=emptydir uses the pod's data dir.
if [ "${BENCH_DISK:-loop}" = loop ]; then
  # Sparse; each run writes about 0.8 GB (hutch, baseline, skopeo, unpacks).
  truncate -s "$(( RUNS + 4 ))G" "$RUN/disk.img"
  mkfs.ext4 -q -F "$RUN/disk.img"
  mkdir "$DISK"
  mount -o loop "$RUN/disk.img" "$DISK"
fi
# CAP_SYS_ADMIN: podman as root without it takes itself for rootless and,
# with no subordinate IDs there, maps one ID, which cannot hold Debian's
# files (hutch and skopeo need no capability to pull).
"$BIN/podsim" start --cap-add SYS_ADMIN --state "$STATE" <"$RUN/hold" >"$RUN/podsim.out" 2>"$RUN/podsim.err" &
POD=$!
exec 3>"$RUN/hold"
for _ in $(seq 200); do grep -q ready "$RUN/podsim.out" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$RUN/podsim.out" || { cat "$RUN/podsim.err" >&2; exit 1; }

# The pod has its own network namespace: a fixed port is free there.
REG=127.0.0.1:5000
mkdir -p "$RUN/registry"
cat > "$RUN/registry.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RUN/registry
http:
  addr: $REG
YML
# (3>&-: background processes must not hold the pod's stdin fifo open.)
"$BIN/podsim" sidecar --state "$STATE" -- /usr/bin/docker-registry serve "$RUN/registry.yml" \
  >"$RUN/registry.log" 2>&1 3>&- &
for _ in $(seq 200); do
  "$BIN/podsim" sidecar --state "$STATE" -- curl -sf "http://$REG/v2/" >/dev/null 2>&1 && break
  sleep 0.05
done
"$BIN/podsim" sidecar --state "$STATE" -- skopeo --insecure-policy copy --quiet \
  --dest-tls-verify=false "oci:$OCI:$TAG" "docker://$REG/bench/debian:$TAG"

# --- measurements, all inside the pod as its root -----------------------------
# in_pod CMD...: milliseconds CMD took, timed inside the pod after a sync (so
# earlier runs' writeback is not billed to it). Targets are fresh dirs; they
# are only deleted with the pod, because ext4 makes file creation slow for a
# while after mass deletion, which would skew later runs. The CPU time CMD
# used (user + system, all its threads) is left in the pod's /tmp/cpu_ms
# (`times` in the shell itself: a subshell has no children of its own).
in_pod() {
  "$BIN/podsim" exec --state "$STATE" -- env HOME=/tmp HUTCH_STORE_SYNC="${HUTCH_STORE_SYNC:-}" bash -c '
    cpu_ms() { awk '"'"'NR == 2 { split($1, u, /[ms]/); split($2, k, /[ms]/)
      printf "%d\n", (u[1] * 60 + u[2] + k[1] * 60 + k[2]) * 1000 }'"'"' "$1"; }
    sync; times >/tmp/t0; s=$(date +%s%N); "$@" >/tmp/out 2>&1 || { cat /tmp/out >&2; exit 1; }
    e=$(date +%s%N); times >/tmp/t1
    echo $(( $(cpu_ms /tmp/t1) - $(cpu_ms /tmp/t0) )) >/tmp/cpu_ms; echo $(( (e - s) / 1000000 ))' _ "$@"
}
# The CPU milliseconds of the last in_pod command.
last_cpu() { "$BIN/podsim" exec --state "$STATE" -- cat /tmp/cpu_ms; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Pod root cannot read the host's signature store; skopeo gets an empty config.
mkdir -m 755 "$RUN/registries.d"
if mountpoint -q "$DISK"; then
  base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base"])' "$STATE/pod.json")
  chown "$base:$base" "$DISK"
  D=$DISK/bench
else
  D=/var/lib/hutch/bench
fi
in_pod mkdir -p $D >/dev/null
hutch_pull=() skopeo_copy=() hutch_unpack=() tar_unpack=() base_pull=() base_unpack=()
podman_pull=() hutch_cpu=() skopeo_cpu=()
floor_inflate=() floor_blob_sha=() floor_diff_sha=() tar_files=() tar_files_cpu=()
# Nor podman's, whose built-in lookaside for root is in there: its user
# registries.d points it at an empty place of the pod's own.
in_pod bash -c 'mkdir -p ~/.config/containers/registries.d &&
  echo "default-docker: {lookaside: \"file:///tmp/no-sigstore\"}" \
    > ~/.config/containers/registries.d/default.yaml' >/dev/null
# podman as the pod's root: its own store on the same disk, the overlay
# driver (native in a user namespace), no systemd or cgroups for a pull.
podman_with() { # TARGET-SUFFIX
  in_pod podman --root "$D/podman-$1" --runroot "/tmp/podman-run-$1" \
    --storage-driver overlay --cgroup-manager cgroupfs --events-backend none \
    --registries-conf /dev/null pull -q --tls-verify=false "$REG/bench/debian:$TAG"
}
BASE=${BASELINE_BIN:-}
pull_with() { # BIN TARGET-SUFFIX
  in_pod "$1/hutch" --data-root "$D/hutch-$2" pull -q "$REG/bench/debian:$TAG"
}
unpack_with() { # BIN TARGET-SUFFIX
  in_pod bash -c "mkdir $D/unpack-$2 && $1/unpack-timer $LAYER $D/unpack-$2"
}
for i in $(seq "$RUNS"); do
  # Rotate the order so no one always runs first.
  steps=(hutch skopeo podman ${BASE:+base})
  rot=$(( i % ${#steps[@]} ))
  steps=("${steps[@]:rot}" "${steps[@]:0:rot}")
  for step in "${steps[@]}"; do
    case $step in
      hutch) hutch_pull+=("$(pull_with "$BIN" "$i")"); hutch_cpu+=("$(last_cpu)") ;;
      base) base_pull+=("$(pull_with "$BASE" "base-$i")") ;;
      skopeo) skopeo_copy+=("$(in_pod skopeo --insecure-policy --registries.d "$RUN/registries.d" \
        copy --quiet --remove-signatures --src-tls-verify=false \
        "docker://$REG/bench/debian:$TAG" "oci:$D/skopeo-$i:$TAG")")
        skopeo_cpu+=("$(last_cpu)") ;;
      podman) podman_pull+=("$(podman_with "$i")") ;;
    esac
  done
  for step in "${steps[@]}"; do
    case $step in
      hutch) hutch_unpack+=("$(unpack_with "$BIN" "$i")")
        read -r fi fb fd < <("$BIN/podsim" exec --state "$STATE" -- "$BIN/unpack-timer" --floor "$LAYER" 2>/dev/null)
        floor_inflate+=("$fi"); floor_blob_sha+=("$fb"); floor_diff_sha+=("$fd") ;;
      base) base_unpack+=("$(unpack_with "$BASE" "base-$i")") ;;
      skopeo) tar_unpack+=("$(in_pod bash -c "mkdir $D/tar-$i && tar -xzf $LAYER -C $D/tar-$i")")
        tar_files+=("$(in_pod bash -c "mkdir $D/files-$i && tar -xf $ROOTFS_TAR -C $D/files-$i")")
        tar_files_cpu+=("$(last_cpu)") ;;
      podman) ;;
    esac
  done
done

hp=$(median "${hutch_pull[@]}"); sc=$(median "${skopeo_copy[@]}")
hu=$(median "${hutch_unpack[@]}"); tu=$(median "${tar_unpack[@]}")
echo "runs: $RUNS (medians; all runs in ms)"
printf 'cold pull:   hutch pull %5d ms   skopeo copy %5d ms   hutch/skopeo = %s (target <= 1.0)\n' \
  "$hp" "$sc" "$(awk -v a="$hp" -v b="$sc" 'BEGIN {printf "%.2f", a / b}')"
printf '             hutch: %s   skopeo: %s\n' "${hutch_pull[*]}" "${skopeo_copy[*]}"
printf 'unpack only: hutch %5d ms        tar -xzf %5d ms      tar/hutch = %s (target >= 1.5)\n' \
  "$hu" "$tu" "$(awk -v a="$tu" -v b="$hu" 'BEGIN {printf "%.2f", a / b}')"
printf '             hutch: %s   tar: %s\n' "${hutch_unpack[*]}" "${tar_unpack[*]}"
hc=$(median "${hutch_cpu[@]}"); scc=$(median "${skopeo_cpu[@]}")
printf 'cpu:         hutch pull %5d ms    skopeo copy %5d ms   hutch/skopeo = %s (CPU time, all threads)\n' \
  "$hc" "$scc" "$(awk -v a="$hc" -v b="$scc" 'BEGIN {printf "%.2f", a / b}')"
printf '             hutch: %s   skopeo: %s\n' "${hutch_cpu[*]}" "${skopeo_cpu[*]}"
# On two cores a pull can take no less than half its CPU time.
printf '             hutch CPU/2 cores/skopeo copy = %s (its bound with perfect use of both cores)\n' \
  "$(awk -v a="$hc" -v b="$sc" 'BEGIN {printf "%.2f", a / 2 / b}')"
# The floor: skopeo's own work (download, blob hash, blob write) plus
# what no verifying, unpacking pull of this layer avoids on top of it,
# each part measured alone, in CPU time: inflating the one gzip stream
# (which cannot be split across cores), hashing the diff, and creating the
# files (GNU tar's CPU time for it). Spread perfectly over two cores, with
# no start-up and no waiting, that is the least time such a pull can take (with files made
# at GNU tar's cost; hutch's own cost less, hence the line above).
fli=$(median "${floor_inflate[@]}"); flb=$(median "${floor_blob_sha[@]}"); fld=$(median "${floor_diff_sha[@]}")
tf=$(median "${tar_files[@]}"); tfc=$(median "${tar_files_cpu[@]}")
printf 'floor:       inflate %4d ms (one stream, one core); sha256 of the blob %d ms, of the diff %d ms (CPU, in process)\n' \
  "$fli" "$flb" "$fld"
printf '             creating the files: tar -xf of the uncompressed tar %4d ms, CPU %4d ms\n' "$tf" "$tfc"
printf '             inflate alone/skopeo copy = %s\n' "$(awk -v a="$fli" -v b="$sc" 'BEGIN {printf "%.2f", a / b}')"
printf '             (skopeo CPU + inflate + diff sha256 + tar -xf CPU)/2 cores/skopeo copy = %s (files at the cost to GNU tar)\n' \
  "$(awk -v s="$scc" -v a="$fli" -v d="$fld" -v t="$tfc" -v b="$sc" 'BEGIN {printf "%.2f", (s + a + d + t) / 2 / b}')"
printf '             inflate: %s   blob sha256: %s   diff sha256: %s   tar -xf: %s (CPU %s)\n' \
  "${floor_inflate[*]}" "${floor_blob_sha[*]}" "${floor_diff_sha[*]}" "${tar_files[*]}" "${tar_files_cpu[*]}"
pp=$(median "${podman_pull[@]}")
st=()
for i in "${!skopeo_copy[@]}"; do st+=($(( skopeo_copy[i] + tar_unpack[i] ))); done
sct=$(median "${st[@]}")
printf 'peers:       podman pull %5d ms   hutch/podman = %s\n' \
  "$pp" "$(awk -v a="$hp" -v b="$pp" 'BEGIN {printf "%.2f", a / b}')"
printf '             skopeo copy + tar -xzf %5d ms   hutch/(skopeo+tar) = %s\n' \
  "$sct" "$(awk -v a="$hp" -v b="$sct" 'BEGIN {printf "%.2f", a / b}')"
printf '             podman: %s\n' "${podman_pull[*]}"
if [ -n "$BASE" ]; then
  bp=$(median "${base_pull[@]}"); bu=$(median "${base_unpack[@]}")
  printf 'baseline:    pull %5d ms (baseline/skopeo = %s)   unpack %5d ms (tar/baseline = %s)\n' \
    "$bp" "$(awk -v a="$bp" -v b="$sc" 'BEGIN {printf "%.2f", a / b}')" \
    "$bu" "$(awk -v a="$tu" -v b="$bu" 'BEGIN {printf "%.2f", a / b}')"
  printf '             pull: %s   unpack: %s\n' "${base_pull[*]}" "${base_unpack[*]}"
fi
