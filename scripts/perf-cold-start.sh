#!/usr/bin/env bash
# usage: scripts/perf-cold-start.sh N (root): N `ctr run --rm` of sibling against a private containerd at
# debug level, then the medians of the cold start breakdown the daemon logs (src/shim/cold_start.rs).
# SHIM_DIR picks the shim build (containerd-private.sh's default: this repo's build). make bench runs
# it with FORMAT=markdown for section 6 of BENCHMARKS.md (a table instead of lines).
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
n=$1
dir=$(mktemp -d /tmp/perf-cold.XXXXXX)
trap '$repo/scripts/containerd-private.sh stop $dir >/dev/null 2>&1 || true; rm -f $dir.lines' EXIT
LOG_LEVEL=debug $repo/scripts/containerd-private.sh start $dir >/dev/null
c() { ctr -a $dir/c.sock -n perfcold "$@"; }
c image import $repo/build/busybox-image.tar >/dev/null
img=docker.io/library/sibling-busybox:latest
for i in $(seq $n); do c run --rm --runtime io.containerd.sibling.v2 $img cold$i /bin/true >/dev/null; done
grep -o 'cold start: [^"]*' $dir/containerd.log | tail -n +3 > $dir.lines || true
[ "${FORMAT:-}" = markdown ] || wc -l < $dir.lines
LINES=$dir.lines FORMAT=${FORMAT:-} python3 - <<'PY'
import os,re,statistics
rows=[list(map(float,re.findall(r'([0-9.]+) ms',l))) for l in open(os.environ['LINES'])]
names=['start action (main to spawn)','daemon spawn+exec to main','spawner fork','ttrpc server and rest','start main to serving']
markdown=os.environ['FORMAT']=='markdown'
if not rows:
    print('No cold start lines were logged.' if markdown else 'no cold start lines')
    raise SystemExit(0)
if markdown:
    print('| step | median ms | p90 ms |')
    print('|---|---:|---:|')
for k,name in enumerate(names):
    v=sorted(r[k] for r in rows)
    med,p90=statistics.median(v),v[int(len(v)*0.9)]
    if markdown:
        print(f"| {name} | {med:.2f} | {p90:.2f} |")
    else:
        print(f"{name}: median {med:.3f} ms  p90 {p90:.3f} ms  (n={len(v)})")
if markdown:
    print(f"\n{len(rows)} containers (the first two of the run left out).")
PY
