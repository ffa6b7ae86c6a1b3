#!/usr/bin/env bash
# Start or stop a private containerd that shares nothing with a system one.
#
# Usage: scripts/containerd-private.sh start DIR
#        scripts/containerd-private.sh stop DIR
#
# start: writes DIR/config.toml (root, state and both sockets under DIR, CRI off unless
#        CRI=1, which adds the runtime classes "sibling" and "runc"; CRI_APPARMOR=1 lets
#        CRI apply AppArmor profiles on a host that has AppArmor (its default profile to
#        every container that asks for none), off otherwise; CRI_SYSTEMD_CGROUP=1 gives
#        both runtime classes the systemd cgroup driver; log level LOG_LEVEL, default
#        debug),
#        starts containerd in the background with SHIM_DIR (env; default: this
#        repo's target/x86_64-unknown-linux-musl/release, where .cargo/config.toml
#        builds) first in PATH so `--runtime io.containerd.sibling.v2` finds
#        containerd-shim-sibling-v2, logs to DIR/containerd.log, records its
#        pid in DIR/containerd.pid and waits until `ctr -a DIR/c.sock version` answers.
#        SIBLING_CONTAINERD_BIN_DIR (env; default: PATH) picks the containerd, the ctr and
#        the reference containerd-shim-runc-v2 (e.g. build/containerd-2.1/usr/bin from
#        scripts/fetch-containerd.sh); the config follows its version (2.x: version 3).
#        With CRI=1: CNI_BIN_DIR (env; default DIR/cni/bin, which is empty) is where the CRI
#        plugin finds CNI plugins, DIR/cni/conf its network configurations (the caller writes
#        them, before or after start); pod network namespaces are mounted under DIR/state.
#        NETNS (env; a name under /run/netns the caller made) runs containerd, and so the CNI
#        plugins it runs, in that network namespace (its mount namespace stays the host's).
# stop:  kills that containerd (by the recorded pid only), kills shims whose
#        command line names DIR/c.sock, unmounts everything under DIR, removes DIR.
#        Safe to run twice and after a failed start.
#
# /run/containerd/s/ is shared by every containerd on the machine: only the
# sockets of shims we had to kill are removed from it, by their exact name.
set -euo pipefail

die() { echo "containerd-private: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
action=$1
dir=$2
case "$dir" in
    /*) ;;
    *) dir=$PWD/$dir ;;
esac
case "$dir" in
    / | /tmp | /tmp/ | /run* | /var/lib/containerd*) die "refusing to use '$dir'" ;;
esac

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
sock=$dir/c.sock
pidfile=$dir/containerd.pid
START_TIMEOUT=${START_TIMEOUT:-30}

# The containerd under test and the ctr of the same version.
bin_dir=${SIBLING_CONTAINERD_BIN_DIR:-}
if [ -n "$bin_dir" ]; then
    containerd_bin=$bin_dir/containerd
    ctr() { "$bin_dir/ctr" "$@"; }
else
    containerd_bin=containerd
fi

# Major version of the containerd under test ("containerd <module> 1.6.20~ds1 ..." or
# "containerd <module>/v2 2.1.9+unknown").
containerd_major() {
    local version
    version=$("$containerd_bin" --version | awk '{ print $3 }')
    echo "${version%%.*}"
}

# containerd 1.6 and 1.7 read config version 2; 2.x reads version 3, where CRI is three
# plugins (io.containerd.cri.v1.images, io.containerd.cri.v1.runtime, io.containerd.grpc.v1.cri)
# and its runtime classes live under io.containerd.cri.v1.runtime.
write_config() {
    local major version cri_plugins cri_disabled="" runtime_plugin snapshotters=""
    major=$(containerd_major)
    if [ "$major" -ge 2 ]; then
        version=3
        cri_plugins='"io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri",'
        runtime_plugin=io.containerd.cri.v1.runtime
        snapshotters='"io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs",'
    else
        version=2
        cri_plugins='"io.containerd.grpc.v1.cri",'
        runtime_plugin=io.containerd.grpc.v1.cri
    fi
    if [ "${CRI:-0}" != 1 ]; then cri_disabled=$cri_plugins; fi
    cat >"$dir/config.toml" <<TOML
version = $version
root = "$dir/root"
state = "$dir/state"
# CRI is off unless CRI=1 (it wants a network setup only the CRI test provides); NRI is off (its
# socket, /var/run/nri/nri.sock, is machine-wide; 2.x turns it on by default); the other
# snapshotters only log failures on this machine.
disabled_plugins = [
  $cri_disabled
  "io.containerd.nri.v1.nri",
  $snapshotters
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "${LOG_LEVEL:-debug}"

# The default is /opt/containerd: keep even that inside DIR.
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
    [ "${CRI:-0}" = 1 ] || return 0
    # The runtime class "sibling", as the README tells users to configure it, and "runc", the
    # reference. Pods on the host network need no CNI plugin; the others get the network in
    # DIR/cni/conf, with plugins from CNI_BIN_DIR. AppArmor stays off unless CRI_APPARMOR=1 (the
    # node VM's AppArmor test): on a host with AppArmor, CRI then loads its default profile,
    # cri-containerd.apparmor.d, and applies it to every container.
    local sandbox_image=${CRI_SANDBOX_IMAGE:-docker.io/library/sibling-pause:latest}
    local sandbox_line cni_bin
    if [ "$major" -ge 2 ]; then
        cat >>"$dir/config.toml" <<TOML

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "$sandbox_image"
TOML
        sandbox_line=""
        cni_bin="bin_dirs = [\"${CNI_BIN_DIR:-$dir/cni/bin}\"]"
    else
        sandbox_line="sandbox_image = \"$sandbox_image\""
        cni_bin="bin_dir = \"${CNI_BIN_DIR:-$dir/cni/bin}\""
    fi
    cat >>"$dir/config.toml" <<TOML

[plugins."$runtime_plugin"]
  $sandbox_line
  disable_apparmor = $([ "${CRI_APPARMOR:-0}" = 1 ] && echo false || echo true)
  # Pod sandboxes ask for oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE, which root
  # lacks on these machines (runc fails the same way): keep it at containerd's own value.
  restrict_oom_score_adj = true
  # Pod network namespaces under DIR/state (not /var/run/netns, which every containerd on the
  # machine shares): the stop action's unmount finds any that is left.
  netns_mounts_under_state_dir = true
  [plugins."$runtime_plugin".cni]
    $cni_bin
    conf_dir = "$dir/cni/conf"
  [plugins."$runtime_plugin".containerd]
    default_runtime_name = "sibling"
  [plugins."$runtime_plugin".containerd.runtimes.sibling]
    runtime_type = "io.containerd.sibling.v2"
  [plugins."$runtime_plugin".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
TOML
    # CRI_SYSTEMD_CGROUP=1: both runtime classes use the systemd cgroup driver, as on a kubeadm
    # node (runc's option in its own options; sibling's in the TOML file its ConfigPath names).
    if [ "${CRI_SYSTEMD_CGROUP:-0}" = 1 ]; then
        printf 'SystemdCgroup = true\n' >"$dir/sibling.toml"
        cat >>"$dir/config.toml" <<TOML
  [plugins."$runtime_plugin".containerd.runtimes.sibling.options]
    ConfigPath = "$dir/sibling.toml"
  [plugins."$runtime_plugin".containerd.runtimes.runc.options]
    SystemdCgroup = true
TOML
    fi
}

# Pids of processes whose argv contains "-address $sock" exactly: shims started
# by this containerd (and nothing started by another one).
our_shims() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$({ tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null) || continue
        if grep -qxF -- "$sock" <<<"$cmd" && grep -qxF -- "-address" <<<"$cmd"; then
            echo "${p#/proc/}"
        fi
    done
}

# "NAMESPACE ID" from a shim's argv (-namespace NS -id ID); empty if it is gone.
shim_ns_id() {
    local pid=$1 ns="" id="" prev="" arg argv
    # The shim may exit at any moment: read its argv once, tolerating that.
    argv=$({ tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 0
    while IFS= read -r arg; do
        case "$prev" in
            -namespace) ns=$arg ;;
            -id) id=$arg ;;
        esac
        prev=$arg
    done <<<"$argv"
    if [ -n "$ns" ] && [ -n "$id" ]; then echo "$ns $id"; fi
}

# The shim socket name is sha256("<containerd address>/<namespace>/<id>") under
# /run/containerd/s (containerd's runtime/v2/shim SocketAddress).
# A sibling daemon names its socket in argv (-socket unix://PATH): that wins.
shim_socket_of() {
    local ns id arg prev=""
    while IFS= read -r arg; do
        if [ "$prev" = -socket ]; then echo "${arg#unix://}"; return 0; fi
        prev=$arg
    done < <({ tr '\0' '\n' <"/proc/$1/cmdline"; } 2>/dev/null)
    read -r ns id < <(shim_ns_id "$1") || return 0
    echo "/run/containerd/s/$(printf '%s' "$sock/$ns/$id" | sha256sum | cut -d' ' -f1)"
}

start() {
    if [ -n "$bin_dir" ]; then
        local tool
        for tool in containerd ctr containerd-shim-runc-v2; do
            [ -x "$bin_dir/$tool" ] || die "no $tool in SIBLING_CONTAINERD_BIN_DIR=$bin_dir (scripts/fetch-containerd.sh)"
        done
    else
        command -v containerd >/dev/null || die "containerd not installed (apt-get install containerd)"
        command -v ctr >/dev/null || die "ctr not installed (apt-get install containerd)"
    fi
    [ ! -e "$pidfile" ] || die "$dir already has a containerd (pid $(cat "$pidfile")); stop it first"
    local shim_dir=${SHIM_DIR:-$repo/target/x86_64-unknown-linux-musl/release}
    local netns=()
    if [ -n "${NETNS:-}" ]; then
        [ -e "/run/netns/$NETNS" ] || die "no network namespace /run/netns/$NETNS"
        # Only the network namespace: containerd's mounts stay visible to the host (and to stop).
        netns=(nsenter "--net=/run/netns/$NETNS")
    fi
    mkdir -p "$dir"
    write_config

    # The containerd's own directory comes next: io.containerd.runc.v2 is its own version's.
    PATH="$shim_dir${bin_dir:+:$bin_dir}:$PATH" setsid "${netns[@]}" "$containerd_bin" --config "$dir/config.toml" \
        </dev/null >>"$dir/containerd.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"

    local waited=0
    until ctr -a "$sock" version >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$dir/containerd.log" >&2 || true
            die "containerd exited during start-up (log: $dir/containerd.log)"
        fi
        if [ "$waited" -ge $((START_TIMEOUT * 10)) ]; then
            tail -n 30 "$dir/containerd.log" >&2 || true
            die "containerd did not answer on $sock within ${START_TIMEOUT}s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "containerd-private: pid $pid ($("$containerd_bin" --version)), address $sock, shims from $shim_dir"
}

# State letter of pid $1 (from /proc/PID/stat, after the parenthesised comm), empty if gone.
proc_state() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }
    echo "${stat%% *}"
}

# Wait up to $2 tenths of a second for pid $1 to exit. A zombie has exited: reaping an orphan
# is its new parent's business.
wait_gone() {
    local pid=$1 n=$2 state
    while [ "$n" -gt 0 ]; do
        state=$(proc_state "$pid")
        if [ -z "$state" ] || [ "$state" = Z ]; then return 0; fi
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

# Pids whose parent is $1.
children_of() {
    local p stat ppid
    for p in /proc/[0-9]*; do
        { read -r stat <"$p/stat"; } 2>/dev/null || continue
        read -r _ ppid _ <<<"${stat##*) }"
        if [ "$ppid" = "$1" ]; then echo "${p#/proc/}"; fi
    done
}

stop_containerd() {
    [ -f "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    # The pid must still be our containerd: after a reboot or a crash it may have
    # been reused by something else.
    if kill -0 "$pid" 2>/dev/null &&
        { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$dir/config.toml"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 100 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 50 || true; }
    fi
    rm -f -- "$pidfile"
}

# Tasks left running keep shims alive: ask containerd to end them first, while it is up.
remove_tasks() {
    [ -S "$sock" ] || return 0
    local ns id
    for ns in $(ctr -a "$sock" namespaces ls -q 2>/dev/null); do
        for id in $(ctr -a "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
            ctr -a "$sock" -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
            ctr -a "$sock" -n "$ns" tasks rm -f "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr -a "$sock" -n "$ns" containers ls -q 2>/dev/null); do
            ctr -a "$sock" -n "$ns" containers rm "$id" >/dev/null 2>&1 || true
        done
    done
}

# Mount points of the cgroup hierarchies (a directory under /sys/fs/cgroup proves nothing).
cgroup_hierarchies() {
    awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) ~ /^cgroup2?$/) print $5; break } }' \
        /proc/self/mountinfo
}

# Shims that outlived containerd: kill their containers (a shim's children are its containers'
# inits), then the shim, then remove what the shim would have: its socket in /run/containerd/s
# (this exact name only) and the containers' cgroups at /<namespace>/<id>, which ctr asks for.
kill_shims() {
    local pid child socket ns id h
    for pid in $(our_shims); do
        # Killing an earlier shim's children may already have ended this one (its spawner).
        if ! read -r ns id < <(shim_ns_id "$pid"); then continue; fi
        socket=$(shim_socket_of "$pid")
        # A sibling daemon stops its containers and gives up its shared slot on SIGTERM.
        if { tr '\0' '\n' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qxF -- -socket; then
            kill -TERM "$pid" 2>/dev/null || true
            if wait_gone "$pid" 100; then continue; fi
        fi
        echo "containerd-private: killing leftover shim $pid ($ns/$id)" >&2
        for child in $(children_of "$pid"); do kill -KILL "$child" 2>/dev/null || true; done
        for child in $(children_of "$pid"); do wait_gone "$child" 50 || true; done
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 50 || true
        if [ -n "$socket" ]; then rm -f -- "$socket"; fi
        if [ -n "$ns" ] && [ -n "$id" ]; then
            for h in $(cgroup_hierarchies); do
                if [ -d "$h/$ns/$id" ]; then rmdir "$h/$ns/$id" 2>/dev/null || true; fi
            done
        fi
    done
}

# Mount points at or under DIR, deepest first (mountinfo field 5, octal-escaped).
our_mounts() {
    awk -v d="$dir" '{
        p = $5; gsub(/\\040/, " ", p)
        if (p == d || index(p, d "/") == 1) print p
    }' /proc/self/mountinfo | sort -r
}

unmount_all() {
    local m tries=0
    while [ -n "$(our_mounts)" ] && [ $tries -lt 5 ]; do
        while IFS= read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done < <(our_mounts)
        tries=$((tries + 1))
    done
    [ -z "$(our_mounts)" ] || { our_mounts >&2; die "could not unmount everything under $dir"; }
}

stop() {
    [ -d "$dir" ] || return 0
    # Refuse to delete a directory that is not one of ours.
    [ -f "$dir/config.toml" ] || [ -f "$pidfile" ] || die "$dir does not look like a private containerd dir"
    remove_tasks
    stop_containerd
    kill_shims
    unmount_all
    rm -rf --one-file-system -- "$dir"
    echo "containerd-private: stopped and removed $dir"
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop DIR" ;;
esac
