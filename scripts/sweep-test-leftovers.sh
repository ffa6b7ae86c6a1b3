#!/usr/bin/env bash
# Clean up after test processes that died without running their own cleanup (killed by a
# timeout, aborted, Ctrl-C): private containerd directories named <tmp>/sibling-e2e-<pid>-<n>
# or <tmp>/sibling-bundle-<pid>-<n> (or the CRI test's <tmp>/sibling-cri-<pid>-<n>, and its
# network namespace /run/netns/sibling-cri-<pid>) whose test process <pid> is gone.
#
# Each such directory is stopped with scripts/containerd-private.sh stop, which kills only the
# containerd recorded for it and shims naming its socket, unmounts what is under it and removes it.
# Directories of live test processes are left alone. Finally the per-namespace parent cgroups
# that runtimes create for `ctr -n sibling-test` (/sys/fs/cgroup/*/sibling-test) are removed if
# empty (rmdir refuses otherwise); run this only when no test is running.
#
# Prints what it cleaned and exits non-zero if it found leftovers, so CI shows them.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
tmp=${TMPDIR:-/tmp}
found=0

# containerd started by the Rust harness records no pid file: find it by its --config path.
containerd_of() {
    local dir=$1 p
    for p in /proc/[0-9]*; do
        if { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -qxF -- "$dir/config.toml"; then
            echo "${p#/proc/}"
        fi
    done
}

for dir in "$tmp"/sibling-e2e-* "$tmp"/sibling-bundle-* "$tmp"/sibling-cri-*; do
    [ -d "$dir" ] || continue
    name=${dir##*/}
    owner=${name#sibling-e2e-}
    owner=${owner#sibling-bundle-}
    owner=${owner#sibling-cri-}
    owner=${owner%%-*}
    case "$owner" in '' | *[!0-9]*) continue ;; esac
    if [ -d "/proc/$owner" ]; then
        continue # its test process is still running and will clean up itself
    fi
    found=1
    echo "sweep: $dir was left by test process $owner" >&2
    if [ ! -f "$dir/containerd.pid" ]; then
        pid=$(containerd_of "$dir" | head -n1)
        if [ -n "$pid" ]; then echo "$pid" >"$dir/containerd.pid"; fi
    fi
    if [ -f "$dir/config.toml" ]; then
        "$repo/scripts/containerd-private.sh" stop "$dir" || true
    else
        # A bundle directory: unmount what a shim may have left, then remove it.
        awk -v d="$dir" 'index($5, d "/") == 1 || $5 == d { print $5 }' /proc/self/mountinfo |
            sort -r | while IFS= read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system -- "$dir"
    fi
done

# The CRI network test's own network namespace, sibling-cri-<pid> (its containerd ran in it; the
# directory above is stopped first, so nothing runs there any more).
for ns in /run/netns/sibling-cri-*; do
    [ -e "$ns" ] || continue
    owner=${ns##*/sibling-cri-}
    case "$owner" in '' | *[!0-9]*) continue ;; esac
    if [ -d "/proc/$owner" ]; then continue; fi
    found=1
    echo "sweep: network namespace ${ns##*/} was left by test process $owner" >&2
    ip netns del "${ns##*/}" || true
done

# Parent cgroups of the test namespace, from the cgroup mounts listed in mountinfo.
while IFS= read -r hierarchy; do
    if [ -d "$hierarchy/sibling-test" ]; then
        rmdir "$hierarchy/sibling-test" 2>/dev/null ||
            { echo "sweep: $hierarchy/sibling-test is not empty" >&2; found=1; }
    fi
done < <(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) print $5; break } }' /proc/self/mountinfo)

exit "$found"
