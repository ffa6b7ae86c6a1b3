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

scripts/rust-target.sh
cargo build --release
make --no-print-directory image
# bench/ is its own workspace; its build directory is the one make test and lint use too.
aux_target=$repo/target/aux
# .cargo/config.toml names the build target (the binaries are static-pie): both workspaces
# build into <target dir>/x86_64-unknown-linux-musl/release.
release=x86_64-unknown-linux-musl/release
# --workspace: the client and the null shim (bench/null-shim, io.containerd.null.v2).
CARGO_TARGET_DIR=$aux_target cargo build --release --workspace --manifest-path bench/Cargo.toml

dir=$(mktemp -d "${TMPDIR:-/tmp}/sibling-bench.XXXXXX")
# A second containerd for scenario 1 with sibling's sharing option on (its runtime options name
# $shared/sibling.toml), so that its idle daemons never mix with the default mode's figures.
shared=$(mktemp -d "${TMPDIR:-/tmp}/sibling-bench-shared.XXXXXX")
cleanup() {
    local rc=$?
    scripts/containerd-private.sh stop "$dir" || true
    scripts/containerd-private.sh stop "$shared" || true
    rmdir "$dir" "$shared" 2>/dev/null || true
    # Both runtimes made the namespace's parent cgroups (/sibling-bench); remove them if empty.
    for d in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/unified/"$NS"; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# containerd's default log level (the tests' containerds log at debug to explain failures; at
# debug both shims and containerd write a log line or more per request).
# The main containerd also finds the null shim (containerd-shim-null-v2, in $aux_target/$release):
# scenario 1 runs it as a third runtime to measure containerd's own cost.
SHIM_DIR=$repo/target/$release:$aux_target/$release LOG_LEVEL=info scripts/containerd-private.sh start "$dir"
SHIM_DIR=$repo/target/$release LOG_LEVEL=info scripts/containerd-private.sh start "$shared"
# Imports the image into the containerd at $1 and prints its one committed snapshot: the image
# has one layer, so that is the image's chain id.
import_image() {
    command ctr -a "$1/c.sock" -n "$NS" image import "$repo/build/busybox-image.tar" >/dev/null
    command ctr -a "$1/c.sock" -n "$NS" snapshots ls | awk '$NF == "Committed" { print $1; exit }'
}
ctr() { command ctr -a "$dir/c.sock" -n "$NS" "$@"; }
parent=$(import_image "$dir")
shared_parent=$(import_image "$shared")
[ -n "$parent" ] && [ -n "$shared_parent" ] || { echo "bench: the image was not unpacked" >&2; exit 1; }
ctr oci spec >"$dir/spec.json"
printf 'containers_per_shim = 16\nidle_seconds = 10\n' >"$shared/sibling.toml"
mkdir -p "$dir/fifo"

shim="$("$repo/target/$release/containerd-shim-sibling-v2" -v | tr -s "\n\t " " " | sed "s/ *$//"), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$aux_target/$release/sibling-bench" \
    --socket "$dir/c.sock" --namespace "$NS" --image "$IMAGE" --parent "$parent" \
    --spec "$dir/spec.json" --rootfs "$repo/build/rootfs" --work "$dir" \
    --out "${BENCH_OUT:-$repo/docs}" --shim "$shim" \
    --runs "${BENCH_RUNS:-50}" --containers "${BENCH_CONTAINERS:-200}" \
    --concurrency "${BENCH_CONCURRENCY:-1,8,32}" --memory "${BENCH_MEMORY:-50}" \
    --execs "${BENCH_EXECS:-100}" \
    --shared-socket "$shared/c.sock" --shared-parent "$shared_parent" \
    --shared-config "$shared/sibling.toml"

# Section 6: sibling's cold daemon start, measured inside the daemon. It logs the breakdown only
# when containerd runs it with -debug, so this runs against a containerd of its own at debug
# level (its logging would weigh on the figures above), after them.
report="${BENCH_OUT:-$repo/docs}/BENCHMARKS.md"
{
    printf '\n## 6. sibling'"'"'s cold daemon start\n\n'
    printf 'Measured inside (src/shim/cold_start.rs): `start` hands the daemon two timestamps and the daemon logs, once it serves, how long each step took; containerd passes `-debug` only at debug level, so these %s `ctr run --rm ... /bin/true` ran against a private containerd at debug level of their own, after the scenarios above (scripts/perf-cold-start.sh). The exec of `start` up to its `main` comes before the first clock read and is not in it. Milliseconds.\n\n' "${BENCH_COLD:-23}"
    SHIM_DIR=$repo/target/$release FORMAT=markdown scripts/perf-cold-start.sh "${BENCH_COLD:-23}"
} >>"$report"
