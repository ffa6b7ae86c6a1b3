//! The containerd side: the shim's actions (`start`, `delete`), the daemon, the Task service,
//! the container and process records, the reaper and the event queue.

pub mod bundle_spec;
pub mod create;
pub mod daemon;
pub mod error;
pub mod events;
pub mod exec_process;
pub mod exit_order;
pub mod logger;
pub mod manager;
pub mod metrics;
pub mod oom_watcher;
pub mod options;
pub mod process;
pub mod reaper;
pub mod sealed_exe;
pub mod service;
pub mod shared;
pub mod shim_cgroup;
pub mod snapshot_mount;
pub mod spawn_process;
pub mod spawner_slot;
pub mod state_file;
pub mod task;
pub mod time;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cgroups::Hierarchies;
use error::TaskError;
use events::EventQueue;
use oom_watcher::OomWatcher;
use reaper::Exits;
use shared::Membership;
use spawner_slot::SpawnerSlot;
use task::Task;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_NAME: &str = "io.containerd.sibling.v2";

/// Where a container's cgroup goes when its spec names none.
pub const DEFAULT_CGROUP_PARENT: &str = "/sibling";

#[derive(Default)]
struct Tasks {
    ready: HashMap<String, Arc<Task>>,
    /// Ids whose Create is in flight: reserved so a second Create with the same id fails at
    /// once, without holding the lock while the first one runs.
    creating: HashSet<String>,
}

impl Tasks {
    /// Whether `id` is a container of this daemon, created or being created.
    fn knows(&self, id: &str) -> bool {
        self.ready.contains_key(id) || self.creating.contains(id)
    }

    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.creating.is_empty()
    }
}

/// Everything the daemon's threads share.
pub struct Daemon {
    pub namespace: String,
    pub spawner: SpawnerSlot,
    pub exits: Arc<Exits>,
    pub events: EventQueue,
    pub hierarchies: Hierarchies,
    /// Live TaskOOM for every container with a memory cgroup.
    pub oom: OomWatcher,
    /// The slot of a shared daemon (`shared`); None for a pod's daemon.
    pub shared: Option<Membership>,
    tasks: Mutex<Tasks>,
    shutdown_requested: AtomicBool,
}

/// Holds an id reserved for a Create in flight.
pub struct Reservation<'a> {
    daemon: &'a Daemon,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let created = {
            let mut tasks = self.daemon.tasks();
            tasks.creating.remove(&self.id);
            tasks.ready.contains_key(&self.id)
        };
        if !created {
            // The Create failed: containerd will not send Delete for it.
            self.daemon.left(&self.id);
        }
    }
}

impl Daemon {
    pub fn new(
        namespace: String,
        spawner: SpawnerSlot,
        exits: Arc<Exits>,
        events: EventQueue,
        hierarchies: Hierarchies,
        shared: Option<Membership>,
    ) -> Daemon {
        Daemon {
            namespace,
            spawner,
            exits,
            oom: OomWatcher::new(events.clone()),
            events,
            hierarchies,
            shared,
            tasks: Mutex::new(Tasks::default()),
            shutdown_requested: AtomicBool::new(false),
        }
    }

    fn tasks(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn task(&self, id: &str) -> Option<Arc<Task>> {
        self.tasks().ready.get(id).cloned()
    }

    pub fn all_tasks(&self) -> Vec<Arc<Task>> {
        self.tasks().ready.values().cloned().collect()
    }

    /// Reserves `id` for a Create; a second Create of a live or in-flight id fails.
    pub fn reserve(&self, id: &str) -> Result<Reservation<'_>, TaskError> {
        let mut tasks = self.tasks();
        if tasks.knows(id) {
            return Err(TaskError::already_exists(format!(
                "container {id} already exists"
            )));
        }
        tasks.creating.insert(id.to_owned());
        Ok(Reservation {
            daemon: self,
            id: id.to_owned(),
        })
    }

    pub fn insert(&self, task: Arc<Task>) {
        if let Some(cgroup) = &task.cgroup {
            self.oom.watch(&task.id, cgroup, &task.order);
        }
        self.tasks().ready.insert(task.id.clone(), task);
    }

    pub fn remove(&self, id: &str) {
        self.oom.unwatch(id);
        self.tasks().ready.remove(id);
        self.left(id);
    }

    /// Whether a container is running or being created here.
    pub fn has_tasks(&self) -> bool {
        !self.tasks().is_empty()
    }

    /// Container `id` is gone: a shared daemon gives up its slot membership and, if that was
    /// the last, starts its idle timer.
    fn left(&self, id: &str) {
        logger::leave(id);
        if let Some(shared) = &self.shared {
            shared.leave(id);
            if !self.has_tasks() {
                // containerd's Shutdown, which follows, starts the idle time; this is for
                // when it never comes (containerd died), and never before the Shutdown.
                wake_after(shared.idle.max(std::time::Duration::from_secs(1)));
            }
        }
    }

    /// Shutdown: a pod's daemon exits once it has no container left (containerd calls this
    /// after every Delete of a shim's containers); a shared daemon waits out its idle time.
    pub fn request_shutdown_if_idle(&self, id: &str) {
        let idle = {
            let tasks = self.tasks();
            if let Some(shared) = &self.shared
                && !tasks.knows(id)
            {
                // containerd gave up on a container whose Create never came (or repeats
                // itself after a Delete): it holds the daemon no longer.
                shared.leave(id);
            }
            tasks.is_empty()
        };
        if !idle {
            return;
        }
        match &self.shared {
            Some(shared) => wake_after(shared.idle),
            None => {
                self.shutdown_requested.store(true, Ordering::SeqCst);
                // Wake the main thread's signal loop.
                send_to_self(nix::sys::signal::Signal::SIGUSR1);
            }
        }
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.load(Ordering::SeqCst)
    }
}

/// Has SIGALRM reach the main thread's signal loop after `delay` (whole seconds, rounded up),
/// replacing any earlier timer.
pub fn wake_after(delay: std::time::Duration) {
    if delay.is_zero() {
        send_to_self(nix::sys::signal::Signal::SIGALRM);
        return;
    }
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    nix::unistd::alarm::set(u32::try_from(seconds).unwrap_or(u32::MAX));
}

/// A process-directed signal: raise() would be directed at the calling thread, which blocks
/// it; the main thread takes it with sigwait.
fn send_to_self(signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
}
