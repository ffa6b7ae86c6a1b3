//! The containerd side: the shim's actions (`start`, `delete`), the daemon, the Task service,
//! the container and process records, the reaper and the event queue.

pub mod daemon;
pub mod error;
pub mod events;
pub mod exec;
pub mod exit_order;
pub mod logger;
pub mod manager;
pub mod oom_watcher;
pub mod options;
pub mod process;
pub mod reaper;
pub mod rootfs;
pub mod sealed_exe;
pub mod service;
pub mod spawner_slot;
pub mod state_file;
pub mod task;
pub mod time;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::container::cgroups::Hierarchies;
use error::TaskError;
use events::EventQueue;
use oom_watcher::OomWatcher;
use reaper::Exits;
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

/// Everything the daemon's threads share.
pub struct Daemon {
    pub namespace: String,
    pub spawner: SpawnerSlot,
    pub exits: Arc<Exits>,
    pub events: EventQueue,
    pub hierarchies: Hierarchies,
    /// Live TaskOOM for every container with a memory cgroup.
    pub oom: OomWatcher,
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
        self.daemon.tasks().creating.remove(&self.id);
    }
}

impl Daemon {
    pub fn new(
        namespace: String,
        spawner: SpawnerSlot,
        exits: Arc<Exits>,
        events: EventQueue,
        hierarchies: Hierarchies,
    ) -> Daemon {
        Daemon {
            namespace,
            spawner,
            exits,
            oom: OomWatcher::new(events.clone()),
            events,
            hierarchies,
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
        if tasks.ready.contains_key(id) || !tasks.creating.insert(id.to_owned()) {
            return Err(TaskError::already_exists(format!(
                "container {id} already exists"
            )));
        }
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
    }

    /// Shutdown: the daemon exits once it has no container left (containerd calls this after
    /// every Delete of a shim's containers).
    pub fn request_shutdown_if_idle(&self) {
        let tasks = self.tasks();
        if tasks.ready.is_empty() && tasks.creating.is_empty() {
            self.shutdown_requested.store(true, Ordering::SeqCst);
            // Wake the main thread's signal loop: a process-directed signal (raise() would be
            // directed at this thread, which blocks it).
            let me = nix::unistd::getpid();
            let _ = nix::sys::signal::kill(me, nix::sys::signal::Signal::SIGUSR1);
        }
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown_requested.load(Ordering::SeqCst)
    }
}
