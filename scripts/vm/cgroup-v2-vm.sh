#!/usr/bin/env bash
# Runs a command inside a throwaway qemu VM whose host is pure cgroup v2 (cgroup2 at
# /sys/fs/cgroup, every v1 hierarchy disabled by `cgroup_no_v1=all`), and brings its output and
# exit code back. The build machines are hybrid v1 and cannot be switched; see
# /work/shared/TESTING.md, "A pure cgroup v2 host, in a VM".
#
# Usage: scripts/vm/cgroup-v2-vm.sh [--] COMMAND [ARG...]
#   COMMAND runs as root in the guest, in the current directory (which must be inside the
#   repository, or under /usr or /etc), with the host's /usr and /etc read-only and the
#   repository read-only at its own path. /tmp and /run are fresh tmpfs, / is a tmpfs too.
#   The payload's stdout and stderr are printed on the host's stdout and stderr; the script
#   exits with its exit code (124 on timeout, 125 when the VM died without a result).
#
# Environment:
#   VM_DIR          cache and run directory (default: <repo>/build/vm)
#   VM_TIMEOUT      seconds before qemu is killed (default: 480)
#   VM_MEMORY       guest memory in MiB (default: 2048)
#   VM_CPUS         guest CPUs (default: 2)
#   VM_VERBOSE=1    show the guest console (kernel and /init messages) live on stderr
#   VM_KEEP=1       keep the run directory (console log, stdout, stderr) after the run
#   VM_ENV          space-separated names of host variables passed to the payload
#                   (default: "CI SIBLING_ROOTFS SIBLING_IMAGE_TAR RUST_BACKTRACE RUST_LOG")
#   VM_KERNEL_VERSION  e.g. 6.1.0-56-amd64 (default: what apt offers for linux-image-amd64)
#   VM_APPEND       extra kernel command line (e.g. "loglevel=7" to see kernel messages)
#   VM_CGROUP2_OPTS mount options of cgroup2 in the guest (default: systemd's,
#                   nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot)
#   VM_BOOT         vmlinux (default, PVH entry, faster under TCG) or vmlinuz
#   VM_MODE         cgroup-v2 (default: busybox /init runs the payload) or node (systemd as
#                   PID 1 with AppArmor on; scripts/vm/node-vm.sh sets it and documents it)
#
# First run: adds the bookworm-backports suite and installs qemu-system-x86 if it is missing,
# downloads a Debian kernel package (about 70 MB) into VM_DIR. Later runs use the cache.
set -euo pipefail

REPO=$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
VM_DIR=${VM_DIR:-$REPO/build/vm}
VM_TIMEOUT=${VM_TIMEOUT:-480}
VM_MEMORY=${VM_MEMORY:-2048}
VM_CPUS=${VM_CPUS:-2}
VM_BOOT=${VM_BOOT:-vmlinux}
VM_MODE=${VM_MODE:-cgroup-v2}
VM_ENV=${VM_ENV:-"CI SIBLING_ROOTFS SIBLING_IMAGE_TAR RUST_BACKTRACE RUST_LOG"}
BUSYBOX=${BUSYBOX:-/bin/busybox}
# Modules the guest loads, with their dependencies (9p over virtio for the shares, overlay for
# container rootfs). Everything cgroup-related is built into Debian's kernel.
VM_MODULES=${VM_MODULES:-"virtio_pci 9pnet_virtio 9p overlay"}

log() { echo "$VM_MODE-vm: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$#" -gt 0 ] && [ "$1" = "--" ] && shift
[ "$#" -gt 0 ] || die "usage: $0 [--] COMMAND [ARG...]"
case "$VM_MODE" in cgroup-v2 | node) ;; *) die "VM_MODE must be cgroup-v2 or node, not $VM_MODE" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, and the guest runs the payload as root)"
mkdir -p "$VM_DIR"

# --- qemu -----------------------------------------------------------------------------------
install_qemu() {
    command -v qemu-system-x86_64 >/dev/null && return
    export DEBIAN_FRONTEND=noninteractive
    # The image ships qemu-utils from bookworm-backports: qemu-system-x86 must come from there
    # too. Add the suite from the same archive as bookworm's if no source has it yet.
    if ! grep -rqsE '^[^#]*(Suites:.*[[:space:]]|deb .*[[:space:]])bookworm-backports' \
        /etc/apt/sources.list /etc/apt/sources.list.d/; then
        local uri
        uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        [ -n "$uri" ] || uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' \
            /etc/apt/sources.list 2>/dev/null || true)
        [ -n "$uri" ] || uri=http://deb.debian.org/debian
        log "adding bookworm-backports from $uri"
        cat >/etc/apt/sources.list.d/bookworm-backports.sources <<EOF
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    log "installing qemu-system-x86 from bookworm-backports"
    apt-get update -qq </dev/null
    apt-get install -y -qq -t bookworm-backports --no-install-recommends qemu-system-x86 </dev/null
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 still missing"
}

# --- kernel ---------------------------------------------------------------------------------
kernel_version() {
    if [ -n "${VM_KERNEL_VERSION:-}" ]; then echo "$VM_KERNEL_VERSION"; return; fi
    # Reuse a kernel already extracted, so later runs need no apt metadata at all.
    local cached
    cached=$(cat "$VM_DIR/kernel/version" 2>/dev/null || true)
    if [ -n "$cached" ] && [ -d "$VM_DIR/kernel/lib/modules/$cached" ]; then echo "$cached"; return; fi
    local v
    v=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -n1)
    if [ -z "$v" ]; then
        apt-get update -qq </dev/null
        v=$(apt-cache depends linux-image-amd64 |
            sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -n1)
    fi
    [ -n "$v" ] || die "apt offers no linux-image-amd64"
    echo "$v"
}

get_kernel() {
    local kver=$1 kdir=$VM_DIR/kernel
    if [ ! -f "$kdir/lib/modules/$kver/modules.dep" ] || [ ! -f "$kdir/boot/vmlinuz-$kver" ]; then
        rm -rf "$kdir" "$VM_DIR/deb"
        mkdir -p "$VM_DIR/deb" "$kdir"
        log "downloading linux-image-$kver"
        (cd "$VM_DIR/deb" && apt-get download "linux-image-$kver" </dev/null 2>&1 |
            grep -v 'Download is performed unsandboxed' >&2 || true)
        local deb
        deb=$(ls "$VM_DIR"/deb/linux-image-"$kver"_*.deb 2>/dev/null | head -n1)
        [ -n "$deb" ] || die "apt-get download linux-image-$kver failed"
        dpkg -x "$deb" "$kdir"
        # Debian generates the module index in postinst; busybox depmod builds it here.
        "$BUSYBOX" depmod -b "$kdir" "$kver"
        rm -rf "$VM_DIR/deb"
        echo "$kver" >"$kdir/version"
    fi
    if [ "$VM_BOOT" = vmlinux ] && [ ! -s "$kdir/vmlinux-$kver" ]; then
        extract_vmlinux "$kdir/boot/vmlinuz-$kver" "$kdir/vmlinux-$kver" ||
            { log "no vmlinux could be extracted; booting vmlinuz"; VM_BOOT=vmlinuz; }
    fi
}

# Like the kernel's scripts/extract-vmlinux: find the compressed payload in the bzImage by its
# magic and decompress it (trailing data makes the decompressor complain: judge by the ELF).
extract_vmlinux() {
    local in=$1 out=$2 magic cmd off
    for pair in "fd377a585a00:xz -dc" "1f8b0800:gzip -dc" "28b52ffd:zstd -dc" "02214c18:lz4 -dc"; do
        magic=${pair%%:*} cmd=${pair#*:}
        command -v "${cmd%% *}" >/dev/null || continue
        for off in $(LC_ALL=C grep -obUaP "$(echo "$magic" | sed 's/../\\x&/g')" "$in" | cut -d: -f1 | head -n3); do
            tail -c +"$((off + 1))" "$in" | $cmd >"$out.tmp" 2>/dev/null || true
            if [ "$(head -c4 "$out.tmp" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
                mv "$out.tmp" "$out"
                return 0
            fi
        done
    done
    rm -f "$out.tmp"
    return 1
}

# --- initramfs ------------------------------------------------------------------------------
# Modules in load order: dependencies first, each once (modules.dep, recursively).
module_order() {
    local moddir=$1; shift
    declare -A seen=()
    local -a order=()
    visit() {
        local rel=$1 dep
        [ -n "${seen[$rel]:-}" ] && return
        seen[$rel]=1
        for dep in $(sed -n "s|^${rel//./\\.}:||p" "$moddir/modules.dep"); do visit "$dep"; done
        order+=("$rel")
    }
    local name rel
    for name in "$@"; do
        rel=$(grep -E "(^|/)${name//-/[-_]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 | cut -d: -f1)
        if [ -z "$rel" ]; then
            grep -qE "(^|/)${name//-/[-_]}\.ko" "$moddir/modules.builtin" ||
                die "module $name is neither in modules.dep nor built in"
            continue
        fi
        visit "$rel"
    done
    printf '%s\n' "${order[@]}"
}

build_initramfs() {
    local kver=$1 out=$2 moddir=$VM_DIR/kernel/lib/modules/$1
    local stamp
    stamp=$(cat "${BASH_SOURCE[0]}" "$REPO/scripts/vm/guest-init.sh" "$REPO/scripts/vm/node-setup.sh" | md5sum | cut -c1-12)-$kver-$(md5sum <"$BUSYBOX" | cut -c1-8)
    if [ -s "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then return; fi
    log "building initramfs"
    local tree=$VM_DIR/initramfs.tree
    rm -rf "$tree"
    mkdir -p "$tree"/vm/bin "$tree"/vm/modules "$tree"/{dev,proc,sys,tmp,run,mnt}
    cp "$BUSYBOX" "$tree/vm/bin/busybox"
    cp "$REPO/scripts/vm/guest-init.sh" "$tree/init"
    cp "$REPO/scripts/vm/node-setup.sh" "$tree/vm/node-setup.sh"
    chmod 755 "$tree/init"
    local rel
    : >"$tree/vm/modules/order"
    # shellcheck disable=SC2086
    for rel in $(module_order "$moddir" $VM_MODULES); do
        cp "$moddir/$rel" "$tree/vm/modules/"
        basename "$rel" >>"$tree/vm/modules/order"
    done
    (cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) \
        | gzip -1 >"$out.tmp"
    mv "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
    rm -rf "$tree"
}

# --- run ------------------------------------------------------------------------------------
install_qemu
KVER=$(kernel_version)
get_kernel "$KVER"
INITRD=$VM_DIR/initramfs.cpio.gz
build_initramfs "$KVER" "$INITRD"
if [ "$VM_BOOT" = vmlinux ] && [ -s "$VM_DIR/kernel/vmlinux-$KVER" ]; then
    KERNEL=$VM_DIR/kernel/vmlinux-$KVER
else
    KERNEL=$VM_DIR/kernel/boot/vmlinuz-$KVER
fi

RUN_DIR=$(mktemp -d "$VM_DIR/run.XXXXXX")
QEMU_PID=
TAIL_PID=
cleanup() {
    local rc=$?
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then kill -KILL "$QEMU_PID" 2>/dev/null || true; fi
    if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
    if [ "${VM_KEEP:-}" = 1 ]; then log "run directory kept: $RUN_DIR"; else rm -rf "$RUN_DIR"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The payload: the command, run in the current directory with the chosen environment.
{
    echo "#!/bin/sh"
    for name in $VM_ENV; do
        if [ -n "${!name+x}" ]; then printf 'export %s=%q\n' "$name" "${!name}"; fi
    done
    printf 'cd %q || exit 126\n' "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    echo
} >"$RUN_DIR/payload.sh"
# %q may produce bash-only $'..' quoting; the guest runs the payload with the host's bash.
chmod 755 "$RUN_DIR/payload.sh"

# Host paths the guest mounts at the same place, read-only (the guest reads the list from the
# results share: share0 is mounted at the first line, and so on).
SHARES=(/usr /etc "$REPO")
printf '%s\n' "${SHARES[@]}" >"$RUN_DIR/shares"
APPEND="console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all${VM_CGROUP2_OPTS:+ vm.cgroup2=$VM_CGROUP2_OPTS}"
if [ "$VM_MODE" = node ]; then
    # systemd boots only what the payload needs (scripts/vm/node-setup.sh); AppArmor is built
    # into Debian's kernel and off unless asked for.
    APPEND+=" vm.mode=node apparmor=1 security=apparmor systemd.unit=vm-node.target systemd.show_status=error"
fi
QEMU_ARGS=(
    -accel tcg -m "$VM_MEMORY" -smp "$VM_CPUS" -nographic -no-reboot
    -nodefaults -serial "file:$RUN_DIR/console.log" -monitor none
    -kernel "$KERNEL" -initrd "$INITRD"
    -append "$APPEND ${VM_APPEND:-}"
    -fsdev "local,id=results,path=$RUN_DIR,security_model=none"
    -device "virtio-9p-pci,fsdev=results,mount_tag=results"
)
i=0
for path in "${SHARES[@]}"; do
    QEMU_ARGS+=(-fsdev "local,id=share$i,path=$path,security_model=none,readonly=on,multidevs=remap"
        -device "virtio-9p-pci,fsdev=share$i,mount_tag=share$i")
    i=$((i + 1))
done

log "booting $(basename "$KERNEL") (timeout ${VM_TIMEOUT}s)"
start=$(date +%s%N)
: >"$RUN_DIR/console.log"
if [ "${VM_VERBOSE:-}" = 1 ]; then
    tail -n +1 -f "$RUN_DIR/console.log" >&2 &
    TAIL_PID=$!
fi
qemu-system-x86_64 "${QEMU_ARGS[@]}" </dev/null >"$RUN_DIR/qemu.log" 2>&1 &
QEMU_PID=$!
deadline=$(($(date +%s) + VM_TIMEOUT))
timed_out=
while kill -0 "$QEMU_PID" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        kill -KILL "$QEMU_PID" 2>/dev/null || true
        break
    fi
    sleep 0.2
done
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
elapsed=$((($(date +%s%N) - start) / 1000000))
elapsed=$((elapsed / 1000)).$(printf %03d $((elapsed % 1000)))
if [ -n "$TAIL_PID" ]; then sleep 0.3; kill "$TAIL_PID" 2>/dev/null || true; wait "$TAIL_PID" 2>/dev/null || true; TAIL_PID=; fi

[ -f "$RUN_DIR/stdout" ] && cat "$RUN_DIR/stdout"
[ -f "$RUN_DIR/stderr" ] && cat "$RUN_DIR/stderr" >&2
if [ -n "$timed_out" ]; then
    log "TIMEOUT after ${VM_TIMEOUT}s: qemu killed; last console lines:"
    tail -n 30 "$RUN_DIR/console.log" >&2
    exit 124
fi
if [ ! -s "$RUN_DIR/rc" ]; then
    log "the VM stopped without a result; qemu said:"
    cat "$RUN_DIR/qemu.log" >&2
    log "last console lines:"
    tail -n 40 "$RUN_DIR/console.log" >&2
    exit 125
fi
rc=$(cat "$RUN_DIR/rc")
log "payload exited with $rc; VM ran ${elapsed}s (boot to poweroff), guest timings: $(cat "$RUN_DIR/timing" 2>/dev/null)"
exit "$rc"
