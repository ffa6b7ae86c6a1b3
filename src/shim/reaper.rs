//! The one reaper of the daemon, and the registry that turns a reaped pid into a process's exit.
//!
//! Every container process is a direct child of the daemon (sibling-mode spawning), and the
//! daemon is a subreaper, so `waitpid(-1)` here sees every exit first-hand. A process can exit
//! before the daemon has recorded it (a command that exits at once): while any spawn is in
//! flight such exits are parked and matched when the process is registered. Exits of pids nobody
//! is waiting for (helpers, orphans re-parented to us) are dropped once no spawn is in flight, so
//! the parking lot stays bounded.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::process::{Process, exit_code};

#[derive(Default)]
struct Inner {
    known: HashMap<u32, Weak<Process>>,
    parked: HashMap<u32, u32>,
    spawning: usize,
    spawner: Option<u32>,
}

/// Who is waiting for which pid.
#[derive(Default)]
pub struct Exits {
    inner: Mutex<Inner>,
    /// Signalled whenever an exit is parked (see [`Exits::wait_reaped`]).
    parked_changed: Condvar,
}

/// Keeps exits of unknown pids parked while it lives (one per spawn in flight).
pub struct SpawnGuard<'a> {
    exits: &'a Exits,
}

impl Drop for SpawnGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.exits.lock();
        inner.spawning -= 1;
        if inner.spawning == 0 {
            inner.parked.clear();
        }
    }
}

impl Exits {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_spawner(&self, pid: Pid) {
        self.lock().spawner = Some(pid.as_raw() as u32);
    }

    /// Call before asking the spawner for a process; keep the guard until it is registered.
    pub fn begin_spawn(&self) -> SpawnGuard<'_> {
        self.lock().spawning += 1;
        SpawnGuard { exits: self }
    }

    /// Starts following `process`; an exit that was already reaped is applied now.
    pub fn register(&self, process: &Arc<Process>) {
        let mut inner = self.lock();
        if let Some(code) = inner.parked.remove(&process.pid) {
            drop(inner);
            process.set_exited(code);
            return;
        }
        inner.known.insert(process.pid, Arc::downgrade(process));
    }

    /// Called by the reaper for every reaped child.
    pub fn on_exit(&self, pid: u32, code: u32) {
        let mut inner = self.lock();
        if let Some(process) = inner.known.remove(&pid) {
            drop(inner);
            if let Some(process) = process.upgrade() {
                log::debug!("process {pid} exited with {code}");
                process.set_exited(code);
            }
            return;
        }
        if inner.spawner == Some(pid) {
            log::error!("spawner {pid} exited with {code}: new containers cannot be created");
            inner.spawner = None;
        }
        if inner.spawning > 0 {
            inner.parked.insert(pid, code);
            self.parked_changed.notify_all();
        }
    }

    /// Waits until `pid`, a child nobody registers (a spawn helper), has been reaped. Call it
    /// while holding the [`SpawnGuard`] of the spawn that made it, so its exit is parked.
    ///
    /// Returns false if it was not reaped within `limit` (the helper is on its way to `_exit`,
    /// so this bounds a kernel stall, not a normal wait).
    pub fn wait_reaped(&self, pid: Pid, limit: Duration) -> bool {
        self.wait_exit(pid, limit).is_some()
    }

    /// Waits until `pid`, a child nobody registers (a spawn helper, or a program the daemon
    /// runs such as criu), has been reaped, and returns its exit code (128 + signal for a
    /// signal); `None` if it was not reaped within `limit`. Hold the [`SpawnGuard`] of the
    /// spawn that made it, so its exit is parked.
    pub fn wait_exit(&self, pid: Pid, limit: Duration) -> Option<u32> {
        let pid = pid.as_raw() as u32;
        let deadline = Instant::now() + limit;
        let mut inner = self.lock();
        loop {
            if let Some(code) = inner.parked.remove(&pid) {
                return Some(code);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            inner = match self.parked_changed.wait_timeout(inner, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// The exit of the spawner is what later Creates must report.
    pub fn spawner_alive(&self) -> bool {
        self.lock().spawner.is_some()
    }
}

/// Reaps every child that has exited, without blocking.
pub fn reap_children(exits: &Exits) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                if let (Some(pid), Some(code)) = (status.pid(), exit_code(status)) {
                    exits.on_exit(pid.as_raw() as u32, code);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => {
                log::error!("waitpid: {e}");
                return;
            }
        }
    }
}
