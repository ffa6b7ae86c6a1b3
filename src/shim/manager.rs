//! The shim binary's short-lived actions, run by containerd with the bundle as working directory:
//! `start` (find or launch the daemon, print its address) and `delete` (clean up after a daemon
//! that died).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim::Flags;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::shim::DeleteResponse;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};

use super::sealed_exe::seal;
use super::shared::{
    SHARING_FAILED_ENV, SLOT_DIR_ENV, SlotLock, choose_slot, daemon_answers,
    release_after_dead_daemon, state_root,
};
use nix::mount::{MntFlags, umount2};

use super::daemon::LISTEN_FD_ENV;
use super::state_file::StateFile;
use super::time::timestamp_now;

/// Annotations that put several containers (a pod) into one shim.
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];

/// `start`: returns the ttrpc address containerd must use (and nothing else may be printed).
pub fn start(flags: &Flags) -> Result<String, String> {
    let address = match pod_group(Path::new(".")) {
        Some(group) => start_grouped(flags, &group, &[])?,
        // Without the slot state (a read-only /run, say) the container still runs: in a
        // daemon of its own, named after it, that exits with it. Nothing may go to stderr
        // here (containerd reads it as the address); that daemon logs why.
        None => start_shared(flags).or_else(|why| {
            let why = [(SHARING_FAILED_ENV, why.as_str())];
            start_grouped(flags, &flags.id, &why)
        })?,
    };
    write_address_file(&address)?;
    Ok(address)
}

/// The shim named after `group`: a pod's, started by its first container, or (where the
/// slots cannot be used) a container's own. `env` goes to a daemon this starts.
fn start_grouped(flags: &Flags, group: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, group);
    let path = address.trim_start_matches("unix://").to_owned();
    if daemon_answers(Path::new(&path)) {
        // The pod's shim is already serving: this container joins it.
        return Ok(address);
    }
    // Nobody answers: whatever is there is stale.
    let _ = std::fs::remove_file(&path);
    listen_and_spawn(flags, &address, Path::new(&path), env)?;
    Ok(address)
}

/// Any other container: a shared daemon with room (see `shared`), started if there is none.
fn start_shared(flags: &Flags) -> Result<String, String> {
    let lock = SlotLock::acquire()
        .map_err(|e| format!("lock {}: {e}", state_root().join("lock").display()))?;
    let (slot, spawn) = choose_slot(&lock, &flags.address, &flags.namespace, &flags.id)
        .map_err(|e| format!("join a shared shim: {e}"))?;
    if spawn {
        let slot_dir = slot.dir.display().to_string();
        listen_and_spawn(
            flags,
            &slot.address,
            &slot.socket,
            &[(SLOT_DIR_ENV, &slot_dir)],
        )?;
    }
    // The lock goes only now: a daemon cannot retire between the member file and the answer.
    drop(lock);
    Ok(slot.address)
}

/// Binds the socket at `path` and spawns a daemon serving it, with `env` added to its
/// environment.
fn listen_and_spawn(
    flags: &Flags,
    address: &str,
    path: &Path,
    env: &[(&str, &str)],
) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("listen on {}: {e}", path.display()))?;
    spawn_daemon(flags, address, &listener, env).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

/// The pod (or explicit group) a container belongs to, from its spec's annotations.
fn pod_group(bundle: &Path) -> Option<String> {
    let bytes = std::fs::read(bundle.join("config.json")).ok()?;
    let spec = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|key| spec["annotations"][key].as_str())
        .map(str::to_owned)
}

/// Launches the daemon: this binary again with no action, the listener as an inherited fd, in
/// its own process group so signals aimed at containerd's group do not reach it.
fn spawn_daemon(
    flags: &Flags,
    address: &str,
    listener: &UnixListener,
    env: &[(&str, &str)],
) -> Result<(), String> {
    // The one fd the daemon must inherit.
    fcntl(listener, FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(|e| format!("pass listener: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("find own executable: {e}"))?;
    // Never the file on disk: a container must not be able to reach it (CVE-2019-5736).
    let (sealed, _) = seal(&exe)?;
    let mut command = Command::new(format!("/proc/self/fd/{}", sealed.as_raw_fd()));
    command
        .arg0(&exe)
        .args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", &flags.address, "-socket", address])
        .env(LISTEN_FD_ENV, listener.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if !flags.publish_binary.is_empty() {
        command.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        command.arg("-debug");
    }
    command.envs(env.iter().copied());
    command
        .spawn()
        .map(drop)
        .map_err(|e| format!("start shim daemon: {e}"))
}

fn write_address_file(address: &str) -> Result<(), String> {
    std::fs::write("address", address).map_err(|e| format!("write address file: {e}"))
}

/// `delete`: the daemon is gone; kill what is left of the container, release its cgroup and
/// rootfs mount, and report it as killed (128 + SIGKILL), as containerd expects.
pub fn delete(flags: &Flags) -> DeleteResponse {
    let bundle = if flags.bundle.is_empty() {
        Path::new(".").to_owned()
    } else {
        Path::new(&flags.bundle).to_owned()
    };
    let state_file = StateFile::in_bundle(&bundle);
    let state = state_file.load();
    if let Some(cgroup) = state.as_ref().and_then(|s| s.cgroup.as_ref()) {
        // Removing the cgroup kills whatever still runs in it first.
        let _ = cgroup.remove();
    }
    unmount_all(&bundle.join("rootfs"));
    let address = std::fs::read_to_string(bundle.join("address")).unwrap_or_default();
    if !release_after_dead_daemon(address.trim(), &flags.id) {
        remove_dead_socket(address.trim());
    }
    state_file.remove();
    DeleteResponse {
        pid: state.map_or(0, |s| s.pid),
        exit_status: 128 + nix::libc::SIGKILL as u32,
        exited_at: MessageField::some(timestamp_now()),
        ..Default::default()
    }
}

/// A daemon killed with SIGKILL could not remove its socket in /run/containerd/s: remove it,
/// unless something still answers there (a pod's shim serving other containers).
fn remove_dead_socket(address: &str) {
    let path = address.trim_start_matches("unix://");
    if !path.is_empty() && !daemon_answers(Path::new(path)) {
        let _ = std::fs::remove_file(path);
    }
}

/// Unmounts every layer mounted on `target` (EINVAL: nothing, or nothing more, is mounted).
fn unmount_all(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
}
