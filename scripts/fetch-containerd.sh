#!/usr/bin/env bash
# Fetches the newer containerds the e2e and CRI tests also run against, without installing them:
# Debian trixie's containerd 1.7 and sid's containerd 2.1 (each with its own ctr and
# containerd-shim-runc-v2), extracted into build/containerd-<minor>/ (binaries in usr/bin/).
#
# Usage: scripts/fetch-containerd.sh [MINOR...]     (default: every pinned one: 1.7 2.1)
#        prints, for each, the bin dir to use as SIBLING_CONTAINERD_BIN_DIR.
#
# apt runs with a private sources list, private lists/state/cache directories under
# build/apt/ and Dir::Etc::sourceparts pointing at an empty directory: the machine's apt
# sources, lists and dpkg database are neither read nor changed. `apt-get download` checks the
# package against the suite's signed Release file (debian-archive-keyring); `dpkg-deb -x`
# unpacks it; nothing is installed. Quick when already there: a directory whose stamp names the
# pinned version and whose containerd and ctr report it is kept as it is.
#
# The versions are pinned exactly. When Debian moves on (sid does), the pinned version leaves
# the archive: this script then fails and lists what the suite has, and the pin (and the README's
# "containerd versions") is updated on purpose, not silently.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# minor -> "suite package-version upstream-version" (upstream: what `containerd --version` says)
declare -A PINS=(
    [1.7]="trixie 1.7.24~ds1-6+deb13u1 1.7.24"
    [2.1]="sid 2.1.9+ds1-5 2.1.9"
)

die() { echo "fetch-containerd: $*" >&2; exit 1; }

# True if build/containerd-$1 holds the pinned version, checked by running it.
present() {
    local minor=$1 suite version upstream bin
    read -r suite version upstream <<<"${PINS[$minor]}"
    bin=$build/containerd-$minor/usr/bin
    [ "$(cat "$build/containerd-$minor/.deb-version" 2>/dev/null)" = "$version" ] || return 1
    [ -x "$bin/containerd-shim-runc-v2" ] || return 1
    "$bin/containerd" --version 2>/dev/null | grep -qF " $upstream" || return 1
    "$bin/ctr" --version 2>/dev/null | grep -qF " $upstream" || return 1
}

apt_dir=$build/apt
apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
    -o "Dir::Etc::preferences=$apt_dir/preferences"
    -o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
    -o "Dir::State=$apt_dir/state"
    -o "Dir::State::lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/state/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Architecture=amd64"
    -o "APT::Architectures=amd64"
    # Only the Packages indexes: no Contents, no AppStream metadata.
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
    # The .deb lands in a root-owned build directory the _apt user cannot write.
    -o "APT::Sandbox::User=root"
    -q
)

private_apt_update() {
    local suites=("$@") suite
    [ -r "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
    mkdir -p "$apt_dir"/{sources.list.d,preferences.d,state,lists/partial,cache/archives/partial}
    : >"$apt_dir/state/status"
    : >"$apt_dir/sources.list"
    for suite in "${suites[@]}"; do
        echo "deb [signed-by=$keyring] $mirror $suite main" >>"$apt_dir/sources.list"
    done
    apt-get "${apt_opts[@]}" update </dev/null >&2 || die "apt-get update (private lists) failed"
}

fetch() {
    local minor=$1 suite version upstream dest tmp deb
    read -r suite version upstream <<<"${PINS[$minor]}"
    dest=$build/containerd-$minor
    tmp=$(mktemp -d "$build/.containerd-$minor.XXXXXX")
    tmps+=("$tmp")
    if ! (cd "$tmp" && apt-get "${apt_opts[@]}" download "containerd=$version" </dev/null >&2); then
        apt-cache "${apt_opts[@]}" madison containerd >&2 || true
        die "containerd $version is not in $suite any more (above: what the private lists have); update PINS in $0"
    fi
    deb=$(echo "$tmp"/containerd_*.deb)
    [ -f "$deb" ] || die "apt-get download left no .deb in $tmp"
    [ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || die "$deb is not version $version"
    mkdir "$tmp/root"
    dpkg-deb -x "$deb" "$tmp/root"
    echo "$version" >"$tmp/root/.deb-version"
    rm -rf -- "$dest"
    mv "$tmp/root" "$dest"
    present "$minor" || die "$dest/usr/bin/containerd or ctr does not report $upstream: $("$dest/usr/bin/containerd" --version 2>&1 || true)"
}

# Work directories of fetch(), removed however the script ends.
tmps=()
cleanup() { if [ ${#tmps[@]} -gt 0 ]; then rm -rf -- "${tmps[@]}"; fi; }
trap cleanup EXIT

minors=("$@")
[ ${#minors[@]} -gt 0 ] || minors=(1.7 2.1)
for minor in "${minors[@]}"; do
    [ -n "${PINS[$minor]:-}" ] || die "no pinned containerd $minor (pinned: ${!PINS[*]})"
done

need=()
for minor in "${minors[@]}"; do
    present "$minor" || need+=("$minor")
done
if [ ${#need[@]} -gt 0 ]; then
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian)"
    mkdir -p "$build"
    suites=()
    for minor in "${need[@]}"; do
        read -r suite _ <<<"${PINS[$minor]}"
        suites+=("$suite")
    done
    mapfile -t suites < <(printf '%s\n' "${suites[@]}" | sort -u)
    private_apt_update "${suites[@]}"
    for minor in "${need[@]}"; do
        fetch "$minor"
        echo "fetch-containerd: $("$build/containerd-$minor/usr/bin/containerd" --version)" >&2
    done
fi
for minor in "${minors[@]}"; do
    echo "$build/containerd-$minor/usr/bin"
done
