#!/usr/bin/env bash
# usage: scripts/perf-shim-memory.sh ARENA_MAX|none N (root): N long-running sibling containers against a
# private containerd (MALLOC_ARENA_MAX=ARENA_MAX in its environment unless none), then the PSS and
# RSS per container of their daemons and spawners. SHIM_DIR picks the shim build. A lever check.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
arena=$1; n=$2
dir=$(mktemp -d /tmp/perf-mem.XXXXXX)
cleanup() {
    $repo/scripts/containerd-private.sh stop $dir >/dev/null 2>&1 || true
    # The namespace's parent cgroups the containers were made in, if empty.
    for d in /sys/fs/cgroup/*/perfmem /sys/fs/cgroup/unified/perfmem; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT
if [ "$arena" != none ]; then export MALLOC_ARENA_MAX=$arena; fi
LOG_LEVEL=info $repo/scripts/containerd-private.sh start $dir >/dev/null
unset MALLOC_ARENA_MAX
c() { ctr -a $dir/c.sock -n perfmem "$@"; }
c image import $repo/build/busybox-image.tar >/dev/null
img=docker.io/library/sibling-busybox:latest
for i in $(seq $n); do c run -d --runtime io.containerd.sibling.v2 $img m$i /bin/sleep 1000 >/dev/null; done
sleep 2
pss=0; rss=0; procs=0; threads=0
for p in $(pgrep -f "containerd-shim-sibling-v2.*$dir/c.sock"); do
  read a b < <(awk '/^Pss:/{p=$2} /^Rss:/{r=$2} END{print p, r}' /proc/$p/smaps_rollup)
  pss=$((pss+a)); rss=$((rss+b)); procs=$((procs+1)); threads=$((threads+$(ls /proc/$p/task | wc -l)))
done
echo "arena=$arena n=$n procs=$procs threads=$threads pss/ctr=$((pss/n)) rss/ctr=$((rss/n))"
for i in $(seq $n); do c task kill -s KILL m$i >/dev/null 2>&1 || true; done
sleep 1
for i in $(seq $n); do c task delete m$i >/dev/null 2>&1 || true; c container delete m$i >/dev/null 2>&1 || true; done
