#!/usr/bin/env bash
# A short demonstration: a private containerd runs a few containers through our shim.
#
# Installs containerd and busybox-static with apt-get if they are missing, builds the shim
# (release), builds the busybox image, starts a private containerd (scripts/containerd-private.sh),
# and runs containers with `ctr run --rm --runtime $DEMO_RUNTIME`. Everything it started is
# stopped and removed on exit, whether the demo succeeded or not.
set -euo pipefail

RUNTIME=${DEMO_RUNTIME:-io.containerd.sibling.v2}
IMAGE=docker.io/library/sibling-busybox:latest
NS=sibling-demo

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

scripts/install-missing.sh containerd busybox-static
[ "$(id -u)" -eq 0 ] || { echo "demo: containers need root" >&2; exit 1; }

scripts/rust-target.sh
cargo build --release
make --no-print-directory image

dir=$(mktemp -d "${TMPDIR:-/tmp}/sibling-demo.XXXXXX")
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "$dir/containerd.log" ]; then
        echo "demo: failed; containerd's last warnings and errors ($dir/containerd.log):" >&2
        grep -aE 'level=(warning|error|fatal)' "$dir/containerd.log" | tail -n 20 >&2 || true
    fi
    scripts/containerd-private.sh stop "$dir" || true
    rmdir "$dir" 2>/dev/null || true # still there only if containerd never got configured
    # The runtime created the namespace's parent cgroups for us; remove them if empty.
    for d in /sys/fs/cgroup/*/"$NS"; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SHIM_DIR=$repo/target/x86_64-unknown-linux-musl/release scripts/containerd-private.sh start "$dir"
ctr() { command ctr -a "$dir/c.sock" -n "$NS" "$@"; }
ctr image import --all-platforms "$repo/build/busybox-image.tar"

# The arguments as a shell would take them back: plain words bare, anything else in '...'.
shell_words() {
    local a out=""
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./=:-]+$ ]]; then
            out+=" $a"
        else
            out+=" '${a//\'/\'\\\'\'}'"
        fi
    done
    printf '%s' "$out"
}

# Keep ctr's FIFOs (and runc's state, when comparing with runc) inside the private directory
# rather than in /run/containerd, which other containerds share.
keep_inside=(--fifo-dir "$dir/fifo")
if [ "$RUNTIME" = io.containerd.runc.v2 ]; then keep_inside+=(--runc-root "$dir/runc"); fi

n=0
# run CMD...: one container, printing the command, its output and ctr's exit code.
run() {
    n=$((n + 1))
    echo "\$ ctr run --rm --runtime $RUNTIME $IMAGE demo-$n$(shell_words "$@")"
    local rc=0
    ctr run --rm --runtime "$RUNTIME" "${keep_inside[@]}" "$IMAGE" "demo-$n" "$@" || rc=$?
    echo "  -> exit code $rc"
    return "$rc"
}

run echo hello
run hostname
run sh -c 'echo pid $$'
rc=0
run sh -c 'exit 7' || rc=$?
[ "$rc" -eq 7 ] || { echo "demo: expected exit code 7, got $rc" >&2; exit 1; }
echo "demo: done"
