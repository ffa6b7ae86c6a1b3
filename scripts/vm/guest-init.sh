#!/vm/bin/busybox sh
# /init of the test VMs (built into the initramfs by cgroup-v2-vm.sh; busybox only).
# Stage 1 (on the initramfs): copy itself into a tmpfs and switch_root there, because
# pivot_root(2) fails with EINVAL while / is the initramfs. Stage 2 (on the tmpfs): mount the
# API filesystems, load the modules, mount the host's shares, then
# - cgroup-v2 mode (the default): mount cgroup2, run the payload, report, power off;
# - node mode (`vm.mode=node` on the kernel command line, scripts/vm/node-vm.sh): give the
#   host's /etc a writable overlay and exec the host's systemd as PID 1, which mounts cgroup2
#   itself and runs the payload from a unit (vm-payload.service), then powers off.
BB=/vm/bin/busybox
export PATH=/vm/bin

if [ ! -e /vm/.stage2 ]; then
    $BB --install -s /vm/bin
    mkdir -p /newroot
    mount -t tmpfs -o mode=0755 root /newroot
    cp -a /init /vm /newroot/
    touch /newroot/vm/.stage2
    exec switch_root /newroot /init
fi

say() { echo "vm-init: [$(cut -d' ' -f1 /proc/uptime 2>/dev/null)] $*" >/dev/console; }
fail() {
    say "FATAL: $*"
    [ -d /vm/results ] && echo "vm-init: $*" >>/vm/results/stderr
    poweroff -f
}

mkdir -p /proc /sys /dev /run /tmp /root /vm/results
mount -t proc -o nosuid,nodev,noexec proc /proc
t0=$(cut -d' ' -f1 /proc/uptime)
mode=cgroup-v2
cg_opts=nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot
for arg in $(cat /proc/cmdline); do
    case $arg in
    vm.mode=*) mode=${arg#vm.mode=} ;;
    vm.cgroup2=*) cg_opts=${arg#vm.cgroup2=} ;;
    esac
done
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o nosuid,noexec,gid=5,mode=620,ptmxmode=000 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
if [ "$mode" = cgroup-v2 ]; then
    # Pure cgroup v2, with systemd's mount options (nsdelegate makes cgroup namespaces delegation
    # boundaries: no migration across them). `vm.cgroup2=OPTS` on the kernel command line
    # (VM_CGROUP2_OPTS on the host) replaces them. In node mode systemd mounts it.
    mount -t cgroup2 -o "$cg_opts" cgroup2 /sys/fs/cgroup || fail "cannot mount cgroup2 ($cg_opts)"
    for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || say "controller $c not enabled"
    done
    # Like a systemd host: mounts propagate (shared) unless a namespace says otherwise.
    mount --make-rshared /
    say "cgroup2 mounted"
fi

say "loading modules"
for m in $(cat /vm/modules/order); do
    insmod "/vm/modules/$m" || fail "insmod $m failed"
done

say "modules loaded"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none results /vm/results ||
    fail "cannot mount the results share"
i=0
while read -r path; do
    [ -n "$path" ] || continue
    target=$path
    # In node mode systemd needs a writable /etc: the host's goes below an overlay.
    if [ "$mode" = node ] && [ "$path" = /etc ]; then target=/vm/host-etc; fi
    mkdir -p "$target"
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose "share$i" "$target" ||
        fail "cannot mount share$i at $target"
    i=$((i + 1))
done </vm/results/shares
# Debian 12 is usr-merged: /bin, /sbin, /lib, /lib64 are symlinks into /usr.
for d in bin sbin lib lib64; do
    [ -e "/usr/$d" ] && [ ! -e "/$d" ] && ln -s "usr/$d" "/$d"
done

if [ "$mode" = node ]; then
    mkdir -p /vm/etc-rw && mount -t tmpfs -o mode=0755 etc-rw /vm/etc-rw &&
        mkdir -p /vm/etc-rw/upper /vm/etc-rw/work /etc &&
        mount -t overlay -o lowerdir=/vm/host-etc,upperdir=/vm/etc-rw/upper,workdir=/vm/etc-rw/work \
            etc /etc || fail "cannot mount the /etc overlay"
    . /vm/node-setup.sh || fail "node setup failed"
    say "exec systemd as PID 1"
    exec /usr/lib/systemd/systemd --system
    fail "cannot exec /usr/lib/systemd/systemd"
fi

ip link set lo up 2>/dev/null
hostname cgroup-v2-vm

t1=$(cut -d' ' -f1 /proc/uptime)
say "payload starting"
(
    cd /
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        TERM=dumb LANG=C.UTF-8 /usr/bin/bash /vm/results/payload.sh \
        </dev/null >/vm/results/stdout 2>/vm/results/stderr
)
rc=$?
t2=$(cut -d' ' -f1 /proc/uptime)
say "payload exited with $rc"
echo "kernel ${t0}s, ready ${t1}s, payload end ${t2}s (guest uptime)" >/vm/results/timing
echo "$rc" >/vm/results/rc
sync
umount /vm/results 2>/dev/null
poweroff -f
