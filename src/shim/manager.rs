//! The shim binary's short-lived actions, run by containerd with the bundle as working directory:
//! `start` (find or launch the daemon, print its address) and `delete` (clean up after a daemon
//! that died).

use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use containerd_shim::Flags;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::shim::DeleteResponse;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::unistd::{ForkResult, fork};

use super::options::{ShimOptions, read_shim_options};
use super::sealed_exe::seal;
use super::shared::{
    IDLE_ENV, Liveness, SHARING_FAILED_ENV, SLOT_DIR_ENV, SlotLock, check_daemon, choose_slot,
    release_after_dead_daemon, state_root,
};
use nix::mount::{MntFlags, umount2};

use super::daemon::{LISTEN_FD_ENV, LOG_LEVEL_ENV};
use super::state_file::StateFile;
use super::time::timestamp_now;
use crate::container::hooks::{HookKind, run_hooks};

/// Annotations that put several containers (a pod) into one shim.
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];

/// `start`: returns the ttrpc address containerd must use (and nothing else may be printed).
///
/// A pod's containers share the pod's daemon; every other container gets a daemon of its own,
/// named after it, that exits with it, unless the runtime's options turn sharing on.
pub fn start(flags: &Flags) -> Result<String, String> {
    let options = read_shim_options()?;
    let address = match pod_group(Path::new(".")) {
        Some(group) => start_grouped(flags, &group, &options, &[])?,
        // Without the slot state (a read-only /run, a lock held too long) the container still
        // runs: in a daemon of its own. Nothing may go to stderr here (containerd reads it as
        // the address); that daemon logs why.
        None if options.sharing() => start_shared(flags, &options).or_else(|why| {
            let why = [(SHARING_FAILED_ENV, why.as_str())];
            start_grouped(flags, &flags.id, &options, &why)
        })?,
        None => start_grouped(flags, &flags.id, &options, &[])?,
    };
    write_address_file(&address)?;
    Ok(address)
}

/// The shim named after `group`: a pod's, started by its first container, or a container's
/// own. `env` goes to a daemon this starts.
fn start_grouped(
    flags: &Flags,
    group: &str,
    options: &ShimOptions,
    env: &[(&str, &str)],
) -> Result<String, String> {
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, group);
    let path = address.trim_start_matches("unix://").to_owned();
    match check_daemon(Path::new(&path)) {
        // The pod's shim is already serving: this container joins it.
        Liveness::Answers => return Ok(address),
        Liveness::Silent => {
            return Err(format!(
                "the shim at {address} accepts connections but does not answer"
            ));
        }
        // Nobody listens: whatever is there is stale.
        Liveness::Gone => {}
    }
    let _ = std::fs::remove_file(&path);
    listen_and_spawn(flags, &address, Path::new(&path), options, env)?;
    Ok(address)
}

/// Any other container, with sharing on: a shared daemon with room (see `shared`), started if
/// there is none.
fn start_shared(flags: &Flags, options: &ShimOptions) -> Result<String, String> {
    let lock = SlotLock::acquire()
        .map_err(|e| format!("lock {}: {e}", state_root().join("lock").display()))?;
    let (slot, spawn) = choose_slot(&lock, &flags.address, &flags.namespace, &flags.id, options)
        .map_err(|e| format!("join a shared shim: {e}"))?;
    if spawn {
        let slot_dir = slot.dir.display().to_string();
        let idle = options.idle().as_secs().to_string();
        let env = [(SLOT_DIR_ENV, slot_dir.as_str()), (IDLE_ENV, idle.as_str())];
        listen_and_spawn(flags, &slot.address, &slot.socket, options, &env)?;
    }
    // The lock goes only now: a daemon cannot retire between the member file and the answer.
    drop(lock);
    Ok(slot.address)
}

/// Binds the socket at `path` and spawns a daemon serving it, with `env` added to its
/// environment, in the shim cgroup the options name and with containerd's OOM score + 1.
fn listen_and_spawn(
    flags: &Flags,
    address: &str,
    path: &Path,
    options: &ShimOptions,
    env: &[(&str, &str)],
) -> Result<(), String> {
    // On `start` itself, so the daemon (and its spawner) are born with both: no window in
    // which the daemon runs elsewhere.
    if let Some(cgroup) = &options.shim_cgroup {
        super::shim_cgroup::enter(cgroup)?;
    }
    super::shim_cgroup::adjust_oom_score()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("listen on {}: {e}", path.display()))?;
    let mut env = env.to_vec();
    if let Some(level) = &options.log_level {
        env.push((LOG_LEVEL_ENV, level));
    }
    spawn_daemon(flags, address, &listener, &env).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

/// The pod (or explicit group) a container belongs to, from its spec's annotations.
fn pod_group(bundle: &Path) -> Option<String> {
    let bytes = std::fs::read(bundle.join("config.json")).ok()?;
    if !may_name_a_group(&bytes) {
        return None;
    }
    let spec = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|key| spec["annotations"][key].as_str())
        .map(str::to_owned)
}

/// Whether a spec's text could hold one of the group annotations: a spec naming neither (no
/// pod, the common case) is not parsed, which in a fresh process costs about 0.1 ms on every
/// container's start. Only a `\u` escape could hide a key from this test (JSON may spell any
/// character so); a spec with one is parsed.
fn may_name_a_group(spec: &[u8]) -> bool {
    let contains = |needle: &[u8]| spec.windows(needle.len()).any(|w| w == needle);
    contains(b"\\u") || GROUP_ANNOTATIONS.iter().any(|key| contains(key.as_bytes()))
}

/// Launches the daemon: this binary again with no action, the listener as an inherited fd, in
/// its own process group so signals aimed at containerd's group do not reach it.
///
/// `start` does not wait for the daemon's execve (as a spawn through `Command` would): the
/// socket is bound and listening already, so containerd may connect and send Create while the
/// daemon is still being loaded; they wait in the socket's backlog, and the daemon's start-up
/// overlaps `start`'s exit and containerd's own work. Should the execve fail (nothing
/// containerd could act on: the binary was open and sealed a moment ago), the child says so
/// in the bundle's `log` FIFO, which containerd copies to its log, and containerd's connection
/// is refused once nobody holds the listener.
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
    let program = format!("/proc/self/fd/{}", sealed.as_raw_fd());
    let mut args = vec![exe.into_os_string()];
    let mut arg = |a: &str| args.push(a.into());
    for a in ["-namespace", &flags.namespace, "-id", &flags.id] {
        arg(a);
    }
    for a in ["-address", &flags.address, "-socket", address] {
        arg(a);
    }
    if !flags.publish_binary.is_empty() {
        arg("-publish-binary");
        arg(&flags.publish_binary);
    }
    let mut vars: std::collections::BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    let mut var = |name: &str, value: &str| vars.insert(name.into(), value.into());
    var(LISTEN_FD_ENV, &listener.as_raw_fd().to_string());
    if flags.debug {
        arg("-debug");
        // The cold start breakdown the daemon logs at debug level (cold_start.rs).
        let (name, value) = super::cold_start::env_for_daemon();
        var(name, &value);
    }
    for (name, value) in env {
        var(name, value);
    }
    let to_c = |bytes: Vec<u8>| CString::new(bytes).map_err(|_| "NUL in an argument".to_string());
    let program = to_c(program.into_bytes())?;
    let argv = args
        .into_iter()
        .map(|a| to_c(a.into_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = vars
        .into_iter()
        .map(|(name, value)| {
            let mut pair = name.into_vec();
            pair.push(b'=');
            pair.extend(value.into_vec());
            to_c(pair)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Everything the child needs, made before the fork: `start` may have threads (the
    // sharing option's lock, a liveness probe's ttrpc client), so the child must not allocate.
    let argv_p: Vec<*const nix::libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_p: Vec<*const nix::libc::c_char> = envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let null = nix::fcntl::open(
        c"/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open /dev/null: {e}"))?;
    // SAFETY: the child makes only async-signal-safe system calls (setpgid, dup2, execve,
    // open, write, _exit) on data prepared above, allocates nothing and never returns, so a
    // lock another thread of `start` held at the fork cannot stop it.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => exec_daemon(&program, (&argv_p, &envp_p), &null),
        // The daemon outlives `start` (it is re-parented when `start` exits) and is never
        // waited for here.
        Ok(ForkResult::Parent { .. }) => Ok(()),
        Err(e) => Err(format!("start shim daemon: fork: {e}")),
    }
}

/// The forked child of `spawn_daemon`: its own process group, stdio on /dev/null, then the
/// daemon. Allocates nothing; never returns.
fn exec_daemon(
    program: &CStr,
    (argv, envp): (&[*const nix::libc::c_char], &[*const nix::libc::c_char]),
    null: &OwnedFd,
) -> ! {
    use nix::libc;
    // SAFETY: plain system calls on fds and null-terminated arrays of pointers into CStrings
    // that the parent's frame (copied into this child) keeps alive; execve returns only on
    // failure, and _exit never returns.
    unsafe {
        libc::setpgid(0, 0);
        // As `Command` leaves them: Rust ignores SIGPIPE, and an ignored signal survives
        // execve; no signal blocked.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for target in 0..3 {
            libc::dup2(null.as_raw_fd(), target);
        }
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let error = nix::errno::Errno::last().desc();
        let log = libc::open(
            c"log".as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if log >= 0 {
            let prefix = b"sibling: start: the shim daemon could not be executed: ";
            for part in [&prefix[..], error.as_bytes(), b"\n"] {
                libc::write(log, part.as_ptr().cast(), part.len());
            }
        }
        libc::_exit(127)
    }
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
    // The container is gone: its poststop hooks, run from this short-lived process (not a
    // daemon); a failure is only logged, as the spec says.
    if let Some(hooks) = state.as_ref().map(|s| &s.hooks)
        && !hooks.poststop.is_empty()
    {
        let json = hooks.state.json("stopped", None);
        if let Err(error) = run_hooks(HookKind::Poststop, &hooks.poststop, &json) {
            log::warn!("{}: {error}", flags.id);
        }
    }
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
    if !path.is_empty() && check_daemon(Path::new(path)) == Liveness::Gone {
        let _ = std::fs::remove_file(path);
    }
}

/// Unmounts every layer mounted on `target` (EINVAL: nothing, or nothing more, is mounted).
fn unmount_all(target: &Path) {
    while umount2(target, MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_of(spec: &serde_json::Value) -> Option<String> {
        let dir = std::env::temp_dir().join(format!("pod-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
        let group = pod_group(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        group
    }

    #[test]
    fn the_group_comes_from_either_annotation_however_spelled() {
        let spec =
            |key: &str| serde_json::json!({"ociVersion": "1.0.2", "annotations": {key: "pod1"}});
        for key in GROUP_ANNOTATIONS {
            assert_eq!(group_of(&spec(key)).as_deref(), Some("pod1"), "{key}");
        }
        assert_eq!(group_of(&spec("io.example.other")), None);
        assert_eq!(group_of(&serde_json::json!({"ociVersion": "1.0.2"})), None);
        // A key spelled with an escape is still found (the text test lets it through).
        let dir = std::env::temp_dir().join(format!("pod-group-esc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = r#"{"annotations": {"io.kubernetes.cri.sandbox\u002did": "pod2"}}"#;
        std::fs::write(dir.join("config.json"), text).unwrap();
        assert_eq!(pod_group(&dir).as_deref(), Some("pod2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spec_without_the_keys_is_not_parsed() {
        assert!(!may_name_a_group(br#"{"annotations": {"a": "b"}}"#));
        assert!(may_name_a_group(br#"{"io.containerd.runc.v2.group": "g"}"#));
        assert!(may_name_a_group(br#"{"x": "\u0041"}"#));
    }
}
