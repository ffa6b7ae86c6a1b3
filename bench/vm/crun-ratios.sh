#!/usr/bin/env bash
# Payload of `make bench-vm`: runs inside the pure cgroup v2 VM (scripts/vm/cgroup-v2-vm.sh), where
# crun can run (it refuses the build machines' hybrid cgroups). Times `ctr run --rm ... /bin/true`
# with three runtimes against one private containerd, alternating run by run: runc.v2 with runc,
# runc.v2 with crun as its binary (ctr's --runc-binary: the BinaryName option), and sibling in
# its default mode. Prints a markdown report on stdout. The VM runs under TCG (software
# emulation), so absolute times mean nothing: the ratios are the figure.
#
# Usage (in the guest, from the repository): bench/vm/crun-ratios.sh CRUN_BINARY
#   BENCH_VM_RUNS (default 20) runs per runtime after 2 warm-ups each.
set -euo pipefail

crun=${1:?usage: $0 CRUN_BINARY}
runs=${BENCH_VM_RUNS:-20}
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
image=docker.io/library/sibling-busybox:latest
ns=bench-vm

grep -qE ' - cgroup ' /proc/self/mountinfo && { echo "a cgroup v1 hierarchy is mounted" >&2; exit 2; }
[ -x "$crun" ] || { echo "no crun at $crun" >&2; exit 2; }

dir=$(mktemp -d /tmp/bench-vm.XXXXXX)
trap '"$repo/scripts/containerd-private.sh" stop "$dir" >/dev/null 2>&1 || true' EXIT
LOG_LEVEL=info "$repo/scripts/containerd-private.sh" start "$dir" >&2
c() { ctr -a "$dir/c.sock" -n "$ns" "$@"; }
c image import "$repo/build/busybox-image.tar" >/dev/null

names=(runc crun sibling)
run_one() { # runtime index, container name; prints milliseconds
    local args
    case "$1" in
        runc) args=(--runtime io.containerd.runc.v2) ;;
        crun) args=(--runtime io.containerd.runc.v2 --runc-binary "$crun") ;;
        sibling) args=(--runtime io.containerd.sibling.v2) ;;
    esac
    local start end out
    start=$(date +%s%N)
    out=$(c run --rm "${args[@]}" "$image" "$2" /bin/sh -c 'exit 3' 2>&1) && rc=0 || rc=$?
    end=$(date +%s%N)
    # The container's exit code comes back as ctr's: anything else is a failed run.
    [ "$rc" -eq 3 ] || { echo "$1 run $2: exit $rc: $out" >&2; exit 1; }
    echo $(((end - start) / 1000))
}

declare -A times
for w in 1 2; do for r in "${names[@]}"; do run_one "$r" "warm-$r-$w" >/dev/null; done; done
for i in $(seq "$runs"); do
    # Rotate the order so that no runtime always follows the same one.
    for k in 0 1 2; do
        r=${names[$(((i + k) % 3))]}
        times[$r]+="$(run_one "$r" "run-$r-$i") "
    done
done

echo "# sibling, runc.v2 with runc and runc.v2 with crun, in the cgroup v2 VM"
echo
echo "Written by \`make bench-vm\` on $(date -u '+%Y-%m-%d %H:%M UTC') in the cgroup v2 VM (kernel $(uname -r), $(nproc) CPUs under TCG, software emulation): \`ctr run --rm ... /bin/sh -c 'exit 3'\`, $runs runs per runtime after 2 warm-ups, the three alternating run by run against one containerd ($(containerd --version | awk '{print $3}')). Under emulation every instruction is slow and absolute times mean nothing; **only the ratios are the claim**."
echo
echo "| runtime | median ms | p90 ms | sibling is |"
echo "|---|---:|---:|---:|"
sib_median=$(printf '%s\n' ${times[sibling]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for r in "${names[@]}"; do
    sorted=$(printf '%s\n' ${times[$r]} | sort -n)
    median=$(echo "$sorted" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    p90=$(echo "$sorted" | awk '{a[NR]=$1} END {i=int(NR*0.9); if (i<1) i=1; print a[i]}')
    case $r in
        runc) label="runc.v2 with runc $(runc --version | awk 'NR==1{print $3}')" ;;
        crun) label="runc.v2 with crun $("$crun" --version | awk 'NR==1{print $3}') (BinaryName)" ;;
        sibling) label="sibling (a daemon per container)" ;;
    esac
    ratio=$(awk -v a="$median" -v b="$sib_median" 'BEGIN {printf "%.1fx faster", a / b}')
    [ "$r" = sibling ] && ratio=""
    awk -v l="$label" -v m="$median" -v p="$p90" -v q="$ratio" 'BEGIN {printf "| %s | %.1f | %.1f | %s |\n", l, m / 1000, p / 1000, q}'
done
