# Sourced by guest-init.sh (busybox sh) in node mode, before it execs systemd as PID 1: the
# writable /etc (an overlay of the host's) gets what a booted node has and a build host must not
# lend it (machine-id, fstab, hostname), the units that run the payload, and masks for what is
# slow or useless in a throwaway VM. systemd boots to vm-node.target only (kernel command line
# `systemd.unit=vm-node.target`): sysinit.target and basic.target with their sockets (D-Bus among
# them), then vm-payload.service.

# A machine-id (not the host's): systemd-firstboot and D-Bus want one.
tr -d '-' </proc/sys/kernel/random/uuid >/etc/machine-id
# The host's fstab and network waits say nothing about this VM.
echo "# node VM: every mount is made by /init or systemd" >/etc/fstab
echo node-vm >/etc/hostname
mkdir -p /var/lib /var/log /var/tmp /var/cache /root /home /srv /opt /mnt /media
chmod 1777 /var/tmp

units=/etc/systemd/system
mkdir -p "$units"
# Units of the host that would start here (its /etc enables them) or cost time under TCG.
for unit in getty@tty1.service serial-getty@ttyS0.service console-getty.service getty.target \
    systemd-timesyncd.service systemd-pstore.service systemd-networkd-wait-online.service \
    systemd-firstboot.service systemd-machine-id-commit.service systemd-random-seed.service \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount systemd-repart.service \
    systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-update-utmp.service \
    systemd-journal-flush.service systemd-hwdb-update.service ldconfig.service \
    sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
    sys-fs-fuse-connections.mount containerd.service postgresql.service e2scrub_reap.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
    man-db.timer systemd-tmpfiles-clean.timer remote-fs.target cryptsetup.target \
    integritysetup.target veritysetup.target; do
    ln -sf /dev/null "$units/$unit"
done

cat >"$units/vm-node.target" <<'UNIT'
[Unit]
Description=Node VM: the payload on a booted systemd
Requires=basic.target vm-payload.service
After=basic.target vm-payload.service
AllowIsolate=yes
UNIT

cat >"$units/vm-payload.service" <<'UNIT'
[Unit]
Description=Node VM payload (scripts/vm/node-vm.sh)
# D-Bus is socket-activated: start the daemon before the payload, as a node's boot does, so
# the payload's first call does not wait for it (under TCG that took longer than busctl waits).
Requires=dbus.socket dbus.service
After=basic.target dbus.socket dbus.service apparmor.service systemd-tmpfiles-setup.service
# run-payload.sh powers off itself; if it cannot even run, do not wait for the host's timeout.
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/vm/bin/sh /vm/run-payload.sh
# The payload makes cgroups of its own (containers) below its unit and elsewhere.
Delegate=yes
TimeoutStartSec=infinity
StandardOutput=journal+console
StandardError=journal+console
UNIT

cat >/vm/run-payload.sh <<'SCRIPT'
say() { echo "vm-payload: [$(cut -d' ' -f1 /proc/uptime)] $*" >/dev/console; }
t1=$(cut -d' ' -f1 /proc/uptime)
say "payload starting (systemd $(systemctl is-system-running 2>/dev/null))"
(
    cd /
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        TERM=dumb LANG=C.UTF-8 /usr/bin/bash /vm/results/payload.sh \
        </dev/null >/vm/results/stdout 2>/vm/results/stderr
)
rc=$?
t2=$(cut -d' ' -f1 /proc/uptime)
say "payload exited with $rc"
echo "kernel $(cat /vm/t0)s, systemd ready ${t1}s, payload end ${t2}s (guest uptime)" >/vm/results/timing
echo "$rc" >/vm/results/rc
sync
# The results share is written through (cache=none): power off at once, no orderly shutdown.
systemctl poweroff --force --force || echo o >/proc/sysrq-trigger
SCRIPT
echo "$t0" >/vm/t0
