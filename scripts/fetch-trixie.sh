#!/usr/bin/env bash
# Fetches a tool from Debian trixie that works on these machines, without installing it: the
# package, trixie's libc6 and the libraries it links, extracted into build/<tool>/. The binary's
# interpreter and rpath are rewritten with patchelf to point at that libc (a plain RUNPATH does not
# reach transitive libraries), so it runs on bookworm as extracted.
#   criu: trixie's 4.1.1 (bookworm's 3.17.1 fails `criu check` on these kernels: vDSO);
#         scripts/fetch-criu.sh runs this, for the checkpoint tests.
#   crun: trixie's 1.21, for runc.v2 with crun as its binary in the VM benchmark
#         (scripts/vm/bench-vm.sh; crun refuses this host's hybrid cgroups).
#
# Usage: scripts/fetch-trixie.sh criu|crun   prints the path of the binary
#
# apt runs as in scripts/fetch-containerd.sh: a private sources list, private lists/state/cache
# under build/apt-<tool>/, Dir::Etc::sourceparts pointing at an empty directory; nothing of the
# machine's apt configuration or dpkg database is read or changed; `dpkg-deb -x` unpacks.
# Quick when already there: a directory whose stamp names the pinned version and the directory it
# was patched for, and whose binary reports the version, is kept.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

suite=trixie
tool=${1:-}
die() { echo "fetch-trixie: $*" >&2; exit 1; }
# The package's Depends and theirs (checked below: the loader must resolve every library), and
# what its --version prints.
case "$tool" in
    criu)
        version=4.1.1-1
        reports="Version: 4.1.1"
        libs=(libc6 libcompel1 libbsd0 libmd0 libgnutls30t64 libnet1 libnftables1 libnl-3-200
            libprotobuf-c1 libuuid1 libjansson4 libmnl0 libnftnl11 libxtables12 libgmp10 libp11-kit0
            libidn2-0 libunistring5 libtasn1-6 libnettle8t64 libhogweed6t64 libffi8 libedit2)
        binary_path=usr/sbin/criu
        ;;
    crun)
        version=1.21-1
        reports="crun version 1.21"
        libs=(libc6 libcap2 libseccomp2 libsystemd0 libyajl2)
        binary_path=usr/bin/crun
        ;;
    *) die "usage: $0 criu|crun" ;;
esac

dest=$build/$tool
binary=$dest/$binary_path
stamp="$version $dest"

present() {
    [ "$(cat "$dest/.deb-version" 2>/dev/null)" = "$stamp" ] || return 1
    [ -x "$binary" ] || return 1
    "$binary" --version 2>/dev/null | grep -qF "$reports" || return 1
}

if ! present; then
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (Debian)"
    command -v patchelf >/dev/null || die "needs patchelf (apt-get install patchelf)"
    [ -r "$keyring" ] || die "$keyring missing (apt-get install debian-archive-keyring)"
    apt_dir=$build/apt-$tool
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
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
        -o "APT::Sandbox::User=root"
        -q
    )
    mkdir -p "$apt_dir"/{sources.list.d,preferences.d,state,lists/partial,cache/archives/partial}
    : >"$apt_dir/state/status"
    echo "deb [signed-by=$keyring] $mirror $suite main" >"$apt_dir/sources.list"
    apt-get "${apt_opts[@]}" update </dev/null >&2 || die "apt-get update (private lists) failed"
    tmp=$(mktemp -d "$build/.$tool.XXXXXX")
    trap 'rm -rf -- "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get "${apt_opts[@]}" download "$tool=$version" "${libs[@]}" </dev/null >&2); then
        apt-cache "${apt_opts[@]}" madison "$tool" >&2 || true
        die "$tool $version (or a library) is not in $suite any more; update the pin in $0"
    fi
    mkdir "$tmp/root"
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
    rm -rf -- "$dest"
    mv "$tmp/root" "$dest"
    libdir=$dest/usr/lib/x86_64-linux-gnu
    patchelf --set-interpreter "$libdir/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libdir" "$binary"
    missing=$("$libdir/ld-linux-x86-64.so.2" --list "$binary" | grep 'not found' || true)
    [ -z "$missing" ] || die "libraries missing beside $tool (add their packages to libs): $missing"
    echo "$stamp" >"$dest/.deb-version"
    present || die "$binary does not report $reports: $("$binary" --version 2>&1 || true)"
    echo "fetch-trixie: $("$binary" --version | head -n1)" >&2
fi
echo "$binary"
