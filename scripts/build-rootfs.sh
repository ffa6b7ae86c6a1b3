#!/usr/bin/env bash
# Build a minimal busybox root filesystem for tests, demos and the test image.
#
# Usage: scripts/build-rootfs.sh DIR
#
# DIR is replaced wholesale. The busybox binary comes from Debian's busybox-static
# (a static binary needs no libc inside the rootfs). Every applet is a symlink in
# bin/, so /bin/sh, /bin/sleep, /bin/hostname ... all resolve inside the container.
set -euo pipefail

BUSYBOX=${BUSYBOX:-/bin/busybox}

die() { echo "build-rootfs: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DIR"
dir=$1
case "$dir" in
    "" | / | /bin | /usr | /etc | /tmp) die "refusing to build into '$dir'" ;;
esac

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: apt-get install busybox-static"
# A dynamically linked busybox (Debian's plain 'busybox' package) would need the
# host's libc inside the rootfs: insist on the static one.
if ! "$BUSYBOX" --list >/dev/null 2>&1; then
    die "$BUSYBOX does not run"
fi
# The ELF interpreter path (PT_INTERP) sits in the first page of the file.
if head -c 4096 "$BUSYBOX" | LC_ALL=C grep -a 'ld-linux' >/dev/null; then
    die "$BUSYBOX is dynamically linked: install busybox-static"
fi

# Build next to the target and swap it in, so an interrupted build never
# leaves a half-made rootfs at DIR.
parent=$(dirname -- "$dir")
mkdir -p -- "$parent"
tmp=$(mktemp -d "$parent/.rootfs.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

install -d -m 0755 "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,root,run,var,home}
install -d -m 1777 "$tmp/tmp"
install -m 0755 "$BUSYBOX" "$tmp/bin/busybox"

while IFS= read -r applet; do
    case "$applet" in
        busybox | "" | */*) continue ;;
    esac
    ln -s busybox "$tmp/bin/$applet"
done < <("$BUSYBOX" --list)

[ -e "$tmp/bin/sh" ] || die "busybox has no sh applet"

cat >"$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$tmp/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
nogroup:x:65534:
GROUP
echo "sibling" >"$tmp/etc/hostname"
# Empty files that runtimes bind-mount over (ctr/CRI mount resolv.conf and hosts).
: >"$tmp/etc/resolv.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$tmp/etc/hosts"

chmod 0755 "$tmp"
rm -rf -- "$dir"
mv -- "$tmp" "$dir"
trap - EXIT
echo "build-rootfs: $dir ($(find "$dir/bin" -type l | wc -l) applets)"
