//! Shared shims, an option a user turns on: containers outside pods share a daemon, a few at a
//! time, and an idle daemon stays a moment for the next container.
//!
//! By default every container outside a pod gets a daemon of its own that exits with it (as
//! runc.v2). With `containers_per_shim` above 1 in the runtime's options (read by `start` from
//! its stdin, see `options::ShimOptions`), a container of a pod still joins its pod's shim
//! (`manager::pod_group`), and every other container goes to a *slot*: slot n is one daemon
//! serving at most `containers_per_shim` containers. When its last container is deleted the
//! daemon waits `idle_seconds` (default 10) before it exits. Slots are keyed by the shim
//! binary's identity and the options, so an upgraded binary or changed settings get daemons of
//! their own instead of joining old ones.
//!
//! The race this must win: a daemon deciding to exit while `start` has just handed its
//! address to containerd for a new container. So both sides decide under one lock (an `flock`
//! on `lock` in [`state_root`]): `start` records the container in the slot's `members/` directory
//! before it answers; the daemon exits only when it has no task and no member file younger than
//! [`RESERVATION_TIMEOUT`], and removes its socket and slot directory before it lets go of the
//! lock. The daemon removes a member file when the container is deleted or its Create fails.
//! Every wait here is bounded: the lock ([`LOCK_TIMEOUT`]) and the liveness check, a ttrpc call
//! with a deadline ([`LIVENESS_TIMEOUT`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::shim::shim::ConnectRequest;
use containerd_shim_protos::ttrpc::{self, context};
use nix::fcntl::{Flock, FlockArg};

use super::options::ShimOptions;

/// Where slots keep their lock and member files (tmpfs on most hosts: gone at boot), unless
/// [`STATE_ROOT_ENV`] names another directory.
pub const STATE_ROOT: &str = "/run/sibling/shared";
pub const STATE_ROOT_ENV: &str = "SIBLING_SHARED_ROOT";

/// The slot state directory: `start`, its daemons and the `delete` action all get containerd's
/// environment, so they agree on it.
pub fn state_root() -> PathBuf {
    std::env::var_os(STATE_ROOT_ENV).map_or_else(|| PathBuf::from(STATE_ROOT), PathBuf::from)
}

/// The slot directory a daemon belongs to; set by `start` for the daemon it spawns.
pub const SLOT_DIR_ENV: &str = "SIBLING_SHARED_SLOT";

/// Set by `start` for a daemon it started for one container because the slots could not be
/// used: the daemon logs the reason (`start` itself may not write to stderr).
pub const SHARING_FAILED_ENV: &str = "SIBLING_SHARING_FAILED";

/// How long an idle shared daemon waits for a new container; set by `start` for the daemon
/// from the runtime options.
pub const IDLE_ENV: &str = "SIBLING_SHARED_IDLE_SECONDS";

/// The longest wait for the slot lock: a holder that hangs (a stopped `start`) costs the next
/// container its sharing (it gets a daemon of its own), never its start.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a live daemon has to answer the liveness call.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a member file without a task counts: containerd sends Create right after `start`
/// answers, so an older one is left over from a Create that never came.
pub const RESERVATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Slots tried before giving up (16 containers each: far more than one machine runs).
const MAX_SLOTS: usize = 4096;

/// The lock both `start` and a retiring daemon hold while they decide.
pub struct SlotLock(#[allow(dead_code)] Flock<File>);

impl SlotLock {
    /// Takes the lock, waiting at most [`LOCK_TIMEOUT`]. The wait runs on a thread of its own:
    /// if it times out, that thread takes the lock later only to drop it at once.
    pub fn acquire() -> io::Result<SlotLock> {
        let root = state_root();
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("slot-lock".into())
            .spawn(move || {
                let _ = tx.send(Self::acquire_in(&root));
            })?;
        rx.recv_timeout(LOCK_TIMEOUT).unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the shared-shim lock is held for more than {LOCK_TIMEOUT:?}"),
            ))
        })
    }

    fn acquire_in(root: &Path) -> io::Result<SlotLock> {
        fs::create_dir_all(root)?;
        // Root's alone: anyone who can open the lock file can flock it, and so hold up every
        // container's start.
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join("lock"))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(SlotLock)
            .map_err(|(_, errno)| io::Error::from(errno))
    }
}

/// One slot: a socket address and the directory of its members.
pub struct Slot {
    pub address: String,
    pub socket: PathBuf,
    pub dir: PathBuf,
}

impl Slot {
    /// Slot `n` of `namespace` for the containerd at `containerd_address`, for daemons of this
    /// binary with these options (`key`, see [`slot_key`]).
    pub fn new(containerd_address: &str, namespace: &str, key: &str, n: usize) -> Slot {
        let address = containerd_shim::socket_address(
            containerd_address,
            namespace,
            &format!("sibling-shared-{key}-{n}"),
        );
        let socket = PathBuf::from(address.trim_start_matches("unix://"));
        // The socket's name is already a hash of containerd's address, namespace and slot.
        let name = socket.file_name().map(|n| n.to_owned()).unwrap_or_default();
        Slot {
            dir: state_root().join(name),
            socket,
            address,
        }
    }

    fn members(&self) -> PathBuf {
        self.dir.join("members")
    }

    pub fn member_count(&self) -> usize {
        fs::read_dir(self.members()).map_or(0, |entries| entries.count())
    }

    /// Records `id` as a member (before `start` answers; see the module comment).
    pub fn join(&self, id: &str) -> io::Result<()> {
        File::create(self.members().join(member_name(id)?)).map(drop)
    }

    /// Clears what a dead daemon left in this slot, for a new one.
    pub fn reset(&self) -> io::Result<()> {
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_dir_all(&self.dir);
        fs::create_dir_all(self.members())
    }
}

/// What a liveness check of a daemon's socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// A daemon answered a ttrpc call.
    Answers,
    /// Something accepted the connection (or its backlog is full) but no answer came in time:
    /// a wedged daemon. Its socket is not ours to take.
    Silent,
    /// No socket, or nobody listening: a daemon that exited or died.
    Gone,
}

/// Checks the daemon at `path` with a ttrpc call (Connect) that has a deadline. The connect
/// itself is non-blocking, so a daemon whose backlog is full cannot hold the caller either.
pub fn check_daemon(path: &Path) -> Liveness {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::{AsRawFd, IntoRawFd};
    let Ok(address) = UnixAddr::new(path) else {
        return Liveness::Gone;
    };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let Ok(socket) = socket(AddressFamily::Unix, SockType::Stream, flags, None) else {
        return Liveness::Gone;
    };
    match connect(socket.as_raw_fd(), &address) {
        Ok(()) => {}
        Err(nix::errno::Errno::EAGAIN) => return Liveness::Silent,
        Err(_) => return Liveness::Gone,
    }
    // Blocking again for the ttrpc client; the call's deadline bounds the wait.
    let blocking = nix::fcntl::OFlag::empty();
    if nix::fcntl::fcntl(&socket, nix::fcntl::FcntlArg::F_SETFL(blocking)).is_err() {
        return Liveness::Gone;
    }
    let Ok(client) = ttrpc::Client::new(socket.into_raw_fd()) else {
        return Liveness::Gone;
    };
    let task = containerd_shim_protos::shim_sync::TaskClient::new(client);
    let deadline = context::with_timeout(LIVENESS_TIMEOUT.as_nanos() as i64);
    let liveness = match task.connect(deadline, &ConnectRequest::default()) {
        // Any answer, an error status too, comes from a serving daemon.
        Ok(_) | Err(ttrpc::Error::RpcStatus(_)) => Liveness::Answers,
        Err(_) => Liveness::Silent,
    };
    // Never dropped: ttrpc 0.9's sync client closes its socket on drop while its receiver
    // thread, between its readiness poll and its read, holds the bare fd number without a
    // reference; an fd opened meanwhile under that number (the next daemon's socket, a slot
    // file) would be read by that thread. This runs only in the short-lived `start` and
    // `delete` actions, whose exit closes it.
    std::mem::forget(task);
    liveness
}

/// The part of a slot's name that sets apart daemons of another binary (an upgrade replaced
/// the file) or other sharing options: they never serve each other's containers.
pub fn slot_key(options: &ShimOptions) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = DefaultHasher::new();
    let binary = std::env::current_exe().and_then(fs::metadata);
    if let Ok(meta) = binary {
        (
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
        )
            .hash(&mut hasher);
        (meta.ctime(), meta.ctime_nsec()).hash(&mut hasher);
    }
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    options.hash(&mut hasher);
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// A container id as a file name: containerd's identifiers never hold a `/`, but check.
fn member_name(id: &str) -> io::Result<&str> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("container id {id:?} cannot name a file"),
        ));
    }
    Ok(id)
}

/// `start` for a container outside a pod: joins the first slot with a live daemon and room, or
/// claims the first slot without a live daemon. Returns the slot and whether a daemon must be
/// spawned for it (the caller does that while `lock` is still held).
pub fn choose_slot(
    _lock: &SlotLock,
    containerd_address: &str,
    namespace: &str,
    id: &str,
    options: &ShimOptions,
) -> io::Result<(Slot, bool)> {
    let capacity = options.containers_per_shim as usize;
    let key = slot_key(options);
    for n in 0..MAX_SLOTS {
        let slot = Slot::new(containerd_address, namespace, &key, n);
        match check_daemon(&slot.socket) {
            Liveness::Answers if slot.member_count() < capacity => {
                slot.join(id)?;
                return Ok((slot, false));
            }
            // Full, or wedged: the next slot.
            Liveness::Answers | Liveness::Silent => continue,
            Liveness::Gone => {}
        }
        slot.reset()?;
        slot.join(id)?;
        return Ok((slot, true));
    }
    Err(io::Error::other(format!(
        "all {MAX_SLOTS} shared shim slots are full"
    )))
}

/// The `delete` action for container `id` whose daemon at `address` died: if that was a
/// shared daemon, drops the container's member file and, once no member is left, the dead
/// daemon's socket and slot. False when `address` is not a slot's.
pub fn release_after_dead_daemon(address: &str, id: &str) -> bool {
    let socket = Path::new(address.trim_start_matches("unix://"));
    let Some(name) = socket.file_name() else {
        return false;
    };
    let slot = Slot {
        address: address.to_owned(),
        socket: socket.to_owned(),
        dir: state_root().join(name),
    };
    if !slot.dir.is_dir() {
        return false;
    }
    let Ok(name) = member_name(id) else {
        return true;
    };
    // containerd 1.6 runs `delete` after every task's connection closes, also when a live
    // daemon deleted the container and let go of its member file: then there is nothing to
    // release, and no need to take the lock or knock on the daemon's socket.
    if !slot.members().join(name).exists() {
        return true;
    }
    // Under the lock: a new daemon may be taking this slot over at any moment.
    let Ok(_lock) = SlotLock::acquire() else {
        return true;
    };
    let _ = fs::remove_file(slot.members().join(name));
    if check_daemon(&slot.socket) == Liveness::Gone && slot.member_count() == 0 {
        let _ = fs::remove_file(&slot.socket);
        let _ = fs::remove_dir_all(&slot.dir);
    }
    true
}

/// What a shared daemon knows of its slot.
#[derive(Debug)]
pub struct Membership {
    dir: PathBuf,
    socket: PathBuf,
    pub idle: Duration,
}

/// What a daemon with no task may do now.
#[derive(Debug, PartialEq)]
pub enum Retire {
    /// Exit: the socket and slot directory are gone.
    Now,
    /// A container is on its way (a young member file): decide again after this long.
    Later(Duration),
}

impl Membership {
    /// The daemon's slot, when `start` spawned it as a shared daemon.
    pub fn from_env(socket: &str) -> Option<Membership> {
        let dir = std::env::var_os(SLOT_DIR_ENV)?;
        let idle = std::env::var(IDLE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(ShimOptions::default().idle(), Duration::from_secs);
        Some(Membership {
            dir: PathBuf::from(dir),
            socket: PathBuf::from(socket.trim_start_matches("unix://")),
            idle,
        })
    }

    /// The container `id` is gone (deleted, or its Create failed).
    pub fn leave(&self, id: &str) {
        if let Ok(name) = member_name(id) {
            let _ = fs::remove_file(self.dir.join("members").join(name));
        }
    }

    /// Decides, under the lock, whether a daemon whose `has_tasks` says it has none may exit.
    pub fn try_retire(&self, has_tasks: impl Fn() -> bool) -> io::Result<Option<Retire>> {
        let _lock = SlotLock::acquire()?;
        if has_tasks() {
            return Ok(None);
        }
        if let Some(wait) = self.pending_reservation(SystemTime::now()) {
            return Ok(Some(Retire::Later(wait)));
        }
        self.remove_slot();
        Ok(Some(Retire::Now))
    }

    /// SIGTERM: the daemon exits whatever it holds.
    pub fn retire_now(&self) {
        let _lock = SlotLock::acquire();
        self.remove_slot();
    }

    fn remove_slot(&self) {
        let _ = fs::remove_file(&self.socket);
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// The longest wait left on a member file without a task; stale ones are removed.
    fn pending_reservation(&self, now: SystemTime) -> Option<Duration> {
        let entries = fs::read_dir(self.dir.join("members")).ok()?;
        let mut longest = None;
        for entry in entries.flatten() {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .unwrap_or_default();
            match RESERVATION_TIMEOUT.checked_sub(age) {
                Some(left) if !left.is_zero() => longest = longest.max(Some(left)),
                _ => {
                    log::warn!(
                        "no Create came for {:?} in {RESERVATION_TIMEOUT:?}: dropping it",
                        entry.file_name()
                    );
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(dir: &Path) -> Membership {
        Membership {
            dir: dir.to_owned(),
            socket: dir.join("socket"),
            idle: Duration::ZERO,
        }
    }

    #[test]
    fn the_slot_state_is_roots_alone() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let root = std::env::temp_dir().join(format!("sibling-shared-perm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let lock = SlotLock::acquire_in(&root).expect("lock");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("lock")), 0o600);
        drop(lock);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn member_names_cannot_leave_the_directory() {
        assert!(member_name("abc-1.2_3").is_ok());
        for bad in ["", ".", "..", "a/b", "/etc"] {
            assert!(member_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_young_member_file_holds_the_daemon_and_an_old_one_is_dropped() {
        let dir = std::env::temp_dir().join(format!("sibling-shared-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("members")).unwrap();
        File::create(dir.join("members/young")).unwrap();
        let m = membership(&dir);
        let now = SystemTime::now();
        let wait = m.pending_reservation(now).expect("a pending reservation");
        assert!(wait <= RESERVATION_TIMEOUT && wait > Duration::ZERO);
        // Seen from a minute later, the same file is stale and goes.
        let later = now + Duration::from_secs(60);
        assert_eq!(m.pending_reservation(later), None);
        assert!(!dir.join("members/young").exists());
        m.remove_slot();
        assert!(!dir.exists());
    }
}
