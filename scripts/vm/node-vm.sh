#!/usr/bin/env bash
# Runs a command inside a throwaway qemu VM that is a Kubernetes-like node: the host's systemd
# 252 boots as PID 1 (from the host's /usr over 9p, with a writable overlay of the host's /etc),
# the system D-Bus answers at /run/dbus/system_bus_socket, cgroups are pure v2 as systemd mounts
# them (`systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all`), and AppArmor is enabled
# (`apparmor=1 security=apparmor`; apparmor_parser comes from the host's `apparmor` package,
# installed here if missing). The payload runs as root from a oneshot unit
# (vm-payload.service, Delegate=yes) once basic.target is up; the VM powers off when it ends.
# See scripts/vm/node-setup.sh for what the guest's /etc gets and which units are masked.
#
# Usage: scripts/vm/node-vm.sh [--] COMMAND [ARG...]
#   The same contract and VM_* variables as scripts/vm/cgroup-v2-vm.sh (which this runs with
#   VM_MODE=node): the payload's stdout, stderr and exit code come back; 124 on timeout, 125
#   when the VM died without a result. VM_TIMEOUT defaults to 900 s and VM_MEMORY to 3072 MiB
#   here: systemd's boot under TCG takes tens of seconds, boot once and run everything in it.
set -euo pipefail

REPO=$(cd "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
[ "$(id -u)" -eq 0 ] || { echo "node-vm: run as root" >&2; exit 1; }
"$REPO/scripts/install-missing.sh" apparmor >&2
command -v apparmor_parser >/dev/null || [ -x /usr/sbin/apparmor_parser ] ||
    { echo "node-vm: apparmor_parser is missing after installing apparmor" >&2; exit 1; }
export VM_MODE=node
export VM_TIMEOUT=${VM_TIMEOUT:-900}
export VM_MEMORY=${VM_MEMORY:-3072}
exec "$REPO/scripts/vm/cgroup-v2-vm.sh" "$@"
