//! Shared shims: containers outside pods share a daemon, a few at a time, and an idle daemon
//! stays a moment for the next container.
//!
//! A container of a pod joins its pod's shim (`manager::pod_group`). Every other container of a
//! namespace goes to a *slot*: slot n is one daemon serving at most `SIBLING_CONTAINERS_PER_SHIM`
//! (default 16) containers. When its last container is deleted the daemon waits
//! `SIBLING_IDLE_SHIM_SECONDS` (default 10) before it exits, so the next container starts
//! without starting a shim. Both are read from the environment containerd gives its shims.
//!
//! The race this must win: a daemon deciding to exit while `start` has just handed its
//! address to containerd for a new container. So both sides decide under one lock (an `flock`
//! on `lock` in [`state_root`]): `start` records the container in the slot's `members/` directory
//! before it answers; the daemon exits only when it has no task and no member file younger than
//! [`RESERVATION_TIMEOUT`], and removes its socket and slot directory before it lets go of the
//! lock. The daemon removes a member file when the container is deleted or its Create fails.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

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

/// How many containers one shared daemon serves (1: one container per daemon).
pub const PER_SHIM_ENV: &str = "SIBLING_CONTAINERS_PER_SHIM";
const DEFAULT_PER_SHIM: usize = 16;

/// How long an idle shared daemon waits for a new container before it exits (0: at once).
pub const IDLE_ENV: &str = "SIBLING_IDLE_SHIM_SECONDS";
const DEFAULT_IDLE: Duration = Duration::from_secs(10);

/// How long a member file without a task counts: containerd sends Create right after `start`
/// answers, so an older one is left over from a Create that never came.
pub const RESERVATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Slots tried before giving up (16 containers each: far more than one machine runs).
const MAX_SLOTS: usize = 4096;

/// The lock both `start` and a retiring daemon hold while they decide.
pub struct SlotLock(#[allow(dead_code)] Flock<File>);

impl SlotLock {
    pub fn acquire() -> io::Result<SlotLock> {
        Self::acquire_in(&state_root())
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
    /// Slot `n` of `namespace` for the containerd at `containerd_address`.
    pub fn new(containerd_address: &str, namespace: &str, n: usize) -> Slot {
        let address = containerd_shim::socket_address(
            containerd_address,
            namespace,
            &format!("sibling-shared-{n}"),
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

/// Whether a daemon serves the socket at `path`. A daemon that decided to exit removed its
/// socket under the lock; a crashed one's refuses connections.
pub fn daemon_answers(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
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
) -> io::Result<(Slot, bool)> {
    let capacity = containers_per_shim();
    for n in 0..MAX_SLOTS {
        let slot = Slot::new(containerd_address, namespace, n);
        if daemon_answers(&slot.socket) {
            if slot.member_count() < capacity {
                slot.join(id)?;
                return Ok((slot, false));
            }
            continue;
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
    if !daemon_answers(&slot.socket) && slot.member_count() == 0 {
        let _ = fs::remove_file(&slot.socket);
        let _ = fs::remove_dir_all(&slot.dir);
    }
    true
}

fn containers_per_shim() -> usize {
    std::env::var(PER_SHIM_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_PER_SHIM)
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
            .map_or(DEFAULT_IDLE, Duration::from_secs);
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
