#!/usr/bin/env bash
# make bench: io.containerd.sibling.v2 side by side with io.containerd.runc.v2.
#
# Installs what is missing (containerd, runc, busybox-static, protobuf-compiler for the benchmark
# client's gRPC code), builds the shim and the client (bench/), starts a private containerd
# (scripts/containerd-private.sh), imports the busybox image and runs bench/ against it. The
# report goes to docs/BENCHMARKS.md and docs/bench/. Everything started is stopped and removed
# on exit, whether the run succeeded or not.
#
# Sizes, for a quick look (the defaults are what docs/BENCHMARKS.md is written with):
#   BENCH_RUNS (50) BENCH_CONTAINERS (200) BENCH_CONCURRENCY (1,8,32) BENCH_MEMORY (50)
#   BENCH_EXECS (100) BENCH_OUT (docs)
set -euo pipefail

IMAGE=docker.io/library/sibling-busybox:latest
NS=sibling-bench

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

scripts/install-missing.sh containerd runc busybox-static protobuf-compiler
[ "$(id -u)" -eq 0 ] || { echo "bench: containers need root" >&2; exit 1; }

cargo build --release
make --no-print-directory image
# bench/ is its own workspace; its build directory is the one make test and lint use too.
aux_target=$repo/target/aux
CARGO_TARGET_DIR=$aux_target cargo build --release --manifest-path bench/Cargo.toml

dir=$(mktemp -d "${TMPDIR:-/tmp}/sibling-bench.XXXXXX")
cleanup() {
    local rc=$?
    scripts/containerd-private.sh stop "$dir" || true
    rmdir "$dir" 2>/dev/null || true
    # Both runtimes made the namespace's parent cgroups (/sibling-bench); remove them if empty.
    for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/unified/"$NS"; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SHIM_DIR=$repo/target/release scripts/containerd-private.sh start "$dir"
ctr() { command ctr -a "$dir/c.sock" -n "$NS" "$@"; }
ctr image import "$repo/build/busybox-image.tar" >/dev/null # unpacks for this platform
# The image has one layer: its one committed snapshot is the image's chain id.
parent=$(ctr snapshots ls | awk '$NF == "Committed" { print $1; exit }')
[ -n "$parent" ] || { echo "bench: the image was not unpacked" >&2; exit 1; }
ctr oci spec >"$dir/spec.json"
mkdir -p "$dir/fifo"

shim="$("$repo/target/release/containerd-shim-sibling-v2" -v | tr -s "\n\t " " " | sed "s/ *$//"), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$aux_target/release/sibling-bench" \
    --socket "$dir/c.sock" --namespace "$NS" --image "$IMAGE" --parent "$parent" \
    --spec "$dir/spec.json" --rootfs "$repo/build/rootfs" --work "$dir" \
    --out "${BENCH_OUT:-$repo/docs}" --shim "$shim" \
    --runs "${BENCH_RUNS:-50}" --containers "${BENCH_CONTAINERS:-200}" \
    --concurrency "${BENCH_CONCURRENCY:-1,8,32}" --memory "${BENCH_MEMORY:-50}" \
    --execs "${BENCH_EXECS:-100}"
