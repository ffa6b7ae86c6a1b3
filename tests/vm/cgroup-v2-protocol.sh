#!/usr/bin/env bash
# Payload of `make test-cgroup-v2`: runs inside the pure cgroup v2 VM (scripts/vm/cgroup-v2-vm.sh)
# and runs the shim's protocol tests that touch cgroups, one at a time.
#
# Usage (in the guest): tests/vm/cgroup-v2-protocol.sh PROTOCOL_TEST_BINARY [TEST_NAME...]
#   Without TEST_NAMEs it runs the default cgroup list below (exact names); `all` runs every
#   protocol test. Needs SIBLING_ROOTFS (the busybox rootfs of `make rootfs`).
set -uo pipefail

bin=${1:?usage: $0 PROTOCOL_TEST_BINARY [TEST_NAME...]}
shift
DEFAULT_TESTS=(
    lifecycle_output_exit_code_and_event_order
    pause_resume_update_and_stats_through_the_cgroup
    an_oom_kill_is_reported_before_the_exit_it_caused
    a_cgroup_namespace_is_rooted_at_the_containers_cgroup
    device_rules_of_the_spec_are_enforced_by_the_devices_cgroup
)
if [ "$#" -eq 0 ]; then set -- "${DEFAULT_TESTS[@]}"; fi
filter=(--exact "$@")
if [ "$*" = all ]; then filter=(); fi

echo "== guest: $(uname -r), cgroup filesystems:"
grep -E ' - cgroup2? ' /proc/self/mountinfo
echo "== /sys/fs/cgroup: controllers [$(cat /sys/fs/cgroup/cgroup.controllers)]," \
    "subtree_control [$(cat /sys/fs/cgroup/cgroup.subtree_control)]; this shell in $(cat /proc/self/cgroup)"
if grep -qE ' - cgroup ' /proc/self/mountinfo; then
    echo "== a cgroup v1 hierarchy is mounted: this is not a pure v2 host" >&2
    exit 2
fi

[ -x "$bin" ] || { echo "no test binary at $bin" >&2; exit 2; }
export CI=${CI:-true}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# The test harness reads the lower layer from SIBLING_ROOTFS: the read-only 9p share works as an
# overlay lower layer, upper and work dirs go to the tmpfs /tmp.
# A watcher records what the shim writes into the containers' cgroups (the tests assert on
# some of it, and a failing assertion shows only one value): each change of a few files.
watch_log=$(mktemp /tmp/cgroup-watch.XXXXXX)
watch_cgroups() {
    declare -A last=()
    local d f v key nap
    # A pipe nobody writes to: `read -t` on it sleeps without forking.
    exec {nap}<> <(:)
    while :; do
        for d in /sys/fs/cgroup/sibling-proto-*/ /sys/fs/cgroup/sibling-proto-*/*/; do
            [ -d "$d" ] || continue
            for f in cgroup.subtree_control cgroup.procs cgroup.freeze cgroup.events memory.max \
                memory.swap.max memory.events pids.max cpu.max cpu.weight cpuset.cpus io.weight; do
                [ -r "$d$f" ] || continue
                # Builtins only: a fork per read is slow under TCG, and values change fast.
                v=
                read -r -d '' v <"$d$f" 2>/dev/null
                v=${v//$'\n'/ }
                key=$d$f
                if [ "${last[$key]-unset}" != "$v" ]; then
                    last[$key]=$v
                    echo "$(cut -d' ' -f1 /proc/uptime) ${key#/sys/fs/cgroup/}: $v"
                fi
            done
        done
        read -r -t 0.05 -u "$nap" || true
    done
}
watch_cgroups >"$watch_log" 2>/dev/null &
watcher=$!

echo "== $bin --test-threads=1 ${filter[*]}"
# --show-output: a test that skips a part on this host says so on stdout.
"$bin" --test-threads=1 --show-output --include-ignored "${filter[@]}"
rc=$?
kill "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
if [ "$rc" -ne 0 ] || [ -n "${VM_WATCH_LOG:-}" ]; then
    echo "== cgroup files as the shim left them, each change (guest uptime, path: value):"
    cat "$watch_log"
fi

# What the tests left behind, if anything: the harness puts containers under /sibling-proto-<pid>.
left=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'sibling*' 2>/dev/null)
if [ -n "$left" ]; then
    echo "== cgroups left behind:"
    for d in $left; do
        find "$d" -type d | while read -r c; do
            echo "$c: procs [$(tr '\n' ' ' <"$c/cgroup.procs")] subtree_control [$(cat "$c/cgroup.subtree_control")]"
        done
    done
fi
left_mounts=$(grep -E ' /tmp/sibling' /proc/self/mountinfo)
if [ -n "$left_mounts" ]; then
    echo "== mounts left behind:"
    echo "$left_mounts"
fi
exit "$rc"
