#!/usr/bin/env bash
# Payload of `make test-node-vm`: runs inside the node VM (scripts/vm/node-vm.sh: systemd as
# PID 1, D-Bus, pure cgroup v2, AppArmor on) and runs, in one boot, the tests that need such a
# node. Each test binary is named by its cargo name (the part before the hash):
#   security        the AppArmor tests of tests/security.rs
#   systemd_cgroup  tests/systemd_cgroup.rs (the systemd cgroup driver), every test in it
#   apparmor, pod, systemd  the CRI tests of tests/cri/tests/ (containerd's CRI with AppArmor
#                   on; a pod; both runtime classes with SystemdCgroup = true)
# A binary that was not built (systemd_cgroup before tests/systemd_cgroup.rs exists) is
# reported as skipped, by name.
#
# Usage (in the guest): tests/vm/node-vm-tests.sh TEST_BINARY...
#   Needs SIBLING_ROOTFS (and build/busybox-image.tar, build/pause-image.tar for the CRI tests).
#   NODE_VM_CONTAINERD_VERSIONS (e.g. "1.7 2.1"): the CRI AppArmor test also runs against the
#   containerds scripts/fetch-containerd.sh extracted into build/containerd-<version>/ (about
#   two minutes each under TCG); by default only against the host's containerd 1.6.
set -uo pipefail

declare -A bins=()
for bin; do
    name=$(basename -- "$bin")
    bins[${name%-*}]=$bin
done

export CI=${CI:-true}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# The AppArmor tests skip where AppArmor is off; here that is a failure.
export SIBLING_EXPECT_APPARMOR=1

# What makes this VM a node; a test run on anything less proves nothing.
echo "== guest: $(uname -r), PID 1: $(cat /proc/1/comm), systemd: $(systemctl is-system-running 2>&1)"
failed=()
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "== node: $what"
    else
        echo "== node: NOT $what: $*: ${out:0:500}" >&2
        failed+=("node:$what")
    fi
}
check "PID 1 is systemd" test "$(cat /proc/1/comm)" = systemd
check "the system D-Bus answers" busctl --system --timeout=60 status org.freedesktop.systemd1
check "AppArmor is enabled" grep -qx Y /sys/module/apparmor/parameters/enabled
check "apparmor_parser is there" apparmor_parser --version
check "cgroup2 at /sys/fs/cgroup" test "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs
check "no cgroup v1 hierarchy" bash -c '! grep -qE " - cgroup " /proc/self/mountinfo'
echo "== cgroup2 controllers [$(cat /sys/fs/cgroup/cgroup.controllers)], root subtree_control" \
    "[$(cat /sys/fs/cgroup/cgroup.subtree_control)]; this shell in $(cat /proc/self/cgroup)"

# run NAME TITLE ARGS...: runs binary NAME with ARGS, or says it was not built.
run() {
    local name=$1 title=$2
    shift 2
    local bin=${bins[$name]:-}
    if [ -z "$bin" ]; then
        echo "== SKIPPED $title: no test binary '$name' was built"
        return
    fi
    [ -x "$bin" ] || { echo "== $title: $bin is not executable" >&2; failed+=("$name"); return; }
    local start=$SECONDS
    echo "== $title: $bin $*"
    # --show-output: a test that skips a part says so on stdout.
    if "$bin" --include-ignored --show-output "$@"; then
        echo "== $title: passed in $((SECONDS - start))s"
    else
        echo "== $title: FAILED after $((SECONDS - start))s" >&2
        failed+=("$name${SIBLING_CONTAINERD_BIN_DIR:+@$SIBLING_CONTAINERD_BIN_DIR}")
    fi
}

run security "AppArmor protocol tests" --test-threads=1 --exact \
    an_apparmor_profile_confines_the_init_and_an_exec
run systemd_cgroup "systemd cgroup driver tests" --test-threads=1
run apparmor "CRI with AppArmor (sibling and runc)" --test-threads=1
repo=$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
for version in ${NODE_VM_CONTAINERD_VERSIONS:-}; do
    dir=$repo/build/containerd-$version/usr/bin
    if [ ! -x "$dir/containerd" ]; then
        echo "== CRI with AppArmor on containerd $version: no $dir/containerd (scripts/fetch-containerd.sh)" >&2
        failed+=("apparmor@$version")
        continue
    fi
    SIBLING_CONTAINERD_BIN_DIR=$dir run apparmor "CRI with AppArmor (sibling and runc), containerd $version" \
        --test-threads=1
    SIBLING_CONTAINERD_BIN_DIR=$dir SIBLING_EXPECT_SYSTEMD=1 run systemd \
        "CRI with the systemd cgroup driver (sibling and runc), containerd $version" --test-threads=1
done
run pod "CRI pod" --test-threads=1
SIBLING_EXPECT_SYSTEMD=1 run systemd "CRI with the systemd cgroup driver (sibling and runc)" \
    --test-threads=1

# What the tests left behind, if anything.
# (runc, like sibling, leaves the parent k8s.io of CRI's cgroupfs paths; nothing may be in it.)
left=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name 'sibling*' 2>/dev/null
    find /sys/fs/cgroup/k8s.io -mindepth 1 -type d 2>/dev/null)
if [ -n "$left" ]; then
    echo "== cgroups left behind:" >&2
    echo "$left" >&2
    failed+=(cgroups)
fi
left_mounts=$(grep -E ' /tmp/sibling' /proc/self/mountinfo)
if [ -n "$left_mounts" ]; then
    echo "== mounts left behind:" >&2
    echo "$left_mounts" >&2
    failed+=(mounts)
fi
left_units=$(systemctl list-units --all --type=scope --no-legend --plain 2>/dev/null |
    grep -iE 'sibling|containerd|kubepods' || true)
if [ -n "$left_units" ]; then
    echo "== systemd units left behind:" >&2
    echo "$left_units" >&2
    failed+=(units)
fi
if [ ${#failed[@]} -ne 0 ]; then
    echo "== node VM tests failed: ${failed[*]}" >&2
    exit 1
fi
echo "== node VM tests passed"
